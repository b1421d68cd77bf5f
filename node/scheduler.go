package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// timeoutError is the cause of a run that exceeded its timeout.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string { return fmt.Sprintf("timeout: the run exceeded %s", e.d) }

// Submit validates specs and accepts them as one submission: all of them or, with an
// error, none. It returns the new task ids in order. A spec with an idempotency key
// already seen returns the earlier task's id instead of a new task.
func (n *Node) Submit(specs []api.Spec) ([]string, error) {
	tasks, _, err := n.submit(specs, len(specs) > 1)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(tasks))
	for i, t := range tasks {
		ids[i] = t.id
	}
	return ids, nil
}

// submit is Submit returning the tasks. A batch's errors name the spec at fault by its
// index ("tasks[0].timeout"), even in a batch of one.
func (n *Node) submit(specs []api.Spec, batch bool) ([]*task, *graphRun, error) {
	if len(specs) == 0 {
		return nil, nil, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Message: "no tasks in the submission"}
	}
	if len(specs) > n.cfg.MaxBatch {
		return nil, nil, &api.Error{Status: http.StatusRequestEntityTooLarge, Code: api.CodeTooLarge,
			Message: fmt.Sprintf("%d tasks in one submission; the limit is %d", len(specs), n.cfg.MaxBatch)}
	}
	reg := n.registry()
	for i := range specs {
		if err := n.validate(reg, &specs[i]); err != nil {
			if batch {
				prefixField(err, fmt.Sprintf("tasks[%d]", i))
			}
			return nil, nil, err
		}
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping || n.draining {
		return nil, nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeDraining, Message: "the node is draining or shutting down; submit to another node"}
	}
	fresh := 0
	for i := range specs {
		if k := specs[i].IdempotencyKey; k == "" || n.store.withKey(k) == nil {
			fresh++
		}
	}
	if n.live+fresh > n.cfg.MaxQueue {
		n.metrics.rejected.Inc()
		return nil, nil, &api.Error{Status: http.StatusTooManyRequests, Code: api.CodeQueueFull,
			Message: fmt.Sprintf("the node's queue is full (%d unfinished tasks, limit %d); retry later or submit to another node", n.live, n.cfg.MaxQueue)}
	}
	wasIdle := n.cluster != nil && n.stealableLocked() == 0
	var (
		out []*task
		gr  *graphRun
	)
	if isGraph(specs) {
		var err error
		if out, gr, err = n.submitGraphLocked(specs, now); err != nil {
			var e *api.Error
			if !batch && errors.As(err, &e) {
				// One spec: its fields are not "tasks[0].…".
				e.Field = strings.TrimPrefix(e.Field, "tasks[0].")
				e.Message = strings.TrimPrefix(e.Message, "tasks[0].")
			}
			return nil, nil, err
		}
	} else {
		out = make([]*task, len(specs))
		for i := range specs {
			if k := specs[i].IdempotencyKey; k != "" {
				if t := n.store.withKey(k); t != nil {
					out[i] = t
					continue
				}
			}
			out[i] = n.newTaskLocked(&specs[i], now)
			n.enqueueLocked(out[i], now)
		}
	}
	n.dispatchLocked()
	if wasIdle && n.stealableLocked() > 0 {
		select {
		case n.cluster.loadWake <- struct{}{}:
		default:
		}
	}
	n.trimLocked()
	return out, gr, nil
}

// newTaskLocked stores a validated spec as a new task; the caller queues it (or leaves
// it pending).
func (n *Node) newTaskLocked(spec *api.Spec, now time.Time) *task {
	n.seq++
	t := &task{
		id:      taskID(n.id, n.seq),
		seq:     n.seq,
		spec:    *spec,
		needs:   needsOf(spec.Requires),
		created: now,
		heapIdx: -1,
		done:    make(chan struct{}),
	}
	t.class = n.classLocked(spec.Type, t.needs)
	n.store.add(t)
	n.live++
	n.metrics.submitted.Inc()
	return t
}

// classLocked returns the queue class for tasks of a type with these needs, creating
// it.
func (n *Node) classLocked(typ string, nd needs) *class {
	key := typ + "|" + nd.key()
	c := n.q.classes[key]
	if c == nil {
		c = &class{key: key, typ: typ, needs: nd, unfit: n.unfitLocked(typ, nd)}
		n.q.classes[key] = c
	}
	return c
}

// unfitLocked says why this node can never run tasks of a type with these needs.
func (n *Node) unfitLocked(typ string, nd needs) string {
	if _, ok := n.handlers[typ]; !ok {
		return fmt.Sprintf("no node can run it yet: this node has no handler for type %q", typ)
	}
	return n.res.unfit(nd)
}

