package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/starlingsched/starling/dag"
	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

// Graphs: a submission whose specs have deps is a graph. The engine validates it whole
// with dag.Build, stores every task (pending until its deps are done), and drives the
// dag as tasks finish: released tasks join the ready queue (and are stolen like any
// others) with their deps' results in their input; a failed dep makes its dependents
// upstream_failed without running them.

// graphRun is a graph this node owns.
type graphRun struct {
	id  string
	seq uint64
	// g drives the graph; nil for a graph restored finished (Restore), which only
	// answers for its tasks.
	g     *dag.Graph
	tasks []*entry
	ids   []string
	names map[string]string // name -> task id
	// ext holds the tasks outside the graph it depends on, by id, so that their
	// results outlive their retention.
	ext     map[string]*entry
	created time.Time
	stored  int // tasks still stored; the graph goes with the last
	done    bool
}

func (g *graphRun) view() *GraphView {
	return &GraphView{ID: g.id, Created: g.created, Tasks: g.ids, Names: g.names, Done: g.done}
}

func isGraph(specs []api.Spec) bool {
	for i := range specs {
		if len(specs[i].Deps) > 0 {
			return true
		}
	}
	return false
}

// OwnerOf returns the node id embedded in a task or graph id.
func OwnerOf(id string) (string, bool) {
	owner, rest, ok := strings.Cut(id, "-")
	return owner, ok && len(owner) == 8 && rest != ""
}

func specErr(field, format string, args ...any) *api.Error {
	return &api.Error{Status: statusBadRequest, Code: api.CodeInvalidSpec, Field: field,
		Message: field + ": " + fmt.Sprintf(format, args...)}
}

// submitGraph validates specs as a graph and stores it. Nothing is stored when it is
// invalid.
func (e *Engine) submitGraph(specs []api.Spec, batch bool, now time.Time) ([]*entry, *graphRun, error) {
	out, gr, err := e.buildGraph(specs, now)
	var ae *api.Error
	if err != nil && !batch && errors.As(err, &ae) {
		// One spec: its fields are not "tasks[0].…".
		ae.Field = strings.TrimPrefix(ae.Field, "tasks[0].")
		ae.Message = strings.TrimPrefix(ae.Message, "tasks[0].")
	}
	return out, gr, err
}

