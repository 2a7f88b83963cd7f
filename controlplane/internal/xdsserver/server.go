// Package xdsserver serves the control plane's resources over ADS with
// go-control-plane, and tracks what every connected client acknowledged.
//
// It works around two behaviours of go-control-plane's snapshot cache that
// would hurt a mesh (see DESIGN.md): in ADS mode the cache never answers
// gRPC's by-name requests, so the cache runs with ads=false; and the cache
// re-sends a NACKed version at once, forever, so a NACK is recorded and then
// treated as "seen": the client keeps its last good config until the next
// change.
//
// Every stream has a snapshot key of its own, so that server Listeners,
// built for one proven identity, reach only that identity's streams; the
// identity comes from the stream's context (package authn), never from
// what the node says.
package xdsserver

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/controlplane/internal/authn"
	"github.com/meshlet/meshlet/internal/wire"
)

// Every stream has a cache key of its own, "s<stream ID>": most streams'
// keys hold the same shared snapshot, and a server's stream holds the
// shared resources plus the server Listeners built for its proven
// identity, which no other stream can read.
func streamKey(id int64) string { return "s" + strconv.FormatInt(id, 10) }

// Types are the resource types served, in the order clients need them.
var Types = []resource.Type{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

// Limits bound what one client can make the server hold. A zero field is
// no bound; the control plane's options give the defaults.
type Limits struct {
	// Streams bounds the open ADS streams.
	Streams int
	// NamesPerRequest bounds the resource names of one request.
	NamesPerRequest int
	// InboundPerStream bounds the server Listener names one stream asks
	// for.
	InboundPerStream int
	// Send bounds the bytes of responses held for clients that read
	// slowly, and how long one may wait to be written (flow.go).
	Send Flow
}

func over(n, limit int) bool { return limit > 0 && n > limit }

// Server is an ADS server. It is safe for concurrent use.
type Server struct {
	log           *slog.Logger
	cache         cache.SnapshotCache
	xds           serverv3.Server
	inboundPrefix string
	hooks         Hooks
	limits        Limits
	versionKey    []byte
	epoch         string // "<random>.<mac>": versions are "<epoch>-<counter>"
	flow          *flow
	wires         atomic.Pointer[wireIndex] // passthrough.go
	edsChanged    map[string]bool           // by the Update in progress; nil outside one (edsversion.go)

	mu        sync.Mutex
	counter   uint64
	pushes    map[string]*push // by version: who was sent it and has not ACKed it yet
	current   map[resource.Type]*typeState
	shared    *cache.Snapshot
	streams   map[int64]*stream
	ackSignal chan struct{} // closed and replaced on every ACK
}

// push follows one version from the change that made it to the last ACK of
// it, for the push-latency metric.
type push struct {
	change  Change
	seq     uint64
	waiting map[waitKey]bool // streams and types sent the version, not yet ACKed
	acked   int              // ACKs of it so far
}

type waitKey struct {
	stream int64
	typ    string
}

// maxPushes bounds the versions followed: a version that some stream has
// not ACKed after this many newer ones is forgotten.
const maxPushes = 64

// Change is what caused an Update: when it was detected and what it was
// ("config", "registry", ...). The time is where push latency starts.
type Change struct {
	At    time.Time
	Cause string
}

// Observer is told about what the server does, for metrics. Its funcs
// are called with the server's lock held: they must be quick, must not
// block and must not call the Server. A nil func is not called.
type Observer struct {
	// Pushed is called for every response sent, with its short type
	// ("Cluster").
	Pushed func(typ string)
	// Nacked is called for every response a client rejected.
	Nacked func(typ string)
	// Synced is called once for each version, when the last stream that
	// was sent it (before all of them had ACKed) ACKs it, with the time
	// since the change that made it. A stream that closes or NACKs is no
	// longer waited for; a version nobody ACKed is not reported.
	Synced func(c Change, took time.Duration)
}

type typeState struct {
	version   string
	resources map[string]wireResource
}

type stream struct {
	id      int64
	key     *core.Node      // the node the cache sees: its ID is the stream's key
	ctx     context.Context // ends with the stream
	peer    string
	opened  time.Time
	node    *core.Node // as the client sent it
	types   map[string]*TypeStatus
	nonces  map[string]string // type URL + "/" + nonce -> version sent
	eds     edsState          // the assignments it holds, to send only changed ones
	inbound []string          // valid server addresses asked for

	identity authn.Identity // proven by the certificate, or claimed in insecure mode
	known    bool           // identity is set
	mode     authn.Mode

	snap            *cache.Snapshot // what the cache holds for the stream
	inboundRes      map[string]wireResource
	listenerVersion string
	refused         map[string]bool // malformed names already logged
	unsupported     unsupportedState
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
	Identity  string                 `json:"identity,omitempty"`
	Mode      string                 `json:"mode,omitempty"`
	NodeID    string                 `json:"nodeID"`
	Cluster   string                 `json:"cluster,omitempty"`
	Metadata  map[string]any         `json:"metadata,omitempty"`
	Peer      string                 `json:"peer,omitempty"`
	Connected time.Time              `json:"connected"`
	UserAgent string                 `json:"userAgent,omitempty"`
	Types     map[string]*TypeStatus `json:"types"`
	// Unsupported is what the resources it asked for need that this
	// client cannot do (Hooks.Unsupported), sorted.
	Unsupported []string `json:"unsupported,omitempty"`
}

// ClientKind sorts a client by its node's user agent into a few kinds, so
// that what a client says cannot make metric labels grow without bound:
// "meshlet" (meshlet's resolver), "grpc-go", "grpc" (another gRPC
// language), "other" and "unknown" (no node yet). wire.ClientKind's finer
// kinds of gRPC are "grpc" here.
func ClientKind(n *core.Node) string {
	if n == nil {
		return "unknown"
	}
	switch k := wire.ClientKind(n.GetUserAgentName()); k {
	case wire.ClientMeshlet, wire.ClientGo, wire.ClientOther:
		return k
	default:
		return wire.ClientGRPC
	}
}

// ClientKinds counts the connected streams by ClientKind.
func (s *Server) ClientKinds() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, st := range s.streams {
		out[ClientKind(st.node)]++
	}
	return out
}

