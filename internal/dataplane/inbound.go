package dataplane

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/resolver"
)

// The server side of the data plane: what a mesh server, over gRPC or
// HTTP, takes from its server Listener. An Inbound follows the Listener of
// one listening address; the transport asks it whether the address
// serves, whether plaintext is accepted, and whether a request may go on.

// ListenerSource is where an Inbound gets its server Listener;
// *resolver.Client is one. WatchListener calls fn with each new value of
// the Listener, or with an error, one call at a time for a watch, until
// cancel returns. fn must not block.
type ListenerSource interface {
	WatchListener(name string, fn func(resolver.Listener, error)) (cancel func())
}

// InboundOptions configure an Inbound. Every field is optional.
type InboundOptions struct {
	// Serving is told when the address may serve (true: its Listener
	// arrived) and when it may not (false: the control plane removed the
	// Listener; err says so). It is called only on a change, one call at
	// a time, from the watch; it must not block.
	Serving func(serving bool, err error)
	// Updated is called after each new Listener takes effect, one call at
	// a time, from the watch: Strict and Authorize already follow it. A
	// transport cuts there what the new Listener no longer accepts. It
	// must not block.
	Updated func(*resolver.Listener)
	// Log gets a warning for each error the control plane reports about
	// the Listener. Default slog.Default().
	Log *slog.Logger
}

// Inbound is the control plane's policy for one address a server listens
// on: its server Listener, followed from the moment WatchInbound returns.
// Its methods are safe for concurrent use and do not block.
type Inbound struct {
	name    string
	opts    InboundOptions
	current atomic.Pointer[resolver.Listener]
	cancel  func()
	once    sync.Once

	mu      sync.Mutex // held while the callbacks run, in order
	serving bool

	limits atomic.Pointer[inboundLimits] // of current (inbound_ratelimit.go)
}

// WatchInbound follows the server Listener of addr, the address ("ip:port")
// the control plane knows the server by (the one it registered), until
// Close. Until the Listener arrives the Inbound has no policy: Authorize
// refuses every request with ErrInboundNotReady.
func WatchInbound(src ListenerSource, addr string, opts InboundOptions) *Inbound {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	in := &Inbound{name: wire.ServerListenerName(addr), opts: opts}
	in.cancel = src.WatchListener(in.name, in.update)
	return in
}

func (in *Inbound) update(l resolver.Listener, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if err != nil {
		// A bad update keeps the last policy. A removed Listener means the
		// control plane no longer knows this server: it stops serving (it
		// leaves callers' endpoints), with the last policy for the
		// requests that still come.
		in.opts.Log.Warn("dataplane: server listener", "listener", in.name, "err", err)
		if errors.Is(err, resolver.ErrResourceNotFound) && in.serving {
			in.serving = false
			if in.opts.Serving != nil {
				in.opts.Serving(false, err)
			}
		}
		return
	}
	in.updateLimits(&l)
	in.current.Store(&l)
	if in.opts.Updated != nil {
		in.opts.Updated(&l)
	}
	if !in.serving {
		in.serving = true
		if in.opts.Serving != nil {
			in.opts.Serving(true, nil)
		}
	}
}

// Name returns the name of the server Listener followed.
func (in *Inbound) Name() string { return in.name }

// Listener returns the Listener in effect; nil until the first arrives.
// Treat it as read-only.
func (in *Inbound) Listener() *resolver.Listener { return in.current.Load() }

// Strict reports whether the Listener in effect requires a client
// certificate (PeerAuthentication STRICT): plaintext is refused. It is
// false until the Listener arrives.
func (in *Inbound) Strict() bool { return strict(in.current.Load()) }

func strict(l *resolver.Listener) bool {
	return l != nil && l.TLS != nil && l.TLS.RequireClientCert
}

// Close stops following the Listener. The last policy stays in effect.
func (in *Inbound) Close() { in.once.Do(in.cancel) }

// InboundRequest is what the server side decides on, for any transport.
type InboundRequest struct {
	// PeerCertificates are the caller's verified certificates, leaf first;
	// nil for a plaintext caller.
	PeerCertificates []*x509.Certificate
	// ServerName is the TLS SNI, if any.
	ServerName string
	// Method, Path and Authority of the request (":method", ":path",
	// ":authority"). Path is without the query, escaped as sent and
	// normalized as the Listener says (see resolver.AuthzRequest). A gRPC
	// request is a POST of "/package.Service/Method".
	Method, Path, Authority string
	// Header returns the values of a request header, nil when absent.
	// Names are lower-case.
	Header func(name string) []string
	// Local is the server's address the request came in on.
	Local net.Addr
	// Remote is the caller's address (AddrPort of a net.Addr); a value,
	// so that a transport that has it as text makes it without an
	// allocation.
	Remote netip.AddrPort
}

// ErrInboundNotReady is returned by Authorize before the server has its
// Listener, and with it its policy, from the control plane. A transport
// answers "unavailable".
var ErrInboundNotReady = errors.New("dataplane: this server has no policy from the control plane yet")

// ErrInboundPlaintext is wrapped by the error Authorize returns for a
// plaintext request to an address whose Listener requires mTLS (STRICT):
// one on a connection made before the Listener changed. A transport
// answers "unavailable" and closes the connection; the caller's next
// connection is refused or made with mTLS.
var ErrInboundPlaintext = errors.New("dataplane: plaintext is refused: this server's PeerAuthentication is STRICT")

