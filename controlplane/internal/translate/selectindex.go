package translate

import (
	"slices"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
)

// selectIndex finds the WorkloadEntries and registry instances that a
// ServiceEntry's workloadSelector may select without looking at every one
// for every ServiceEntry: at 100 services and 10,000 endpoints that scan
// was most of a build. Candidates keep the order of the config and of the
// sorted instances; the caller still checks each one whole.
type selectIndex struct {
	wles      map[string][]*model.WorkloadEntry           // by namespace
	wleLabels map[string]map[label][]*model.WorkloadEntry // by namespace, then by each label
	insts     []registry.Instance
	instNS    map[string][]int           // by namespace: indexes into insts
	instLabel map[string]map[label][]int // by namespace, then by each label
	instHost  map[string][]int           // by the host registered under
}

type label struct{ key, value string }

func newSelectIndex(wles []*model.WorkloadEntry, insts []registry.Instance) *selectIndex {
	x := &selectIndex{
		wles: map[string][]*model.WorkloadEntry{}, wleLabels: map[string]map[label][]*model.WorkloadEntry{},
		insts: insts, instNS: map[string][]int{}, instLabel: map[string]map[label][]int{}, instHost: map[string][]int{},
	}
	for _, w := range wles {
		x.wles[w.Namespace] = append(x.wles[w.Namespace], w)
		byLabel := x.wleLabels[w.Namespace]
		if byLabel == nil {
			byLabel = map[label][]*model.WorkloadEntry{}
			x.wleLabels[w.Namespace] = byLabel
		}
		for k, v := range w.Spec.GetLabels() {
			byLabel[label{k, v}] = append(byLabel[label{k, v}], w)
		}
	}
	for i, inst := range insts {
		ns := instanceNamespace(inst)
		x.instNS[ns] = append(x.instNS[ns], i)
		byLabel := x.instLabel[ns]
		if byLabel == nil {
			byLabel = map[label][]int{}
			x.instLabel[ns] = byLabel
		}
		for k, v := range inst.Labels {
			byLabel[label{k, v}] = append(byLabel[label{k, v}], i)
		}
		h := instanceHost(inst)
		x.instHost[h] = append(x.instHost[h], i)
	}
	return x
}

// pick returns the label of selector whose candidates are fewest, and
// false for an empty selector (which selects the whole namespace).
func pick[V any](selector map[string]string, byLabel map[label][]V) ([]V, bool) {
	var best []V
	found := false
	for k, v := range selector {
		c := byLabel[label{k, v}]
		if !found || len(c) < len(best) {
			best, found = c, true
		}
	}
	return best, found
}

// workloadEntries returns the WorkloadEntries of namespace ns that may
// carry every label of selector.
func (x *selectIndex) workloadEntries(ns string, selector map[string]string) []*model.WorkloadEntry {
	if c, ok := pick(selector, x.wleLabels[ns]); ok {
		return c
	}
	return x.wles[ns]
}

// instances returns the instances that a ServiceEntry of namespace ns
// for host may take: those that may carry every label of selector (when
// it has one, selected), and those registered under host, in order.
func (x *selectIndex) instances(ns string, selector map[string]string, selected bool, host string) []registry.Instance {
	var idx []int
	if selected {
		c, ok := pick(selector, x.instLabel[ns])
		if !ok {
			c = x.instNS[ns]
		}
		idx = append(idx, c...)
	}
	idx = append(idx, x.instHost[host]...)
	slices.Sort(idx)
	idx = slices.Compact(idx)
	out := make([]registry.Instance, len(idx))
	for i, j := range idx {
		out[i] = x.insts[j]
	}
	return out
}
