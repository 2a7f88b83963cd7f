package security

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// tlsHandshakeRecord is the first byte of every TLS connection: the record
// type of the ClientHello.
const tlsHandshakeRecord = 0x16

// PermissiveCredentials returns server-side gRPC transport credentials for
// Istio's PERMISSIVE mode: one port accepts both mTLS and plaintext.
//
// The first byte a client sends decides. A TLS handshake record (0x16) gets
// an mTLS handshake: src's SVID is presented, a client certificate is
// required and verified against src's bundle, and any SPIFFE ID in the trust
// domain of src's SVID is accepted (which IDs may call what is for RBAC to
// decide). The connection's AuthInfo is a credentials.TLSInfo carrying the
// peer's certificates and SPIFFE ID, which gRPC-Go's RBAC reads. Any other
// first byte (an HTTP/2 preface, say) means plaintext, with the AuthInfo
// that insecure.NewCredentials gives.
//
// No byte is lost: the byte that was read is handed to the handshake. The
// read of the first byte is bounded by the deadline that grpc.Server sets on
// the connection before the handshake (grpc.ConnectionTimeout, 120 s by
// default), so a silent client does not hold a goroutine forever.
//
// ClientHandshake returns an error: these credentials are for servers only.
func PermissiveCredentials(src Source) credentials.TransportCredentials {
	return &permissive{
		src:   src,
		tls:   credentials.NewTLS(ServerTLSConfig(src, nil)),
		plain: insecure.NewCredentials(),
	}
}

type permissive struct {
	src   Source
	tls   credentials.TransportCredentials
	plain credentials.TransportCredentials
}

var errServerOnly = errors.New("security: PermissiveCredentials are for servers; use credentials.NewTLS(ClientTLSConfig(...)) on clients")

func (p *permissive) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errServerOnly
}

func (p *permissive) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var first [1]byte
	if _, err := io.ReadFull(raw, first[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF // gRPC does not log a client that went away
		}
		return nil, nil, err
	}
	conn := newPrefixConn(raw, first[0])
	if first[0] == tlsHandshakeRecord {
		return p.tls.ServerHandshake(conn)
	}
	return p.plain.ServerHandshake(conn)
}

// Info describes the secure side of the port.
func (p *permissive) Info() credentials.ProtocolInfo {
	return p.tls.Info()
}

func (p *permissive) Clone() credentials.TransportCredentials {
	return &permissive{src: p.src, tls: p.tls.Clone(), plain: p.plain.Clone()}
}

// OverrideServerName does nothing: it only concerns clients.
func (p *permissive) OverrideServerName(string) error { return nil }

// prefixConn is a net.Conn whose first Read returns a byte that was already
// read from the underlying connection.
type prefixConn struct {
	net.Conn

	mu      sync.Mutex
	pending []byte
}

// sysPrefixConn is a prefixConn over a connection that implements
// syscall.Conn (a *net.TCPConn), so that gRPC can still reach the socket.
type sysPrefixConn struct {
	*prefixConn
	sys syscall.Conn
}

func (c sysPrefixConn) SyscallConn() (syscall.RawConn, error) { return c.sys.SyscallConn() }

func newPrefixConn(raw net.Conn, b byte) net.Conn {
	pc := &prefixConn{Conn: raw, pending: []byte{b}}
	if sc, ok := raw.(syscall.Conn); ok {
		return sysPrefixConn{prefixConn: pc, sys: sc}
	}
	return pc
}

func (c *prefixConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(b)
}
