package xdsserver

import (
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// go-control-plane's snapshot cache marshals every resource of a
// response again for each stream: even of a pre-marshaled resource
// (wire.go) that is a copy of its bytes, per stream and per push: 335 MB
// of copies for one push of 335 KiB to 1,000 streams, all of it garbage
// a moment later, which the heap has to make room for. Its responses are
// turned here into responses whose resources are the build's own bytes.

// wireIndex maps the cache's form of every shared resource of the
// current build to its bytes. It is replaced, not changed.
type wireIndex map[types.Resource][]byte

// sharedCache is the snapshot cache with its responses passed through
// passthrough before the server sends them.
type sharedCache struct {
	cache.SnapshotCache
	srv *Server
}

// CreateWatch opens the watch on the cache with a channel of its own,
// and hands its response on, made over, to out. A watch answered at once
// (the usual case after a change) needs no goroutine; one that waits has
// one until it is answered or cancelled.
func (c sharedCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	mid := make(chan cache.Response, 1)
	cancel, err := c.SnapshotCache.CreateWatch(req, sub, mid)
	if err != nil {
		return cancel, err
	}
	select {
	case r := <-mid:
		out <- c.srv.passthrough(r) // out is the watch's own, empty, with room for one
		return cancel, nil
	default:
	}
	stop := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case r := <-mid:
			out <- c.srv.passthrough(r)
		case <-stop:
		}
	}()
	return func() {
		if cancel != nil {
			cancel()
		}
		once.Do(func() { close(stop) })
	}, nil
}

// passthrough returns r as a response whose resources are the build's
// bytes. A resource not in the index (a stream's own server Listeners,
// or one of a build just replaced) is marshaled, as the cache would.
func (s *Server) passthrough(r cache.Response) cache.Response {
	raw, ok := r.(*cache.RawResponse)
	if !ok || raw.Heartbeat {
		return r
	}
	idx := *s.wires.Load()
	typ := raw.GetRequest().GetTypeUrl()
	rs := raw.GetRawResources()
	dr := &discovery.DiscoveryResponse{VersionInfo: raw.Version, TypeUrl: typ, Resources: make([]*anypb.Any, 0, len(rs))}
	for _, rr := range rs {
		if rr.TTL != nil {
			return r // TTLs wrap resources; none are served
		}
		b, ok := idx[rr.Resource]
		if !ok {
			var err error
			if b, err = cache.MarshalResource(rr.Resource); err != nil {
				return r // the cache reports it
			}
		}
		dr.Resources = append(dr.Resources, &anypb.Any{TypeUrl: typ, Value: b})
	}
	return &cache.PassthroughResponse{Request: raw.Request, DiscoveryResponse: dr, ReturnedResources: raw.GetReturnedResources()}
}

// indexWiresLocked replaces the index with the current build's shared
// resources. It is called before the streams' snapshots are set, so that
// the cache's answers to them find their bytes.
func (s *Server) indexWiresLocked() {
	idx := wireIndex{}
	for _, st := range s.current {
		for _, w := range st.resources {
			idx[w.wire] = w.raw
		}
	}
	s.wires.Store(&idx)
}
