package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/starlingsched/starling/dag"
	"github.com/starlingsched/starling/internal/api"
)

// Graphs: a submission whose specs have deps is a graph. The node validates it whole
// with dag.Build, stores every task (pending until its deps are done), and drives the
// dag as tasks finish: released tasks join the ready queue (and are stolen like any
// others) with their deps' results in their input; a failed dep makes its dependents
// upstream_failed without running them.

// graphRun is a graph this node owns. Guarded by Node.mu.
type graphRun struct {
	id    string
	g     *dag.Graph
	tasks []*task
	names map[string]string // name -> task id
	ext   map[string]*task  // the tasks outside the graph it depends on, by id: held so
	// that their results outlive their retention
	created time.Time
	stored  int           // tasks still in the store; the graph goes with the last
	done    chan struct{} // closed when every task is terminal
}

func isGraph(specs []api.Spec) bool {
	for i := range specs {
		if len(specs[i].Deps) > 0 {
			return true
		}
	}
	return false
}

// submitGraphLocked validates specs as a graph and stores it. Nothing is stored when
// it is invalid.
func (n *Node) submitGraphLocked(specs []api.Spec, now time.Time) ([]*task, *graphRun, error) {
	ds := make([]dag.Spec, len(specs))
	keys := map[string]int{}
	for i := range specs {
		if k := specs[i].IdempotencyKey; k != "" {
			if j, dup := keys[k]; dup {
				return nil, nil, specErr(fmt.Sprintf("tasks[%d].idempotency_key", i), "%q is the key of tasks[%d] too; keys are unique", k, j)
			}
			keys[k] = i
		}
		if k := specs[i].IdempotencyKey; k != "" && n.store.withKey(k) != nil {
			return nil, nil, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Field: fmt.Sprintf("tasks[%d].idempotency_key", i),
				Message: fmt.Sprintf("tasks[%d].idempotency_key: %q belongs to task %s already; a graph cannot take in an existing task that way (name it in deps instead)", i, k, n.store.withKey(k).id)}
		}
		ds[i] = dag.Spec{Name: specs[i].Name, Deps: specs[i].Deps, Trigger: dag.Trigger(specs[i].Trigger)}
	}
	var foreignDep string
	g, err := dag.Build(ds, func(ref string) bool {
		if n.store.get(ref) != nil {
			return true
		}
		if owner, ok := OwnerOf(ref); ok && owner != n.id && foreignDep == "" {
			foreignDep = ref
		}
		return false
	}, dag.Limits{MaxTasks: n.cfg.MaxBatch, MaxDepth: n.cfg.MaxGraphDepth})
	if err != nil {
		e := &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidGraph, Message: err.Error()}
		var de *dag.Error
		if errors.As(err, &de) {
			if de.Index >= 0 && de.Field != "" {
				e.Field = fmt.Sprintf("tasks[%d].%s", de.Index, de.Field)
			}
			if errors.Is(err, dag.ErrUnknownDep) {
				e.Message += " (deps name tasks of the same submission by name, or tasks of this node by id)"
				if foreignDep != "" {
					e.Message += fmt.Sprintf("; %s belongs to another node: submit the graph there", foreignDep)
				}
			}
		}
		return nil, nil, e
	}
	n.seq++
	gr := &graphRun{id: graphID(n.id, n.seq), g: g, tasks: make([]*task, len(specs)), names: map[string]string{},
		ext: map[string]*task{}, created: now, stored: len(specs), done: make(chan struct{})}
	for _, ref := range g.Externals() {
		gr.ext[ref] = n.store.get(ref)
	}
	for i := range specs {
		t := n.newTaskLocked(&specs[i], now)
		t.graph, t.gidx = gr, i
		gr.tasks[i] = t
		if specs[i].Name != "" {
			gr.names[specs[i].Name] = t.id
		}
		n.setStateLocked(t, api.Pending, now)
		t.waiting = "waiting for its deps"
	}
	n.graphs[gr.id] = gr
	n.applyStepLocked(gr, g.Start(), now)
	for _, ref := range g.Externals() {
		ext := gr.ext[ref]
		if ext.state.Terminal() {
			n.applyStepLocked(gr, g.CompleteExternal(ref, outcomeOf(ext.state)), now)
			continue
		}
		if !gr.g.Done() {
			n.watchers[ref] = append(n.watchers[ref], gr)
		}
	}
	return gr.tasks, gr, nil
}

func outcomeOf(s api.State) dag.Outcome {
	switch s {
	case api.Succeeded:
		return dag.Succeeded
	case api.Cancelled:
		return dag.Cancelled
	case api.UpstreamFailed:
		return dag.UpstreamFailed
	}
	return dag.Failed
}

// applyStepLocked queues the tasks a graph released and ends those it failed upstream.
func (n *Node) applyStepLocked(gr *graphRun, s dag.Step, now time.Time) {
	for _, i := range s.Ready {
		t := gr.tasks[i]
		if t.state != api.Pending {
			continue
		}
		t.deps = n.depResultsLocked(gr, i)
		n.enqueueLocked(t, now)
	}
	for _, i := range s.UpstreamFailed {
		t := gr.tasks[i]
		if t.state.Terminal() {
			continue
		}
		n.terminateLocked(t, api.UpstreamFailed, n.upstreamReasonLocked(gr, i), now)
	}
	if gr.g.Done() {
		select {
		case <-gr.done:
		default:
			close(gr.done)
			n.unwatchLocked(gr)
		}
	}
}

