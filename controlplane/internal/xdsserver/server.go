// Package xdsserver serves the control plane's resources over ADS with
// go-control-plane, and tracks what every connected client acknowledged.
//
// It works around two behaviours of go-control-plane's snapshot cache that
// would hurt a mesh (see DESIGN.md): in ADS mode the cache never answers
// gRPC's by-name requests, so the cache runs with ads=false; and the cache
// re-sends a NACKed version at once, forever, so a NACK is recorded and then
// treated as "seen": the client keeps its last good config until the next
// change.
package xdsserver

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
)

// snapshotKey is the one cache key every node shares: all clients see the
// same resources and ask for the ones they need by name.
const snapshotKey = "mesh"

// Types are the resource types served, in the order clients need them.
var Types = []resource.Type{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

// Server is an ADS server. It is safe for concurrent use.
type Server struct {
	log           *slog.Logger
	cache         cache.SnapshotCache
	xds           serverv3.Server
	inboundPrefix string
	hooks         Hooks
	epoch         string

	mu        sync.Mutex
	counter   uint64
	current   map[resource.Type]*typeState
	streams   map[int64]*stream
	inbound   map[string]int // requested inbound addresses -> number of streams asking
	ackSignal chan struct{}  // closed and replaced on every ACK
}

type typeState struct {
	version   string
	resources map[string]types.Resource
}

type stream struct {
	id      int64
	ctx     context.Context // ends with the stream
	peer    string
	opened  time.Time
	node    *core.Node
	types   map[string]*TypeStatus
	nonces  map[string]string // type URL + "/" + nonce -> version sent
	inbound []string
}

// TypeStatus is what one client asked for and acknowledged of one type.
type TypeStatus struct {
	Requested  []string  `json:"requested"`
	Sent       string    `json:"sentVersion,omitempty"`
	Acked      string    `json:"ackedVersion,omitempty"`
	Nacked     string    `json:"nackedVersion,omitempty"`
	NackDetail string    `json:"nackDetail,omitempty"`
	NackCount  int       `json:"nackCount,omitempty"`
	LastNack   time.Time `json:"lastNack,omitzero"`
}

// ClientStatus describes one connected xDS stream.
type ClientStatus struct {
	StreamID  int64                  `json:"streamID"`
	NodeID    string                 `json:"nodeID"`
	Cluster   string                 `json:"cluster,omitempty"`
	Metadata  map[string]any         `json:"metadata,omitempty"`
	Peer      string                 `json:"peer,omitempty"`
	Connected time.Time              `json:"connected"`
	Types     map[string]*TypeStatus `json:"types"`
}

// Hooks are called on a requesting stream's goroutine, without locks held,
// before the request is answered, so that they can change the resources
// with Update first.
type Hooks struct {
	// InboundChanged is called when the set of addresses that gRPC servers
	// ask a Listener for changes.
	InboundChanged func()
	// EarlierVersion is called when a client asks with a version that an
	// earlier control-plane process sent: this process was restarted. The
	// request is answered once the channel it returns is closed (at once
	// for nil), so that such a client keeps the config it has, rather
	// than get a partial one, while servers register again.
	EarlierVersion func() <-chan struct{}
}

// New returns a server with no resources. inboundPrefix is the name prefix
// of gRPC server Listeners (the bootstrap template without "%s").
func New(log *slog.Logger, inboundPrefix string, hooks Hooks) *Server {
	if hooks.InboundChanged == nil {
		hooks.InboundChanged = func() {}
	}
	if hooks.EarlierVersion == nil {
		hooks.EarlierVersion = func() <-chan struct{} { return nil }
	}
	s := &Server{
		log:           log,
		inboundPrefix: inboundPrefix,
		hooks:         hooks,
		epoch:         strconv.FormatInt(time.Now().UnixNano(), 36),
		current:       map[resource.Type]*typeState{},
		streams:       map[int64]*stream{},
		inbound:       map[string]int{},
		ackSignal:     make(chan struct{}),
	}
	s.cache = cache.NewSnapshotCache(false, constantHash{}, cacheLogger{log})
	s.xds = serverv3.NewServer(context.Background(), s.cache, serverv3.CallbackFuncs{
		StreamOpenFunc:     s.onStreamOpen,
		StreamClosedFunc:   s.onStreamClosed,
		StreamRequestFunc:  s.onStreamRequest,
		StreamResponseFunc: s.onStreamResponse,
	})
	return s
}

// Register adds the ADS service to g.
func (s *Server) Register(g *grpc.Server) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Update replaces the served resources. A type whose resources did not
// change keeps its version, so clients are not sent it again.
func (s *Server) Update(ctx context.Context, res map[resource.Type][]types.Resource) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counter++
	version := fmt.Sprintf("%s-%d", s.epoch, s.counter)
	changed := false
	for _, typ := range Types {
		byName := map[string]types.Resource{}
		for _, r := range res[typ] {
			byName[cache.GetResourceName(r)] = r
		}
		old := s.current[typ]
		if old != nil && sameResources(old.resources, byName) {
			continue
		}
		s.current[typ] = &typeState{version: version, resources: byName}
		changed = true
	}
	if !changed {
		return nil
	}
	snap := &cache.Snapshot{}
	for _, typ := range Types {
		st := s.current[typ]
		snap.Resources[cache.GetResponseType(typ)] = cache.NewResources(st.version, slices.Collect(maps.Values(st.resources)))
	}
	if err := s.cache.SetSnapshot(ctx, snapshotKey, snap); err != nil {
		return fmt.Errorf("xdsserver: set snapshot: %w", err)
	}
	return nil
}

