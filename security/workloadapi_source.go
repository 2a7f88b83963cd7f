package security

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// WorkloadAPISource is a Source fed by the SPIFFE Workload API (a SPIRE
// agent, for example). It wraps go-spiffe's workloadapi.X509Source, which
// keeps a stream open and swaps in each rotated SVID and bundle as the agent
// pushes it. Its methods are safe for concurrent use and do not block.
type WorkloadAPISource struct {
	src      *workloadapi.X509Source
	expected spiffeid.ID
	log      *slog.Logger

	mu      sync.Mutex
	offered []spiffeid.ID // the IDs in the last update, when expected is set
	picked  bool          // whether the last update held the expected ID
}

var _ Source = (*WorkloadAPISource)(nil)

// NewWorkloadAPISource connects to the Workload API and blocks until it has
// the first SVID, or until ctx ends. With WithExpectedID it blocks until an
// SVID with that ID is offered; when ctx ends first, the error lists the IDs
// that were offered. The stream is kept open (and re-opened with backoff if
// it breaks) until Close.
func NewWorkloadAPISource(ctx context.Context, opts ...WorkloadAPIOption) (*WorkloadAPISource, error) {
	var o workloadAPIOptions
	for _, opt := range opts {
		opt.applyWorkloadAPI(&o)
	}
	s := &WorkloadAPISource{expected: o.expectedID, log: orDefault(o.log)}

	clientOpts := []workloadapi.ClientOption{workloadapi.WithLogger(spiffeLogger{s.log})}
	if o.addr != "" {
		clientOpts = append(clientOpts, workloadapi.WithAddr(o.addr))
	}
	srcOpts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(clientOpts...)}
	if !s.expected.IsZero() {
		srcOpts = append(srcOpts, workloadapi.WithDefaultX509SVIDPicker(s.pick))
	}

	src, err := workloadapi.NewX509Source(ctx, srcOpts...)
	if err != nil {
		return nil, fmt.Errorf("security: workload API source: %w", err)
	}
	s.src = src

	// The first update may not hold the expected ID yet (an entry that was
	// just registered reaches the agent a little later): wait for one that
	// does.
	for {
		if _, err := src.GetX509SVID(); err == nil {
			return s, nil
		}
		select {
		case <-src.Updated():
		case <-ctx.Done():
			err := fmt.Errorf("security: workload API source: %w", s.missingErr(ctx.Err()))
			return nil, errors.Join(err, src.Close())
		}
	}
}

// pick is the go-spiffe SVID picker used with WithExpectedID. It runs on the
// watcher's goroutine.
func (s *WorkloadAPISource) pick(svids []*x509svid.SVID) *x509svid.SVID {
	ids := make([]spiffeid.ID, 0, len(svids))
	var found *x509svid.SVID
	for _, svid := range svids {
		ids = append(ids, svid.ID)
		if found == nil && svid.ID == s.expected {
			found = svid
		}
	}
	s.mu.Lock()
	lost := s.picked && found == nil
	s.offered, s.picked = ids, found != nil
	s.mu.Unlock()
	if lost {
		s.log.Error("security: the workload API no longer offers the expected SVID; handshakes will fail until it does",
			"expected", s.expected.String(), "offered", idStrings(ids))
	}
	return found
}

func (s *WorkloadAPISource) missingErr(cause error) error {
	s.mu.Lock()
	offered := idStrings(s.offered)
	s.mu.Unlock()
	return fmt.Errorf("no SVID for %s among the %d offered %v (register an entry for it, or fix WithExpectedID): %w",
		s.expected, len(offered), offered, cause)
}

// GetX509SVID returns the current SVID. It implements x509svid.Source.
func (s *WorkloadAPISource) GetX509SVID() (*x509svid.SVID, error) {
	svid, err := s.src.GetX509SVID()
	if err != nil {
		if !s.expected.IsZero() {
			return nil, fmt.Errorf("security: workload API source: %w", s.missingErr(err))
		}
		return nil, fmt.Errorf("security: workload API source: %w", err)
	}
	return svid, nil
}

// GetX509BundleForTrustDomain returns the current bundle for td, which may be
// the workload's own trust domain or a federated one. It implements
// x509bundle.Source.
func (s *WorkloadAPISource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b, err := s.src.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("security: workload API source: %w", err)
	}
	return b, nil
}

// Close closes the stream to the Workload API and waits for its goroutines
// to end. Later calls to the source's methods return an error.
func (s *WorkloadAPISource) Close() error {
	return s.src.Close()
}

func idStrings(ids []spiffeid.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	slices.Sort(out)
	return out
}

// spiffeLogger adapts slog to go-spiffe's logger.Logger.
type spiffeLogger struct{ l *slog.Logger }

func (l spiffeLogger) Debugf(format string, args ...any) {
	l.l.Debug("security: workload API: " + fmt.Sprintf(format, args...))
}

func (l spiffeLogger) Infof(format string, args ...any) {
	l.l.Info("security: workload API: " + fmt.Sprintf(format, args...))
}

func (l spiffeLogger) Warnf(format string, args ...any) {
	l.l.Warn("security: workload API: " + fmt.Sprintf(format, args...))
}

func (l spiffeLogger) Errorf(format string, args ...any) {
	l.l.Error("security: workload API: " + fmt.Sprintf(format, args...))
}
