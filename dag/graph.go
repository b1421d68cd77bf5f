package dag

import (
	"slices"
	"strconv"
)

// Trigger says when a task with deps is released.
type Trigger string

// Triggers. The empty Trigger means AllSuccess.
const (
	// AllSuccess releases a task when every dep succeeded. A dep that ends
	// any other way makes the task UpstreamFailed at once.
	AllSuccess Trigger = "all_success"
	// AllDone releases a task once every dep is terminal, whatever the
	// outcome; for clean-up steps. Such a task never becomes UpstreamFailed.
	AllDone Trigger = "all_done"
)

// Spec is what the graph needs to know of one task of a batch.
type Spec struct {
	// Name is optional; it is what the Deps of other specs in the batch
	// refer to. Names are unique within a batch.
	Name string
	// Deps name tasks of the same batch, or refer to existing tasks outside
	// it (ids the caller knows; see Build). A name of the batch takes
	// precedence over an external id spelled the same.
	Deps []string
	// Trigger says when the task is released; "" means AllSuccess.
	Trigger Trigger
}

// Dep is one dependency of a task, as Build resolved it.
type Dep struct {
	// Index is the dep's position in the batch, or -1 for an external dep.
	Index int
	// Ref is the dep as written in the spec: a name of the batch or an
	// external id.
	Ref string
}

// Outcome is how a terminal task ended. The zero Outcome means the task has
// no outcome yet.
type Outcome uint8

// Outcomes.
const (
	// Succeeded means the task ran and succeeded.
	Succeeded Outcome = iota + 1
	// Failed means the task ran and failed.
	Failed
	// Cancelled means the task was cancelled, before or while it ran.
	Cancelled
	// UpstreamFailed means the task never ran because a dep did not
	// succeed.
	UpstreamFailed
)