func sameResources(a, b map[string]types.Resource) bool {
	if len(a) != len(b) {
		return false
	}
	for name, ra := range a {
		rb, ok := b[name]
		if !ok || !proto.Equal(ra, rb) {
			return false
		}
	}
	return true
}

// Version returns the version of type typ being served, "" before the
// first Update.
func (s *Server) Version(typ resource.Type) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.current[typ]; st != nil {
		return st.version
	}
	return ""
}

// Resources returns the served resources of every type, sorted by name,
// with their versions.
func (s *Server) Resources() map[resource.Type]VersionedResources {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[resource.Type]VersionedResources{}
	for typ, st := range s.current {
		names := slices.Sorted(maps.Keys(st.resources))
		vr := VersionedResources{Version: st.version}
		for _, n := range names {
			vr.Resources = append(vr.Resources, st.resources[n])
		}
		out[typ] = vr
	}
	return out
}

// VersionedResources is one type's resources at one version.
type VersionedResources struct {
	Version   string
	Resources []types.Resource
}

// InboundAddresses returns the listening addresses that gRPC servers have
// asked for a Listener for, sorted.
func (s *Server) InboundAddresses() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.inbound))
}

// InboundNodes returns, for each inbound address, the node of a stream that
// asks for its Listener: the server's own identity and labels, from its
// bootstrap.
func (s *Server) InboundNodes() map[string]*core.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*core.Node, len(s.inbound))
	for _, id := range slices.Sorted(maps.Keys(s.streams)) {
		st := s.streams[id]
		for _, a := range st.inbound {
			if _, ok := out[a]; !ok && st.node != nil {
				out[a] = st.node
			}
		}
	}
	return out
}

// WaitAcked blocks until every stream that watches typ has acknowledged the
// version now served, or later, or until ctx ends. It reports whether all
// did.
func (s *Server) WaitAcked(ctx context.Context, typ resource.Type) bool {
	target := s.Version(typ)
	for {
		s.mu.Lock()
		done := true
		for _, st := range s.streams {
			ts := st.types[typ]
			if ts == nil || len(ts.Requested) == 0 {
				continue
			}
			if !s.atLeast(ts.Acked, target) {
				done = false
				break
			}
		}
		signal := s.ackSignal
		s.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-signal:
		case <-ctx.Done():
			return false
		}
	}
}

// atLeast reports whether version v is target or newer. Versions of another
// control-plane process (another epoch) are never newer.
func (s *Server) atLeast(v, target string) bool {
	if target == "" {
		return true
	}
	ve, vn, ok1 := strings.Cut(v, "-")
	te, tn, ok2 := strings.Cut(target, "-")
	if !ok1 || !ok2 || ve != te {
		return false
	}
	a, err1 := strconv.ParseUint(vn, 10, 64)
	b, err2 := strconv.ParseUint(tn, 10, 64)
	return err1 == nil && err2 == nil && a >= b
}

// Clients returns the status of every connected stream, by stream ID.
func (s *Server) Clients() []ClientStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ClientStatus, 0, len(s.streams))
	for _, id := range slices.Sorted(maps.Keys(s.streams)) {
		st := s.streams[id]
		cs := ClientStatus{StreamID: id, Peer: st.peer, Connected: st.opened, Types: map[string]*TypeStatus{}}
		if st.node != nil {
			cs.NodeID = st.node.GetId()
			cs.Cluster = st.node.GetCluster()
			if md := st.node.GetMetadata(); md != nil {
				cs.Metadata = md.AsMap()
			}
		}
		for typ, ts := range st.types {
			c := *ts
			c.Requested = slices.Clone(ts.Requested)
			cs.Types[shortType(typ)] = &c
		}
		out = append(out, cs)
	}
	return out
}

func shortType(typ string) string {
	return typ[strings.LastIndex(typ, ".")+1:]
}

func (s *Server) onStreamOpen(ctx context.Context, id int64, _ string) error {
	st := &stream{id: id, ctx: ctx, opened: time.Now(), types: map[string]*TypeStatus{}, nonces: map[string]string{}}
	if p, ok := peer.FromContext(ctx); ok {
		st.peer = p.Addr.String()
	}
	s.mu.Lock()
	s.streams[id] = st
	s.mu.Unlock()
	return nil
}

func (s *Server) onStreamClosed(id int64, _ *core.Node) {
	s.mu.Lock()
	st := s.streams[id]
	delete(s.streams, id)
	changed := false
	if st != nil {
		changed = s.setInboundLocked(st, nil)
	}
	s.signalLocked()
	s.mu.Unlock()
	if changed {
		s.hooks.InboundChanged()
	}
}

