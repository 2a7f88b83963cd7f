package security_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/security"
)

// workloadAPI is a minimal SPIFFE Workload API server: FetchX509SVID
// streams the current SVIDs, and again each time the test sets new ones.
type workloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	mu      sync.Mutex
	resp    *workload.X509SVIDResponse
	changed chan struct{}
	sent    atomic.Int32 // responses sent, on every stream
}

func (w *workloadAPI) set(ca *testCA, svids ...*x509svid.SVID) {
	resp := &workload.X509SVIDResponse{}
	for _, s := range svids {
		var chain []byte
		for _, c := range s.Certificates {
			chain = append(chain, c.Raw...)
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId:    s.ID.String(),
			X509Svid:    chain,
			X509SvidKey: must(x509.MarshalPKCS8PrivateKey(s.PrivateKey)),
			Bundle:      ca.cert.Raw,
		})
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.resp = resp
	if w.changed != nil {
		close(w.changed)
	}
	w.changed = make(chan struct{})
}

func (w *workloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	for {
		w.mu.Lock()
		resp, changed := w.resp, w.changed
		w.mu.Unlock()
		if err := stream.Send(resp); err != nil {
			return err
		}
		w.sent.Add(1)
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// startWorkloadAPI serves w on a unix socket in a new short-named temporary
// directory and returns its address.
func startWorkloadAPI(t *testing.T, w *workloadAPI) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(gs, w)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
		os.RemoveAll(dir)
	})
	return "unix://" + sock
}

func newWorkloadAPISource(t *testing.T, ctx context.Context, opts ...security.WorkloadAPIOption) *security.WorkloadAPISource {
	t.Helper()
	src, err := security.NewWorkloadAPISource(ctx, opts...)
	if err != nil {
		t.Fatalf("NewWorkloadAPISource: %v", err)
	}
	t.Cleanup(func() {
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return src
}

func TestWorkloadAPISourcePicksExpectedID(t *testing.T) {
	ca := newTestCA("example.org")
	web, admin := ca.id("default", "web"), ca.id("default", "admin")
	api := &workloadAPI{}
	api.set(ca, ca.issue(web, time.Hour), ca.issue(admin, time.Hour))
	addr := startWorkloadAPI(t, api)

	tests := []struct {
		name string
		opts []security.WorkloadAPIOption
		want spiffeid.ID
	}{
		{"default is the first", nil, web},
		{"expected first", []security.WorkloadAPIOption{security.WithExpectedID(web)}, web},
		{"expected second", []security.WorkloadAPIOption{security.WithExpectedID(admin)}, admin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			src := newWorkloadAPISource(t, ctx, append(tt.opts, security.WithSocketAddr(addr))...)
			svid, err := src.GetX509SVID()
			if err != nil {
				t.Fatal(err)
			}
			if svid.ID != tt.want {
				t.Errorf("ID = %s, want %s", svid.ID, tt.want)
			}
			if _, _, err := x509svid.Verify(svid.Certificates, src); err != nil {
				t.Errorf("the SVID does not verify against the source's bundle: %v", err)
			}
		})
	}
}

func TestWorkloadAPISourceFollowsUpdates(t *testing.T) {
	ca := newTestCA("example.org")
	web, admin := ca.id("default", "web"), ca.id("default", "admin")
	api := &workloadAPI{}
	api.set(ca, ca.issue(web, time.Hour))
	addr := startWorkloadAPI(t, api)

	// The expected ID is not offered yet: the constructor waits for it
	// past a response without it.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	type made struct {
		src *security.WorkloadAPISource
		err error
	}
	done := make(chan made, 1)
	go func() {
		src, err := security.NewWorkloadAPISource(ctx, security.WithSocketAddr(addr), security.WithExpectedID(admin))
		done <- made{src, err}
	}()
	meshtest.WaitUntil(t, 5*time.Second, "a response without the expected ID", func() bool { return api.sent.Load() > 0 })
	next := ca.issue(admin, time.Hour)
	api.set(ca, ca.issue(web, time.Hour), next)
	r := <-done
	if r.err != nil {
		t.Fatalf("NewWorkloadAPISource: %v", r.err)
	}
	src := r.src
	t.Cleanup(func() {
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if got, want := currentSerial(t, src), next.Certificates[0].SerialNumber.String(); got != want {
		t.Fatalf("serial %s, want %s", got, want)
	}

	// A rotation pushed by the agent reaches the source.
	rotated := ca.issue(admin, time.Hour)
	api.set(ca, ca.issue(web, time.Hour), rotated)
	want := rotated.Certificates[0].SerialNumber.String()
	meshtest.WaitUntil(t, 5*time.Second, "serial "+want+" after the rotation", func() bool { return currentSerial(t, src) == want })
}

func TestWorkloadAPISourceExpectedIDMissing(t *testing.T) {
	ca := newTestCA("example.org")
	api := &workloadAPI{}
	api.set(ca, ca.issue(ca.id("default", "web"), time.Hour), ca.issue(ca.id("default", "admin"), time.Hour))
	addr := startWorkloadAPI(t, api)

	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := security.NewWorkloadAPISource(ctx, security.WithSocketAddr(addr), security.WithExpectedID(ca.id("default", "db")))
	if err == nil {
		t.Fatal("NewWorkloadAPISource: got no error")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	for _, want := range []string{"spiffe://example.org/ns/default/sa/db", "spiffe://example.org/ns/default/sa/admin", "spiffe://example.org/ns/default/sa/web"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %s", want)
		}
	}
}

func TestWorkloadAPISourceNoAgent(t *testing.T) {
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = security.NewWorkloadAPISource(ctx, security.WithSocketAddr("unix://"+filepath.Join(dir, "none.sock")))
	if err == nil {
		t.Fatal("NewWorkloadAPISource without an agent: got no error")
	}
}