// String returns the outcome as the API spells it: "succeeded", "failed",
// "cancelled", "upstream_failed"; or "none" for the zero Outcome.
func (o Outcome) String() string {
	switch o {
	case Succeeded:
		return "succeeded"
	case Failed:
		return "failed"
	case Cancelled:
		return "cancelled"
	case UpstreamFailed:
		return "upstream_failed"
	case 0:
		return "none"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// State is where a task stands in the graph.
type State uint8

// States.
const (
	// Pending means the task waits on its deps.
	Pending State = iota
	// Ready means the task was released to the caller, which queues and
	// runs it and reports its end with Complete.
	Ready
	// Done means the task is terminal; its Outcome says how it ended.
	Done
)

// String returns "pending", "ready" or "done".
func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Ready:
		return "ready"
	case Done:
		return "done"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Step is what one call to Start, Complete or CompleteExternal caused. Both
// lists are in ascending index order.
type Step struct {
	// Ready are the tasks now released: the caller queues them.
	Ready []int
	// UpstreamFailed are the tasks now terminal as UpstreamFailed,
	// transitively, without running.
	UpstreamFailed []int
}

// Counts is how many tasks of a graph are in each state; terminal tasks are
// counted by outcome.
type Counts struct {
	Pending        int `json:"pending"`
	Ready          int `json:"ready"`
	Succeeded      int `json:"succeeded"`
	Failed         int `json:"failed"`
	Cancelled      int `json:"cancelled"`
	UpstreamFailed int `json:"upstream_failed"`
}

// Graph is a validated batch of tasks and the readiness state of each. Tasks
// are known by their index in the batch Build was given.
//
// A Graph is not safe for concurrent use: its owner serializes the calls.
type Graph struct {
	names    map[string]int
	triggers []Trigger // normalized: never ""

	// deps of task i are deps[depStart[i]:depStart[i+1]].
	depStart []int
	deps     []Dep
	// in-batch dependents of task i are dependents[dtStart[i]:dtStart[i+1]].
	dtStart    []int
	dependents []int

	externals []string
	extIndex  map[string]int
	// dependents of externals[e] are extDependents[extStart[e]:extStart[e+1]].
	extStart      []int
	extDependents []int
	extOutcome    []Outcome

	state   []State
	outcome []Outcome
	// waiting counts, per pending task, the deps it still waits for: deps
	// not yet succeeded for AllSuccess, deps not yet terminal for AllDone.
	waiting []int
	counts  Counts
	started bool
}

// Len returns the number of tasks in the graph.
func (g *Graph) Len() int { return len(g.state) }

func (g *Graph) valid(i int) bool { return i >= 0 && i < len(g.state) }

// Deps returns the deps of task i in the order its spec lists them, or nil
// when i is out of range. The slice is the caller's to keep.
func (g *Graph) Deps(i int) []Dep {
	if !g.valid(i) {
		return nil
	}
	return slices.Clone(g.deps[g.depStart[i]:g.depStart[i+1]])
}

// Dependents returns the tasks of the batch that list task i among their
// deps, in ascending order, or nil when i is out of range. The slice is the
// caller's to keep.
func (g *Graph) Dependents(i int) []int {
	if !g.valid(i) {
		return nil
	}
	return slices.Clone(g.dependents[g.dtStart[i]:g.dtStart[i+1]])
}

// Trigger returns the trigger of task i, AllSuccess when its spec left it
// empty, or "" when i is out of range.
func (g *Graph) Trigger(i int) Trigger {
	if !g.valid(i) {
		return ""
	}
	return g.triggers[i]
}

// Externals returns the distinct external refs of the batch in the order
// they are first seen (by task, then by dep).
func (g *Graph) Externals() []string { return slices.Clone(g.externals) }

// Index returns the index of the task with the given name.
func (g *Graph) Index(name string) (int, bool) {
	if name == "" {
		return 0, false
	}
	i, ok := g.names[name]
	return i, ok
}

// State returns the state of task i and, when it is Done, its outcome. For
// an i out of range it returns Pending and the zero Outcome.
func (g *Graph) State(i int) (State, Outcome) {
	if !g.valid(i) {
		return Pending, 0
	}
	return g.state[i], g.outcome[i]
}

// Counts returns how many tasks are in each state.
func (g *Graph) Counts() Counts { return g.counts }

// Done reports whether every task is terminal.
func (g *Graph) Done() bool {
	c := g.counts
	return c.Pending == 0 && c.Ready == 0
}

// Start releases the tasks that have no deps at all. Call it once, after
// Build; later calls return an empty Step. Tasks with only external deps stay
// Pending until CompleteExternal reports them.
func (g *Graph) Start() Step {
	if g.started {
		return Step{}
	}
	g.started = true
	var s Step
	for i := range g.state {
		if g.state[i] == Pending && g.depStart[i] == g.depStart[i+1] {
			g.release(i, &s)
		}
	}
	return s
}

// Complete records that task i ended with outcome o and returns what that
// causes. o is Succeeded, Failed or Cancelled. A Ready task takes any of
// them; a Pending task takes only Cancelled (cancelling a graph cancels the
// tasks that wait). Any other call — a Done task, an index out of range, a
// Pending task with Succeeded or Failed, another outcome — changes nothing
// and returns an empty Step, so a late or repeated report is harmless.
func (g *Graph) Complete(i int, o Outcome) Step {
	if !g.valid(i) {
		return Step{}
	}
	switch {
	case g.state[i] == Ready && (o == Succeeded || o == Failed || o == Cancelled):
	case g.state[i] == Pending && o == Cancelled:
	default:
		return Step{}
	}
	g.finish(i, o)
	var s Step
	g.propagate(g.dependents[g.dtStart[i]:g.dtStart[i+1]], o, &s)
	slices.Sort(s.Ready)
	slices.Sort(s.UpstreamFailed)
	return s
}

// CompleteExternal records that the external task ref ended with outcome o
// (any of the four; an external task may itself have been UpstreamFailed)
// and returns what that causes. A ref the graph does not depend on, a ref
// already reported and the zero Outcome change nothing and return an empty
// Step. A caller whose external task is already terminal when the graph is
// built reports it right after Start.
func (g *Graph) CompleteExternal(ref string, o Outcome) Step {
	e, ok := g.extIndex[ref]
	if !ok || g.extOutcome[e] != 0 || o < Succeeded || o > UpstreamFailed {
		return Step{}
	}
	g.extOutcome[e] = o
	var s Step
	g.propagate(g.extDependents[g.extStart[e]:g.extStart[e+1]], o, &s)
	slices.Sort(s.Ready)
	slices.Sort(s.UpstreamFailed)
	return s
}

// CancelPending cancels every Pending task at once and returns them in
// ascending order. Unlike cancelling them one by one with Complete, it
// releases nothing: an AllDone clean-up task that waits is cancelled too.
// Ready tasks are left to the caller, which stops them and reports each
// with Complete.
func (g *Graph) CancelPending() []int {
	var out []int
	for i := range g.state {
		if g.state[i] == Pending {
			g.finish(i, Cancelled)
			out = append(out, i)
		}
	}
	return out
}

// release moves pending task i to Ready.
func (g *Graph) release(i int, s *Step) {
	g.state[i] = Ready
	g.counts.Pending--
	g.counts.Ready++
	s.Ready = append(s.Ready, i)
}

// finish moves task i, Pending or Ready, to Done with outcome o.
func (g *Graph) finish(i int, o Outcome) {
	switch g.state[i] {
	case Pending:
		g.counts.Pending--
	case Ready:
		g.counts.Ready--
	}
	g.state[i] = Done
	g.outcome[i] = o
	switch o {
	case Succeeded:
		g.counts.Succeeded++
	case Failed:
		g.counts.Failed++
	case Cancelled:
		g.counts.Cancelled++
	case UpstreamFailed:
		g.counts.UpstreamFailed++
	}
}

// propagate tells the dependents of a task that just ended with outcome o,
// and so on transitively for the tasks that become UpstreamFailed. It works
// through a stack, never by recursion, and touches only the edges out of the
// tasks that ended.
func (g *Graph) propagate(dependents []int, o Outcome, s *Step) {
	type item struct {
		dependents []int
		o          Outcome
	}
	stack := []item{{dependents, o}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, d := range it.dependents {
			if g.state[d] != Pending {
				// Cancelled while it waited, or already UpstreamFailed by
				// another dep.
				continue
			}
			if g.triggers[d] == AllSuccess && it.o != Succeeded {
				g.finish(d, UpstreamFailed)
				s.UpstreamFailed = append(s.UpstreamFailed, d)
				stack = append(stack, item{g.dependents[g.dtStart[d]:g.dtStart[d+1]], UpstreamFailed})
				continue
			}
			g.waiting[d]--
			if g.waiting[d] == 0 {
				g.release(d, s)
			}
		}
	}
}
