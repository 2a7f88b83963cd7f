package telemetry

import (
	"context"

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
// HeaderPeer added to its outgoing gRPC metadata (a copy: the caller's
// metadata is not changed).
func (r *Request) OutgoingContext(ctx context.Context) context.Context {
	if r == nil {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	r.Inject(MetadataCarrier(md))
	return metadata.NewOutgoingContext(ctx, md)
}

// IncomingCarrier is the carrier of a served RPC's incoming metadata.
func IncomingCarrier(ctx context.Context) MetadataCarrier {
	md, _ := metadata.FromIncomingContext(ctx)
	return MetadataCarrier(md)
}
