//go:build linux

package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestWireFieldNumbers checks the field numbers the light client reads
// against the messages' descriptors.
func TestWireFieldNumbers(t *testing.T) {
	for _, c := range []struct {
		msg   proto.Message
		field protoreflect.Name
		num   protowire.Number
	}{
		{&endpointv3.ClusterLoadAssignment{}, "cluster_name", claClusterNameField},
		{&endpointv3.ClusterLoadAssignment{}, "endpoints", claEndpointsField},
		{&endpointv3.LocalityLbEndpoints{}, "lb_endpoints", lleLbEndpointsField},
		{&endpointv3.LbEndpoint{}, "endpoint", lbeEndpointField},
		{&endpointv3.LbEndpoint{}, "health_status", lbeHealthStatusField},
		{&endpointv3.LbEndpoint{}, "endpoint_name", lbeEndpointNameField},
		{&endpointv3.Endpoint{}, "address", endpointAddressField},
		{&corev3.Address{}, "socket_address", addressSocketField},
		{&corev3.Address{}, "pipe", addressPipeField},
		{&corev3.Address{}, "envoy_internal_address", addressInternalField},
		{&corev3.SocketAddress{}, "address", socketAddressField},
		{&corev3.SocketAddress{}, "port_value", socketPortField},
		{&corev3.SocketAddress{}, "named_port", socketNamedField},
		{&corev3.SocketAddress{}, "resolver_name", socketResolverField},
		{&clusterv3.Cluster{}, "name", clusterNameField},
		{&clusterv3.Cluster{}, "eds_cluster_config", clusterEDSConfigField},
		{&clusterv3.Cluster_EdsClusterConfig{}, "service_name", edsServiceNameField},
	} {
		d := c.msg.ProtoReflect().Descriptor()
		f := d.Fields().ByName(c.field)
		if f == nil {
			t.Errorf("%s has no field %s", d.FullName(), c.field)
			continue
		}
		if f.Number() != c.num {
			t.Errorf("%s.%s is field %d, the light client reads %d", d.FullName(), c.field, f.Number(), c.num)
		}
	}
}

// unmarshalledFingerprint is the full path the wire walk replaces:
// proto.Unmarshal, then the addresses of the endpoints whose health is
// UNKNOWN or HEALTHY, written by net.JoinHostPort as resolver.Client
// writes them.
func unmarshalledFingerprint(b []byte) (string, fingerprint, error) {
	var cla endpointv3.ClusterLoadAssignment
	if err := proto.Unmarshal(b, &cla); err != nil {
		return "", fingerprint{}, err
	}
	var fp fingerprint
	for _, l := range cla.GetEndpoints() {
		for _, lbe := range l.GetLbEndpoints() {
			switch lbe.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
			default:
				continue
			}
			sa := lbe.GetEndpoint().GetAddress().GetSocketAddress()
			fp.add(net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10)))
		}
	}
	return cla.GetClusterName(), fp, nil
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// randomCLA is a ClusterLoadAssignment as a control plane may send one,
// with every field the light client skips filled in now and then.
func randomCLA(rng *rand.Rand, name string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if rng.IntN(3) == 0 {
		cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{
			OverprovisioningFactor: wrapperspb.UInt32(uint32(100 + rng.IntN(100))),
			EndpointStaleAfter:     durationpb.New(30e9),
		}
	}
	if rng.IntN(5) == 0 {
		cla.NamedEndpoints = map[string]*endpointv3.Endpoint{"spare": {Address: socketAddress("10.9.9.9", 1)}}
	}
	for l := range rng.IntN(5) {
		lle := &endpointv3.LocalityLbEndpoints{
			Locality: &corev3.Locality{Region: "r" + strconv.Itoa(l%2), Zone: "z" + strconv.Itoa(l), SubZone: "s"},
			Priority: uint32(l % 2),
		}
		if rng.IntN(2) == 0 {
			lle.LoadBalancingWeight = wrapperspb.UInt32(uint32(1 + rng.IntN(100)))
		}
		if rng.IntN(4) == 0 {
			lle.Proximity = wrapperspb.UInt32(3)
			lle.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: map[string]*structpb.Value{"network": structpb.NewStringValue("net-1")}}}}
		}
		for range rng.IntN(9) {
			var ip string
			switch rng.IntN(3) {
			case 0:
				ip = fmt.Sprintf("fd00::%x", rng.Uint32N(1<<16))
			case 1:
				ip = fmt.Sprintf("2001:db8:%x::%x:%x", rng.Uint32N(1<<16), rng.Uint32N(1<<16), rng.Uint32N(1<<16))
			default:
				ip = fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256))
			}
			e := &endpointv3.Endpoint{Address: socketAddress(ip, 1+rng.Uint32N(65535))}
			if rng.IntN(2) == 0 {
				e.Hostname = fmt.Sprintf("pod-%d.bench.default.svc.cluster.local", rng.IntN(1000))
			}
			if rng.IntN(4) == 0 {
				e.HealthCheckConfig = &endpointv3.Endpoint_HealthCheckConfig{PortValue: 15021, Hostname: "hc"}
				e.AdditionalAddresses = []*endpointv3.Endpoint_AdditionalAddress{{Address: socketAddress("10.8.8.8", 8)}}
			}
			lbe := &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: e},
				HealthStatus:   corev3.HealthStatus(rng.IntN(6)),
			}
			if rng.IntN(2) == 0 {
				lbe.LoadBalancingWeight = wrapperspb.UInt32(uint32(1 + rng.IntN(1000)))
			}
			if rng.IntN(3) == 0 {
				lbe.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
					"envoy.transport_socket_match": {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}},
					"istio":                        {Fields: map[string]*structpb.Value{"workload": structpb.NewStringValue("w;default;bench;v1;k8s")}},
				}}
			}
			lle.LbEndpoints = append(lle.LbEndpoints, lbe)
		}
		cla.Endpoints = append(cla.Endpoints, lle)
	}
	return cla
}