// Hooks are called on a requesting stream's goroutine, without locks held,
// before the request is answered, so that they can change the resources
// with Update first.
type Hooks struct {
	// InboundChanged is called when the server Listeners that streams ask
	// for change (InboundRequests).
	InboundChanged func()
	// EarlierVersion is called when a client asks with a version that an
	// earlier control-plane process sent: this process was restarted. The
	// request is answered once the channel it returns is closed (at once
	// for nil), so that such a client keeps the config it has, rather
	// than get a partial one, while servers register again.
	EarlierVersion func() <-chan struct{}
	// Observe is told about pushes, NACKs and ACKs, for metrics.
	Observe Observer
	// Unsupported returns what resource r needs that the client of node
	// n cannot do, one sentence each. It is called with the server's lock
	// held, for each resource a stream asks for: it must be quick and
	// must not call the Server. Nil reports nothing.
	Unsupported func(n *core.Node, r types.Resource) []string
	// Judges reports whether Unsupported can find anything for the client
	// of node n; the streams of clients it does not judge (meshlet's own,
	// Envoy) are not checked at all. Nil means every client may be.
	Judges func(n *core.Node) bool
}

// New returns a server with no resources. inboundPrefix is the name prefix
// of gRPC server Listeners (the bootstrap template without "%s").
// versionKey authenticates the versions this server sends, so that a
// client's claim to hold a version of an earlier process (a restart, which
// holds clients during the warm-up) is believed only for versions a
// process with the same key sent.
func New(log *slog.Logger, inboundPrefix string, versionKey []byte, limits Limits, hooks Hooks) *Server {
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
		limits:        limits,
		versionKey:    versionKey,
		current:       map[resource.Type]*typeState{},
		streams:       map[int64]*stream{},
		pushes:        map[string]*push{},
		ackSignal:     make(chan struct{}),
	}
	var nonce [6]byte
	rand.Read(nonce[:])
	s.epoch = s.signEpoch(hex.EncodeToString(nonce[:]))
	s.cache = cache.NewSnapshotCache(false, streamHash{}, cacheLogger{log})
	s.wires.Store(&wireIndex{})
	s.xds = serverv3.NewServer(context.Background(), sharedCache{s.cache, s}, serverv3.CallbackFuncs{
		StreamOpenFunc:     s.onStreamOpen,
		StreamClosedFunc:   s.onStreamClosed,
		StreamRequestFunc:  s.onStreamRequest,
		StreamResponseFunc: s.onStreamResponse,
		// Incremental xDS would reach the cache without the stream's own
		// key and identity checks: it is not served.
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			return status.Error(codes.Unimplemented, "control plane: incremental (delta) xDS is not served; use state-of-the-world ADS")
		},
	})
	s.flow = newFlow(log, s, s.xds, limits.Send)
	return s
}

