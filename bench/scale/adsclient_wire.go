//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// The light client reads the few fields it needs from the resources'
// bytes (protowire) rather than unmarshalling them: a full
// proto.Unmarshal of every ClusterLoadAssignment was most of this
// process's CPU, which shares the cores with the control plane it
// measures. It reads them as proto.Unmarshal would (the last scalar
// wins, a message field given twice is merged, a oneof holds its last
// member) and refuses what a marshaller does not write (a field of the
// wrong wire type) or what resolver.Client would refuse in the fields it
// reads, so that a bad resource ends the run instead of being hashed.

// Field numbers, from envoy/config/endpoint/v3/endpoint{,_components}.proto,
// envoy/config/core/v3/address.proto and envoy/config/cluster/v3/cluster.proto.
// TestWireFieldNumbers checks them against the descriptors.
const (
	claClusterNameField protowire.Number = 1 // ClusterLoadAssignment.cluster_name
	claEndpointsField   protowire.Number = 2 // ClusterLoadAssignment.endpoints
	lleLbEndpointsField protowire.Number = 2 // LocalityLbEndpoints.lb_endpoints

	lbeEndpointField     protowire.Number = 1 // LbEndpoint.endpoint (oneof host_identifier)
	lbeHealthStatusField protowire.Number = 2 // LbEndpoint.health_status
	lbeEndpointNameField protowire.Number = 5 // LbEndpoint.endpoint_name (oneof host_identifier)

	endpointAddressField protowire.Number = 1 // Endpoint.address

	addressSocketField   protowire.Number = 1 // Address.socket_address (oneof address)
	addressPipeField     protowire.Number = 2 // Address.pipe
	addressInternalField protowire.Number = 3 // Address.envoy_internal_address

	socketAddressField  protowire.Number = 2 // SocketAddress.address
	socketPortField     protowire.Number = 3 // SocketAddress.port_value (oneof port_specifier)
	socketNamedField    protowire.Number = 4 // SocketAddress.named_port
	socketResolverField protowire.Number = 5 // SocketAddress.resolver_name

	clusterNameField      protowire.Number = 1 // Cluster.name
	clusterEDSConfigField protowire.Number = 3 // Cluster.eds_cluster_config
	edsServiceNameField   protowire.Number = 2 // Cluster.EdsClusterConfig.service_name
)

// field is one field of a serialized message as it is on the wire: its
// payload for a length-delimited field (a slice of the message), its
// value for a varint; other wire types are skipped with neither.
type field struct {
	num    protowire.Number
	typ    protowire.Type
	bytes  []byte
	varint uint64
}

// consumeField reads the field b starts with and returns it and its
// length. A tag or length of one byte, as nearly all are here, is read
// inline: this is most of a light client's CPU. It returns values and
// the callers keep the rest of the message in a local, so that the loop
// stores no pointer through a pointer (each would pay a write barrier
// while the GC runs).
func consumeField(b []byte) (f field, n int, err error) {
	tag, n := uint64(b[0]), 1
	if tag >= 0x80 {
		if tag, n = protowire.ConsumeVarint(b); n < 0 {
			return field{}, 0, protowire.ParseError(n)
		}
	}
	f.num, f.typ = protowire.DecodeTag(tag)
	if f.num < protowire.MinValidNumber || f.num > protowire.MaxValidNumber {
		return field{}, 0, fmt.Errorf("field number %d out of range", f.num)
	}
	var m int
	switch rest := b[n:]; f.typ {
	case protowire.BytesType:
		var l uint64
		if len(rest) > 0 && rest[0] < 0x80 {
			l, m = uint64(rest[0]), 1
		} else if l, m = protowire.ConsumeVarint(rest); m < 0 {
			return field{}, 0, fmt.Errorf("field %d: %w", f.num, protowire.ParseError(m))
		}
		if l > uint64(len(rest)-m) {
			return field{}, 0, fmt.Errorf("field %d: %w", f.num, io.ErrUnexpectedEOF)
		}
		f.bytes = rest[m : m+int(l)]
		m += int(l)
	case protowire.VarintType:
		f.varint, m = protowire.ConsumeVarint(rest)
	default:
		m = protowire.ConsumeFieldValue(f.num, f.typ, rest)
	}
	if m < 0 {
		return field{}, 0, fmt.Errorf("field %d: %w", f.num, protowire.ParseError(m))
	}
	return f, n + m, nil
}

// want checks that f has wire type typ: a known field of another type
// is an error (no marshaller writes one; proto.Unmarshal would keep it
// as an unknown field).
func (f *field) want(typ protowire.Type) error {
	if f.typ == typ {
		return nil
	}
	return f.wrongType(typ)
}

