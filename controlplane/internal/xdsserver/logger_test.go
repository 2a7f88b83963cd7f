package xdsserver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// formatCounter counts how often it is formatted.
type formatCounter struct{ n *int }

func (c formatCounter) String() string { *c.n++; return "names" }

// The cache's Debug and Info lines are formatted only when Debug is on,
// and then logged; Warn and Error lines always are.
func TestCacheLoggerFormatsOnlyWhatIsLogged(t *testing.T) {
	for _, tc := range []struct {
		level     slog.Level
		wantDebug bool
	}{
		{slog.LevelInfo, false},
		{slog.LevelDebug, true},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			var buf bytes.Buffer
			l := cacheLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))}
			n := 0
			l.Debugf("respond %v", formatCounter{&n})
			l.Infof("open watch for %v", formatCounter{&n})
			wantN := 0
			if tc.wantDebug {
				wantN = 2
			}
			if n != wantN {
				t.Errorf("arguments formatted %d times, want %d", n, wantN)
			}
			if got := strings.Contains(buf.String(), "open watch for names"); got != tc.wantDebug {
				t.Errorf("Infof line logged: %v, want %v; log:\n%s", got, tc.wantDebug, buf.String())
			}
			l.Warnf("stale %v", formatCounter{&n})
			if !strings.Contains(buf.String(), "level=WARN msg=\"stale names\"") {
				t.Errorf("Warnf line missing; log:\n%s", buf.String())
			}
		})
	}
}
