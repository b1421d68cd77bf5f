package engine

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/starlingsched/starling/dag"
	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

// Restore rebuilds the engine from the records its node kept before it stopped (a
// crash or a restart): call it once, after New and before the first Step, with every
// record loaded from storage and the highest sequence the node ever handed out.
//
// Finished records are kept for retention. Queued tasks go back in the ready queue in
// their order; pending retries wait for their deadline; graphs get their dag state
// back from their tasks' outcomes. A task that was running here when the node
// stopped is queued again and counts a node loss (its next run is attempt+1); one
// granted to a peer that had not confirmed it comes back too. A task running on a
// peer stays there: the peer reports to this node (same id) once it sees it again, and
// if that peer is not seen within the owner grace, the task lost a node.
//
// The records are the engine's from now on (it copies one before changing it). Only
// those the restore changed are in the next Ready's Records: the caller publishes the
// loaded ones to its read view itself, and need not write them again.
func (e *Engine) Restore(now time.Time, recs []*record.Record, seq uint64) error {
	if len(e.tasks) > 0 || e.seq > 0 {
		return fmt.Errorf("engine: Restore after the engine took work")
	}
	if now.After(e.now) {
		e.now = now
	}
	slices.SortFunc(recs, func(a, b *record.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	e.seq = seq
	graphs := map[string][]*entry{}
	var graphOrder []string
	for _, r := range recs {
		if r == nil || r.Spec == nil || r.ID == "" {
			continue
		}
		if _, dup := e.tasks[r.ID]; dup {
			continue
		}
		e.seq = max(e.seq, r.Seq)
		t := (&entry{rec: r, shared: true, heapIdx: -1, needs: needsOf(r.Spec.Requires)}).keyed()
		t.class = e.classFor(r.Spec.Type, t.needs)
		e.tasks[r.ID] = t
		e.order = append(e.order, t)
		if k := r.Spec.IdempotencyKey; k != "" {
			e.idem[k] = t
		}
		e.counts[r.State]++
		if r.Graph != "" {
			if _, ok := graphs[r.Graph]; !ok {
				graphOrder = append(graphOrder, r.Graph)
			}
			graphs[r.Graph] = append(graphs[r.Graph], t)
		}
		if r.State.Terminal() {
			e.finished = append(e.finished, t)
			continue
		}
		e.live++
	}
	// Retention drops the oldest finished first.
	slices.SortStableFunc(e.finished, func(a, b *entry) int { return a.rec.Finished.Compare(b.rec.Finished) })
	for _, id := range graphOrder {
		e.restoreGraph(id, graphs[id], now)
	}
	for _, t := range e.order {
		if !t.rec.State.Terminal() {
			e.restoreTask(t, now)
		}
	}
	return nil
}

// restoreTask puts a live task back where it belongs after a restart.
func (e *Engine) restoreTask(t *entry, now time.Time) {
	r := t.rec
	if t.heapIdx >= 0 {
		return // its graph queued it (restoreGraph)
	}
	switch {
	case r.State == api.Pending:
		// Its graph releases it (restoreGraph).
	case r.State == api.Queued && !r.RetryAt.IsZero() && r.Exec == "":
		e.addTimer(timer{at: r.RetryAt, kind: timerRetry, t: t, epoch: r.Epoch})
	case r.State == api.Queued && r.Exec == "":
		e.q.push(t)
	case r.State == api.Queued:
		// Granted to a peer, maybe never confirmed: the grant died with this node's
		// memory of it. Queue it again under a new epoch; a copy the peer may run
		// is fenced off.
		e.enqueue(t, now, r.Epoch+1, r.Node, r.NodeLosses, nil)
	case r.State == api.Running && r.Exec != "" && e.cluster != nil:
		// index would do nothing: rec.Exec names the peer already.
		if e.cluster.onPeer[r.Exec] == nil {
			e.cluster.onPeer[r.Exec] = map[*entry]struct{}{}
		}
		e.cluster.onPeer[r.Exec][t] = struct{}{}
		e.cluster.expectPeer(r.Exec, now)
		e.cluster.unconfirmed[t] = time.Time{}
	default:
		// It was running here: that run died with the node.
		e.lostHere(t, now)
	}
}

// lostHere counts a node loss for a task whose run died with this node, and queues it
// again (or fails it past the budget).
func (e *Engine) lostHere(t *entry, now time.Time) {
	losses := t.rec.NodeLosses + 1
	budget := 0
	if e.cluster != nil {
		budget = e.cluster.cfg.NodeLosses
	} else {
		budget = 3
	}
	if losses > budget {
		e.finish(t, api.Failed, fmt.Sprintf("node lost: %s stopped while running the task; the task lost %d nodes, over the budget of %d",
			e.cfg.Name, losses, budget), t.rec.Result, t.rec.Failures, losses, now)
		return
	}
	e.enqueue(t, now, t.rec.Epoch+1, t.rec.Node, losses, nil)
}

// restoreGraph rebuilds a graph from its tasks' records: its dag, replayed with the
// outcomes in the order they happened, and its watchers.
func (e *Engine) restoreGraph(id string, ts []*entry, now time.Time) {
	slices.SortFunc(ts, func(a, b *entry) int { return cmp.Compare(a.rec.GIdx, b.rec.GIdx) })
	n := ts[len(ts)-1].rec.GIdx + 1
	gr := &graphRun{id: id, tasks: make([]*entry, n), ids: make([]string, n), names: map[string]string{},
		ext: map[string]*entry{}, created: ts[0].rec.Created, stored: len(ts)}
	active := false
	for _, t := range ts {
		if t.rec.GIdx < 0 || t.rec.GIdx >= n || gr.tasks[t.rec.GIdx] != nil {
			continue
		}
		gr.tasks[t.rec.GIdx] = t
		gr.ids[t.rec.GIdx] = t.rec.ID
		t.graph = gr
		gr.seq = max(gr.seq, t.rec.Seq)
		if t.rec.Spec.Name != "" {
			gr.names[t.rec.Spec.Name] = t.rec.ID
		}
		if t.rec.Created.Before(gr.created) {
			gr.created = t.rec.Created
		}
		active = active || !t.rec.State.Terminal()
	}
	e.graphs[id] = gr
	e.gchange[gr] = struct{}{}
	complete := !slices.Contains(gr.tasks, nil)
	if !active || !complete {
		// Done, or retention took some of its finished tasks: nothing will run.
		gr.done = !active
		if active {
			for _, t := range gr.tasks {
				if t != nil && !t.rec.State.Terminal() {
					e.terminate(t, api.UpstreamFailed, "a dep's record expired before the node restarted", t.rec.Result, now)
				}
			}
			gr.done = true
		}
		return
	}
	ds := make([]dag.Spec, n)
	for i, t := range gr.tasks {
		ds[i] = dag.Spec{Name: t.rec.Spec.Name, Deps: t.rec.Spec.Deps, Trigger: dag.Trigger(t.rec.Spec.Trigger)}
	}
	g, err := dag.Build(ds, func(ref string) bool { _, ok := e.tasks[ref]; return ok || isTaskID(ref) },
		dag.Limits{MaxTasks: max(e.cfg.MaxBatch, n), MaxDepth: max(e.cfg.MaxGraphDepth, n)})
	if err != nil {
		return // it was valid when accepted; a record we cannot read back leaves it as it is
	}
	gr.g = g
	g.Start()
	// Replay the outcomes, graph tasks and external deps together, in finish order.
	type end struct {
		at  time.Time
		idx int    // -1 for an external dep
		ref string // the external dep
		o   dag.Outcome
	}
	var ends []end
	for i, t := range gr.tasks {
		if s := t.rec.State; s.Terminal() && s != api.UpstreamFailed {
			ends = append(ends, end{t.rec.Finished, i, "", outcomeOf(s)})
		}
	}
	for _, ref := range g.Externals() {
		ext := e.tasks[ref]
		gr.ext[ref] = ext
		switch {
		case ext == nil:
			ends = append(ends, end{time.Time{}, -1, ref, dag.Failed}) // expired before the restart: unknown
		case ext.rec.State.Terminal():
			ends = append(ends, end{ext.rec.Finished, -1, ref, outcomeOf(ext.rec.State)})
		default:
			e.watchers[ref] = append(e.watchers[ref], gr)
		}
	}
	slices.SortStableFunc(ends, func(a, b end) int { return a.at.Compare(b.at) })
	for _, d := range ends {
		if d.idx >= 0 {
			g.Complete(d.idx, d.o)
		} else {
			g.CompleteExternal(d.ref, d.o)
		}
	}
	// What the dag says now and what the records say agree, since a step's changes
	// are stored together; should they not, the dag wins.
	for i, t := range gr.tasks {
		st, o := g.State(i)
		switch {
		case st == dag.Ready && t.rec.State == api.Pending:
			e.enqueue(t, now, t.rec.Epoch, t.rec.Node, t.rec.NodeLosses, e.depResults(gr, i))
		case st == dag.Done && o == dag.UpstreamFailed && !t.rec.State.Terminal():
			e.terminate(t, api.UpstreamFailed, e.upstreamReason(gr, i), t.rec.Result, now)
		}
	}
	if g.Done() {
		gr.done = true
		e.unwatch(gr)
	}
}

// isTaskID reports whether ref looks like a task id (an external dep whose record
// may be gone).
func isTaskID(ref string) bool {
	_, ok := OwnerOf(ref)
	return ok
}

// expectPeer notes that a restored task runs on peer id: if the peer is not seen
// within OwnerGrace of now, it is taken for dead.
func (c *cluster) expectPeer(id string, now time.Time) {
	if p := c.peers[id]; p != nil && !p.gone {
		return
	}
	if _, ok := c.expect[id]; !ok {
		c.expect[id] = now
	}
}

// neverSeen gives up on an executor this node restored tasks on and never saw again:
// the tasks lost a node.
func (c *cluster) neverSeen(id string, now time.Time) {
	delete(c.expect, id)
	if p := c.peers[id]; p != nil && !p.gone {
		return
	}
	lost := make([]*entry, 0, len(c.onPeer[id]))
	for t := range c.onPeer[id] {
		if !t.rec.State.Terminal() {
			lost = append(lost, t)
		}
	}
	slices.SortFunc(lost, func(a, b *entry) int { return cmpUint(a.rec.Seq, b.rec.Seq) })
	p := &peer{id: id, name: id, state: "not seen since this node restarted"}
	for _, t := range lost {
		c.executorLost(t, p, now)
	}
}
