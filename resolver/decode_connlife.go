package resolver

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/meshlet/meshlet/internal/wire"
)

// convertConnLifetime reads the Cluster's HttpProtocolOptions: the idle
// timeout and requests per connection meshlet's clients enforce. The
// upstream protocol it must name is accepted as any of Envoy's choices
// with default settings, since meshlet's clients speak their transport's
// protocol; every other field, and every other protocol options key, is
// refused rather than ignored.
func convertConnLifetime(c *clusterv3.Cluster, out *Cluster) error {
	for k, a := range c.GetTypedExtensionProtocolOptions() {
		at := fmt.Sprintf("typed_extension_protocol_options[%q]", k)
		if k != wire.HTTPProtocolOptionsKey {
			return fmt.Errorf("%s: not supported by meshlet (only %s)", at, wire.HTTPProtocolOptionsKey)
		}
		var o upstreamhttpv3.HttpProtocolOptions
		if err := a.UnmarshalTo(&o); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		var err error
		o.ProtoReflect().Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch f.Name() {
			case "common_http_protocol_options":
			case "explicit_http_config", "use_downstream_protocol_config":
				if m := v.Message().Interface(); !defaultProtocols(m) {
					err = fmt.Errorf("%s.%s: protocol settings are not supported by meshlet, whose clients speak their transport's protocol (only empty http_protocol_options and http2_protocol_options)", at, f.Name())
				}
			default:
				err = fmt.Errorf("%s.%s: not supported by meshlet", at, f.Name())
			}
			return err == nil
		})
		if err != nil {
			return err
		}
		common := o.GetCommonHttpProtocolOptions()
		common.ProtoReflect().Range(func(f protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			switch f.Name() {
			case "idle_timeout", "max_requests_per_connection":
			default:
				err = fmt.Errorf("%s.common_http_protocol_options.%s: not supported by meshlet (it reads idle_timeout and max_requests_per_connection)", at, f.Name())
			}
			return err == nil
		})
		if err != nil {
			return err
		}
		if d := common.GetIdleTimeout(); d != nil {
			if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
				return fmt.Errorf("%s.common_http_protocol_options.idle_timeout: %v is not a valid duration", at, d)
			}
			// Envoy reads 0 as no idle timeout; meshlet's clients then
			// keep their default.
			out.Connections.IdleTimeout = d.AsDuration()
		}
		out.Connections.MaxRequests = common.GetMaxRequestsPerConnection().GetValue()
	}
	return nil
}

// defaultProtocols reports whether an explicit_http_config or
// use_downstream_protocol_config sets nothing but empty protocol options.
func defaultProtocols(m proto.Message) bool {
	ok := true
	m.ProtoReflect().Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch f.Name() {
		case "http_protocol_options", "http2_protocol_options":
			ok = proto.Size(v.Message().Interface()) == 0
		default:
			ok = false
		}
		return ok
	})
	return ok
}
