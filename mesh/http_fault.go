package mesh

import (
	"fmt"
	"net/http"

	"github.com/meshlet/meshlet/internal/dataplane"
)

// injectFault injects the call's fault before its first attempt, and
// before the route's timeout starts, as Envoy's fault filter does before
// the router. It returns the response to give instead of sending req (a
// local reply with an abort's status), or an error if the caller's
// context ended during a delay; nil and nil to send req. When it does
// not send req, it closes its body.
func injectFault(req *http.Request, call *dataplane.Call) (*http.Response, error) {
	abort, err := call.Fault(req.Context())
	if abort == nil && err == nil {
		return nil, nil
	}
	closeBody(req)
	if err != nil {
		return nil, fmt.Errorf("mesh: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	return localReply(req, dataplane.AbortHTTPStatus(abort), "fault filter abort"), nil
}
