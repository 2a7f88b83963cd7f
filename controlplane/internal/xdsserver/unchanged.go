package xdsserver

import (
	"hash/maphash"
	"slices"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// EDS is not a full-state type in state-of-the-world xDS: a response may
// leave out ClusterLoadAssignments, and the client keeps those it has
// (gRPC-Go, Envoy and meshlet's resolver do). go-control-plane's cache
// sends every one a stream asks for whenever the EDS version changes; a
// stream is sent only those whose bytes differ from what it ACKed. A
// change of one service's endpoints then costs each client one
// assignment, not every service's.

// edsState is what one stream holds of the ClusterLoadAssignments.
type edsState struct {
	acked   map[string]uint64 // name -> hash of the bytes the client ACKed
	pending map[string]uint64 // of the last response, until it is ACKed
	nonce   string            // of the last response
	// outstanding: the last response is not answered yet (ACK or NACK),
	// for pace.go.
	outstanding bool
}

var edsSeed = maphash.MakeSeed()

// filterLocked leaves out of resp the assignments the stream ACKed with
// the same bytes, and remembers what resp holds until it is ACKed.
func (e *edsState) filterLocked(resp *discovery.DiscoveryResponse) {
	if e.acked == nil {
		e.acked = map[string]uint64{}
	}
	e.pending = make(map[string]uint64, len(resp.GetResources()))
	e.nonce = resp.GetNonce()
	e.outstanding = true
	kept := make([]*anypb.Any, 0, len(resp.GetResources()))
	for _, a := range resp.GetResources() {
		name, ok := resourceName(a.GetValue())
		if !ok {
			kept = append(kept, a)
			continue
		}
		h := maphash.Bytes(edsSeed, a.GetValue())
		if old, ok := e.acked[name]; ok && old == h {
			continue
		}
		e.pending[name] = h
		kept = append(kept, a)
	}
	resp.Resources = kept
}

// ackedLocked records the ACK of the response with nonce. A NACK is not
// recorded: the client kept what it had.
func (e *edsState) ackedLocked(nonce string) {
	if nonce == "" || nonce != e.nonce {
		return
	}
	e.outstanding = false
	for name, h := range e.pending {
		e.acked[name] = h
	}
	e.pending = nil
}

// nackedLocked records the NACK of the response with nonce: answered,
// but what it held is not the client's.
func (e *edsState) nackedLocked(nonce string) {
	if nonce != "" && nonce == e.nonce {
		e.outstanding = false
	}
}

// requestedLocked forgets the assignments a request no longer names: a
// client drops what it unsubscribes from, and must be sent it again if
// it asks again.
func (e *edsState) requestedLocked(names []string) {
	for name := range e.acked {
		if !slices.Contains(names, name) {
			delete(e.acked, name)
		}
	}
}

// resourceName reads field 1, the name of every resource type served
// (newWireResource puts it first), from a marshaled resource.
func resourceName(b []byte) (string, bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", false
			}
			return string(v), true
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
	}
	return "", true // no name: the empty name
}