// depResultsLocked gathers the results of task i's deps, by the name (or id) its deps
// list used.
func (n *Node) depResultsLocked(gr *graphRun, i int) map[string]json.RawMessage {
	deps := gr.g.Deps(i)
	if len(deps) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(deps))
	for _, d := range deps {
		var dt *task
		if d.Index >= 0 {
			dt = gr.tasks[d.Index]
		} else {
			dt = gr.ext[d.Ref]
		}
		var r json.RawMessage
		if dt != nil {
			r = dt.result
		}
		if r == nil {
			r = json.RawMessage("null")
		}
		out[d.Ref] = r
	}
	return out
}

// upstreamReasonLocked names the dep that did not succeed.
func (n *Node) upstreamReasonLocked(gr *graphRun, i int) string {
	for _, d := range gr.g.Deps(i) {
		var dt *task
		if d.Index >= 0 {
			dt = gr.tasks[d.Index]
		} else {
			dt = gr.ext[d.Ref]
		}
		if dt != nil && dt.state.Terminal() && dt.state != api.Succeeded {
			return fmt.Sprintf("dep %s (%s) ended %s", d.Ref, dt.id, dt.state)
		}
	}
	return "a dep did not succeed"
}

// graphTaskEndedLocked tells the graph of t, and the graphs that depend on t from
// outside, that t ended.
func (n *Node) graphTaskEndedLocked(t *task, now time.Time) {
	if gr := t.graph; gr != nil {
		n.applyStepLocked(gr, gr.g.Complete(t.gidx, outcomeOf(t.state)), now)
	}
	if ws := n.watchers[t.id]; len(ws) > 0 {
		delete(n.watchers, t.id)
		for _, gr := range ws {
			n.applyStepLocked(gr, gr.g.CompleteExternal(t.id, outcomeOf(t.state)), now)
		}
	}
}

// unwatchLocked takes a finished graph off the watch lists of the tasks outside it.
func (n *Node) unwatchLocked(gr *graphRun) {
	for ref := range gr.ext {
		ws := slices.DeleteFunc(n.watchers[ref], func(w *graphRun) bool { return w == gr })
		if len(ws) == 0 {
			delete(n.watchers, ref)
		} else {
			n.watchers[ref] = ws
		}
	}
}

// CancelGraph cancels every task of a graph that has not finished. Clean-up tasks
// (all_done) that had not started are cancelled too.
func (n *Node) CancelGraph(id string) (api.Graph, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	gr := n.graphs[id]
	if gr == nil {
		return api.Graph{}, graphNotFound(id)
	}
	if gr.g.Done() {
		return n.graphRecordLocked(gr, true), &api.Error{Status: http.StatusConflict, Code: api.CodeConflict,
			Message: fmt.Sprintf("graph %s already finished", id)}
	}
	now := time.Now()
	for _, i := range gr.g.CancelPending() {
		n.terminateLocked(gr.tasks[i], api.Cancelled, "graph cancelled", now)
	}
	for _, t := range gr.tasks {
		if !t.state.Terminal() {
			n.cancelLocked(t, "graph cancelled", now)
		}
	}
	n.dispatchLocked()
	rec := n.graphRecordLocked(gr, true)
	n.trimLocked()
	return rec, nil
}

func graphNotFound(id string) error {
	return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("graph %s: expired or unknown graph", id)}
}

// Graph returns a graph's aggregate record, with its tasks when withTasks is set.
func (n *Node) Graph(id string, withTasks bool) (api.Graph, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	gr := n.graphs[id]
	if gr == nil {
		return api.Graph{}, graphNotFound(id)
	}
	return n.graphRecordLocked(gr, withTasks), nil
}

func (n *Node) graphRecordLocked(gr *graphRun, withTasks bool) api.Graph {
	out := api.Graph{ID: gr.id, Counts: map[api.State]int{}, Names: gr.names, CreatedAt: gr.created}
	for _, t := range gr.tasks {
		out.Counts[t.state]++
		if withTasks {
			out.Tasks = append(out.Tasks, n.recordLocked(t))
		}
	}
	out.State = graphState(out.Counts, len(gr.tasks))
	return out
}

// graphState sums a graph's tasks up: running while any task is queued or running,
// pending while all that is left waits for deps, else succeeded when every task did,
// failed when any failed, cancelled otherwise.
func graphState(c map[api.State]int, total int) api.State {
	switch {
	case c[api.Queued]+c[api.Running] > 0:
		return api.Running
	case c[api.Pending] > 0:
		return api.Pending
	case c[api.Succeeded] == total:
		return api.Succeeded
	case c[api.Failed]+c[api.UpstreamFailed] > 0 && c[api.Cancelled] == 0:
		return api.Failed
	case c[api.Failed] > 0:
		return api.Failed
	}
	return api.Cancelled
}

// forgetGraphTaskLocked drops a graph once retention has dropped its last task.
func (n *Node) forgetGraphTaskLocked(t *task) {
	if gr := t.graph; gr != nil {
		gr.stored--
		if gr.stored == 0 {
			delete(n.graphs, gr.id)
		}
	}
}