// TestCLAFingerprintIsUnmarshals checks that the wire walk gives the name
// and fingerprint that the full unmarshal gives, for a hand-written
// assignment with every kind of field and for 500 random ones.
func TestCLAFingerprintIsUnmarshals(t *testing.T) {
	lbe := func(ip string, port uint32, h corev3.HealthStatus) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HealthStatus: h, HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip, port)}}}
	}
	withAll := lbe("10.0.0.9", 9080, corev3.HealthStatus_HEALTHY)
	withAll.LoadBalancingWeight = wrapperspb.UInt32(7)
	withAll.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: map[string]*structpb.Value{"w": structpb.NewStringValue("x")}}}}
	withAll.GetEndpoint().Hostname = "reviews-v1.default.svc.cluster.local"
	withAll.GetEndpoint().HealthCheckConfig = &endpointv3.Endpoint_HealthCheckConfig{PortValue: 15021}
	hand := &endpointv3.ClusterLoadAssignment{
		ClusterName: "outbound|9080||reviews.default.svc.cluster.local",
		Policy:      &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(140), DropOverloads: []*endpointv3.ClusterLoadAssignment_Policy_DropOverload{{Category: "c", DropPercentage: &typev3.FractionalPercent{Numerator: 1}}}},
		Endpoints: []*endpointv3.LocalityLbEndpoints{
			{Locality: &corev3.Locality{Region: "eu", Zone: "a"}, LoadBalancingWeight: wrapperspb.UInt32(3), LbEndpoints: []*endpointv3.LbEndpoint{
				lbe("10.0.0.1", 9080, corev3.HealthStatus_UNKNOWN),
				lbe("10.0.0.2", 9080, corev3.HealthStatus_UNHEALTHY),
				lbe("fd00::1", 80, corev3.HealthStatus_HEALTHY),
				withAll,
			}},
			{Locality: &corev3.Locality{Region: "eu", Zone: "b"}, Priority: 1, LbEndpoints: []*endpointv3.LbEndpoint{
				lbe("10.0.0.3", 443, corev3.HealthStatus_DRAINING),
				lbe("10.0.0.4", 443, corev3.HealthStatus_TIMEOUT),
				lbe("10.0.0.5", 443, corev3.HealthStatus_DEGRADED),
				lbe("2001:db8::5", 65535, corev3.HealthStatus_HEALTHY),
			}},
			{Locality: &corev3.Locality{Region: "us"}}, // no endpoints
		},
	}
	check := func(t *testing.T, cla *endpointv3.ClusterLoadAssignment) {
		t.Helper()
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cla)
		if err != nil {
			t.Fatal(err)
		}
		wantName, want, err := unmarshalledFingerprint(b)
		if err != nil {
			t.Fatal(err)
		}
		name, got, _, err := claFingerprint(b, nil)
		if err != nil {
			t.Fatalf("%s: %v", wantName, err)
		}
		if string(name) != wantName || got != want {
			t.Errorf("wire walk: %q %+v; full unmarshal: %q %+v", name, got, wantName, want)
		}
	}
	check(t, hand)
	if _, fp, _ := unmarshalledFingerprint(mustMarshal(t, hand)); fp.n != 4 {
		t.Fatalf("the hand-written assignment has %d healthy endpoints, want 4", fp.n)
	}
	rng := rand.New(rand.NewPCG(12, 0))
	for i := range 500 {
		check(t, randomCLA(rng, fmt.Sprintf("bench-%d", i)))
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCLAFingerprintMergesAsUnmarshal checks the encodings proto.Unmarshal
// merges: a message field given twice (two encodings of an LbEndpoint
// one after the other are one LbEndpoint), the last scalar winning, and
// a oneof holding its last member.
func TestCLAFingerprintMergesAsUnmarshal(t *testing.T) {
	lbeBytes := func(m *endpointv3.LbEndpoint) []byte { return mustMarshal(t, m) }
	ep := func(a *corev3.Address) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: a}}}
	}
	hostOnly := ep(&corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1"}}})
	portOnly := ep(&corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}})
	named := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_EndpointName{EndpointName: "e"}}
	pipe := ep(&corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/p"}}})
	unhealthy := &endpointv3.LbEndpoint{HealthStatus: corev3.HealthStatus_UNHEALTHY}
	healthy := &endpointv3.LbEndpoint{HealthStatus: corev3.HealthStatus_HEALTHY}
	for _, c := range []struct {
		name    string
		parts   []*endpointv3.LbEndpoint
		wantErr string // the host the oneof dropped is gone: an error, not the fingerprint of ":80"
	}{
		{"host then port", []*endpointv3.LbEndpoint{hostOnly, portOnly}, ""},
		{"port then host", []*endpointv3.LbEndpoint{portOnly, hostOnly}, ""},
		{"unhealthy then healthy", []*endpointv3.LbEndpoint{unhealthy, hostOnly, portOnly, healthy}, ""},
		{"healthy then unhealthy", []*endpointv3.LbEndpoint{healthy, hostOnly, portOnly, unhealthy}, ""},
		{"endpoint_name then endpoint", []*endpointv3.LbEndpoint{named, hostOnly, portOnly}, ""},
		{"pipe then socket address", []*endpointv3.LbEndpoint{pipe, hostOnly, portOnly}, ""},
		{"address given twice", []*endpointv3.LbEndpoint{ep(socketAddress("10.0.0.7", 7)), hostOnly, portOnly}, ""},
		{"endpoint, endpoint_name, endpoint", []*endpointv3.LbEndpoint{hostOnly, named, portOnly}, "address: empty"},
		{"socket address, pipe, socket address", []*endpointv3.LbEndpoint{hostOnly, pipe, portOnly}, "address: empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var lbe []byte
			for _, p := range c.parts {
				lbe = append(lbe, lbeBytes(p)...)
			}
			lle := protowire.AppendBytes(protowire.AppendTag(nil, lleLbEndpointsField, protowire.BytesType), lbe)
			b := protowire.AppendBytes(protowire.AppendTag(nil, claEndpointsField, protowire.BytesType), lle)
			_, want, err := unmarshalledFingerprint(b)
			if err != nil {
				t.Fatal(err)
			}
			_, got, _, err := claFingerprint(b, nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("wire walk %+v, error %v; want an error with %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("wire walk %+v, full unmarshal %+v", got, want)
			}
		})
	}
}

