package engine

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/starlingsched/starling/internal/api"
)

// needs is what a task asks of a node: tags it must carry and resource amounts it
// holds while it runs. It is derived from a spec's requires.
type needs struct {
	tags []string
	res  []resAmount
}

type resAmount struct {
	name string
	n    int64
}

func needsOf(r *api.Requires) needs {
	if r.Empty() {
		return needs{}
	}
	var n needs
	n.tags = slices.Clone(r.Tags)
	sort.Strings(n.tags)
	n.tags = slices.Compact(n.tags)
	for k, v := range r.Resources {
		if v > 0 {
			n.res = append(n.res, resAmount{k, v})
		}
	}
	sort.Slice(n.res, func(i, j int) bool { return n.res[i].name < n.res[j].name })
	return n
}

// key is a canonical string for the class of tasks with these needs.
func (n needs) key() string {
	if len(n.tags) == 0 && len(n.res) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range n.tags {
		b.WriteString("t:")
		b.WriteString(t)
		b.WriteByte(';')
	}
	for _, r := range n.res {
		b.WriteString("r:")
		b.WriteString(r.name)
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(r.n, 10))
		b.WriteByte(';')
	}
	return b.String()
}

// resources tracks a node's tags and how much of each resource is free.
type resources struct {
	tags     map[string]bool
	capacity map[string]int64
	free     map[string]int64
	// snap is a copy of free handed out by snapshot; nil after free changed.
	snap map[string]int64
}

// snapshot returns free as it is now, in a map nobody changes.
func (r *resources) snapshot() map[string]int64 {
	if r.snap == nil {
		r.snap = make(map[string]int64, len(r.free))
		for k, v := range r.free {
			r.snap[k] = v
		}
	}
	return r.snap
}

func newResources(tags []string, capacity map[string]int64) *resources {
	r := &resources{tags: make(map[string]bool), capacity: make(map[string]int64), free: make(map[string]int64)}
	for _, t := range tags {
		r.tags[t] = true
	}
	for k, v := range capacity {
		r.capacity[k] = v
		r.free[k] = v
	}
	return r
}

// unfit says why this node could never run a task with these needs; "" if it can.
func (r *resources) unfit(n needs) string {
	var missing []string
	for _, t := range n.tags {
		if !r.tags[t] {
			missing = append(missing, fmt.Sprintf("tag %q", t))
		}
	}
	for _, a := range n.res {
		if have := r.capacity[a.name]; have < a.n {
			missing = append(missing, fmt.Sprintf("%s=%d (this node has %d)", a.name, a.n, have))
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return "no node can run it yet: it requires " + strings.Join(missing, ", ")
}

func (r *resources) fits(n needs) bool {
	for _, a := range n.res {
		if r.free[a.name] < a.n {
			return false
		}
	}
	return true
}

func (r *resources) take(n needs) {
	if len(n.res) > 0 {
		r.snap = nil
	}
	for _, a := range n.res {
		r.free[a.name] -= a.n
	}
}

func (r *resources) give(n needs) {
	if len(n.res) > 0 {
		r.snap = nil
	}
	for _, a := range n.res {
		r.free[a.name] += a.n
	}
}
