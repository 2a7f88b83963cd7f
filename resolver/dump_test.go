package resolver_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// Dump shows each subscribed resource with its status and config in
// force; a rejected update shows as NACKED with its reason and version
// while the last good config stays, and Stats count it.
func TestDumpAndStats(t *testing.T) {
	srv := startRawServer(t)
	srv.setClusters(t, "1", plainCluster("c1"))
	c := newClient(t, nodeID(t), []string{srv.addr}, resolver.WithBackoff(50*time.Millisecond, time.Second), resolver.WithResourceNotFoundTimeout(300*time.Millisecond))
	w := watch(t, c.WatchCluster, "c1")
	w.value(t, 5*time.Second)
	watch(t, c.WatchCluster, "missing") // never sent: absent once the timer fires

	find := func(name string) resolver.Resource {
		for _, r := range c.Dump() {
			if r.Name == name {
				return r
			}
		}
		t.Fatalf("no %q in the dump: %+v", name, c.Dump())
		return resolver.Resource{}
	}
	if r := find("missing"); r.Status != resolver.StatusRequested && r.Status != resolver.StatusDoesNotExist {
		t.Errorf("missing = %+v, want REQUESTED until its timer fires", r)
	}
	meshtest.WaitUntil(t, 5*time.Second, "the missing cluster to be reported absent", func() bool {
		return find("missing").Status == resolver.StatusDoesNotExist
	})
	r := find("c1")
	if r.Status != resolver.StatusACKed || r.Version != "1" || r.Type != "Cluster" || r.Watchers != 1 || r.UpdatedAt.IsZero() {
		t.Errorf("c1 = %+v, want ACKED at version 1 with one watcher", r)
	}
	var cfg map[string]any
	if err := json.Unmarshal(r.Config, &cfg); err != nil || cfg["name"] != "c1" || cfg["@type"] != r.TypeURL {
		t.Errorf("c1's config %s: %v; want protojson of the Cluster with its @type", r.Config, err)
	}

	bad := plainCluster("c1")
	bad.LbPolicy = clusterv3.Cluster_LbPolicy(42)
	srv.setClusters(t, "2", bad)
	meshtest.WaitUntil(t, 5*time.Second, "c1 to show NACKED", func() bool { return find("c1").Status == resolver.StatusNACKed })
	r = find("c1")
	if r.ErrorVersion != "2" || !strings.Contains(r.Error, "lb_policy: unknown value 42") || r.Version != "1" || !strings.Contains(string(r.Config), `"c1"`) {
		t.Errorf("c1 = %+v, want NACKED at version 2 with the reason, and version 1 still in force", r)
	}
	var cds resolver.TypeStats
	for _, s := range c.Stats() {
		if s.Type == "Cluster" {
			cds = s
		}
	}
	if cds.Version != "1" || cds.ACKs < 1 || cds.NACKs < 1 || cds.Responses != cds.ACKs+cds.NACKs || cds.Rejected < 1 || cds.Subscribed != 2 {
		t.Errorf("Cluster stats = %+v, want version 1, ACKs and NACKs counted, 2 subscribed", cds)
	}
	if n := cds.LastNACK; n == nil || n.Version != "2" || !strings.Contains(n.Error, "unknown value 42") {
		t.Errorf("LastNACK = %+v, want version 2 and its reason", n)
	}
	if got := c.Counts(); len(got) != 4 || got[2].Type != "Cluster" || got[2].NACKs < cds.NACKs {
		t.Errorf("Counts = %+v, want the 4 types, Cluster's with the NACKs", got)
	}
	if up, down := c.Connects(); up != 1 || down != 0 {
		t.Errorf("Connects = %d, %d; want 1, 0", up, down)
	}

	// Fixed: ACKED again, the error gone, the NACK still in the stats.
	srv.setClusters(t, "3", plainCluster("c1"))
	meshtest.WaitUntil(t, 5*time.Second, "c1 to be ACKED again", func() bool {
		r := find("c1")
		return r.Status == resolver.StatusACKed && r.Version == "3" && r.Error == ""
	})
}
