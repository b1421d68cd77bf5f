package dag

import (
	"fmt"
	"slices"
)

// Limits bound the size of a batch. A zero (or negative) field means its
// default.
type Limits struct {
	// MaxTasks is the most tasks a batch may hold.
	MaxTasks int
	// MaxDepth is the most tasks the longest dependency chain may hold;
	// a task without deps in the batch has depth 1, and external deps do
	// not count.
	MaxDepth int
}

// Default limits.
const (
	DefaultMaxTasks = 100_000
	DefaultMaxDepth = 100_000
)

// DefaultLimits returns the limits Build applies to zero fields.
func DefaultLimits() Limits {
	return Limits{MaxTasks: DefaultMaxTasks, MaxDepth: DefaultMaxDepth}
}

func (l Limits) withDefaults() Limits {
	if l.MaxTasks <= 0 {
		l.MaxTasks = DefaultMaxTasks
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Build validates the whole batch and returns its graph, every task Pending.
// Nothing about the batch is accepted unless all of it is valid.
//
// A dep that names a task of the batch refers to that task. A dep that names
// none is an external reference when isExternal(ref) is true (the caller
// knows a task with that id); otherwise it is an unknown dep. isExternal may
// be nil, meaning there are no externals; Build calls it at most once per
// distinct ref.
//
// The error, if any, is an *Error that names the task and the field at
// fault and unwraps to one of the sentinel errors. When a batch has several
// faults, Build reports one: batch-level faults first, then per-task faults
// (trigger, name, deps) in index order, then a cycle, then the depth limit.
//
// Build runs in time linear in the tasks and deps and never recurses.
func Build(specs []Spec, isExternal func(ref string) bool, lim Limits) (*Graph, error) {
	lim = lim.withDefaults()
	n := len(specs)
	if n == 0 {
		return nil, &Error{Index: -1, Field: "tasks", Kind: ErrEmpty, Msg: "empty batch"}
	}
	if n > lim.MaxTasks {
		return nil, &Error{Index: -1, Field: "tasks", Kind: ErrTooMany,
			Msg: fmt.Sprintf("batch of %d tasks exceeds the limit of %d", n, lim.MaxTasks)}
	}

	g := &Graph{
		names:    make(map[string]int),
		triggers: make([]Trigger, n),
		depStart: make([]int, n+1),
		extIndex: make(map[string]int),
	}
	for i, sp := range specs {
		if sp.Name == "" {
			continue
		}
		if _, dup := g.names[sp.Name]; !dup {
			g.names[sp.Name] = i
		}
	}

	edges := 0
	for _, sp := range specs {
		edges += len(sp.Deps)
	}
	g.deps = make([]Dep, 0, edges)
	// seenBy[t] == i+1 when task i already listed task t; extSeenBy likewise
	// for externals. They make the duplicate-dep check O(1) per dep.
	seenBy := make([]int, n)
	var extSeenBy []int
	inBatch := make([]int, n) // in-batch deps per task: Kahn's in-degrees
	dtCount := make([]int, n+1)

	for i, sp := range specs {
		switch sp.Trigger {
		case "":
			g.triggers[i] = AllSuccess
		case AllSuccess, AllDone:
			g.triggers[i] = sp.Trigger
		default:
			return nil, &Error{Index: i, Field: "trigger", Kind: ErrBadTrigger,
				Msg: fmt.Sprintf("unknown trigger %q (want %q or %q)", sp.Trigger, AllSuccess, AllDone)}
		}
		if sp.Name != "" && g.names[sp.Name] != i {
			return nil, &Error{Index: i, Field: "name", Kind: ErrDuplicateName,
				Msg: fmt.Sprintf("duplicate name %q (also tasks[%d])", sp.Name, g.names[sp.Name])}
		}
		for _, ref := range sp.Deps {
			if ref == "" {
				return nil, &Error{Index: i, Field: "deps", Kind: ErrUnknownDep, Msg: "empty dep"}
			}
			if t, ok := g.names[ref]; ok {
				if t == i {
					return nil, &Error{Index: i, Field: "deps", Kind: ErrSelfDep,
						Msg: fmt.Sprintf("task %q depends on itself", ref)}
				}
				if seenBy[t] == i+1 {
					return nil, &Error{Index: i, Field: "deps", Kind: ErrDuplicateDep,
						Msg: fmt.Sprintf("duplicate dep %q", ref)}
				}
				seenBy[t] = i + 1
				g.deps = append(g.deps, Dep{Index: t, Ref: ref})
				inBatch[i]++
				dtCount[t+1]++
				continue
			}
			e, ok := g.extIndex[ref]
			if !ok {
				if isExternal == nil || !isExternal(ref) {
					return nil, &Error{Index: i, Field: "deps", Kind: ErrUnknownDep,
						Msg: fmt.Sprintf("unknown dep %q", ref)}
				}
				e = len(g.externals)
				g.extIndex[ref] = e
				g.externals = append(g.externals, ref)
				extSeenBy = append(extSeenBy, 0)
			}
			if extSeenBy[e] == i+1 {
				return nil, &Error{Index: i, Field: "deps", Kind: ErrDuplicateDep,
					Msg: fmt.Sprintf("duplicate dep %q", ref)}
			}
			extSeenBy[e] = i + 1
			g.deps = append(g.deps, Dep{Index: -1, Ref: ref})
		}
		g.depStart[i+1] = len(g.deps)
	}

	// Reverse edges, by counting sort: dependents come out in ascending
	// order because tasks are visited in order.
	for t := range n {
		dtCount[t+1] += dtCount[t]
	}
	g.dtStart = dtCount
	g.dependents = make([]int, dtCount[n])
	fill := slices.Clone(dtCount[:n])
	extCount := make([]int, len(g.externals)+1)
	for _, d := range g.deps {
		if d.Index < 0 {
			extCount[g.extIndex[d.Ref]+1]++
		}
	}
	for e := range g.externals {
		extCount[e+1] += extCount[e]
	}
	g.extStart = extCount
	g.extDependents = make([]int, extCount[len(g.externals)])
	extFill := slices.Clone(extCount[:len(g.externals)])
	for i := range n {
		for _, d := range g.deps[g.depStart[i]:g.depStart[i+1]] {
			if d.Index >= 0 {
				g.dependents[fill[d.Index]] = i
				fill[d.Index]++
			} else {
				e := g.extIndex[d.Ref]
				g.extDependents[extFill[e]] = i
				extFill[e]++
			}
		}
	}

	if err := g.checkOrder(specs, inBatch, lim.MaxDepth); err != nil {
		return nil, err
	}

	g.extOutcome = make([]Outcome, len(g.externals))
	g.state = make([]State, n)
	g.outcome = make([]Outcome, n)
	g.waiting = make([]int, n)
	for i := range n {
		g.waiting[i] = g.depStart[i+1] - g.depStart[i]
	}
	g.counts.Pending = n
	return g, nil
}

// checkOrder runs Kahn's algorithm over the in-batch edges to find a cycle
// or a chain longer than maxDepth. indeg holds each task's number of
// in-batch deps and is used up.
func (g *Graph) checkOrder(specs []Spec, indeg []int, maxDepth int) error {
	n := len(indeg)
	depth := make([]int, n)
	queue := make([]int, 0, n)
	for i := range n {
		if indeg[i] == 0 {
			queue = append(queue, i)
			depth[i] = 1
		}
	}
	tooDeep := -1
	for head := 0; head < len(queue); head++ {
		t := queue[head]
		if depth[t] > maxDepth && tooDeep < 0 {
			tooDeep = t
		}
		for _, d := range g.dependents[g.dtStart[t]:g.dtStart[t+1]] {
			depth[d] = max(depth[d], depth[t]+1)
			indeg[d]--
			if indeg[d] == 0 {
				queue = append(queue, d)
			}
		}
	}
	if len(queue) < n {
		cycle := g.findCycle(indeg)
		names := make([]string, len(cycle))
		for k, t := range cycle {
			names[k] = taskLabel(specs, t)
		}
		return &Error{Index: cycle[0], Field: "deps", Kind: ErrCycle, Msg: cycleMsg(names), Cycle: names}
	}
	if tooDeep >= 0 {
		return &Error{Index: tooDeep, Field: "deps", Kind: ErrTooDeep,
			Msg: fmt.Sprintf("dependency chain of %d tasks exceeds the limit of %d", depth[tooDeep], maxDepth)}
	}
	return nil
}

// findCycle returns one cycle among the tasks Kahn's algorithm left over
// (indeg[t] > 0), as task indexes, each depending on the next and the last
// on the first, starting at the cycle's lowest index.
//
// Every leftover task has at least one leftover dep, so walking from one
// leftover task to a leftover dep of it, again and again, must come back to
// a task already walked; the walk from there on is a cycle. No recursion,
// O(n + edges).
func (g *Graph) findCycle(indeg []int) []int {
	start := slices.IndexFunc(indeg, func(d int) bool { return d > 0 })
	pos := make(map[int]int)
	var walk []int
	t := start
	for {
		if p, seen := pos[t]; seen {
			walk = walk[p:]
			break
		}
		pos[t] = len(walk)
		walk = append(walk, t)
		next := -1
		for _, d := range g.deps[g.depStart[t]:g.depStart[t+1]] {
			if d.Index >= 0 && indeg[d.Index] > 0 {
				next = d.Index
				break
			}
		}
		t = next
	}
	lowest := slices.Index(walk, slices.Min(walk))
	return slices.Concat(walk[lowest:], walk[:lowest])
}
