package security

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// sniffTimeout bounds how long a new connection may stay silent before its
// first byte decides between TLS and plaintext.
const sniffTimeout = 10 * time.Second

// PermissiveListener wraps a listener for net/http servers in Istio's
// PERMISSIVE and STRICT modes. A connection whose first byte is a TLS
// handshake record is returned as a *tls.Conn on config (so that
// http.Server does the handshake and fills Request.TLS); any other
// connection is returned as it is, unless strict reports true, in which
// case it is closed. strict is read per connection, so the mode can follow
// config.
//
// Accept does not wait for a silent client: connections are sniffed in
// their own goroutines, for at most 10 seconds each. Close closes the inner
// listener and waits for those goroutines.
func PermissiveListener(inner net.Listener, config *tls.Config, strict func() bool) net.Listener {
	l := &permissiveListener{
		inner:  inner,
		config: config,
		strict: strict,
		conns:  make(chan net.Conn),
		errc:   make(chan error, 1),
		done:   make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

type permissiveListener struct {
	inner  net.Listener
	config *tls.Config
	strict func() bool

	conns chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

func (l *permissiveListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			l.errc <- err
			return
		}
		l.wg.Add(1)
		go l.sniff(c)
	}
}

func (l *permissiveListener) sniff(c net.Conn) {
	defer l.wg.Done()
	var first [1]byte
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	if _, err := c.Read(first[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	var out net.Conn = newPrefixConn(c, first[0])
	switch {
	case first[0] == tlsHandshakeRecord:
		out = tls.Server(out, l.config)
	case l.strict():
		c.Close()
		return
	}
	select {
	case l.conns <- out:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection, TLS or plaintext.
func (l *permissiveListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err // every later Accept fails the same way
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and waits for the connections being sniffed.
func (l *permissiveListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.wg.Wait()
	})
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (l *permissiveListener) Addr() net.Addr { return l.inner.Addr() }
