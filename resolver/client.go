package resolver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

// ErrResourceNotFound is wrapped by the error a watcher gets when its
// resource does not exist: a Listener or Cluster the control plane left
// out of a response that answers a request for it (the package doc says
// when an answer counts, and how a name watched while an answer was on
// its way is confirmed), or any resource it did not send within the
// not-found timeout (WithResourceNotFoundTimeout). The watcher should
// stop using the resource; a later value brings it back.
var ErrResourceNotFound = errors.New("resolver: resource does not exist")

// Client is meshlet's xDS client: one ADS stream to a control plane, shared
// by every watch. It is safe for concurrent use; its Watch methods do not
// block.
//
// The Watch methods subscribe to one resource by name and call fn:
//
//   - with a new value and a nil error whenever the resource changes, and
//     at once if it is already cached;
//   - with the zero value and an error wrapping ErrResourceNotFound when the
//     resource does not exist: the watcher should stop using it;
//   - with the value still in force (the zero value if none came yet) and
//     another error when an update of the resource was invalid: the update
//     was rejected (NACKed) and the last good value stays in force.
//
// fn runs on the client's one callback goroutine: calls never overlap and
// come in order. fn must not block for long and must not call Close; it
// may start and cancel watches. Several watches of one name share one
// subscription. cancel ends the watch, and the subscription with the last
// watch of the name; after cancel returns, fn is not called again, except
// that a call already running finishes. Values are shared between watchers
// and must not be modified.
//
// While the control plane is unreachable, watches keep their values and
// new watches of cached names are answered from the cache. The client
// logs one line when it loses the control plane (WARN) and one when it is
// back (INFO); Connection reports the same.
type Client struct {
	x   *xdsclient.Client
	eds *endpointsDecoder
}

// New connects to the control plane and returns once the ADS stream is up.
// If no control plane is reachable before ctx ends, it fails. ctx bounds
// only the wait: the client lives until Close, and reconnects (with
// backoff, to the next server) whenever its stream breaks, keeping the
// resources it has meanwhile.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if len(o.servers) == 0 {
		return nil, errors.New("resolver: no control-plane address (use WithServers, and WithDialOptions with the credentials its TLS port needs; mesh.New does both)")
	}
	if o.backoffBase <= 0 || o.backoffMax < o.backoffBase {
		return nil, fmt.Errorf("resolver: backoff %v..%v: base must be positive and max at least base", o.backoffBase, o.backoffMax)
	}
	node, err := o.node.proto()
	if err != nil {
		return nil, fmt.Errorf("resolver: node: %w", err)
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}, o.dialOptions...)
	eds := newEndpointsDecoder()
	x, err := xdsclient.New(ctx, xdsclient.Config{
		Servers:         o.servers,
		Node:            node,
		DialOptions:     dial,
		Log:             o.log.With("component", "resolver"),
		BackoffBase:     o.backoffBase,
		BackoffMax:      o.backoffMax,
		NotFoundTimeout: o.notFoundTimeout,
		Types:           resourceTypes(eds),
		NotFound:        ErrResourceNotFound,
	})
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	return &Client{x: x, eds: eds}, nil
}

// Close stops the client and waits for its goroutines. Watchers are not
// called once Close has returned. Close must not be called from a watcher.
func (c *Client) Close() error {
	c.x.Close()
	return nil
}

// Connection is the state of a Client's connection to the control plane.
type Connection struct {
	// Up is set from a stream's first response until the stream ends:
	// the control plane is answering. A stream that opens and fails
	// without a response does not count.
	Up bool
	// Server is the control plane's address: the one answering, or the
	// one last tried.
	Server string
	// Since is when Up last changed, or when the client started.
	Since time.Time
	// Err is why the last stream ended, or the last attempt failed, while
	// not Up.
	Err error
	// Again is set while Up when the client had been up before: it
	// reconnected.
	Again bool
}

// Connection reports the client's connection to the control plane. It
// does not block.
func (c *Client) Connection() Connection {
	x := c.x.Connection()
	return Connection{Up: x.Up, Server: x.Server, Since: x.Since, Err: x.Err, Again: x.Again}
}

// WatchListener watches the Listener name: "host:port" for a client, or
// the server Listener name for a server address.
func (c *Client) WatchListener(name string, fn func(Listener, error)) (cancel func()) {
	return watch(c, listenerType.URL, name, fn)
}

// WatchRouteConfig watches the RouteConfiguration name, which a Listener's
// RouteConfigName gives.
func (c *Client) WatchRouteConfig(name string, fn func(RouteConfig, error)) (cancel func()) {
	return watch(c, routeType.URL, name, fn)
}

// WatchCluster watches the Cluster name, which a route action gives.
func (c *Client) WatchCluster(name string, fn func(Cluster, error)) (cancel func()) {
	return watch(c, clusterType.URL, name, fn)
}

// WatchEndpoints watches the ClusterLoadAssignment name, a Cluster's
// EDSServiceName.
func (c *Client) WatchEndpoints(name string, fn func(Endpoints, error)) (cancel func()) {
	return watch(c, endpointsType.URL, name, fn)
}

func watch[T any](c *Client, typeURL, name string, fn func(T, error)) func() {
	return c.x.Watch(typeURL, name, func(v any, err error) {
		t, _ := v.(T)
		if err != nil && !errors.Is(err, ErrResourceNotFound) { // which says "resolver:" itself
			err = fmt.Errorf("resolver: %w", err)
		}
		fn(t, err)
	})
}

// proto builds the Envoy node.
func (n Node) proto() (*corev3.Node, error) {
	md := wire.NodeMetadata(n.Namespace, n.ServiceAccount, n.WorkloadName, n.Labels)
	for k, v := range n.Metadata {
		md[k] = v
	}
	st, err := structpb.NewStruct(md)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	id := n.ID
	if id == "" {
		id, err = generatedID(n)
		if err != nil {
			return nil, err
		}
	}
	out := &corev3.Node{
		Id:                   id,
		Cluster:              n.Cluster,
		Metadata:             st,
		UserAgentName:        wire.ResolverUserAgent,
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "v1"},
	}
	if n.Locality != (Locality{}) {
		out.Locality = &corev3.Locality{Region: n.Locality.Region, Zone: n.Locality.Zone, SubZone: n.Locality.SubZone}
	}
	return out, nil
}

// generatedID makes a node ID in the shape meshlet's gRPC side uses
// (wire.NodeID).
func generatedID(n Node) (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", errors.New("cannot make a node ID")
	}
	ns := n.Namespace
	if ns == "" {
		ns = wire.DefaultNamespace
	}
	w := n.WorkloadName
	if w == "" {
		w = "resolver"
	}
	return wire.NodeID(w, hex.EncodeToString(b), ns), nil
}