// setStateLocked moves t to state s and tells the event stream.
func (n *Node) setStateLocked(t *task, s api.State, now time.Time) {
	if t.foreign {
		t.state = s // its owner keeps the record and tells the world
		return
	}
	if t.state != "" {
		n.counts[t.state]--
	}
	t.state = s
	n.counts[s]++
	e := api.Event{Task: t.id, Type: t.spec.Type, State: s, Attempt: t.attempt, Node: t.node, Error: t.err, Time: now}
	if t.graph != nil {
		e.Graph = t.graph.id
	}
	n.events.publish(e)
}

// enqueueLocked puts t in the ready queue.
func (n *Node) enqueueLocked(t *task, now time.Time) {
	t.queued = now
	t.retryAt = time.Time{}
	t.waiting = t.class.unfit
	n.setStateLocked(t, api.Queued, now)
	n.q.push(t)
}

// dispatchLocked starts workers for queued tasks while slots are free.
func (n *Node) dispatchLocked() {
	for n.busy < n.cfg.Slots && !n.stopping {
		t := n.nextLocked()
		if t == nil {
			n.kick() // idle slots and nothing to run here: look at the peers
			return
		}
		r := n.startLocked(t)
		n.busy++
		n.wg.Add(1)
		go n.worker(r)
	}
}

func (n *Node) nextLocked() *task {
	return n.q.next(func(c *class) bool { return n.res.fits(c.needs) })
}

// run is one attempt of a task, handed to a worker.
type run struct {
	t       *task
	ctx     context.Context
	cancel  context.CancelFunc
	handler Handler
	in      Input
	epoch   uint64
}

// startLocked takes t off the queue and makes it running.
func (n *Node) startLocked(t *task) *run {
	now := time.Now()
	n.q.remove(t)
	n.res.take(t.needs)
	t.attempt++
	t.started = now
	t.node = n.cfg.Name
	t.waiting = ""
	t.err = ""
	ctx := context.WithValue(n.runCtx, ctxKey{}, runInfo{id: t.id, attempt: t.attempt})
	var cancel context.CancelFunc
	if d := time.Duration(t.spec.Timeout); d > 0 {
		ctx, cancel = context.WithTimeoutCause(ctx, d, timeoutError{d})
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	t.cancelRun = cancel
	n.setStateLocked(t, api.Running, now)
	if t.foreign {
		n.reportRunningLocked(t, now)
		if n.q.len == 0 {
			n.kick() // its last stolen task started: a thief of short runs asks ahead
		}
	}
	return &run{
		t: t, ctx: ctx, cancel: cancel, epoch: t.epoch,
		handler: n.handlers[t.spec.Type],
		// The handler gets copies: what it does to them cannot reach the record.
		in: Input{ID: t.id, Attempt: t.attempt, Type: t.spec.Type, Payload: slices.Clone(t.spec.Payload), Deps: maps.Clone(t.deps)},
	}
}

// worker runs r, then keeps its slot for the next queued task while there is one.
func (n *Node) worker(r *run) {
	defer n.wg.Done()
	for r != nil {
		result, err := n.execute(r)
		n.mu.Lock()
		n.finishRunLocked(r, result, err)
		r = nil
		if !n.stopping {
			if t := n.nextLocked(); t != nil {
				r = n.startLocked(t)
			}
		}
		if r == nil {
			n.busy--
		}
		// The run gave back its resources: tasks that waited for them may now fit
		// the other idle slots, not just this one.
		n.dispatchLocked()
		n.trimLocked()
		n.mu.Unlock()
	}
}

// execute calls the handler, turning a panic into an error and the result into JSON.
func (n *Node) execute(r *run) (result json.RawMessage, err error) {
	defer r.cancel()
	start := time.Now()
	defer func() { n.metrics.runSeconds.Observe(time.Since(start).Seconds()) }()
	var v any
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
				n.log.Error("handler panicked", slog.String("task", r.in.ID), slog.String("type", r.in.Type),
					slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			}
		}()
		if r.handler == nil {
			err = fmt.Errorf("no handler for type %q on this node", r.in.Type)
			return
		}
		v, err = r.handler(r.ctx, &r.in)
	}()
	if r.ctx.Err() != nil {
		// The run's context ended (timeout, cancel, shutdown): say why, whatever the
		// handler made of it. A handler that ignored its context still timed out, and
		// one that returned ctx.Err() reports the cause, not "context canceled".
		cause := context.Cause(r.ctx)
		switch {
		case err == nil || err == r.ctx.Err():
			err = cause
		case !errors.Is(err, cause):
			err = fmt.Errorf("%w: %w", cause, err)
		}
	}
	res, encErr := n.encodeResult(v)
	if encErr != nil && err == nil {
		err = encErr
	}
	return res, err
}

// encodeResult renders a handler's result as JSON within the size cap.
func (n *Node) encodeResult(v any) (json.RawMessage, error) {
	var b []byte
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, errors.New("the handler returned a json.RawMessage that is not valid JSON")
		}
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("the handler's result is not JSON-able: %w", err)
		}
	}
	if len(b) > n.cfg.MaxResultBytes {
		return nil, fmt.Errorf("result too large: %d bytes, over the %d-byte cap (--max-result)", len(b), n.cfg.MaxResultBytes)
	}
	return b, nil
}

// finishRunLocked records the outcome of a run, unless the task moved on meanwhile
// (cancelled, or fenced by a newer epoch).
func (n *Node) finishRunLocked(r *run, result json.RawMessage, err error) {
	t := r.t
	n.res.give(t.needs)
	t.cancelRun = nil
	if t.foreign {
		n.finishForeignLocked(r, result, err)
		return
	}
	if t.state != api.Running || t.epoch != r.epoch || t.expired {
		return
	}
	now := time.Now()
	t.result = result
	if err == nil {
		n.terminateLocked(t, api.Succeeded, "", now)
		return
	}
	if errors.Is(err, ErrStopped) {
		n.terminateLocked(t, api.Failed, err.Error(), now) // the node goes, and the record with it
		return
	}
	n.attemptFailedLocked(t, err.Error(), now)
}

// attemptFailedLocked retries a failed attempt while the task has retries left, and
// fails the task after that.
func (n *Node) attemptFailedLocked(t *task, msg string, now time.Time) {
	// Only application failures count against retries; runs lost with their node
	// count against the node-loss budget instead.
	t.failures++
	if t.failures <= t.spec.Retries {
		t.err = msg
		n.retryLocked(t, now)
		return
	}
	if t.spec.Retries > 0 {
		msg = fmt.Sprintf("%s (attempt %d of %d)", msg, t.failures, t.spec.Retries+1)
	}
	n.terminateLocked(t, api.Failed, msg, now)
}

// retryLocked schedules the next attempt after an exponential backoff with jitter.
func (n *Node) retryLocked(t *task, now time.Time) {
	d := n.cfg.RetryBase << min(t.failures-1, 30)
	if d > n.cfg.RetryMax || d <= 0 {
		d = n.cfg.RetryMax
	}
	d = d/2 + time.Duration(n.rng.Int64N(int64(d/2)+1)) // "equal jitter": half fixed, half random
	t.retryAt = now.Add(d)
	t.waiting = fmt.Sprintf("retrying after attempt %d of %d failed", t.failures, t.spec.Retries+1)
	n.metrics.retries.Inc()
	t.epoch++ // fences any report of the failed attempt still on its way
	n.setStateLocked(t, api.Queued, now)
	epoch := t.epoch
	t.retryTimer = time.AfterFunc(d, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if t.state != api.Queued || t.epoch != epoch || t.heapIdx >= 0 || n.stopping {
			return
		}
		t.retryTimer = nil
		n.enqueueLocked(t, time.Now())
		n.dispatchLocked()
	})
}

// terminateLocked ends t in a terminal state.
func (n *Node) terminateLocked(t *task, s api.State, msg string, now time.Time) {
	if t.retryTimer != nil {
		t.retryTimer.Stop()
		t.retryTimer = nil
	}
	n.q.remove(t)
	n.setExecLocked(t, "") // a cancel has been sent already; nothing runs it for us now
	t.err = msg
	t.finished = now
	t.retryAt = time.Time{}
	t.waiting = ""
	t.epoch++ // fences any report still on its way
	n.setStateLocked(t, s, now)
	n.live--
	n.store.finish(t)
	n.metrics.finished.WithLabelValues(string(s)).Inc()
	close(t.done)
	n.graphTaskEndedLocked(t, now)
	// Retention over MaxRecords is applied by trimLocked once the operation that ended
	// t is done: dropping records in the middle of it would pull tasks from under
	// the graph code.
}

// Cancel cancels a task that has not finished: a queued one never runs, a running one
// has its context cancelled (an exec run is killed). It returns the record.
func (n *Node) Cancel(id string) (api.Task, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, err := n.lookupLocked(id)
	if err != nil {
		return api.Task{}, err
	}
	if t.state.Terminal() {
		return n.recordLocked(t), &api.Error{Status: http.StatusConflict, Code: api.CodeConflict,
			Message: fmt.Sprintf("task %s already %s", id, t.state)}
	}
	n.cancelLocked(t, "cancelled by request", time.Now())
	rec := n.recordLocked(t)
	n.trimLocked()
	return rec, nil
}

func (n *Node) cancelLocked(t *task, why string, now time.Time) {
	if t.cancelRun != nil {
		t.cancelRun()
	}
	if t.exec != "" {
		// Granted to or running on another node: stop it there, resending until the
		// node confirms.
		n.cluster.cancels[t.id] = &pendingCancel{exec: t.exec, epoch: t.epoch, sentAt: now}
		n.sendLocked(t.exec, &peerMsg{Cancel: []cancelMsg{{ID: t.id, Epoch: t.epoch}}})
		n.setExecLocked(t, "")
	}
	n.terminateLocked(t, api.Cancelled, why, now)
}
