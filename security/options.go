package security

import (
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// WorkloadAPIOption configures NewWorkloadAPISource.
type WorkloadAPIOption interface {
	applyWorkloadAPI(*workloadAPIOptions)
}

// FileOption configures NewFileSource.
type FileOption interface {
	applyFile(*fileOptions)
}

// SourceOption is an option that every source constructor taking options
// accepts.
type SourceOption interface {
	WorkloadAPIOption
	FileOption
}

type workloadAPIOptions struct {
	addr       string
	expectedID spiffeid.ID
	log        *slog.Logger
}

type fileOptions struct {
	log *slog.Logger
}

// WithLogger sets the logger a source reports to: reloads and rotations at
// Info, failures that keep the previous material at Error. The default is
// slog.Default().
func WithLogger(l *slog.Logger) SourceOption {
	return loggerOption{l}
}

type loggerOption struct{ l *slog.Logger }

func (o loggerOption) applyWorkloadAPI(opts *workloadAPIOptions) { opts.log = o.l }
func (o loggerOption) applyFile(opts *fileOptions)               { opts.log = o.l }

// WithSocketAddr sets the address of the SPIFFE Workload API, for example
// "unix:///run/spire/agent/public/api.sock" or "tcp://127.0.0.1:8081". The
// default is the value of the SPIFFE_ENDPOINT_SOCKET environment variable.
func WithSocketAddr(addr string) WorkloadAPIOption {
	return workloadAPIOption(func(o *workloadAPIOptions) { o.addr = addr })
}

// WithExpectedID picks the SVID with this SPIFFE ID when the Workload API
// offers the process several. Without it the first SVID is used, as in
// go-spiffe. NewWorkloadAPISource waits until an SVID with this ID is
// offered.
func WithExpectedID(id spiffeid.ID) WorkloadAPIOption {
	return workloadAPIOption(func(o *workloadAPIOptions) { o.expectedID = id })
}

type workloadAPIOption func(*workloadAPIOptions)

func (f workloadAPIOption) applyWorkloadAPI(o *workloadAPIOptions) { f(o) }

func orDefault(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
