package resolver

import (
	"errors"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

// Decode validates and converts one resource as the client does when it
// arrives, for tests.
func Decode(m proto.Message) (any, error) {
	a, err := anypb.New(m)
	if err != nil {
		return nil, err
	}
	for _, rt := range resourceTypes {
		if rt.URL == a.GetTypeUrl() {
			_, v, err := rt.Decode(a)
			return v, err
		}
	}
	return nil, fmt.Errorf("not a resource type: %s", a.GetTypeUrl())
}

// ValidateResponse handles a serialized DiscoveryResponse as the client
// does when one arrives, and returns the NACK reason, nil for an ACK.
func ValidateResponse(b []byte) error {
	resp := &discoveryv3.DiscoveryResponse{}
	if err := proto.Unmarshal(b, resp); err != nil {
		return err
	}
	for _, rt := range resourceTypes {
		if rt.URL == resp.GetTypeUrl() {
			d := xdsclient.DecodeResponse(rt, resp)
			if d.Err == nil {
				for _, r := range d.Resources {
					if r.Err != nil || r.Value == nil {
						return errors.New("resource without value in an ACKed response")
					}
				}
			}
			return d.Err
		}
	}
	return fmt.Errorf("not a resource type: %q", resp.GetTypeUrl())
}
