package telemetry

import (
	"crypto/x509"
	"net/url"
	"strings"
)

// Workload is the identity of one side of a request, as Istio's labels
// name it.
type Workload struct {
	// Name is the workload's name: in meshlet, its service's.
	Name      string
	Namespace string
	// App and Version are its app and version labels.
	App     string
	Version string
	// Principal is its SPIFFE ID, when known.
	Principal string
}

// HeaderPeer is the request header (gRPC metadata) in which a client
// tells the server its workload, as Istio's metadata exchange does: the
// server reports it in source_* labels. The principal is never taken
// from it: only from the client's certificate.
const HeaderPeer = "x-meshlet-peer"

// encode writes w for HeaderPeer: its name, namespace, app and version,
// escaped and joined by ';'.
func (w Workload) encode() string {
	return url.QueryEscape(w.Name) + ";" + url.QueryEscape(w.Namespace) + ";" + url.QueryEscape(w.App) + ";" + url.QueryEscape(w.Version)
}

// decodePeer reads HeaderPeer's value; a malformed one gives nothing.
func decodePeer(v string) Workload {
	// Four fields, cut in place: this runs on every request served.
	var parts [4]string
	rest := v
	for i := range parts {
		var ok bool
		if i == len(parts)-1 {
			parts[i], ok = rest, !strings.Contains(rest, ";")
		} else {
			parts[i], rest, ok = strings.Cut(rest, ";")
		}
		if !ok {
			return Workload{}
		}
		if strings.ContainsAny(parts[i], "%+") {
			if u, err := url.QueryUnescape(parts[i]); err == nil {
				parts[i] = u
			}
		}
	}
	return Workload{Name: parts[0], Namespace: parts[1], App: parts[2], Version: parts[3]}
}

// principalOf returns the SPIFFE ID of a certificate chain's leaf and the
// namespace in it (spiffe://td/ns/<ns>/sa/<sa>).
func principalOf(certs []*x509.Certificate) (id, ns string) {
	if len(certs) == 0 {
		return "", ""
	}
	for _, u := range certs[0].URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id = u.String()
		if rest, ok := strings.CutPrefix(u.Path, "/ns/"); ok {
			ns, _, _ = strings.Cut(rest, "/")
		}
		return id, ns
	}
	return "", ""
}

// splitServiceHost returns the name and namespace of a service host
// (name.namespace.svc.cluster.local[:port]).
func splitServiceHost(host string) (name, ns string) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	name, rest, _ := strings.Cut(host, ".")
	ns, _, _ = strings.Cut(rest, ".")
	return name, ns
}
