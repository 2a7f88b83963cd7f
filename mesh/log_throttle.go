package mesh

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// retryWarnEvery is how often a WARN repeated while something is retried
// (reaching the control plane, its CA) is logged: once per few seconds,
// not once per attempt.
const retryWarnEvery = 5 * time.Second

// throttled returns a logger that passes a WARN or ERROR record only if
// none with the same message passed within every; the next one that
// passes says how many were left out. Other levels pass.
func throttled(l *slog.Logger, every time.Duration) *slog.Logger {
	return slog.New(&throttleHandler{Handler: l.Handler(), every: every, state: &throttleState{last: map[string]time.Time{}, left: map[string]int{}}})
}

type throttleHandler struct {
	slog.Handler
	every time.Duration
	state *throttleState // shared by the handlers WithAttrs and WithGroup make
}

type throttleState struct {
	mu   sync.Mutex
	last map[string]time.Time // by message
	left map[string]int
}

func (h *throttleHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.Handler.Handle(ctx, r)
	}
	now := time.Now()
	s := h.state
	s.mu.Lock()
	if last, ok := s.last[r.Message]; ok && now.Sub(last) < h.every {
		s.left[r.Message]++
		s.mu.Unlock()
		return nil
	}
	s.last[r.Message] = now
	n := s.left[r.Message]
	delete(s.left, r.Message)
	s.mu.Unlock()
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("repeats_left_out", n))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *throttleHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &throttleHandler{Handler: h.Handler.WithAttrs(attrs), every: h.every, state: h.state}
}

func (h *throttleHandler) WithGroup(name string) slog.Handler {
	return &throttleHandler{Handler: h.Handler.WithGroup(name), every: h.every, state: h.state}
}
