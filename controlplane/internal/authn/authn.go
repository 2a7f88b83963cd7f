// Package authn proves who is on the other end of a control-plane
// connection: the TLS configuration of the control plane's gRPC port, and
// gRPC interceptors that turn the verified client certificate into an
// Identity on the request context. Node metadata and registration fields
// are claims; the Identity is the proof they are checked against.
package authn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Identity is a workload proven by its certificate:
// spiffe://<trust domain>/ns/<Namespace>/sa/<ServiceAccount>.
type Identity struct {
	ID             spiffeid.ID
	Namespace      string
	ServiceAccount string
}

// String returns the SPIFFE ID.
func (id Identity) String() string { return id.ID.String() }

// Key is a short stable form, "ns/<namespace>/sa/<service account>".
func (id Identity) Key() string { return "ns/" + id.Namespace + "/sa/" + id.ServiceAccount }

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the proven identity of the request's peer, if it
// presented a valid SVID.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// ParseID splits a workload SPIFFE ID of trust domain td into its
// namespace and service account.
func ParseID(id spiffeid.ID, td spiffeid.TrustDomain) (Identity, error) {
	if !id.MemberOf(td) {
		return Identity{}, fmt.Errorf("%s is not in trust domain %q", id, td.Name())
	}
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 4 || seg[0] != "ns" || seg[2] != "sa" || seg[1] == "" || seg[3] == "" {
		return Identity{}, fmt.Errorf("%s is not of the form spiffe://%s/ns/<namespace>/sa/<service-account>", id, td.Name())
	}
	return Identity{ID: id, Namespace: seg[1], ServiceAccount: seg[3]}, nil
}

// ServerTLSConfig is the TLS configuration of the control plane's gRPC
// port: it presents getCert's certificate, asks for a client certificate
// without requiring one (a workload's first CSR comes before it has an
// SVID, authenticated by a token), and verifies a certificate that is
// given against bundles. Session resumption is off, so that every
// connection's client certificate is verified against the bundle of the
// moment.
func ServerTLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), bundles x509bundle.Source) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		GetCertificate:         getCert,
		ClientAuth:             tls.RequestClientCert,
		SessionTicketsDisabled: true,
		NextProtos:             []string{"h2"},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil
			}
			if _, _, err := x509svid.ParseAndVerify(raw, bundles); err != nil {
				return fmt.Errorf("authn: client certificate: %w", err)
			}
			return nil
		},
	}
}

// peerIdentity returns the identity of ctx's peer from its TLS client
// certificate, which ServerTLSConfig has verified; ok is false when the
// peer presented none.
func peerIdentity(ctx context.Context, td spiffeid.TrustDomain) (Identity, bool, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return Identity{}, false, nil
	}
	id, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
	if err != nil {
		return Identity{}, false, err
	}
	pid, err := ParseID(id, td)
	if err != nil {
		return Identity{}, false, err
	}
	return pid, true, nil
}

// ErrNoIdentity is what a method that needs a proven identity answers a
// peer without one.
var ErrNoIdentity = errors.New("this method needs mTLS with the workload's SVID")

// Policy says which full method names may be called without a client
// certificate.
type Policy struct {
	TrustDomain spiffeid.TrustDomain
	// Anonymous lists the full method names a peer without a certificate
	// may call (the CA's Sign, authenticated by a token instead).
	Anonymous map[string]bool
	// Mode is ModeProven for the TLS port; ModeInsecure believes every
	// peer's claims (the development plaintext mode); ModeReadOnly allows
	// only the methods in ReadOnly.
	Mode Mode
	// ReadOnly lists the full method names served in ModeReadOnly.
	ReadOnly map[string]bool
}

func (p Policy) check(ctx context.Context, method string) (context.Context, error) {
	switch p.Mode {
	case ModeInsecure:
		return context.WithValue(ctx, modeKey{}, ModeInsecure), nil
	case ModeReadOnly:
		if !p.ReadOnly[method] {
			return nil, status.Errorf(codes.PermissionDenied, "control plane: %s is not served on the read-only plaintext port (use the TLS port with the workload's SVID)", method)
		}
		return context.WithValue(ctx, modeKey{}, ModeReadOnly), nil
	}
	id, ok, err := peerIdentity(ctx, p.TrustDomain)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "control plane: %s: client certificate: %v", method, err)
	}
	if ok {
		return NewContext(ctx, id), nil
	}
	if p.Anonymous[method] {
		return ctx, nil
	}
	return nil, status.Errorf(codes.Unauthenticated, "control plane: %s: %v", method, ErrNoIdentity)
}

// UnaryInterceptor puts the peer's Identity on the context, or refuses the
// call.
func (p Policy) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := p.check(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamInterceptor puts the peer's Identity on the stream's context, or
// refuses the stream.
func (p Policy) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := p.check(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// Mode is how far a connection is trusted when it has no proven identity.
type Mode int

// The modes of a connection without a proven identity.
const (
	// ModeProven: only what the certificate proves is believed.
	ModeProven Mode = iota
	// ModeReadOnly: the plaintext port for xDS clients that cannot do
	// TLS. It reads client resources only: no registration, no CA, no
	// server Listeners, and it never triggers a warm-up.
	ModeReadOnly
	// ModeInsecure: the development plaintext mode, where claims in node
	// metadata and registrations are believed.
	ModeInsecure
)

type modeKey struct{}

// ModeFromContext returns the mode of the request's connection.
func ModeFromContext(ctx context.Context) Mode {
	m, _ := ctx.Value(modeKey{}).(Mode)
	return m
}