// ADS returns the ADS service, for a second gRPC server (the read-only
// plaintext port).
func (s *Server) ADS() serverv3.Server { return adsService{s.xds, s.flow} }

// Register adds the ADS service to g.
func (s *Server) Register(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.ADS())
}

// Update replaces the served resources: shared for every stream, and
// inbound, by stream ID, the server Listeners of each stream. A type whose
// resources did not change keeps its version, so clients are not sent it
// again. c says what caused the update.
func (s *Server) Update(ctx context.Context, c Change, shared map[resource.Type][]types.Resource, inbound map[int64][]types.Resource) error {
	// Marshaled before the lock: requests and ACKs go on meanwhile.
	sharedWire := map[resource.Type]map[string]wireResource{}
	for _, typ := range Types {
		m, err := wireResources(shared[typ])
		if err != nil {
			return err
		}
		sharedWire[typ] = m
	}
	inboundWire := map[int64]map[string]wireResource{}
	for id, rs := range inbound {
		m, err := wireResources(rs)
		if err != nil {
			return err
		}
		inboundWire[id] = m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counter++
	version := fmt.Sprintf("%s-%d", s.epoch, s.counter)
	s.pushes[version] = &push{change: c, seq: s.counter, waiting: map[waitKey]bool{}}
	for v, p := range s.pushes {
		if p.seq+maxPushes <= s.counter {
			delete(s.pushes, v)
		}
	}
	changed := map[resource.Type]bool{}
	for _, typ := range Types {
		byName := sharedWire[typ]
		old := s.current[typ]
		if old != nil && sameResources(old.resources, byName) {
			continue
		}
		if typ == resource.EndpointType && old != nil {
			s.edsChanged = changedNames(old, byName)
			defer func() { s.edsChanged = nil }()
		}
		s.current[typ] = &typeState{version: version, resources: byName}
		changed[typ] = true
	}
	if len(changed) > 0 || s.shared == nil {
		snap := &cache.Snapshot{}
		for _, typ := range Types {
			st := s.current[typ]
			snap.Resources[cache.GetResponseType(typ)] = cache.NewResources(st.version, wires(st.resources))
		}
		s.shared = snap
		s.indexWiresLocked()
	}
	for _, st := range s.streams {
		if err := s.setStreamSnapshotLocked(ctx, st, inboundWire[st.id], version, changed[resource.ListenerType]); err != nil {
			return err
		}
	}
	return nil
}

// setStreamSnapshotLocked gives one stream the shared snapshot, or, when
// it has server Listeners, the shared snapshot with those added.
func (s *Server) setStreamSnapshotLocked(ctx context.Context, st *stream, inbound map[string]wireResource, version string, listenersChanged bool) error {
	snap := s.shared
	if len(inbound) > 0 || len(st.inboundRes) > 0 {
		if !sameResources(st.inboundRes, inbound) || listenersChanged || st.listenerVersion == "" {
			st.listenerVersion = version
		}
		st.inboundRes = inbound
		if len(inbound) > 0 {
			snap = &cache.Snapshot{Resources: s.shared.Resources}
			lt := cache.GetResponseType(resource.ListenerType)
			all := maps.Clone(s.current[resource.ListenerType].resources)
			maps.Copy(all, inbound)
			snap.Resources[lt] = cache.NewResources(st.listenerVersion, wires(all))
		}
	}
	snap = s.holdEDSLocked(st, snap)
	if snap == st.snap {
		return nil
	}
	st.snap = snap
	if err := s.cache.SetSnapshot(ctx, st.key.GetId(), snap); err != nil {
		return fmt.Errorf("xdsserver: set snapshot: %w", err)
	}
	return nil
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
// with their versions: the shared ones, and the server Listeners of every
// stream.
func (s *Server) Resources() map[resource.Type]VersionedResources {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[resource.Type]VersionedResources{}
	for typ, st := range s.current {
		all := maps.Clone(st.resources)
		if typ == resource.ListenerType {
			for _, str := range s.streams {
				maps.Copy(all, str.inboundRes)
			}
		}
		names := slices.Sorted(maps.Keys(all))
		vr := VersionedResources{Version: st.version}
		for _, n := range names {
			vr.Resources = append(vr.Resources, all[n].msg)
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

// InboundRequest is one stream's request for server Listeners.
type InboundRequest struct {
	Stream    int64
	Identity  authn.Identity // proven, or claimed in insecure mode
	Addresses []string       // "ip:port", valid and sorted
	// Peer is the address the stream comes from: which of an identity's
	// instances bound to the same wildcard address this stream's is.
	Peer string
}

// InboundRequests returns, by stream, the server Listener addresses that
// streams with an identity ask for.
func (s *Server) InboundRequests() []InboundRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []InboundRequest
	for _, id := range slices.Sorted(maps.Keys(s.streams)) {
		st := s.streams[id]
		if len(st.inbound) == 0 || !st.known {
			continue
		}
		out = append(out, InboundRequest{Stream: id, Identity: st.identity, Addresses: slices.Clone(st.inbound), Peer: st.peer})
	}
	return out
}

// WaitAcked blocks until every stream that watches typ has acknowledged the
// version now served, or later, or until ctx ends. It reports whether all
// did.
func (s *Server) WaitAcked(ctx context.Context, typ resource.Type) bool {
	s.mu.Lock()
	targets := map[int64]string{}
	for id, st := range s.streams {
		if st.snap != nil {
			targets[id] = st.snap.GetVersion(typ)
		}
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		done := true
		for id, st := range s.streams {
			ts := st.types[typ]
			if ts == nil || len(ts.Requested) == 0 {
				continue
			}
			target, ok := targets[id]
			if !ok && s.current[typ] != nil {
				target = s.current[typ].version
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
		if st.known {
			cs.Identity = st.identity.String()
		}
		switch st.mode {
		case authn.ModeReadOnly:
			cs.Mode = "read-only (plaintext port)"
		case authn.ModeInsecure:
			cs.Mode = "insecure (claims believed)"
		}
		if st.node != nil {
			cs.NodeID = st.node.GetId()
			cs.Cluster = st.node.GetCluster()
			cs.UserAgent = st.node.GetUserAgentName()
			if md := st.node.GetMetadata(); md != nil {
				cs.Metadata = md.AsMap()
			}
		}
		for typ, ts := range st.types {
			c := *ts
			c.Requested = slices.Clone(ts.Requested)
			cs.Types[shortType(typ)] = &c
		}
		cs.Unsupported = st.unsupported.list()
		out = append(out, cs)
	}
	return out
}

func shortType(typ string) string {
	return typ[strings.LastIndex(typ, ".")+1:]
}

func (s *Server) onStreamOpen(ctx context.Context, id int64, _ string) error {
	st := &stream{
		id: id, key: &core.Node{Id: streamKey(id)}, ctx: ctx, opened: time.Now(),
		types: map[string]*TypeStatus{}, nonces: map[string]string{}, refused: map[string]bool{},
		mode: authn.ModeFromContext(ctx),
	}
	if p, ok := peer.FromContext(ctx); ok {
		st.peer = p.Addr.String()
	}
	st.identity, st.known = authn.FromContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if over(len(s.streams)+1, s.limits.Streams) {
		s.log.Warn("xDS stream refused: too many streams", "peer", st.peer, "limit", s.limits.Streams)
		return status.Errorf(codes.ResourceExhausted, "control plane: %d xDS streams are open, the limit", s.limits.Streams)
	}
	s.streams[id] = st
	if s.shared != nil {
		st.snap = s.shared
		if err := s.cache.SetSnapshot(ctx, st.key.GetId(), s.shared); err != nil {
			return fmt.Errorf("xdsserver: set snapshot: %w", err)
		}
	}
	return nil
}

func (s *Server) onStreamClosed(id int64, _ *core.Node) {
	s.mu.Lock()
	st := s.streams[id]
	delete(s.streams, id)
	changed := st != nil && len(st.inbound) > 0
	if st != nil {
		s.cache.ClearSnapshot(st.key.GetId())
		for _, typ := range slices.Collect(maps.Keys(st.types)) {
			s.doneWaitingLocked(id, typ, "", false)
		}
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
	if req.GetNode() != nil && req.GetNode() != st.key {
		if err := s.checkNodeLocked(st, req.GetNode()); err != nil {
			s.mu.Unlock()
			return err
		}
		st.node = req.GetNode()
	}
	// The cache keys snapshots by node ID; the stream's own key makes it
	// see its own snapshot, whatever ID the client chose.
	req.Node = st.key
	if n := len(req.GetResourceNames()); over(n, s.limits.NamesPerRequest) {
		s.mu.Unlock()
		s.log.Warn("xDS request refused: too many resource names", "node", st.node.GetId(), "peer", st.peer, "names", n, "limit", s.limits.NamesPerRequest)
		return status.Errorf(codes.ResourceExhausted, "control plane: a request for %d resource names is over the limit, %d", n, s.limits.NamesPerRequest)
	}
	typ := req.GetTypeUrl()
	earlier := false
	if v := req.GetVersionInfo(); v != "" && !strings.HasPrefix(v, s.epoch+"-") && st.mode != authn.ModeReadOnly && (st.known || st.mode == authn.ModeInsecure) {
		epoch, _, _ := strings.Cut(v, "-")
		earlier = s.verifyEpoch(epoch)
	}
	ts := st.types[typ]
	if ts == nil {
		ts = &TypeStatus{}
		st.types[typ] = ts
	}
	previous := ts.Requested
	// go-control-plane ignores a request that does not carry the nonce of
	// the type's last response (stale): its names are not what the cache
	// answers, so they are not recorded as asked. The client's ACK of
	// that response names them again, and is answered.
	stale := s.staleLocked(st, typ, req.GetResponseNonce())
	if !stale {
		ts.Requested = slices.Clone(req.GetResourceNames())
		s.checkUnsupportedLocked(st, typ)
	}
	changed := false
	if typ == resource.ListenerType && s.inboundPrefix != "" {
		addrs, err := s.inboundAddressesLocked(st, req.GetResourceNames())
		if err != nil {
			s.mu.Unlock()
			return err
		}
		changed = !slices.Equal(st.inbound, addrs)
		st.inbound = addrs
	}
	missing := !stale && s.asksForMissingLocked(st, typ, previous, req)
	if nonce := req.GetResponseNonce(); nonce != "" {
		sent := st.nonces[typ+"/"+nonce]
		if detail := req.GetErrorDetail(); detail != nil {
			ts.Nacked = sent
			ts.NackDetail = detail.GetMessage()
			ts.NackCount++
			ts.LastNack = time.Now()
			if f := s.hooks.Observe.Nacked; f != nil {
				f(shortType(typ))
			}
			if sent != "" {
				s.doneWaitingLocked(st.id, typ, sent, false)
			}
			if typ == resource.EndpointType {
				st.eds.nackedLocked(nonce)
				s.signalLocked()
			}
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
			if typ == resource.EndpointType {
				st.eds.ackedLocked(nonce)
			}
			s.doneWaitingLocked(st.id, typ, ts.Acked, true)
			s.signalLocked()
		}
	}
	if !stale && typ == resource.EndpointType {
		// After the ACK: what it ACKed and no longer asks for is dropped.
		st.eds.requestedLocked(ts.Requested)
	}
	if missing {
		// The cache stays silent about a newly asked name it does not
		// have, and the client would wait 15s to learn it does not exist.
		// Answer now: the response lacks the name, which for Listeners and
		// Clusters says "does not exist". (After the ACK is recorded.)
		req.VersionInfo = ""
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

// checkNodeLocked refuses a node whose metadata claims another namespace
// or service account than the stream's certificate proves. In insecure
// mode the claim is the identity.
func (s *Server) checkNodeLocked(st *stream, n *core.Node) error {
	md := n.GetMetadata().GetFields()
	ns, sa := md[wire.MetaNamespace].GetStringValue(), md[wire.MetaServiceAccount].GetStringValue()
	switch {
	case st.mode == authn.ModeInsecure:
		if ns != "" && sa != "" {
			st.identity = authn.Identity{Namespace: ns, ServiceAccount: sa}
			st.known = true
		}
	case st.known && (ns != "" && ns != st.identity.Namespace || sa != "" && sa != st.identity.ServiceAccount):
		s.log.Warn("xDS stream refused: node metadata claims another identity", "node", n.GetId(), "peer", st.peer,
			"claimed", "ns/"+ns+"/sa/"+sa, "proven", st.identity.String())
		return status.Errorf(codes.PermissionDenied, "control plane: node %q claims namespace %q and service account %q, but its certificate is %s",
			n.GetId(), ns, sa, st.identity)
	}
	return nil
}

// inboundAddressesLocked returns the server addresses that names ask for.
// A malformed name is left out on its own (the client is told it does not
// exist) and logged once; the read-only port serves no server Listeners.
func (s *Server) inboundAddressesLocked(st *stream, names []string) ([]string, error) {
	var addrs []string
	for _, n := range names {
		a, ok := strings.CutPrefix(n, s.inboundPrefix)
		if !ok {
			continue
		}
		ap, err := netip.ParseAddrPort(a)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			if !st.refused[n] && len(st.refused) < 100 {
				st.refused[n] = true
				s.log.Warn("xDS client asked for a malformed server Listener name; it does not exist", "node", st.node.GetId(), "peer", st.peer, "name", n)
			}
			continue
		}
		if st.mode == authn.ModeReadOnly || !st.known {
			continue
		}
		addrs = append(addrs, ap.String())
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if over(len(addrs), s.limits.InboundPerStream) {
		s.log.Warn("xDS request refused: too many server Listener names", "node", st.node.GetId(), "peer", st.peer, "names", len(addrs), "limit", s.limits.InboundPerStream)
		return nil, status.Errorf(codes.ResourceExhausted, "control plane: %d server Listener names on one stream are over the limit, %d", len(addrs), s.limits.InboundPerStream)
	}
	return addrs, nil
}

// signEpoch returns nonce with its MAC under the version key.
func (s *Server) signEpoch(nonce string) string {
	mac := hmac.New(sha256.New, s.versionKey)
	mac.Write([]byte(nonce))
	return nonce + "." + hex.EncodeToString(mac.Sum(nil)[:8])
}

// verifyEpoch reports whether epoch was made by a process with the same
// version key: a forged or foreign version is not a restart.
func (s *Server) verifyEpoch(epoch string) bool {
	if len(s.versionKey) == 0 {
		return false
	}
	nonce, _, ok := strings.Cut(epoch, ".")
	return ok && hmac.Equal([]byte(s.signEpoch(nonce)), []byte(epoch))
}

// asksForMissingLocked reports whether a Listener or Cluster request adds
// a name, to those the stream asked before, that its snapshot lacks.
// staleLocked reports whether a request of typ with nonce is one that
// go-control-plane's SotW server skips: a response of that type was sent
// and nonce is not the last one's.
func (s *Server) staleLocked(st *stream, typ, nonce string) bool {
	prefix := typ + "/"
	for k := range st.nonces {
		if strings.HasPrefix(k, prefix) {
			return k != prefix+nonce
		}
	}
	return false
}

func (s *Server) asksForMissingLocked(st *stream, typ string, previous []string, req *discovery.DiscoveryRequest) bool {
	if typ != resource.ListenerType && typ != resource.ClusterType || req.GetErrorDetail() != nil || st.snap == nil {
		return false
	}
	have := st.snap.GetResources(typ)
	for _, n := range req.GetResourceNames() {
		if _, ok := have[n]; !ok && !slices.Contains(previous, n) {
			return true
		}
	}
	return false
}

func (s *Server) onStreamResponse(_ context.Context, id int64, req *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	if st == nil {
		return
	}
	typ := req.GetTypeUrl()
	if typ == resource.EndpointType {
		// resp is this stream's own: go-control-plane sends it after this.
		st.eds.filterLocked(resp)
	}
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
	if p := s.pushes[resp.GetVersionInfo()]; p != nil {
		p.waiting[waitKey{id, typ}] = true
	}
	if f := s.hooks.Observe.Pushed; f != nil {
		f(shortType(typ))
	}
}

// doneWaitingLocked stops waiting for stream's ACK of typ in the versions
// up to version (all of them for ""), which it ACKed when acked is set, and
// reports each version that no stream is waiting for any more.
func (s *Server) doneWaitingLocked(stream int64, typ, version string, acked bool) {
	key := waitKey{stream, typ}
	for v, p := range s.pushes {
		if !p.waiting[key] || version != "" && !s.atLeast(version, v) {
			continue
		}
		delete(p.waiting, key)
		if acked {
			p.acked++
		}
		if len(p.waiting) > 0 {
			continue
		}
		// Streams sent the version later, after every earlier one ACKed
		// it, start nothing new: the change reached everyone then.
		delete(s.pushes, v)
		if f := s.hooks.Observe.Synced; f != nil && p.acked > 0 {
			f(p.change, time.Since(p.change.At))
		}
	}
}

func (s *Server) signalLocked() {
	close(s.ackSignal)
	s.ackSignal = make(chan struct{})
}

// streamHash keys the cache by the node ID onStreamRequest put on the
// request: the stream's key.
type streamHash struct{}

func (streamHash) ID(n *core.Node) string { return n.GetId() }

// cacheLogger sends go-control-plane's log to slog. Its Info level is
// chatty (stale nonces), so it goes to Debug.
type cacheLogger struct{ log *slog.Logger }

// debugf formats only when Debug is on: the cache logs every watch it
// opens and answers, with the names asked for, and formatting them for
// nothing was 3% of the control plane's CPU in a file churn to 100
// clients (bench/scale).
func (l cacheLogger) debugf(f string, a ...any) {
	// The logger's own Debug checks its level with this context too.
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(f, a...))
	}
}

func (l cacheLogger) Debugf(f string, a ...any) { l.debugf(f, a...) }
func (l cacheLogger) Infof(f string, a ...any)  { l.debugf(f, a...) }
func (l cacheLogger) Warnf(f string, a ...any)  { l.log.Warn(fmt.Sprintf(f, a...)) }
func (l cacheLogger) Errorf(f string, a ...any) { l.log.Error(fmt.Sprintf(f, a...)) }
