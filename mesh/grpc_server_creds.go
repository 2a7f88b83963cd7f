package mesh

import (
	"errors"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"

	"github.com/meshlet/meshlet/internal/dataplane"
)

// inboundCreds are the transport credentials of meshlet's gRPC server:
// mTLS, or plaintext while the Listener of the connection's address is
// not STRICT (security.PermissiveCredentials decides between the two by
// the first byte). It keeps the plaintext connections, so that a Listener
// that becomes STRICT cuts them, as gRPC-Go's xDS server drains the
// connections of a Listener that changed.
type inboundCreds struct {
	credentials.TransportCredentials
	inbound *dataplane.InboundSet

	mu    sync.Mutex
	plain map[*plainConn]struct{}
}

func newInboundCreds(permissive credentials.TransportCredentials, inbound *dataplane.InboundSet) *inboundCreds {
	return &inboundCreds{TransportCredentials: permissive, inbound: inbound, plain: map[*plainConn]struct{}{}}
}

var errPlaintextRefused = errors.New(msgPlaintext)

func (c *inboundCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := info.(credentials.TLSInfo); ok {
		return conn, info, nil
	}
	// Under mu, so that a Listener that becomes STRICT now either refuses
	// this connection here or finds it in cut.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inbound.Strict(raw.LocalAddr()) {
		conn.Close()
		return nil, nil, errPlaintextRefused
	}
	pc := &plainConn{Conn: conn, creds: c}
	c.plain[pc] = struct{}{}
	return pc, info, nil
}

// cut closes the plaintext connections whose address' Listener is STRICT.
// The RPCs on them fail; their clients' next connections are refused, or
// made with mTLS.
func (c *inboundCreds) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pc := range c.plain {
		if c.inbound.Strict(pc.LocalAddr()) {
			delete(c.plain, pc)
			pc.Conn.Close()
		}
	}
}

// Clone returns c: the server's connections are one set, whichever copy
// made them.
func (c *inboundCreds) Clone() credentials.TransportCredentials { return c }

// plainConn is a plaintext connection of a server, kept until it closes.
type plainConn struct {
	net.Conn
	creds *inboundCreds
}

func (pc *plainConn) Close() error {
	pc.creds.mu.Lock()
	delete(pc.creds.plain, pc)
	pc.creds.mu.Unlock()
	return pc.Conn.Close()
}
