package wire

// HTTPProtocolOptionsKey is the Cluster's typed_extension_protocol_options
// key for its HttpProtocolOptions, where Envoy and meshlet read a
// connection's idle timeout and requests per connection.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
