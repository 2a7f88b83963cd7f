package mesh

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// expectedTimeoutHeader tells the callee how long the caller will wait
// for this attempt, as Envoy's router does.
const expectedTimeoutHeader = "X-Envoy-Expected-Rq-Timeout-Ms"

// withExpectedTimeout sets expectedTimeoutHeader on req, one attempt's
// request, from ctx's deadline (the route's timeout, the per-try timeout
// or the caller's deadline, whichever ends first), on a copy of the
// headers: req shares the caller's. Without a deadline it leaves req
// alone; a caller's own value is replaced, as Envoy replaces it.
func withExpectedTimeout(ctx context.Context, req *http.Request) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return
	}
	ms := max(time.Until(deadline).Milliseconds(), 1)
	h := make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		h[k] = v // the values are not changed: sharing them is safe
	}
	h[expectedTimeoutHeader] = []string{strconv.FormatInt(ms, 10)}
	req.Header = h
}
