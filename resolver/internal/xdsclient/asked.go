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
	// The same of the quiet ones, which all hold one version: the
	// version changes only when a response is accepted.
	quietSent    int
	quietNamed   map[string]int
	quietVersion string
}

// request records a request just built, carrying the last nonce.
func (l *askLog) request(req *discoveryv3.DiscoveryRequest) {
	l.sent++
	l.named = count(l.named, req.GetResourceNames())
	if req.GetErrorDetail() == nil && l.answeredAll(req.GetResourceNames()) &&
		(l.quietSent == 0 || req.GetVersionInfo() == l.quietVersion) {
		l.quietSent++
		l.quietNamed = count(l.quietNamed, req.GetResourceNames())
		l.quietVersion = req.GetVersionInfo()
	}
}

func count(m map[string]int, names []string) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	for _, n := range names {
		m[n]++
	}
	return m
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
	if l.quietSent > 0 && l.quietVersion == version {
		sent -= l.quietSent
		for n, k := range l.quietNamed {
			named[n] -= k
		}
	}
	asked = func(name string) bool { return sent > 0 && named[name] == sent }
	*l = askLog{}
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
