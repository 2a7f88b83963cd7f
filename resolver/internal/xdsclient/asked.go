package xdsclient

import discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

// askLog follows, for one type on one stream, which names the next
// response is certainly an answer about. A server answers only a request
// that carries the nonce of its last response (it ignores the others as
// stale), so the next response answers one of the requests sent since the
// last response was received. Of those, a quiet request, which asks for
// nothing that the last response did not answer (the ACK of it, or one
// that drops a name), is left out when the response has the version it
// holds: a server answers a quiet request only with a new version, else
// every ACK would be answered, and that answer ACKed, without end.
type askLog struct {
	answered map[string]bool // names the last response was an answer about
	sent     int             // requests since the last response
	named    map[string]int  // of those, how many named each name
	quiet    []*discoveryv3.DiscoveryRequest
}

// request records a request just built, carrying the last nonce.
func (l *askLog) request(req *discoveryv3.DiscoveryRequest) {
	if req.GetErrorDetail() == nil && l.answeredAll(req.GetResourceNames()) {
		l.quiet = append(l.quiet, req)
	}
	l.sent++
	if l.named == nil {
		l.named = map[string]int{}
	}
	for _, name := range req.GetResourceNames() {
		l.named[name]++
	}
}

func (l *askLog) answeredAll(names []string) bool {
	for _, n := range names {
		if !l.answered[n] {
			return false
		}
	}
	return true
}

// response records a response of version that held the names present
// (nil when it cannot say which), and returns whether it is certainly an
// answer about a name.
func (l *askLog) response(version string, present map[string]bool) (asked func(name string) bool) {
	sent, named := l.sent, l.named
	for _, q := range l.quiet {
		if q.GetVersionInfo() == version {
			sent--
			for _, n := range q.GetResourceNames() {
				named[n]--
			}
		}
	}
	asked = func(name string) bool { return sent > 0 && named[name] == sent }
	l.sent, l.named, l.quiet, l.answered = 0, nil, nil, nil
	if present != nil {
		l.answered = make(map[string]bool, len(present)+len(named))
		for n := range present {
			l.answered[n] = true
		}
		for n := range named {
			if asked(n) {
				l.answered[n] = true
			}
		}
	}
	return asked
}