// Authorize decides whether req may go on under the Listener in effect,
// as the function Authorize does.
func (in *Inbound) Authorize(req *InboundRequest) error {
	return Authorize(in.current.Load(), req)
}

// Authorize decides whether req may go on under server Listener l, which
// is nil before the server has one: a transport that read l to prepare the
// request (to normalize its path) decides on the same l. It returns nil,
// ErrInboundNotReady, an error wrapping ErrInboundPlaintext, or a
// *resolver.Denial saying which RBAC policy refused the request
// (errors.As; it wraps resolver.ErrDenied). It does not block.
func Authorize(l *resolver.Listener, req *InboundRequest) error {
	if l == nil {
		return ErrInboundNotReady
	}
	if len(req.PeerCertificates) == 0 && strict(l) {
		return fmt.Errorf("%w (listener %s)", ErrInboundPlaintext, l.Name)
	}
	return resolver.Authorize(l.HTTPFilters, authzRequest(req))
}

// authzRequest is what RBAC sees of req.
func authzRequest(req *InboundRequest) resolver.AuthzRequest {
	out := resolver.AuthzRequest{
		Method:     req.Method,
		Path:       req.Path,
		Authority:  req.Authority,
		Header:     req.Header,
		ServerName: req.ServerName,
		Local:      AddrPort(req.Local),
		Remote:     req.Remote,
	}
	if len(req.PeerCertificates) > 0 {
		out.Peer = req.PeerCertificates[0]
	}
	return out
}

// addrPort is a's IP and port; the zero value when a is not an IP address.
// An IPv4 address is never in its IPv4-mapped IPv6 form (a net.TCPAddr
// may hold it so), so that listening and local addresses compare, and
// IPv4 CIDRs match.
// AddrPort is a's IP and port, the zero value when a is not an IP
// address, with an IPv4 address never in its IPv4-mapped IPv6 form.
func AddrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return ap
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// InboundSet holds the Inbounds of a server's listening addresses and
// finds the one for a connection: that of the listener bound to the
// connection's local address, else that of a wildcard listener of its
// port. It is safe for concurrent use; its methods do not block, and
// finding an Inbound neither locks nor allocates. The zero value is empty
// and ready.
type InboundSet struct {
	mu     sync.Mutex                   // serializes writers
	m      atomic.Pointer[inboundIndex] // copied on write
	closed bool                         // under mu
}

// inboundIndex is an InboundSet's Inbounds, by listening address.
type inboundIndex struct {
	bound    map[netip.AddrPort]*Inbound
	wildcard map[uint16]*Inbound // by port
	other    map[string]*Inbound // addresses that are not IP addresses
}

// Add adds the Inbound of listening address lis: the address a listener
// is bound to, which may be a wildcard one. Once the set is closed, it
// closes in instead and reports false.
func (s *InboundSet) Add(lis net.Addr, in *Inbound) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		in.Close()
		return false
	}
	next := &inboundIndex{bound: map[netip.AddrPort]*Inbound{}, wildcard: map[uint16]*Inbound{}, other: map[string]*Inbound{}}
	if cur := s.m.Load(); cur != nil {
		maps.Copy(next.bound, cur.bound)
		maps.Copy(next.wildcard, cur.wildcard)
		maps.Copy(next.other, cur.other)
	}
	switch ap := AddrPort(lis); {
	case !ap.IsValid():
		next.other[lis.String()] = in
	case ap.Addr().IsUnspecified():
		next.wildcard[ap.Port()] = in
	default:
		next.bound[ap] = in
	}
	s.m.Store(next)
	return true
}

// For returns the Inbound for a connection whose local address is local,
// or nil when no listener of the set takes it.
func (s *InboundSet) For(local net.Addr) *Inbound {
	idx := s.m.Load()
	if idx == nil || local == nil {
		return nil
	}
	ap := AddrPort(local)
	if !ap.IsValid() {
		return idx.other[local.String()]
	}
	if in := idx.bound[ap]; in != nil {
		return in
	}
	return idx.wildcard[ap.Port()]
}

// Listener returns the Listener in effect for a connection whose local
// address is local; nil when the set has none for it yet.
func (s *InboundSet) Listener(local net.Addr) *resolver.Listener {
	if in := s.For(local); in != nil {
		return in.Listener()
	}
	return nil
}

// Strict reports whether the Listener for a connection whose local address
// is local requires mTLS. It is false when the set has none for it yet.
func (s *InboundSet) Strict(local net.Addr) bool {
	in := s.For(local)
	return in != nil && in.Strict()
}

// Authorize decides on req under the Listener of its local address, as
// the function Authorize does.
func (s *InboundSet) Authorize(req *InboundRequest) error {
	return Authorize(s.Listener(req.Local), req)
}

// Close closes every Inbound of the set, and those added later, and
// empties it.
func (s *InboundSet) Close() {
	s.mu.Lock()
	s.closed = true
	idx := s.m.Swap(nil)
	s.mu.Unlock()
	if idx == nil {
		return
	}
	for _, in := range idx.bound {
		in.Close()
	}
	for _, in := range idx.wildcard {
		in.Close()
	}
	for _, in := range idx.other {
		in.Close()
	}
}