func (f *field) wrongType(typ protowire.Type) error {
	return fmt.Errorf("field %d: wire type %d, want %d", f.num, f.typ, typ)
}

// str returns f's bytes if f is length-delimited and UTF-8, as
// proto.Unmarshal requires of a proto3 string.
func (f *field) str(name string) ([]byte, error) {
	if err := f.want(protowire.BytesType); err != nil {
		return nil, err
	}
	if !utf8.Valid(f.bytes) {
		return nil, fmt.Errorf("%s: not UTF-8", name)
	}
	return f.bytes, nil
}

// lbEndpointWire is what the light client reads of one LbEndpoint. Its
// parts are merged into as proto.Unmarshal merges a message field that
// comes more than once.
type lbEndpointWire struct {
	health   int32
	hostID   protowire.Number // the host_identifier member set last, or 0
	addrKind protowire.Number // the Address oneof member set last, or 0
	// SocketAddress, when addrKind is addressSocketField.
	address, resolver []byte
	portKind          protowire.Number // the port_specifier member set last, or 0
	port              uint32
}

// claFingerprint reads the serialized ClusterLoadAssignment b and returns
// its cluster_name and the fingerprint of its healthy endpoints (health
// UNKNOWN or HEALTHY, as resolver.Endpoint.Healthy), each address written
// as resolver.Endpoint.Address has it, built in buf to spare an
// allocation. Every endpoint, healthy or not, must have an address
// resolver.Client accepts (a socket address with a host and a port_value
// of 1..65535, no resolver_name) and a known health_status.
func claFingerprint(b, buf []byte) (name []byte, fp fingerprint, _ []byte, err error) {
	locality := 0
	for len(b) > 0 {
		f, n, err := consumeField(b)
		if err != nil {
			return nil, fingerprint{}, buf, err
		}
		b = b[n:]
		switch f.num {
		case claClusterNameField:
			if name, err = f.str("cluster_name"); err != nil {
				return nil, fingerprint{}, buf, err
			}
		case claEndpointsField:
			if err := f.want(protowire.BytesType); err != nil {
				return nil, fingerprint{}, buf, err
			}
			if buf, err = localityFingerprint(f.bytes, &fp, buf); err != nil {
				return nil, fingerprint{}, buf, fmt.Errorf("endpoints[%d]%w", locality, err)
			}
			locality++
		}
	}
	return name, fp, buf, nil
}

// localityFingerprint adds the healthy endpoints of the serialized
// LocalityLbEndpoints b to fp. Its errors start with the path below the
// locality (".lb_endpoints[3]: ...").
func localityFingerprint(b []byte, fp *fingerprint, buf []byte) ([]byte, error) {
	i := 0
	for len(b) > 0 {
		f, n, err := consumeField(b)
		if err != nil {
			return buf, fmt.Errorf(": %w", err)
		}
		b = b[n:]
		if f.num != lleLbEndpointsField {
			continue
		}
		if err := f.want(protowire.BytesType); err != nil {
			return buf, fmt.Errorf(": %w", err)
		}
		var e lbEndpointWire
		err = e.read(f.bytes)
		if err == nil {
			buf, err = e.add(fp, buf)
		}
		if err != nil {
			return buf, fmt.Errorf(".lb_endpoints[%d]: %w", i, err)
		}
		i++
	}
	return buf, nil
}

// read merges the serialized LbEndpoint b into e.
func (e *lbEndpointWire) read(b []byte) error {
	for len(b) > 0 {
		f, n, err := consumeField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch f.num {
		case lbeHealthStatusField:
			if err := f.want(protowire.VarintType); err != nil {
				return err
			}
			e.health = int32(f.varint) // as proto.Unmarshal reads an enum
		case lbeEndpointNameField:
			if _, err := f.str("endpoint_name"); err != nil {
				return err
			}
			e.hostID = lbeEndpointNameField
		case lbeEndpointField:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
			if e.hostID != lbeEndpointField {
				*e = lbEndpointWire{health: e.health, hostID: lbeEndpointField}
			}
			if err := e.readEndpoint(f.bytes); err != nil {
				return fmt.Errorf("endpoint: %w", err)
			}
		}
	}
	return nil
}

// readEndpoint merges the serialized Endpoint b into e.
func (e *lbEndpointWire) readEndpoint(b []byte) error {
	for len(b) > 0 {
		f, n, err := consumeField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		if f.num != endpointAddressField {
			continue
		}
		if err := f.want(protowire.BytesType); err != nil {
			return err
		}
		if err := e.readAddress(f.bytes); err != nil {
			return fmt.Errorf("address: %w", err)
		}
	}
	return nil
}