// TestCLAFingerprintRefuses checks that an assignment with an endpoint
// resolver.Client would refuse, or bytes that are not a
// ClusterLoadAssignment, is an error that says where, not a fingerprint.
func TestCLAFingerprintRefuses(t *testing.T) {
	lbe := func(e *endpointv3.Endpoint, h corev3.HealthStatus) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HealthStatus: h, HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: e}}
	}
	sock := func(sa *corev3.SocketAddress) *endpointv3.Endpoint {
		return &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: sa}}}
	}
	claOf := func(bad *endpointv3.LbEndpoint) []byte {
		return mustMarshal(t, &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
			{LbEndpoints: []*endpointv3.LbEndpoint{lbe(sock(&corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}), 0)}},
			{LbEndpoints: []*endpointv3.LbEndpoint{lbe(sock(&corev3.SocketAddress{Address: "10.0.0.2", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 1}}), 0), bad}},
		}})
	}
	good := claOf(lbe(sock(&corev3.SocketAddress{Address: "10.0.0.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 3}}), 0))
	// The health_status of the second locality's second endpoint, as a
	// fixed32 instead of a varint.
	wrongType := claOf(lbe(sock(&corev3.SocketAddress{Address: "10.0.0.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 3}}), 0))
	{
		lle := protowire.AppendTag(nil, lleLbEndpointsField, protowire.BytesType)
		lle = protowire.AppendBytes(lle, protowire.AppendFixed32(protowire.AppendTag(nil, lbeHealthStatusField, protowire.Fixed32Type), 1))
		wrongType = append(wrongType, protowire.AppendBytes(protowire.AppendTag(nil, claEndpointsField, protowire.BytesType), lle)...)
	}
	// proto.Marshal refuses to write a string that is not UTF-8.
	notUTF8 := claOf(lbe(sock(&corev3.SocketAddress{Address: "10.0.0.~", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 3}}), 0))
	notUTF8[bytes.LastIndexByte(notUTF8, '~')] = 0xff
	for _, c := range []struct {
		name string
		b    []byte
		want string // in the error
	}{
		{"endpoint_name", claOf(&endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_EndpointName{EndpointName: "e"}}), "endpoints[1].lb_endpoints[1]: endpoint: missing"},
		{"no endpoint", claOf(&endpointv3.LbEndpoint{}), "endpoints[1].lb_endpoints[1]: endpoint: missing"},
		{"no address", claOf(lbe(&endpointv3.Endpoint{Hostname: "h"}, 0)), "must be a socket address"},
		{"pipe", claOf(lbe(&endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/p"}}}}, 0)), "must be a socket address"},
		{"empty host", claOf(lbe(sock(&corev3.SocketAddress{PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 3}}), 0)), "address: empty"},
		{"named port", claOf(lbe(sock(&corev3.SocketAddress{Address: "10.0.0.3", PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "http"}}), 0)), "port_value must be a port number"},
		{"port 0", claOf(lbe(sock(&corev3.SocketAddress{Address: "10.0.0.3"}), 0)), "port_value must be a port number"},
		{"port 65536", claOf(lbe(sock(&corev3.SocketAddress{Address: "10.0.0.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 65536}}), 0)), "port_value must be a port number"},
		{"resolver_name", claOf(lbe(sock(&corev3.SocketAddress{Address: "h", ResolverName: "dns", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 3}}), 0)), "resolver_name is not supported"},
		{"unhealthy without an address", claOf(lbe(&endpointv3.Endpoint{}, corev3.HealthStatus_UNHEALTHY)), "must be a socket address"},
		{"unknown health", claOf(lbe(sock(&corev3.SocketAddress{Address: "10.0.0.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 3}}), 9)), "health_status: unknown value 9"},
		{"address not UTF-8", notUTF8, "address: not UTF-8"},
		{"health_status of the wrong wire type", wrongType, "endpoints[2].lb_endpoints[0]: field 2: wire type 5, want 0"},
		{"cut short", good[:len(good)-1], "field 2: unexpected EOF"},
		{"not a message", []byte("not a protobuf message"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, fp, _, err := claFingerprint(c.b, nil)
			if err == nil {
				t.Fatalf("fingerprint %+v, want an error", fp)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
	if _, _, _, err := claFingerprint(good, nil); err != nil {
		t.Errorf("the assignment the cases break: %v", err)
	}
}

// TestCLAFingerprintDamaged checks random assignments with one byte
// changed, and cut short at every length: whenever the wire walk gives a
// fingerprint and proto.Unmarshal accepts the bytes, the two agree (the
// walk may refuse more: it reads no field of the wrong wire type and no
// endpoint resolver.Client would refuse), and a cut inside a field is an
// error.
func TestCLAFingerprintDamaged(t *testing.T) {
	rng := rand.New(rand.NewPCG(34, 0))
	var agreed, refused int
	compare := func(b []byte, what string) {
		t.Helper()
		name, got, _, err := claFingerprint(b, nil)
		wantName, want, uerr := unmarshalledFingerprint(b)
		switch {
		case err != nil:
			refused++
		case uerr == nil:
			agreed++
			if string(name) != wantName || got != want {
				t.Fatalf("%s: wire walk %q %+v, full unmarshal %q %+v", what, name, got, wantName, want)
			}
		}
	}
	for i := range 300 {
		b := mustMarshal(t, randomCLA(rng, "c"))
		if len(b) == 0 {
			continue
		}
		for range 10 {
			d := append([]byte(nil), b...)
			d[rng.IntN(len(d))] = byte(rng.IntN(256))
			compare(d, fmt.Sprintf("assignment %d changed", i))
		}
		if i%30 == 0 {
			// Every cut: at a top-level field's end both read the
			// fields before it; inside one both fail.
			for n := range len(b) {
				_, _, _, err := claFingerprint(b[:n], nil)
				_, _, uerr := unmarshalledFingerprint(b[:n])
				if (err == nil) != (uerr == nil) {
					t.Fatalf("assignment %d cut to %d of %d bytes: wire walk error %v, full unmarshal error %v", i, n, len(b), err, uerr)
				}
				compare(b[:n], fmt.Sprintf("assignment %d cut to %d bytes", i, n))
			}
		}
	}
	t.Logf("%d damaged assignments read alike by both, %d refused by the wire walk", agreed, refused)
	if agreed < 100 || refused < 100 {
		t.Errorf("%d read alike and %d refused: want at least 100 of each for the test to mean something", agreed, refused)
	}
}

// TestClusterEDSName checks the name and endpoints' name the light client
// reads from a Cluster against the unmarshalled Cluster.
func TestClusterEDSName(t *testing.T) {
	full := &clusterv3.Cluster{
		Name:                 "outbound|9080||bench-0.default.svc.cluster.local",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
			ServiceName: "bench-0-eds",
		},
		ConnectTimeout: durationpb.New(1e9),
		LbPolicy:       clusterv3.Cluster_LEAST_REQUEST,
	}
	noService := proto.Clone(full).(*clusterv3.Cluster)
	noService.EdsClusterConfig.ServiceName = ""
	noEDS := &clusterv3.Cluster{Name: "plain"}
	for _, cl := range []*clusterv3.Cluster{full, noService, noEDS} {
		b := mustMarshal(t, cl)
		name, eds, err := clusterEDSName(b)
		if err != nil {
			t.Fatalf("%s: %v", cl.GetName(), err)
		}
		want := cl.GetEdsClusterConfig().GetServiceName()
		if want == "" {
			want = cl.GetName()
		}
		if string(name) != cl.GetName() || string(eds) != want {
			t.Errorf("read %q, %q; want %q, %q", name, eds, cl.GetName(), want)
		}
		for n := range len(b) {
			_, _, err := clusterEDSName(b[:n])
			uerr := proto.Unmarshal(b[:n], &clusterv3.Cluster{})
			if (err == nil) != (uerr == nil) {
				t.Fatalf("%s cut to %d bytes: wire walk error %v, full unmarshal error %v", cl.GetName(), n, err, uerr)
			}
		}
	}
	bad := protowire.AppendVarint(protowire.AppendTag(nil, clusterNameField, protowire.VarintType), 1)
	if _, _, err := clusterEDSName(bad); err == nil {
		t.Error("a Cluster whose name is a varint: no error")
	}
}

// benchCLA is an assignment as bench/scale's control plane sends one at
// N=1,000 and S=10: one locality of 100 healthy IPv4 endpoints with
// metadata.
func benchCLA(b *testing.B) []byte {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||bench-0.default.svc.cluster.local"}
	lle := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(100)}
	for i := range 100 {
		lle.LbEndpoints = append(lle.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(fmt.Sprintf("10.1.%d.%d", i/256, i%256), 9080)}},
			HealthStatus:        corev3.HealthStatus_HEALTHY,
			LoadBalancingWeight: wrapperspb.UInt32(1),
			Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"istio": {Fields: map[string]*structpb.Value{"workload": structpb.NewStringValue(fmt.Sprintf("bench-%d;default;bench-0;;", i))}},
			}},
		})
	}
	cla.Endpoints = append(cla.Endpoints, lle)
	out, err := proto.Marshal(cla)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkCLAFingerprint compares the wire walk with the full unmarshal
// it replaced, on one assignment of 100 endpoints.
func BenchmarkCLAFingerprint(b *testing.B) {
	cla := benchCLA(b)
	b.Run("wire", func(b *testing.B) {
		var buf []byte
		b.SetBytes(int64(len(cla)))
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if _, _, buf, err = claFingerprint(cla, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(cla)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := unmarshalledFingerprint(cla); err != nil {
				b.Fatal(err)
			}
		}
	})
}
