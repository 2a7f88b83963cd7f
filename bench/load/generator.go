//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshlet/meshlet/bench/internal/procstat"
)

// variant is one data plane under load.
type variant struct {
	name   string
	client *http.Client
	url    string
	peer   string       // what the server must see: "mtls", or "plaintext" behind a sidecar
	pids   []int        // other processes whose CPU the requests cost (the sidecars)
	conns  func() int64 // connections opened to the first hop so far
	close  func()
}

// call makes one request and reads the whole answer.
func (v *variant) call(ctx context.Context, c config, body []byte) (*http.Response, error) {
	var rd io.Reader
	if c.method == http.MethodPost {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, v.url, rd)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return nil, err
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	case n != int64(c.size):
		return nil, fmt.Errorf("%d bytes of body, want %d", n, c.size)
	}
	return resp, nil
}

// probe makes requests until one succeeds, for up to 30s (a mesh client
// waits for its config, a sidecar for its listener), and checks that the
// server saw the transport the variant promises.
func (v *variant) probe(ctx context.Context, c config) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body := make([]byte, c.bodySize())
	for {
		resp, err := v.call(ctx, c, body)
		if err == nil {
			if got := resp.Header.Get("X-Peer"); got != v.peer {
				return fmt.Errorf("%s: the server saw a %s caller, want %s", v.name, got, v.peer)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no answer within 30s: %w", v.name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// bodySize is the size of each request's body.
func (c config) bodySize() int {
	if c.method == http.MethodPost {
		return c.size
	}
	return 0
}

// handler answers every request with size bytes, after reading its body,
// and tells in X-Peer whether the caller presented a certificate.
func handler(size int) http.Handler {
	payload := bytes.Repeat([]byte("x"), size)
	length := strconv.Itoa(size)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		peer := "plaintext"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			peer = "mtls"
		}
		w.Header().Set("Content-Length", length)
		w.Header().Set("X-Peer", peer)
		w.Write(payload)
	})
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// result is one variant's measured window.
type result struct {
	requests int64
	window   time.Duration
	selfCPU  time.Duration   // this process: client, server, generator
	extCPU   []time.Duration // each of variant.pids
	conns    int64           // connections opened during the window
	failed   int64
}

func (r result) rate() float64 { return float64(r.requests) / r.window.Seconds() }

func (r result) cpu() time.Duration {
	t := r.selfCPU
	for _, d := range r.extCPU {
		t += d
	}
	return t
}

// cpuPerRequest is in µs.
func (r result) cpuPerRequest() float64 {
	return float64(r.cpu().Nanoseconds()) / 1e3 / float64(r.requests)
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.0f req/s  %6.1f µs CPU/req  (%d requests in %v; CPU %v", r.rate(), r.cpuPerRequest(),
		r.requests, r.window.Round(time.Millisecond), r.cpu().Round(10*time.Millisecond))
	if len(r.extCPU) > 0 {
		fmt.Fprintf(&b, ": this process %v", r.selfCPU.Round(10*time.Millisecond))
		for i, d := range r.extCPU {
			fmt.Fprintf(&b, ", haproxy %c %v", 'A'+i, d.Round(10*time.Millisecond))
		}
	}
	fmt.Fprintf(&b, "; %d new connections, %d failed)", r.conns, r.failed)
	return b.String()
}

// snapshot is what measure reads at each end of the window.
type snapshot struct {
	at       time.Time
	requests int64
	selfCPU  time.Duration
	extCPU   []time.Duration
	conns    int64
}

// maxFailures ends a window early: the data plane is broken, not slow.
const maxFailures = 100

// measure runs c.conns workers against v for c.warmup, then measures
// c.duration. Each worker sends one request after another until the
// window ends or c.maxRequests have been sent; every request is bounded
// by the window's deadline.
func measure(ctx context.Context, c config, v *variant) (result, error) {
	total := c.warmup + c.duration
	ctx, cancel := context.WithTimeout(ctx, total+10*time.Second)
	defer cancel()
	body := make([]byte, c.bodySize())
	var (
		ok, failed, sent atomic.Int64
		errOnce          sync.Once
		firstErr         error
		wg               sync.WaitGroup
	)
	stop := time.Now().Add(total)
	for range c.conns {
		wg.Go(func() {
			for time.Now().Before(stop) && sent.Add(1) <= c.maxRequests && ctx.Err() == nil {
				if _, err := v.call(ctx, c, body); err != nil {
					if failed.Add(1) >= maxFailures {
						errOnce.Do(func() { firstErr = err; cancel() })
					}
					continue
				}
				ok.Add(1)
			}
		})
	}
	read := func() (snapshot, error) {
		s := snapshot{at: time.Now(), requests: ok.Load(), selfCPU: procstat.SelfCPU(), conns: v.conns()}
		for _, pid := range v.pids {
			d, err := procstat.CPU(pid)
			if err != nil {
				return s, err
			}
			s.extCPU = append(s.extCPU, d)
		}
		return s, nil
	}
	sleep := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	sleep(c.warmup)
	s0, err0 := read()
	sleep(c.duration)
	s1, err1 := read()
	wg.Wait() // each worker ends with its request in flight
	switch {
	case firstErr != nil:
		return result{}, fmt.Errorf("%d requests failed: %w", failed.Load(), firstErr)
	case errors.Join(err0, err1) != nil:
		return result{}, errors.Join(err0, err1)
	case sent.Load() > c.maxRequests:
		return result{}, fmt.Errorf("reached -max-requests %d before the window ended", c.maxRequests)
	}
	r := result{
		requests: s1.requests - s0.requests,
		window:   s1.at.Sub(s0.at),
		selfCPU:  s1.selfCPU - s0.selfCPU,
		conns:    s1.conns - s0.conns,
		failed:   failed.Load(),
	}
	for i := range s1.extCPU {
		r.extCPU = append(r.extCPU, s1.extCPU[i]-s0.extCPU[i])
	}
	if r.requests == 0 {
		return r, errors.New("no request completed in the window")
	}
	return r, nil
}
