package dataplane_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/resolver"
)

// listenerSource is a hand-written ListenerSource: the test sends each
// value of the one Listener watched.
type listenerSource struct {
	mu       sync.Mutex
	name     string
	fn       func(resolver.Listener, error)
	canceled int
}

func (s *listenerSource) WatchListener(name string, fn func(resolver.Listener, error)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name, s.fn = name, fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.canceled++
	}
}

func (s *listenerSource) send(l resolver.Listener, err error) { s.fn(l, err) }

// events records the callbacks of an Inbound.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, fmt.Sprintf(format, args...))
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.list
	e.list = nil
	return out
}

func peer(sa string) []*x509.Certificate {
	u, _ := url.Parse("spiffe://cluster.local/ns/default/sa/" + sa)
	return []*x509.Certificate{{URIs: []*url.URL{u}}}
}

func tcp(s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

// policy is a server Listener whose RBAC refuses /admin on port 9081 and
// allows only sa/x; strict says whether it requires mTLS.
func policy(strict bool) resolver.Listener {
	l := resolver.Listener{Name: "inbound", HTTPFilters: []resolver.HTTPFilter{
		{Name: "rbac.deny", RBAC: &resolver.RBAC{Action: resolver.RBACDeny, Policies: []resolver.RBACPolicy{{
			Name: "deny-admin",
			Permissions: []resolver.Permission{{Kind: resolver.PermissionAnd, Rules: []resolver.Permission{
				{Kind: resolver.PermissionURLPath, String: resolver.StringMatch{Kind: resolver.StringPrefix, Value: "/admin"}},
				{Kind: resolver.PermissionDestinationPort, Port: 9081},
			}}},
			Principals: []resolver.Principal{{Kind: resolver.PrincipalAny}},
		}}}},
		{Name: "rbac.allow", RBAC: &resolver.RBAC{Action: resolver.RBACAllow, Policies: []resolver.RBACPolicy{{
			Name:        "allow-x",
			Permissions: []resolver.Permission{{Kind: resolver.PermissionAny}},
			Principals: []resolver.Principal{{Kind: resolver.PrincipalAuthenticated,
				Name: &resolver.StringMatch{Kind: resolver.StringExact, Value: "spiffe://cluster.local/ns/default/sa/x"}}},
		}, {
			Name:        "allow-header",
			Permissions: []resolver.Permission{{Kind: resolver.PermissionHeader, Header: resolver.HeaderMatch{Name: "x-open", Kind: resolver.HeaderPresent, Present: true}}},
			Principals:  []resolver.Principal{{Kind: resolver.PrincipalAny}},
		}}}},
	}}
	if strict {
		l.TLS = &resolver.DownstreamTLS{RequireClientCert: true}
	}
	return l
}

// verdict is what Authorize said, in short: "ok", "not ready",
// "plaintext", "deny <policy>" or "no allow".
func verdict(err error) string {
	var d *resolver.Denial
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, dataplane.ErrInboundNotReady):
		return "not ready"
	case errors.Is(err, dataplane.ErrInboundPlaintext):
		return "plaintext"
	case errors.As(err, &d) && errors.Is(err, resolver.ErrDenied):
		if d.Action == resolver.RBACDeny {
			return "deny " + d.Policy
		}
		return "no allow"
	}
	return "unexpected: " + err.Error()
}

func TestInboundFollowsItsListener(t *testing.T) {
	src := &listenerSource{}
	var ev events
	in := dataplane.WatchInbound(src, "10.0.0.1:9081", dataplane.InboundOptions{
		Serving: func(serving bool, err error) { ev.add("serving %v %v", serving, err != nil) },
		Updated: func(l *resolver.Listener) { ev.add("updated strict=%v", l.TLS != nil) },
	})
	if want := "xds.istio.io/grpc/lds/inbound/10.0.0.1:9081"; src.name != want || in.Name() != want {
		t.Fatalf("watched %q (Name %q), want %q", src.name, in.Name(), want)
	}
	x := &dataplane.InboundRequest{PeerCertificates: peer("x"), Method: "POST", Path: "/pkg.Svc/Get", Local: tcp("10.0.0.1:9081")}
	y := &dataplane.InboundRequest{PeerCertificates: peer("y"), Method: "POST", Path: "/pkg.Svc/Get", Local: tcp("10.0.0.1:9081")}
	plain := &dataplane.InboundRequest{Method: "GET", Path: "/", Local: tcp("10.0.0.1:9081"),
		Header: func(n string) []string {
			if n == "x-open" {
				return []string{"1"}
			}
			return nil
		}}
	steps := []struct {
		name       string
		send       func()
		wantEvents []string
		strict     bool
		want       map[*dataplane.InboundRequest]string
	}{
		{"before the Listener", func() {}, nil, false,
			map[*dataplane.InboundRequest]string{x: "not ready", plain: "not ready"}},
		{"PERMISSIVE arrives", func() { src.send(policy(false), nil) }, []string{"updated strict=false", "serving true false"}, false,
			map[*dataplane.InboundRequest]string{x: "ok", y: "no allow", plain: "ok"}},
		{"STRICT", func() { src.send(policy(true), nil) }, []string{"updated strict=true"}, true,
			map[*dataplane.InboundRequest]string{x: "ok", y: "no allow", plain: "plaintext"}},
		{"a bad update keeps the last policy", func() { src.send(resolver.Listener{}, errors.New("NACKed")) }, nil, true,
			map[*dataplane.InboundRequest]string{x: "ok", plain: "plaintext"}},
		{"removed: not serving, last policy kept", func() { src.send(resolver.Listener{}, fmt.Errorf("gone: %w", resolver.ErrResourceNotFound)) },
			[]string{"serving false true"}, true, map[*dataplane.InboundRequest]string{x: "ok", y: "no allow"}},
		{"removed again: no change", func() { src.send(resolver.Listener{}, resolver.ErrResourceNotFound) }, nil, true, nil},
		{"back", func() { src.send(policy(false), nil) }, []string{"updated strict=false", "serving true false"}, false,
			map[*dataplane.InboundRequest]string{plain: "ok"}},
	}
	for _, st := range steps {
		st.send()
		if got := ev.take(); !slices.Equal(got, st.wantEvents) {
			t.Errorf("%s: callbacks %q, want %q", st.name, got, st.wantEvents)
		}
		if got := in.Strict(); got != st.strict {
			t.Errorf("%s: Strict() = %v, want %v", st.name, got, st.strict)
		}
		for req, want := range st.want {
			if got := verdict(in.Authorize(req)); got != want {
				t.Errorf("%s: request %+v: got %s, want %s", st.name, *req, got, want)
			}
		}
	}
	in.Close()
	in.Close()
	if src.canceled != 1 {
		t.Errorf("Close canceled the watch %d times, want once", src.canceled)
	}
}

