//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/meshlet/meshlet/bench/internal/controlchannel"
	"github.com/meshlet/meshlet/resolver"
)

// watcherServiceAccount is the identity of the xDS watcher.
const watcherServiceAccount = "bench-watcher"

// edsWatch follows the benchmark's services with meshlet's own xDS client,
// as a caller would: each service's Cluster, then the endpoints that
// Cluster names. It notes when the endpoints of every service together
// number want.
type edsWatch struct {
	c    *resolver.Client
	want int

	mu         sync.Mutex
	cancels    []func()
	edsStarted map[int]bool
	counts     map[int]int // healthy endpoints by service
	answered   map[int]bool
	subscribed chan struct{} // closed once every Cluster watch had an answer
	done       chan struct{} // closed once want endpoints were seen
	doneAt     time.Time
	nack       error
}

// watchEDS connects to the control plane's xDS port, with the identity
// ns/benchNamespace/sa/watcherServiceAccount, and watches services
// 0..services-1 until Close.
func watchEDS(ctx context.Context, ch *controlchannel.Channel, services, want int) (*edsWatch, error) {
	c, err := resolver.New(ctx,
		resolver.WithServers(ch.Addr()),
		resolver.WithDialOptions(ch.DialOptions(watcherServiceAccount)...),
		resolver.WithNode(resolver.Node{Namespace: benchNamespace, ServiceAccount: watcherServiceAccount, WorkloadName: "bench-registrations-watcher"}),
		resolver.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	)
	if err != nil {
		return nil, err
	}
	w := &edsWatch{
		c: c, want: want,
		edsStarted: map[int]bool{}, counts: map[int]int{}, answered: map[int]bool{},
		subscribed: make(chan struct{}), done: make(chan struct{}),
	}
	for k := range services {
		cancel := c.WatchCluster(clusterName(k), func(cl resolver.Cluster, err error) { w.onCluster(k, services, cl, err) })
		w.mu.Lock()
		w.cancels = append(w.cancels, cancel)
		w.mu.Unlock()
	}
	return w, nil
}

// onCluster runs on the client's callback goroutine, as onEndpoints does.
func (w *edsWatch) onCluster(k, services int, cl resolver.Cluster, err error) {
	w.mu.Lock()
	if !w.answered[k] {
		w.answered[k] = true
		if len(w.answered) == services {
			close(w.subscribed)
		}
	}
	// Before the first registration of a service its Cluster does not
	// exist (ErrResourceNotFound); the watch stays and gets it later.
	if err != nil && !errors.Is(err, resolver.ErrResourceNotFound) && w.nack == nil {
		w.nack = err
	}
	if err != nil || w.edsStarted[k] {
		w.mu.Unlock()
		return
	}
	w.edsStarted[k] = true
	w.mu.Unlock()
	cancel := w.c.WatchEndpoints(cl.EDSServiceName, func(e resolver.Endpoints, err error) { w.onEndpoints(k, e, err) })
	w.mu.Lock()
	w.cancels = append(w.cancels, cancel)
	w.mu.Unlock()
}

func (w *edsWatch) onEndpoints(k int, e resolver.Endpoints, err error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil && w.nack == nil {
		w.nack = err
	}
	n := 0
	for _, l := range e.Localities {
		for _, ep := range l.Endpoints {
			if ep.Healthy {
				n++
			}
		}
	}
	w.counts[k] = n
	total := 0
	for _, c := range w.counts {
		total += c
	}
	if total >= w.want && w.doneAt.IsZero() {
		w.doneAt = now
		close(w.done)
	}
}

// waitSubscribed waits until the control plane has answered every Cluster
// watch (with "does not exist", before any registration), so that the
// watches are in place before the clock starts.
func (w *edsWatch) waitSubscribed(ctx context.Context) error {
	select {
	case <-w.subscribed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("xDS watches not answered: %w", ctx.Err())
	}
}

// wait returns when the endpoints were all seen, and the time they were.
func (w *edsWatch) wait(ctx context.Context) (time.Time, error) {
	select {
	case <-w.done:
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.doneAt, nil
	case <-ctx.Done():
		w.mu.Lock()
		defer w.mu.Unlock()
		total := 0
		for _, c := range w.counts {
			total += c
		}
		err := fmt.Errorf("%d of %d endpoints in EDS: %w", total, w.want, ctx.Err())
		if w.nack != nil {
			err = fmt.Errorf("%w; the watcher also got: %w", err, w.nack)
		}
		return time.Time{}, err
	}
}

// err returns the first rejected update the watcher saw, if any.
func (w *edsWatch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nack
}

func (w *edsWatch) Close() {
	w.mu.Lock()
	cancels := w.cancels
	w.cancels = nil
	w.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	w.c.Close()
}
