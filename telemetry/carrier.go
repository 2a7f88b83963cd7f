package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/metadata"
)

// MetadataCarrier carries trace context in gRPC metadata, as
// propagation.HeaderCarrier does in HTTP headers.
type MetadataCarrier metadata.MD

// Get returns the first value of key.
func (c MetadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set sets key to value.
func (c MetadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

// Keys returns the keys.
func (c MetadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// OutgoingContext returns ctx with the request's trace context and
// HeaderPeer added to its outgoing gRPC metadata. It appends pairs, as
// metadata.AppendToOutgoingContext does, rather than copying the
// caller's metadata: this runs on every call.
func (r *Request) OutgoingContext(ctx context.Context) context.Context {
	if r == nil {
		return ctx
	}
	var c pairCarrier
	c.kv = c.buf[:0]
	r.Inject(&c)
	return metadata.AppendToOutgoingContext(ctx, c.kv...)
}

// pairCarrier collects what a propagator sets as key, value pairs.
type pairCarrier struct {
	kv  []string
	buf [6]string // peer, traceparent, tracestate: no allocation
}

func (c *pairCarrier) Get(key string) string {
	for i := 0; i+1 < len(c.kv); i += 2 {
		if c.kv[i] == key {
			return c.kv[i+1]
		}
	}
	return ""
}

func (c *pairCarrier) Set(key, value string) {
	for i := 0; i+1 < len(c.kv); i += 2 {
		if c.kv[i] == key {
			c.kv[i+1] = value
			return
		}
	}
	c.kv = append(c.kv, key, value)
}

func (c *pairCarrier) Keys() []string {
	keys := make([]string, 0, len(c.kv)/2)
	for i := 0; i < len(c.kv); i += 2 {
		keys = append(keys, c.kv[i])
	}
	return keys
}

// IncomingCarrier is the carrier of a served RPC's incoming metadata. It
// looks keys up as a propagator asks for them, without copying the
// metadata (metadata.FromIncomingContext copies all of it).
func IncomingCarrier(ctx context.Context) propagation.TextMapCarrier {
	return incomingCarrier{ctx}
}

type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set does nothing: incoming metadata is not changed.
func (incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	return MetadataCarrier(md).Keys()
}