// The request maps onto RBAC's view: path, port, peer and headers.
func TestInboundAuthorizeMapsTheRequest(t *testing.T) {
	src := &listenerSource{}
	in := dataplane.WatchInbound(src, "10.0.0.1:9081", dataplane.InboundOptions{})
	src.send(policy(false), nil)
	cases := []struct {
		name string
		req  dataplane.InboundRequest
		want string
	}{
		{"x on /admin on 9081", dataplane.InboundRequest{PeerCertificates: peer("x"), Path: "/admin/users", Local: tcp("10.0.0.1:9081")}, "deny deny-admin"},
		{"x on /admin on another port", dataplane.InboundRequest{PeerCertificates: peer("x"), Path: "/admin/users", Local: tcp("10.0.0.1:9082")}, "ok"},
		{"a local address that is not TCP", dataplane.InboundRequest{PeerCertificates: peer("x"), Path: "/admin", Local: &net.UnixAddr{Name: "/tmp/s"}}, "ok"},
		{"y without the header", dataplane.InboundRequest{PeerCertificates: peer("y"), Path: "/a"}, "no allow"},
		{"y with the header", dataplane.InboundRequest{PeerCertificates: peer("y"), Path: "/a", Header: func(n string) []string {
			if n == "x-open" {
				return []string{""}
			}
			return nil
		}}, "ok"},
	}
	for _, tc := range cases {
		if got := verdict(in.Authorize(&tc.req)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestInboundSetFindsTheListenerOfAConnection(t *testing.T) {
	var set dataplane.InboundSet
	if got := verdict(set.Authorize(&dataplane.InboundRequest{Local: tcp("127.0.0.1:1")})); got != "not ready" {
		t.Errorf("an empty set: %s, want not ready", got)
	}
	newInbound := func(strict bool) *dataplane.Inbound {
		src := &listenerSource{}
		in := dataplane.WatchInbound(src, "10.0.0.1:1", dataplane.InboundOptions{})
		src.send(policy(strict), nil)
		return in
	}
	bound, wildcard := newInbound(true), newInbound(false)
	set.Add(tcp("127.0.0.1:9080"), bound)
	set.Add(tcp("0.0.0.0:9080"), wildcard)
	unix := newInbound(false)
	set.Add(&net.UnixAddr{Name: "/run/s", Net: "unix"}, unix)
	cases := []struct {
		local net.Addr
		want  *dataplane.Inbound
	}{
		{tcp("127.0.0.1:9080"), bound},
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1").To16(), Port: 9080}, bound}, // the 16-byte form
		{tcp("10.1.2.3:9080"), wildcard},
		{tcp("[::1]:9080"), wildcard},
		{&net.UnixAddr{Name: "/run/s", Net: "unix"}, unix},
		{tcp("10.1.2.3:9081"), nil},
		{nil, nil},
	}
	for _, tc := range cases {
		if got := set.For(tc.local); got != tc.want {
			t.Errorf("For(%v) = %p, want %p", tc.local, got, tc.want)
		}
	}
	if !set.Strict(tcp("127.0.0.1:9080")) || set.Strict(tcp("10.1.2.3:9080")) || set.Strict(tcp("10.1.2.3:9081")) {
		t.Error("Strict does not follow the Listener of the address")
	}
	if set.Listener(tcp("10.1.2.3:9080")) != wildcard.Listener() || set.Listener(tcp("10.1.2.3:9081")) != nil {
		t.Error("Listener does not follow the Listener of the address")
	}
	set.Close()
	if set.For(tcp("127.0.0.1:9080")) != nil {
		t.Error("a closed set still finds Inbounds")
	}
	src := &listenerSource{}
	late := dataplane.WatchInbound(src, "10.0.0.1:1", dataplane.InboundOptions{})
	if set.Add(tcp("127.0.0.1:9080"), late) || src.canceled != 1 || set.For(tcp("127.0.0.1:9080")) != nil {
		t.Error("a closed set took an Inbound, or left its watch running")
	}
}
