package wire

// PeerPrincipalAttribute is the Envoy attribute (a CEL expression of the
// envoy.rate_limit_descriptors.expr extension) whose value is the
// caller's SPIFFE ID, the first URI SAN of its certificate: the control
// plane keys per-principal rate-limit buckets by it and the data plane
// reads it back.
const PeerPrincipalAttribute = "connection.uri_san_peer_certificate"
