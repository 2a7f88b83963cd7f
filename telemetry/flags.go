package telemetry

import "strings"

// Flags are Envoy's response flags of a request: why the mesh, rather
// than the destination, decided how it ended. They are the
// response_flags label and the access log's flags, written as Envoy
// writes them ("UH", "DI,FI", "-" for none).
type Flags uint16

// The response flags meshlet sets, with Envoy's short names.
const (
	FlagNoHealthyUpstream Flags = 1 << iota // UH: no endpoint could take the request
	FlagUpstreamConnect                     // UF: the endpoint could not be connected to
	FlagUpstreamOverflow                    // UO: circuit breaking (a limit, or the breaker open)
	FlagNoRoute                             // NR: no route matched
	FlagUpstreamTimeout                     // UT: the route's timeout passed
	FlagRetryLimit                          // URX: retries used up, the last attempt failed
	FlagDownstreamCancel                    // DC: the caller went away
	FlagRateLimited                         // RL: a local rate limit refused it
	FlagFaultAbort                          // FI: a fault abort answered it
	FlagFaultDelay                          // DI: a fault delay held it
	flagCount             = iota
)

// flagNames are in Envoy's order of ResponseFlagUtils.
var flagNames = [flagCount]string{"UH", "UF", "UO", "NR", "UT", "URX", "DC", "RL", "FI", "DI"}

// String returns the flags as Envoy writes them, comma-separated; "-"
// for none.
func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i, name := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(name)
		}
	}
	return b.String()
}