// readAddress merges the serialized Address b into e.
func (e *lbEndpointWire) readAddress(b []byte) error {
	for len(b) > 0 {
		f, n, err := consumeField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch f.num {
		case addressPipeField, addressInternalField, addressSocketField:
			if err := f.want(protowire.BytesType); err != nil {
				return err
			}
		default:
			continue
		}
		if f.num != addressSocketField {
			e.addrKind = f.num
			continue
		}
		if e.addrKind != addressSocketField {
			e.addrKind = addressSocketField
			e.address, e.resolver, e.portKind, e.port = nil, nil, 0, 0
		}
		if err := e.readSocketAddress(f.bytes); err != nil {
			return fmt.Errorf("socket_address: %w", err)
		}
	}
	return nil
}

// readSocketAddress merges the serialized SocketAddress b into e.
func (e *lbEndpointWire) readSocketAddress(b []byte) error {
	for len(b) > 0 {
		f, n, err := consumeField(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch f.num {
		case socketAddressField:
			if e.address, err = f.str("address"); err != nil {
				return err
			}
		case socketResolverField:
			if e.resolver, err = f.str("resolver_name"); err != nil {
				return err
			}
		case socketPortField:
			if err := f.want(protowire.VarintType); err != nil {
				return err
			}
			e.portKind, e.port = socketPortField, uint32(f.varint) // as proto.Unmarshal reads a uint32
		case socketNamedField:
			if _, err := f.str("named_port"); err != nil {
				return err
			}
			e.portKind = socketNamedField
		}
	}
	return nil
}

var (
	errNotSocket = errors.New("endpoint.address: must be a socket address")
	errNoPort    = errors.New("endpoint.address.socket_address: port_value must be a port number (named ports are not supported)")
)

// add checks e as resolver.Client would and, if it is healthy, adds its
// address to fp.
func (e *lbEndpointWire) add(fp *fingerprint, buf []byte) ([]byte, error) {
	switch {
	case e.hostID != lbeEndpointField:
		return buf, errors.New("endpoint: missing (endpoint_name is not supported by meshlet)")
	case e.addrKind != addressSocketField:
		return buf, errNotSocket
	case len(e.address) == 0:
		return buf, errors.New("endpoint.address.socket_address.address: empty")
	case len(e.resolver) > 0:
		return buf, errors.New("endpoint.address.socket_address.resolver_name is not supported by meshlet")
	case e.portKind != socketPortField || e.port == 0 || e.port > 65535:
		return buf, errNoPort
	}
	switch corev3.HealthStatus(e.health) {
	case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
	case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT, corev3.HealthStatus_DEGRADED:
		return buf, nil
	default:
		return buf, fmt.Errorf("health_status: unknown value %d", e.health)
	}
	buf = buf[:0]
	if containsColon(e.address) { // as net.JoinHostPort
		buf = append(append(append(buf, '['), e.address...), ']')
	} else {
		buf = append(buf, e.address...)
	}
	buf = append(buf, ':')
	buf = strconv.AppendUint(buf, uint64(e.port), 10)
	fp.addBytes(buf)
	return buf, nil
}

func containsColon(b []byte) bool {
	for _, c := range b {
		if c == ':' {
			return true
		}
	}
	return false
}

// clusterEDSName reads the serialized Cluster b and returns its name and
// the name of the ClusterLoadAssignment it takes its endpoints from
// (eds_cluster_config.service_name, or else its name).
func clusterEDSName(b []byte) (name, eds []byte, err error) {
	for len(b) > 0 {
		f, n, err := consumeField(b)
		if err != nil {
			return nil, nil, err
		}
		b = b[n:]
		switch f.num {
		case clusterNameField:
			if name, err = f.str("name"); err != nil {
				return nil, nil, err
			}
		case clusterEDSConfigField:
			if err := f.want(protowire.BytesType); err != nil {
				return nil, nil, err
			}
			for c := f.bytes; len(c) > 0; {
				g, n, err := consumeField(c)
				if err != nil {
					return nil, nil, fmt.Errorf("eds_cluster_config: %w", err)
				}
				c = c[n:]
				if g.num == edsServiceNameField {
					if eds, err = g.str("service_name"); err != nil {
						return nil, nil, fmt.Errorf("eds_cluster_config: %w", err)
					}
				}
			}
		}
	}
	if len(eds) == 0 {
		eds = name
	}
	return name, eds, nil
}