func (s *Server) onStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	s.mu.Lock()
	st := s.streams[id]
	if st == nil {
		s.mu.Unlock()
		return nil
	}
	if req.GetNode() != nil {
		st.node = req.GetNode()
	}
	typ := req.GetTypeUrl()
	earlier := false
	if v := req.GetVersionInfo(); v != "" && !strings.HasPrefix(v, s.epoch+"-") {
		earlier = true
	}
	ts := st.types[typ]
	if ts == nil {
		ts = &TypeStatus{}
		st.types[typ] = ts
	}
	previous := ts.Requested
	ts.Requested = slices.Clone(req.GetResourceNames())
	missing := s.asksForMissingLocked(typ, previous, req)
	if nonce := req.GetResponseNonce(); nonce != "" {
		sent := st.nonces[typ+"/"+nonce]
		if detail := req.GetErrorDetail(); detail != nil {
			ts.Nacked = sent
			ts.NackDetail = detail.GetMessage()
			ts.NackCount++
			ts.LastNack = time.Now()
			if ts.NackCount == 1 || ts.NackCount%100 == 0 {
				s.log.Warn("xDS client rejected config", "node", st.node.GetId(), "type", shortType(typ),
					"version", sent, "detail", detail.GetMessage(), "nacks", ts.NackCount)
			}
			// Without this the cache answers the NACK, which carries the
			// previous version, with the same rejected resources at once,
			// in a tight loop. Pretend the client has the rejected version:
			// it keeps its last good config and gets the next change.
			if sent != "" {
				req.VersionInfo = sent
			}
		} else {
			ts.Acked = req.GetVersionInfo()
			s.signalLocked()
		}
	}
	if missing {
		// The cache stays silent about a newly asked name it does not
		// have, and the client would wait 15s to learn it does not exist.
		// Answer now: the response lacks the name, which for Listeners and
		// Clusters says "does not exist". (After the ACK is recorded.)
		req.VersionInfo = ""
	}
	changed := false
	if typ == resource.ListenerType && s.inboundPrefix != "" {
		var addrs []string
		for _, n := range req.GetResourceNames() {
			if a, ok := strings.CutPrefix(n, s.inboundPrefix); ok {
				addrs = append(addrs, a)
			}
		}
		changed = s.setInboundLocked(st, addrs)
	}
	s.mu.Unlock()
	if changed {
		s.hooks.InboundChanged()
	}
	if earlier {
		if hold := s.hooks.EarlierVersion(); hold != nil {
			select {
			case <-hold:
			case <-st.ctx.Done():
				return st.ctx.Err()
			}
		}
	}
	return nil
}

// asksForMissingLocked reports whether a Listener or Cluster request adds
// a name, to those the stream asked before, that is not served.
func (s *Server) asksForMissingLocked(typ string, previous []string, req *discovery.DiscoveryRequest) bool {
	if typ != resource.ListenerType && typ != resource.ClusterType || req.GetErrorDetail() != nil {
		return false
	}
	st := s.current[typ]
	if st == nil {
		return false
	}
	for _, n := range req.GetResourceNames() {
		if _, ok := st.resources[n]; !ok && !slices.Contains(previous, n) {
			return true
		}
	}
	return false
}

// setInboundLocked records the inbound addresses one stream asks for and
// reports whether the set over all streams changed.
func (s *Server) setInboundLocked(st *stream, addrs []string) bool {
	slices.Sort(addrs)
	if slices.Equal(st.inbound, addrs) {
		return false
	}
	before := len(s.inbound)
	added := false
	for _, a := range addrs {
		if s.inbound[a] == 0 {
			added = true
		}
		s.inbound[a]++
	}
	for _, a := range st.inbound {
		if s.inbound[a]--; s.inbound[a] <= 0 {
			delete(s.inbound, a)
		}
	}
	st.inbound = addrs
	return added || len(s.inbound) != before
}

func (s *Server) onStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil {
		return
	}
	typ := req.GetTypeUrl()
	st.nonces[typ+"/"+resp.GetNonce()] = resp.GetVersionInfo()
	// Only the newest nonce can be acknowledged; forget older ones.
	for k := range st.nonces {
		if strings.HasPrefix(k, typ+"/") && k != typ+"/"+resp.GetNonce() {
			delete(st.nonces, k)
		}
	}
	if ts := st.types[typ]; ts != nil {
		ts.Sent = resp.GetVersionInfo()
	}
}

func (s *Server) signalLocked() {
	close(s.ackSignal)
	s.ackSignal = make(chan struct{})
}

type constantHash struct{}

func (constantHash) ID(*core.Node) string { return snapshotKey }

// cacheLogger sends go-control-plane's log to slog. Its Info level is
// chatty (stale nonces), so it goes to Debug.
type cacheLogger struct{ log *slog.Logger }

func (l cacheLogger) Debugf(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l cacheLogger) Infof(f string, a ...any)  { l.log.Debug(fmt.Sprintf(f, a...)) }
func (l cacheLogger) Warnf(f string, a ...any)  { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l cacheLogger) Errorf(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }
