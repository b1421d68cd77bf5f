package engine

import (
	"fmt"
	"time"

	"encoding/json"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

// The task lifecycle on its owner: submission, the ready queue, runs, retries,
// terminal states, cancels and retention.

type runKey struct {
	id    string
	epoch uint64
}

func (e *Engine) onSubmit(in Submit, now time.Time) {
	ids, gr, err := e.submit(in.Specs, in.Batch, now)
	rep := Reply{Req: in.Req, Err: err, IDs: ids}
	if gr != nil {
		rep.Graph, rep.Names = gr.id, gr.names
	}
	e.rd.Replies = append(e.rd.Replies, rep)
}

func (e *Engine) submit(specs []api.Spec, batch bool, now time.Time) ([]string, *graphRun, error) {
	if len(specs) == 0 {
		return nil, nil, &api.Error{Status: statusBadRequest, Code: api.CodeInvalidRequest, Message: "no tasks in the submission"}
	}
	if len(specs) > e.cfg.MaxBatch {
		return nil, nil, &api.Error{Status: statusTooLarge, Code: api.CodeTooLarge,
			Message: fmt.Sprintf("%d tasks in one submission; the limit is %d", len(specs), e.cfg.MaxBatch)}
	}
	if e.stopping || e.draining {
		return nil, nil, &api.Error{Status: statusUnavailable, Code: api.CodeDraining, Message: "the node is draining or shutting down; submit to another node"}
	}
	fresh := 0
	for i := range specs {
		if k := specs[i].IdempotencyKey; k == "" || e.idem[k] == nil {
			fresh++
		}
	}
	if e.live+fresh > e.cfg.MaxQueue {
		e.stats.Rejected++
		return nil, nil, &api.Error{Status: statusTooMany, Code: api.CodeQueueFull,
			Message: fmt.Sprintf("the node's queue is full (%d unfinished tasks, limit %d); retry later or submit to another node", e.live, e.cfg.MaxQueue)}
	}
	wasIdle := e.cluster != nil && e.stealable() == 0
	var (
		out []*entry
		gr  *graphRun
	)
	if isGraph(specs) {
		var err error
		if out, gr, err = e.submitGraph(specs, batch, now); err != nil {
			return nil, nil, err
		}
	} else {
		out = make([]*entry, len(specs))
		for i := range specs {
			if k := specs[i].IdempotencyKey; k != "" {
				if t := e.idem[k]; t != nil {
					out[i] = t
					continue
				}
			}
			out[i] = e.newTask(&specs[i], now, "", 0)
			e.enqueue(out[i], now, 0, "", 0, nil)
		}
	}
	if wasIdle && e.stealable() > 0 {
		e.cluster.pushLoad = true
	}
	ids := make([]string, len(out))
	for i, t := range out {
		ids[i] = t.rec.ID
	}
	return ids, gr, nil
}

// newTask stores a validated spec as a new record; the caller queues it (or leaves it
// pending).
func (e *Engine) newTask(spec *api.Spec, now time.Time, graph string, gidx int) *entry {
	e.seq++
	op := record.Op{Kind: record.OpCreate, ID: taskID(e.cfg.ID, e.seq), Seq: e.seq, Spec: spec, At: now, Graph: graph, GIdx: gidx}
	rec := (*record.Record)(nil).Apply(&op)
	t := (&entry{rec: rec, heapIdx: -1, needs: needsOf(spec.Requires)}).keyed()
	t.class = e.classFor(spec.Type, t.needs)
	e.rd.Writes = append(e.rd.Writes, op)
	e.markChanged(t)
	e.tasks[rec.ID] = t
	e.order = append(e.order, t)
	if k := spec.IdempotencyKey; k != "" {
		e.idem[k] = t
	}
	e.live++
	e.stats.Submitted++
	return t
}

// classFor returns the queue class for tasks of a type with these needs, creating it.
func (e *Engine) classFor(typ string, nd needs) *class {
	key := typ + "|" + nd.key()
	c := e.q.classes[key]
	if c == nil {
		c = &class{key: key, typ: typ, needs: nd, unfit: e.unfit(typ, nd)}
		e.q.classes[key] = c
	}
	return c
}

// unfit says why this node can never run tasks of a type with these needs.
func (e *Engine) unfit(typ string, nd needs) string {
	if !e.types[typ] {
		return fmt.Sprintf("no node can run it yet: this node has no handler for type %q", typ)
	}
	return e.res.unfit(nd)
}

// enqueue puts t in the ready queue with the given epoch, node, node losses and (for
// a released graph task) dep results.
func (e *Engine) enqueue(t *entry, now time.Time, epoch uint64, node string, losses int, deps map[string]json.RawMessage) {
	old := t.rec.State
	e.setExec(t, "")
	e.apply(t, record.Op{Kind: record.OpQueue, At: now, Epoch: epoch, Node: node, NodeLosses: losses, Waiting: t.class.unfit, Deps: deps})
	e.event(t, old, now)
	e.q.push(t)
}

// dispatch starts queued tasks while slots are free. (Handing the runner runs ahead
// of free slots, to save short runs a trip through the loop, was tried: the gain was
// lost in the machine's noise, and a run waiting in the runner could not be stolen,
// sat behind a long run, and was lost at a graceful stop. See DESIGN notes.)
func (e *Engine) dispatch(now time.Time) {
	for e.busy < e.cfg.Slots && !e.stopping {
		t := e.q.next(func(c *class) bool { return e.res.fits(c.needs) })
		if t == nil {
			if e.cluster != nil {
				e.cluster.kicked = true // idle slots and nothing to run here: look at the peers
			}
			return
		}
		e.start(t, now)
	}
}

// start takes t off the queue and orders its run.
func (e *Engine) start(t *entry, now time.Time) {
	e.q.remove(t)
	e.res.take(t.needs)
	e.busy++
	old := t.rec.State
	e.apply(t, record.Op{Kind: record.OpRun, At: now, Attempt: t.rec.Attempt + 1, Node: e.cfg.Name})
	e.event(t, old, now)
	t.running, t.runEpoch = true, t.rec.Epoch
	e.runs()[runKey{t.rec.ID, t.rec.Epoch}] = t
	timeout := time.Duration(t.rec.Spec.Timeout)
	if timeout > 0 {
		e.addTimer(timer{at: now.Add(timeout), kind: timerTimeout, t: t, epoch: t.rec.Epoch, d: timeout})
	}
	e.rd.Start = append(e.rd.Start, Run{ID: t.rec.ID, Attempt: t.rec.Attempt, Epoch: t.rec.Epoch, Type: t.rec.Spec.Type,
		Payload: t.rec.Spec.Payload, Deps: t.rec.Deps, Timeout: timeout})
	if t.foreign {
		e.cluster.reportRunning(t, now)
		if e.q.len == 0 {
			e.cluster.kicked = true // its last stolen task started: a thief of short runs asks ahead
		}
	}
}

// runs is the index of the runs this node's runner holds.
func (e *Engine) runs() map[runKey]*entry {
	if e.running == nil {
		e.running = map[runKey]*entry{}
	}
	return e.running
}

func (e *Engine) onRunDone(in RunDone, now time.Time) {
	k := runKey{in.ID, in.Epoch}
	t := e.running[k]
	if t == nil {
		return // not a run of ours (a duplicate)
	}
	delete(e.running, k)
	e.busy--
	e.res.give(t.needs)
	t.running = false
	if t.foreign {
		e.cluster.finishForeign(t, in, now)
		return
	}
	if t.rec.State != api.Running || t.rec.Epoch != in.Epoch || t.expired {
		return // cancelled, or fenced by a newer epoch meanwhile
	}
	switch {
	case in.Err == "":
		e.terminate(t, api.Succeeded, "", in.Result, now)
	case in.Stopped && e.cfg.Durable:
		// The node stops and comes back with its records: run it again then.
		e.enqueue(t, now, t.rec.Epoch+1, t.rec.Node, t.rec.NodeLosses, nil)
	case in.Stopped:
		e.terminate(t, api.Failed, in.Err, in.Result, now) // the node goes, and the record with it
	default:
		e.attemptFailed(t, in.Err, in.Result, now)
	}
}

// attemptFailed retries a failed attempt while the task has retries left, and fails
// the task after that. Only application failures count against retries; runs lost
// with their node count against the node-loss budget instead.
func (e *Engine) attemptFailed(t *entry, msg string, result json.RawMessage, now time.Time) {
	e.attemptFailedAt(t, msg, result, t.rec.Attempt, t.rec.Node, now)
}

// attemptFailedAt is attemptFailed for attempt number attempt, run on node.
func (e *Engine) attemptFailedAt(t *entry, msg string, result json.RawMessage, attempt int, node string, now time.Time) {
	failures := t.rec.Failures + 1
	if failures <= t.rec.Spec.Retries {
		e.retry(t, failures, msg, result, attempt, node, now)
		return
	}
	if t.rec.Spec.Retries > 0 {
		msg = fmt.Sprintf("%s (attempt %d of %d)", msg, failures, t.rec.Spec.Retries+1)
	}
	e.end(t, record.Op{State: api.Failed, Error: msg, Result: result, Attempt: attempt, Failures: failures,
		NodeLosses: t.rec.NodeLosses, Node: node}, now)
}

// retry schedules the next attempt after an exponential backoff with "equal jitter":
// half fixed, half random.
func (e *Engine) retry(t *entry, failures int, msg string, result json.RawMessage, attempt int, node string, now time.Time) {
	d := e.cfg.RetryBase << min(failures-1, 30)
	if d > e.cfg.RetryMax || d <= 0 {
		d = e.cfg.RetryMax
	}
	d = d/2 + time.Duration(e.rng.Int64N(int64(d/2)+1))
	old := t.rec.State
	e.setExec(t, "")
	e.apply(t, record.Op{Kind: record.OpRetry, Failures: failures, Error: msg, Result: result, RetryAt: now.Add(d),
		Attempt: attempt, Node: node,
		Waiting: fmt.Sprintf("retrying after attempt %d of %d failed", failures, t.rec.Spec.Retries+1),
		Epoch:   t.rec.Epoch + 1}) // the new epoch fences any report of the failed attempt
	e.event(t, old, now)
	e.stats.Retries++
	e.addTimer(timer{at: t.rec.RetryAt, kind: timerRetry, t: t, epoch: t.rec.Epoch})
}

// terminate ends t in a terminal state, keeping its counts, attempt and node.
func (e *Engine) terminate(t *entry, s api.State, msg string, result json.RawMessage, now time.Time) {
	e.finish(t, s, msg, result, t.rec.Failures, t.rec.NodeLosses, now)
}

func (e *Engine) finish(t *entry, s api.State, msg string, result json.RawMessage, failures, losses int, now time.Time) {
	e.end(t, record.Op{State: s, Error: msg, Result: result, Attempt: t.rec.Attempt, Failures: failures, NodeLosses: losses, Node: t.rec.Node}, now)
}

// finishAt ends t as attempt number attempt on node reported.
func (e *Engine) finishAt(t *entry, s api.State, msg string, result json.RawMessage, attempt int, node string, now time.Time) {
	e.end(t, record.Op{State: s, Error: msg, Result: result, Attempt: attempt, Failures: t.rec.Failures, NodeLosses: t.rec.NodeLosses, Node: node}, now)
}

// end applies a finishing op (its outcome fields set) to t.
func (e *Engine) end(t *entry, op record.Op, now time.Time) {
	e.q.remove(t)
	e.setExec(t, "") // a cancel has been sent already; nothing runs it for us now
	old := t.rec.State
	op.Kind, op.At, op.Epoch = record.OpFinish, now, t.rec.Epoch+1 // the new epoch fences any report still on its way
	e.apply(t, op)
	e.event(t, old, now)
	e.live--
	e.finished = append(e.finished, t)
	if c := e.stats.Finished.at(op.State); c != nil {
		*c++
	}
	e.graphTaskEnded(t, now)
}

func (e *Engine) onCancel(in Cancel, now time.Time) {
	t := e.tasks[in.ID]
	if t == nil {
		e.rd.Replies = append(e.rd.Replies, Reply{Req: in.Req, Err: NotFound(in.ID)})
		return
	}
	if t.rec.State.Terminal() {
		e.rd.Replies = append(e.rd.Replies, Reply{Req: in.Req, Rec: t.rec, Err: &api.Error{Status: statusConflict, Code: api.CodeConflict,
			Message: fmt.Sprintf("task %s already %s", in.ID, t.rec.State)}})
		return
	}
	e.cancel(t, "cancelled by request", now)
	e.rd.Replies = append(e.rd.Replies, Reply{Req: in.Req, Rec: t.rec})
}

// cancel ends a task that has not finished: a queued one never runs, a running one is
// stopped here or on the node that runs it.
func (e *Engine) cancel(t *entry, why string, now time.Time) {
	if t.running {
		e.rd.Stop = append(e.rd.Stop, StopRun{ID: t.rec.ID, Epoch: t.runEpoch, Reason: StopCancelled})
	}
	if t.rec.Exec != "" && e.cluster != nil {
		// Granted to or running on another node: stop it there, resending until the
		// node confirms.
		e.cluster.sendCancel(t, now)
	}
	e.terminate(t, api.Cancelled, why, t.rec.Result, now)
}

// NotFound is the error for a task this node does not hold.
func NotFound(id string) error {
	return &api.Error{Status: statusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("task %s: expired or unknown task", id)}
}

// setExec records where t runs for this node ("": here, or nowhere yet) in the
// cluster's index; the record's Exec field is set by the op that goes with it.
func (e *Engine) setExec(t *entry, id string) {
	if c := e.cluster; c != nil && !t.foreign {
		c.index(t, id)
	}
}

// expire drops finished records older than Retain, and the oldest finished ones while
// more than MaxRecords are kept.
func (e *Engine) expire(now time.Time) {
	cutoff := now.Add(-e.cfg.Retain)
	i := e.finHead
	for ; i < len(e.finished); i++ {
		t := e.finished[i]
		if len(e.finished)-i <= e.cfg.MaxRecords && t.rec.Finished.After(cutoff) {
			break
		}
		e.finished[i] = nil
		t.expired = true
		delete(e.tasks, t.rec.ID)
		if k := t.rec.Spec.IdempotencyKey; k != "" && e.idem[k] == t {
			delete(e.idem, k)
		}
		e.orderDel++
		e.counts[t.rec.State]--
		e.stats.Expired++
		e.rd.Writes = append(e.rd.Writes, record.Op{Kind: record.OpExpire, ID: t.rec.ID})
		e.rd.Expired = append(e.rd.Expired, t.rec.ID)
		e.forgetGraphTask(t)
	}
	e.finHead = i
	if e.finHead > 1024 && e.finHead > len(e.finished)/2 {
		e.finished = append([]*entry(nil), e.finished[e.finHead:]...)
		e.finHead = 0
	}
	if e.orderDel > 1024 && e.orderDel > len(e.order)/2 {
		kept := make([]*entry, 0, len(e.order)-e.orderDel)
		for _, t := range e.order {
			if !t.expired {
				kept = append(kept, t)
			}
		}
		e.order, e.orderDel = kept, 0
	}
}

// trim applies MaxRecords once an operation is done: dropping records in the middle
// of one would pull tasks from under the graph code.
func (e *Engine) trim(now time.Time) {
	if len(e.finished)-e.finHead > e.cfg.MaxRecords {
		e.expire(now)
	}
}

// stealable counts the queued tasks this node owns (the ones peers may steal).
func (e *Engine) stealable() int {
	k := 0
	for _, cl := range e.q.active {
		k += cl.heap.Len() - cl.foreign
	}
	return k
}

// runnable counts the queued tasks this node can run itself.
func (e *Engine) runnable() int {
	k := 0
	for _, cl := range e.q.active {
		if cl.unfit == "" {
			k += cl.heap.Len()
		}
	}
	return k
}

func (e *Engine) onDrain(in Drain, now time.Time) {
	if !e.draining && !e.stopping {
		timeout := in.Timeout
		if timeout <= 0 {
			timeout = time.Hour
		}
		e.draining = true
		e.drainBy = now.Add(timeout)
		if e.cluster != nil {
			e.cluster.returnQueued(now)
		}
	}
	e.rd.Replies = append(e.rd.Replies, Reply{Req: in.Req, Unfinished: e.live})
}

// checkDrained ends a drain once every task this node owns or runs has finished.
func (e *Engine) checkDrained(time.Time) {
	if !e.draining || e.drained || e.live > 0 || e.busy > 0 || (e.cluster != nil && len(e.cluster.foreign) > 0) {
		return
	}
	e.drained = true
	e.rd.Drained = true
}

func (e *Engine) onStop(in Stop, now time.Time) {
	if in.Req != 0 {
		e.rd.Replies = append(e.rd.Replies, Reply{Req: in.Req})
	}
	if e.stopping {
		return
	}
	e.stopping = true
	if in.Graceful && e.cluster != nil {
		// Stolen tasks that have not started go back to their owners now, rather than
		// wait for this node's departure (and cost them a node loss).
		e.cluster.returnQueued(now)
	}
}

func (e *Engine) onSetTypes(in SetTypes) {
	e.types = map[string]bool{}
	for _, t := range in.Types {
		e.types[t] = true
	}
	for _, c := range e.q.classes {
		c.unfit = e.unfit(c.typ, c.needs)
	}
	if c := e.cluster; c != nil {
		c.capability = c.capabilityNow()
	}
}
