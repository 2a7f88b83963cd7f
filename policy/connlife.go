package policy

import (
	"sync/atomic"
	"time"
)

// ConnLifetime is how long a destination's connections live: Istio's
// connectionPool.http idleTimeout and maxRequestsPerConnection, Envoy's
// common_http_protocol_options. The zero value keeps connections as the
// transport would.
type ConnLifetime struct {
	// IdleTimeout closes a connection no request has used for this long;
	// 0 leaves the transport's default.
	IdleTimeout time.Duration
	// MaxRequests closes a connection once it has carried this many
	// requests; 0 means no limit.
	MaxRequests uint32
}

// ConnUses counts the requests a connection has carried, against
// ConnLifetime.MaxRequests. Its zero value is ready; it is safe for
// concurrent use.
type ConnUses struct{ n atomic.Uint32 }

// Use counts one request and says whether the connection may carry it
// (ok: it is within max) and whether it is the connection's last (the
// max-th), after which the transport retires the connection. A max of 0
// counts nothing: always ok, never last.
func (u *ConnUses) Use(max uint32) (ok, last bool) {
	if max == 0 {
		return true, false
	}
	n := u.n.Add(1)
	return n <= max, n == max
}