func (e *Engine) buildGraph(specs []api.Spec, now time.Time) ([]*entry, *graphRun, error) {
	ds := make([]dag.Spec, len(specs))
	keys := map[string]int{}
	for i := range specs {
		if k := specs[i].IdempotencyKey; k != "" {
			if j, dup := keys[k]; dup {
				return nil, nil, specErr(fmt.Sprintf("tasks[%d].idempotency_key", i), "%q is the key of tasks[%d] too; keys are unique", k, j)
			}
			keys[k] = i
			if t := e.idem[k]; t != nil {
				return nil, nil, &api.Error{Status: statusConflict, Code: api.CodeConflict, Field: fmt.Sprintf("tasks[%d].idempotency_key", i),
					Message: fmt.Sprintf("tasks[%d].idempotency_key: %q belongs to task %s already; a graph cannot take in an existing task that way (name it in deps instead)", i, k, t.rec.ID)}
			}
		}
		ds[i] = dag.Spec{Name: specs[i].Name, Deps: specs[i].Deps, Trigger: dag.Trigger(specs[i].Trigger)}
	}
	var foreignDep string
	g, err := dag.Build(ds, func(ref string) bool {
		if e.tasks[ref] != nil {
			return true
		}
		if owner, ok := OwnerOf(ref); ok && owner != e.cfg.ID && foreignDep == "" {
			foreignDep = ref
		}
		return false
	}, dag.Limits{MaxTasks: e.cfg.MaxBatch, MaxDepth: e.cfg.MaxGraphDepth})
	if err != nil {
		ae := &api.Error{Status: statusBadRequest, Code: api.CodeInvalidGraph, Message: err.Error()}
		var de *dag.Error
		if errors.As(err, &de) {
			if de.Index >= 0 && de.Field != "" {
				ae.Field = fmt.Sprintf("tasks[%d].%s", de.Index, de.Field)
			}
			if errors.Is(err, dag.ErrUnknownDep) {
				ae.Message += " (deps name tasks of the same submission by name, or tasks of this node by id)"
				if foreignDep != "" {
					ae.Message += fmt.Sprintf("; %s belongs to another node: submit the graph there", foreignDep)
				}
			}
		}
		return nil, nil, ae
	}
	e.seq++
	gr := &graphRun{id: graphID(e.cfg.ID, e.seq), seq: e.seq, g: g, tasks: make([]*entry, len(specs)), ids: make([]string, len(specs)),
		names: map[string]string{}, ext: map[string]*entry{}, created: now, stored: len(specs)}
	for _, ref := range g.Externals() {
		gr.ext[ref] = e.tasks[ref]
	}
	for i := range specs {
		t := e.newTask(&specs[i], now, gr.id, i)
		t.graph = gr
		gr.tasks[i] = t
		gr.ids[i] = t.rec.ID
		if specs[i].Name != "" {
			gr.names[specs[i].Name] = t.rec.ID
		}
		e.apply(t, record.Op{Kind: record.OpPending, Waiting: "waiting for its deps"})
		e.event(t, "", now)
	}
	e.graphs[gr.id] = gr
	e.gchange[gr] = struct{}{}
	e.applyStep(gr, g.Start(), now)
	for _, ref := range g.Externals() {
		ext := gr.ext[ref]
		if ext.rec.State.Terminal() {
			e.applyStep(gr, g.CompleteExternal(ref, outcomeOf(ext.rec.State)), now)
			continue
		}
		if !gr.g.Done() {
			e.watchers[ref] = append(e.watchers[ref], gr)
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

// applyStep queues the tasks a graph released and ends those it failed upstream.
func (e *Engine) applyStep(gr *graphRun, s dag.Step, now time.Time) {
	for _, i := range s.Ready {
		t := gr.tasks[i]
		if t.rec.State != api.Pending {
			continue
		}
		e.enqueue(t, now, t.rec.Epoch, t.rec.Node, t.rec.NodeLosses, e.depResults(gr, i))
	}
	for _, i := range s.UpstreamFailed {
		t := gr.tasks[i]
		if t.rec.State.Terminal() {
			continue
		}
		e.terminate(t, api.UpstreamFailed, e.upstreamReason(gr, i), t.rec.Result, now)
	}
	if gr.g.Done() && !gr.done {
		gr.done = true
		e.gchange[gr] = struct{}{}
		e.unwatch(gr)
	}
}

func (gr *graphRun) dep(d dag.Dep) *entry {
	if d.Index >= 0 {
		return gr.tasks[d.Index]
	}
	return gr.ext[d.Ref]
}

// depResults gathers the results of task i's deps, by the name (or id) its deps list
// used. A dep that did not succeed (an all_done task runs after those too) gives null,
// never a partial result.
func (e *Engine) depResults(gr *graphRun, i int) map[string]json.RawMessage {
	deps := gr.g.Deps(i)
	if len(deps) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(deps))
	for _, d := range deps {
		var r json.RawMessage
		if dt := gr.dep(d); dt != nil && dt.rec.State == api.Succeeded {
			r = dt.rec.Result
		}
		if r == nil {
			r = json.RawMessage("null")
		}
		out[d.Ref] = r
	}
	return out
}

// upstreamReason names the dep that did not succeed.
func (e *Engine) upstreamReason(gr *graphRun, i int) string {
	for _, d := range gr.g.Deps(i) {
		if dt := gr.dep(d); dt != nil && dt.rec.State.Terminal() && dt.rec.State != api.Succeeded {
			return fmt.Sprintf("dep %s (%s) ended %s", d.Ref, dt.rec.ID, dt.rec.State)
		}
	}
	return "a dep did not succeed"
}

// graphTaskEnded tells the graph of t, and the graphs that depend on t from outside,
// that t ended.
func (e *Engine) graphTaskEnded(t *entry, now time.Time) {
	if gr := t.graph; gr != nil && gr.g != nil {
		e.applyStep(gr, gr.g.Complete(t.rec.GIdx, outcomeOf(t.rec.State)), now)
	}
	if ws := e.watchers[t.rec.ID]; len(ws) > 0 {
		delete(e.watchers, t.rec.ID)
		for _, gr := range ws {
			if gr.g == nil {
				continue
			}
			e.applyStep(gr, gr.g.CompleteExternal(t.rec.ID, outcomeOf(t.rec.State)), now)
		}
	}
}

// unwatch takes a finished graph off the watch lists of the tasks outside it.
func (e *Engine) unwatch(gr *graphRun) {
	for ref := range gr.ext {
		ws := slices.DeleteFunc(e.watchers[ref], func(w *graphRun) bool { return w == gr })
		if len(ws) == 0 {
			delete(e.watchers, ref)
		} else {
			e.watchers[ref] = ws
		}
	}
}

// GraphNotFound is the error for a graph this node does not hold.
func GraphNotFound(id string) error {
	return &api.Error{Status: statusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("graph %s: expired or unknown graph", id)}
}

func (e *Engine) onCancelGraph(in CancelGraph, now time.Time) {
	gr := e.graphs[in.ID]
	if gr == nil {
		e.rd.Replies = append(e.rd.Replies, Reply{Req: in.Req, Err: GraphNotFound(in.ID)})
		return
	}
	if gr.g == nil || gr.g.Done() {
		e.rd.Replies = append(e.rd.Replies, Reply{Req: in.Req, Graph: gr.id, Err: &api.Error{Status: statusConflict, Code: api.CodeConflict,
			Message: fmt.Sprintf("graph %s already finished", in.ID)}})
		return
	}
	for _, i := range gr.g.CancelPending() {
		e.terminate(gr.tasks[i], api.Cancelled, "graph cancelled", gr.tasks[i].rec.Result, now)
	}
	for _, t := range gr.tasks {
		if !t.rec.State.Terminal() {
			e.cancel(t, "graph cancelled", now)
		}
	}
	e.rd.Replies = append(e.rd.Replies, Reply{Req: in.Req, Graph: gr.id})
}

// forgetGraphTask drops a graph once retention has dropped its last task.
func (e *Engine) forgetGraphTask(t *entry) {
	if gr := t.graph; gr != nil {
		gr.stored--
		if gr.stored == 0 {
			delete(e.graphs, gr.id)
			delete(e.gchange, gr)
			e.rd.GraphsExpired = append(e.rd.GraphsExpired, gr.id)
		}
	}
}
