package translate

import (
	"net"
	"strconv"

	security "istio.io/api/security/v1beta1"

	"github.com/meshlet/meshlet/internal/wire"
)

// mtlsMode is the effective PeerAuthentication mode of a workload port:
// STRICT, PERMISSIVE or DISABLE, never UNSET.
type mtlsMode = security.PeerAuthentication_MutualTLS_Mode

const (
	modeUnset      = security.PeerAuthentication_MutualTLS_UNSET
	modeDisable    = security.PeerAuthentication_MutualTLS_DISABLE
	modePermissive = security.PeerAuthentication_MutualTLS_PERMISSIVE
	modeStrict     = security.PeerAuthentication_MutualTLS_STRICT
)

// workload returns who listens at addr ("ip:port"): its Workloads entry,
// or a workload of the default namespace with no labels.
func (t *translator) workload(addr string) Workload {
	w, ok := t.workloads[addr]
	if !ok || w.Namespace == "" {
		w.Namespace = wire.DefaultNamespace
	}
	return w
}

// endpointWorkload is the workload behind a registry instance: what it
// registered, which the control plane checked against its certificate, so
// that callers and the server's own Listener agree on its mode. A
// Workloads entry for the same address (a server's Listener built from
// Input.Workloads) fills what the instance left empty.
func (t *translator) endpointWorkload(e endpointInfo) Workload {
	w := Workload{Namespace: e.namespace, ServiceAccount: e.serviceAccount, Labels: e.labels}
	o := t.workloads[net.JoinHostPort(e.address, strconv.FormatUint(uint64(e.port), 10))]
	if w.Namespace == "" {
		w.Namespace = o.Namespace
	}
	if w.ServiceAccount == "" {
		w.ServiceAccount = o.ServiceAccount
	}
	if w.Labels == nil {
		w.Labels = o.Labels
	}
	return w
}

// peerAuthMode returns the mTLS mode of workload w on port, as Istio
// resolves it: the port-level mode of the PeerAuthentication that selects
// the workload, then that policy's own mode, then the namespace-wide
// policy, then the mesh-wide one in the root namespace, then PERMISSIVE.
// UNSET at any level inherits from the next.
func (t *translator) peerAuthMode(w Workload, port uint32) mtlsMode {
	if pa := t.workloadPeerAuth(w); pa != nil {
		if m := pa.GetPortLevelMtls()[port].GetMode(); m != modeUnset {
			return m
		}
		if m := pa.GetMtls().GetMode(); m != modeUnset {
			return m
		}
	}
	if pa := t.namespacePeerAuth(w.Namespace); pa != nil {
		if m := pa.GetMtls().GetMode(); m != modeUnset {
			return m
		}
	}
	if pa := t.namespacePeerAuth(t.rootNamespace); pa != nil {
		if m := pa.GetMtls().GetMode(); m != modeUnset {
			return m
		}
	}
	return modePermissive
}

// namespacePeerAuth returns the PeerAuthentication without a selector in
// ns (validation allows one), or nil.
func (t *translator) namespacePeerAuth(ns string) *security.PeerAuthentication {
	for _, pa := range t.cfg.PeerAuthentications {
		if pa.Spec != nil && pa.Namespace == ns && len(pa.Spec.GetSelector().GetMatchLabels()) == 0 {
			return pa.Spec
		}
	}
	return nil
}

// workloadPeerAuth returns the PeerAuthentication of w's namespace whose
// selector matches w's labels, the first by name if several do (Istio
// takes the oldest), or nil.
func (t *translator) workloadPeerAuth(w Workload) *security.PeerAuthentication {
	for _, pa := range t.cfg.PeerAuthentications {
		sel := pa.Spec.GetSelector().GetMatchLabels()
		if pa.Spec != nil && pa.Namespace == w.Namespace && len(sel) > 0 && labelsMatch(sel, w.Labels) {
			return pa.Spec
		}
	}
	return nil
}

// spiffeID is the SPIFFE ID of a service account.
func (t *translator) spiffeID(ns, sa string) string {
	return "spiffe://" + t.trustDomain + "/ns/" + ns + "/sa/" + sa
}
