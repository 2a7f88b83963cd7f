package mesh

import (
	"bytes"
	"io"
	"net/http"
)

// retryBodyLimit is the largest request body without GetBody that the
// mesh HTTP client keeps to send again on a retry. A larger one is sent
// once and not retried: keeping it would hold the whole of it in memory
// for the request's life. Envoy's default buffer limit is the same.
const retryBodyLimit = 64 << 10

// replayable returns req with a body that can be sent again, for a route
// that retries: one with GetBody (or no body) as it is, another whose
// body is at most retryBodyLimit read into memory, on a shallow copy of
// req (the caller's is not changed). It reports false for a larger body,
// which the copy still sends whole, but once.
func replayable(req *http.Request) (*http.Request, bool) {
	if req.Body == nil || req.Body == http.NoBody || req.GetBody != nil {
		return req, true
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, retryBodyLimit+1))
	out := req.WithContext(req.Context())
	if err != nil || len(buf) > retryBodyLimit {
		// Send what was read, then the rest, once; a read error comes
		// back from the body, as it would have.
		out.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), errorReader{err}, req.Body), req.Body}
		return out, false
	}
	req.Body.Close()
	out.ContentLength = int64(len(buf))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	out.Body, _ = out.GetBody()
	if len(buf) == 0 {
		out.Body = http.NoBody
	}
	return out, true
}

// errorReader returns err, or EOF when err is nil.
type errorReader struct{ err error }

func (r errorReader) Read([]byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	return 0, io.EOF
}
