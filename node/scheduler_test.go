package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// TestRequiresMissingTagWaits: a task needing what the node lacks stays queued, its
// record saying why, while the node keeps running other work.
func TestRequiresMissingTagWaits(t *testing.T) {
	n := newTestNode(t, func(c *Config) {
		c.Tags = []string{"zone=eu"}
		c.Resources = map[string]int64{"gpu": 1}
	})
	tag := submit(t, n, `{"type":"noop","requires":{"tags":["gpu","zone=eu"]}}`)
	res := submit(t, n, `{"type":"noop","requires":{"resources":{"gpu":2}}}`)
	ok := submit(t, n, `{"type":"noop","requires":{"tags":["zone=eu"],"resources":{"gpu":1}}}`)
	if r := waitTerminal(t, n, ok.ID); r.State != api.Succeeded {
		t.Fatalf("a task the node can run: %s %s", r.State, r.Error)
	}
	for _, c := range []struct {
		id   string
		want string
	}{
		{tag.ID, `tag "gpu"`},
		{res.ID, "gpu=2 (this node has 1)"},
	} {
		r := getTask(t, n, c.id)
		if r.State != api.Queued || r.Attempt != 0 {
			t.Errorf("task %s: %s attempt %d, want queued and never run", c.id, r.State, r.Attempt)
		}
		if !strings.Contains(r.Waiting, c.want) {
			t.Errorf("task %s: waiting %q does not say it needs %s", c.id, r.Waiting, c.want)
		}
	}
	// It can still be cancelled.
	if r := do(t, n, http.MethodDelete, "/v1/tasks/"+tag.ID, ""); r.status != http.StatusOK {
		t.Fatalf("cancel the unrunnable task: %d %s", r.status, r.body)
	}
}

// TestResourcesAreExclusive: two tasks each needing the node's only gpu never run at
// once, while a task with no needs runs beside them in the other slot.
func TestResourcesAreExclusive(t *testing.T) {
	n := newTestNode(t, func(c *Config) {
		c.Slots = 2
		c.Resources = map[string]int64{"gpu": 1}
	})
	var active, most atomic.Int32
	freeRan := make(chan struct{})
	mustHandle(t, n, "gpu", func(ctx context.Context, in *Input) (any, error) {
		now := active.Add(1)
		defer active.Add(-1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		// The plain task must get the other slot while a gpu task holds the gpu.
		select {
		case <-freeRan:
		case <-time.After(5 * time.Second):
			return nil, errors.New("the task without needs did not run beside the gpu task")
		}
		time.Sleep(20 * time.Millisecond)
		return nil, nil
	})
	var once sync.Once
	mustHandle(t, n, "plain", func(context.Context, *Input) (any, error) {
		once.Do(func() { close(freeRan) })
		return nil, nil
	})
	a := submit(t, n, `{"type":"gpu","requires":{"resources":{"gpu":1}}}`)
	b := submit(t, n, `{"type":"gpu","requires":{"resources":{"gpu":1}}}`)
	waitState(t, n, a.ID, api.Running)
	// b waits for the gpu although a slot is free, and says so.
	rb := getTask(t, n, b.ID)
	if rb.State != api.Queued || !strings.Contains(rb.Waiting, "gpu") {
		t.Errorf("second gpu task while the first runs: %s, waiting %q; want queued, waiting for the gpu", rb.State, rb.Waiting)
	}
	p := submit(t, n, `{"type":"plain"}`)
	for _, id := range []string{a.ID, b.ID, p.ID} {
		if r := waitTerminal(t, n, id); r.State != api.Succeeded {
			t.Errorf("task %s: %s %s", id, r.State, r.Error)
		}
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d gpu tasks ran at once on a node with gpu=1", m)
	}
}

// TestFreedResourcesFillIdleSlots: when a task frees resources that several queued
// tasks wait for, all that now fit start, not just one.
func TestFreedResourcesFillIdleSlots(t *testing.T) {
	n := newTestNode(t, func(c *Config) {
		c.Slots = 3
		c.Resources = map[string]int64{"gpu": 2}
	})
	big := newGate()
	mustHandle(t, n, "big", big.handler)
	t.Cleanup(big.open)
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	mustHandle(t, n, "small", func(ctx context.Context, in *Input) (any, error) {
		arrived.Done()
		select {
		case <-both:
			return nil, nil
		case <-time.After(5 * time.Second):
			return nil, errors.New("the other small task never ran beside this one")
		}
	})
	a := submit(t, n, `{"type":"big","requires":{"resources":{"gpu":2}}}`)
	waitState(t, n, a.ID, api.Running)
	b := submit(t, n, `{"type":"small","requires":{"resources":{"gpu":1}}}`)
	c := submit(t, n, `{"type":"small","requires":{"resources":{"gpu":1}}}`)
	big.open()
	for _, id := range []string{a.ID, b.ID, c.ID} {
		if r := waitTerminal(t, n, id); r.State != api.Succeeded {
			t.Errorf("task %s: %s %s", id, r.State, r.Error)
		}
	}
}

// TestTimeoutCancelsTheHandler: past its timeout a run's context ends and the task
// fails saying so, whether the handler returns ctx.Err() or the context's cause.
func TestTimeoutCancelsTheHandler(t *testing.T) {
	n := newTestNode(t, nil)
	sawCtx := make(chan error, 1)
	mustHandle(t, n, "stuck", func(ctx context.Context, in *Input) (any, error) {
		<-ctx.Done()
		sawCtx <- ctx.Err()
		return nil, ctx.Err()
	})
	for _, spec := range []string{
		`{"type":"stuck","timeout":"50ms"}`,
		`{"type":"sleep","payload":{"ms":30000},"timeout":"50ms"}`,
	} {
		start := time.Now()
		r := waitTerminal(t, n, submit(t, n, spec).ID)
		if r.State != api.Failed || !strings.Contains(r.Error, "timeout") || !strings.Contains(r.Error, "50ms") {
			t.Errorf("%s: %s %q; want failed with an error naming the 50ms timeout", spec, r.State, r.Error)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("%s: took %v to time out", spec, el)
		}
		if r.Attempt != 1 {
			t.Errorf("%s: attempt %d, want 1", spec, r.Attempt)
		}
	}
	if err := <-sawCtx; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the handler's context ended with %v, want a deadline", err)
	}
}

// flaky fails each task's first `fails` attempts, noting when each attempt started.
type flaky struct {
	fails int
	mu    sync.Mutex
	calls map[string][]time.Time
	seen  map[string][]int // attempt numbers from Input and from the context
}

func newFlaky(fails int) *flaky {
	return &flaky{fails: fails, calls: map[string][]time.Time{}, seen: map[string][]int{}}
}

func (f *flaky) handler(ctx context.Context, in *Input) (any, error) {
	f.mu.Lock()
	f.calls[in.ID] = append(f.calls[in.ID], time.Now())
	f.seen[in.ID] = append(f.seen[in.ID], in.Attempt, Attempt(ctx))
	n := len(f.calls[in.ID])
	f.mu.Unlock()
	if TaskID(ctx) != in.ID {
		return nil, fmt.Errorf("TaskID(ctx) = %q, want %q", TaskID(ctx), in.ID)
	}
	if n <= f.fails {
		return nil, fmt.Errorf("%w on attempt %d", errBoom, n)
	}
	return map[string]int{"attempt": n}, nil
}

func (f *flaky) times(id string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[id]...)
}

func TestRetriesThenSucceeds(t *testing.T) {
	n := newTestNode(t, nil)
	f := newFlaky(2)
	mustHandle(t, n, "flaky", f.handler)
	r := waitTerminal(t, n, submit(t, n, `{"type":"flaky","retries":2}`).ID)
	if r.State != api.Succeeded || r.Attempt != 3 || r.Error != "" {
		t.Fatalf("got %s attempt %d error %q; want succeeded on attempt 3 with no error", r.State, r.Attempt, r.Error)
	}
	if compactJSON(t, r.Result) != `{"attempt":3}` {
		t.Errorf("result %s, want the third attempt's", r.Result)
	}
	f.mu.Lock()
	got := fmt.Sprint(f.seen[r.ID])
	f.mu.Unlock()
	if got != "[1 1 2 2 3 3]" {
		t.Errorf("attempt numbers seen by the handler (Input, ctx): %s, want [1 1 2 2 3 3]", got)
	}
}

// TestRetryBackoffGrows: the wait before attempt n+1 is RetryBase·2^(n-1) with equal
// jitter, i.e. between half of it and all of it. Timers never fire early, so the lower
// bounds are exact; the upper bounds get slack for a busy machine.
func TestRetryBackoffGrows(t *testing.T) {
	const base = 20 * time.Millisecond
	n := newTestNode(t, func(c *Config) { c.RetryBase = base; c.RetryMax = 10 * time.Second })
	f := newFlaky(4)
	mustHandle(t, n, "flaky", f.handler)
	r := waitTerminal(t, n, submit(t, n, `{"type":"flaky","retries":4}`).ID)
	if r.State != api.Succeeded || r.Attempt != 5 {
		t.Fatalf("got %s attempt %d (%s); want succeeded on attempt 5", r.State, r.Attempt, r.Error)
	}
	starts := f.times(r.ID)
	if len(starts) != 5 {
		t.Fatalf("%d runs, want 5", len(starts))
	}
	var gaps []time.Duration
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, starts[i].Sub(starts[i-1]))
	}
	t.Logf("gaps between attempts: %v", gaps)
	for i, g := range gaps {
		full := base << i
		if g < full/2 {
			t.Errorf("gap after attempt %d: %v, under the jitter floor %v", i+1, g, full/2)
		}
		if slack := full/2 + 100*time.Millisecond; g > full+slack {
			t.Errorf("gap after attempt %d: %v, over %v (+%v slack)", i+1, g, full, slack)
		}
	}
	// Growth, as ratios: the last gap is at least 4x the first's floor and, the
	// machine's noise aside, several times the first gap.
	if ratio := float64(gaps[3]) / float64(gaps[0]); ratio < 2 {
		t.Errorf("the last gap is %.1fx the first, want the backoff to grow (>= 2x)", ratio)
	}
}

func TestRetriesExhausted(t *testing.T) {
	n := newTestNode(t, nil)
	f := newFlaky(1000)
	mustHandle(t, n, "flaky", f.handler)
	r := waitTerminal(t, n, submit(t, n, `{"type":"flaky","retries":2}`).ID)
	if r.State != api.Failed || r.Attempt != 3 {
		t.Fatalf("got %s attempt %d; want failed after attempt 3", r.State, r.Attempt)
	}
	if !strings.Contains(r.Error, "boom on attempt 3") || !strings.Contains(r.Error, "attempt 3 of 3") {
		t.Errorf("error %q; want the last attempt's error and \"attempt 3 of 3\"", r.Error)
	}
	if got := len(f.times(r.ID)); got != 3 {
		t.Errorf("the handler ran %d times, want 3", got)
	}
	// No retries: one run, the bare error.
	r = waitTerminal(t, n, submit(t, n, `{"type":"flaky"}`).ID)
	if r.State != api.Failed || r.Attempt != 1 || r.Error != "boom on attempt 1" {
		t.Errorf("without retries: %s attempt %d %q; want failed, attempt 1, \"boom on attempt 1\"", r.State, r.Attempt, r.Error)
	}
}

// TestCancelDuringBackoff: a task waiting for its retry is cancelled and never runs again.
func TestCancelDuringBackoff(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.RetryBase = 10 * time.Second; c.RetryMax = 10 * time.Second })
	f := newFlaky(1000)
	mustHandle(t, n, "flaky", f.handler)
	id := submit(t, n, `{"type":"flaky","retries":3}`).ID
	waitFor(t, 5*time.Second, "the first attempt to fail", func() bool {
		r, _ := n.Get(id)
		return r.RetryAt != nil
	})
	r := getTask(t, n, id)
	if r.State != api.Queued || !strings.Contains(r.Waiting, "retrying after attempt 1 of 4") || !strings.Contains(r.Error, "boom") {
		t.Errorf("in backoff: %s waiting %q error %q; want queued, saying it retries, with the last error", r.State, r.Waiting, r.Error)
	}
	if resp := do(t, n, http.MethodDelete, "/v1/tasks/"+id, ""); resp.status != http.StatusOK {
		t.Fatalf("cancel in backoff: %d %s", resp.status, resp.body)
	}
	if r := getTask(t, n, id); r.State != api.Cancelled || r.RetryAt != nil {
		t.Errorf("after cancel: %s retry_at %v", r.State, r.RetryAt)
	}
	if got := len(f.times(id)); got != 1 {
		t.Errorf("ran %d times, want 1", got)
	}
}

// TestCancelQueued: a queued task cancelled over HTTP never runs; a second cancel is 409.
func TestCancelQueued(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	rec := &recorder{}
	mustHandle(t, n, "rec", rec.handler)
	g, _ := blockSlots(t, n, 1)
	id := submit(t, n, `{"type":"rec","payload":"cancelled"}`).ID
	r := do(t, n, http.MethodDelete, "/v1/tasks/"+id, "")
	if r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	var rc api.Task
	r.decode(t, &rc)
	if rc.State != api.Cancelled || rc.FinishedAt == nil || !strings.Contains(rc.Error, "cancelled") {
		t.Errorf("cancel answered %s finished_at %v error %q; want the cancelled record", rc.State, rc.FinishedAt, rc.Error)
	}
	e := do(t, n, http.MethodDelete, "/v1/tasks/"+id, "").apiErr(t, http.StatusConflict)
	if e.Code != api.CodeConflict || !strings.Contains(e.Message, "already cancelled") {
		t.Errorf("second cancel: %+v", e)
	}
	after := submit(t, n, `{"type":"rec","payload":"after"}`).ID
	g.open()
	waitTerminal(t, n, after)
	if got := rec.seen(); len(got) != 1 || got[0] != "after" {
		t.Errorf("handler ran for %v; the cancelled task must never run", got)
	}
	if r := getTask(t, n, id); r.State != api.Cancelled || r.Attempt != 0 {
		t.Errorf("cancelled task later: %s attempt %d", r.State, r.Attempt)
	}
	do(t, n, http.MethodDelete, "/v1/tasks/nosuch-1", "").apiErr(t, http.StatusNotFound)
}

// TestCancelRunning: cancelling a running task ends its handler's context and frees
// its slot for the next task.
func TestCancelRunning(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	g, running := blockSlots(t, n, 1)
	next := submit(t, n, `{"type":"noop"}`).ID
	r := do(t, n, http.MethodDelete, "/v1/tasks/"+running[0], "")
	if r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if got := waitTerminal(t, n, next); got.State != api.Succeeded {
		t.Fatalf("the next task: %s %s", got.State, got.Error)
	}
	rc := getTask(t, n, running[0])
	if rc.State != api.Cancelled || rc.Result != nil {
		t.Errorf("cancelled running task: %s result %s; want cancelled without the handler's result", rc.State, rc.Result)
	}
	if g.count() != 1 {
		t.Errorf("the gate started %d times", g.count())
	}
}

func TestHandlerPanic(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	mustHandle(t, n, "panic", func(context.Context, *Input) (any, error) { panic("kaboom") })
	r := waitTerminal(t, n, submit(t, n, `{"type":"panic","retries":1}`).ID)
	if r.State != api.Failed || !strings.Contains(r.Error, "panic: kaboom") || r.Attempt != 2 {
		t.Errorf("panicking task: %s attempt %d %q; want failed twice with the panic's message", r.State, r.Attempt, r.Error)
	}
	r = waitTerminal(t, n, submit(t, n, `{"type":"echo","payload":{"still":"here"}}`).ID)
	if r.State != api.Succeeded || compactJSON(t, r.Result) != `{"still":"here"}` {
		t.Errorf("the next task: %s %s", r.State, r.Result)
	}
}

// TestResultTooLarge: a result over MaxResultBytes fails its task.
func TestResultTooLarge(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxResultBytes = 16 })
	r := waitTerminal(t, n, submit(t, n, `{"type":"echo","payload":"a string of more than sixteen bytes"}`).ID)
	if r.State != api.Failed || !strings.Contains(r.Error, "result too large") {
		t.Errorf("%s %q; want failed with result too large", r.State, r.Error)
	}
}

// TestShutdown: Shutdown lets a running handler go on until its context ends, then
// cancels it and returns an error saying so; a second call returns at once.
func TestShutdown(t *testing.T) {
	// Not newTestNode: its cleanup would report the error this test expects.
	cfg := LocalConfig()
	cfg.Slots = 2
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	cause := make(chan error, 1)
	mustHandle(t, n, "stuck", func(ctx context.Context, in *Input) (any, error) {
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	id := submit(t, n, `{"type":"stuck","retries":3}`).ID
	quick := submit(t, n, `{"type":"sleep","payload":{"ms":50}}`).ID
	waitState(t, n, id, api.Running)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = n.Shutdown(ctx)
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its context ended", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v; want it to report running tasks cancelled", err)
	}
	if c := <-cause; !errors.Is(c, ErrStopped) {
		t.Errorf("the handler's context ended with cause %v, want ErrStopped", c)
	}
	r, _ := n.Get(id)
	if r.State != api.Failed || r.Attempt != 1 || !strings.Contains(r.Error, "shutting down") {
		t.Errorf("a run cancelled by shutdown: %s attempt %d %q; want failed once (not retried), saying the node shut down", r.State, r.Attempt, r.Error)
	}
	if r, _ := n.Get(quick); r.State != api.Succeeded {
		t.Errorf("a task that finished within the grace: %s %q", r.State, r.Error)
	}
	if _, err := n.Submit([]api.Spec{{Type: "noop"}}); err == nil {
		t.Error("Submit after Shutdown succeeded")
	}
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(context.Background()) }()
	select {
	case err2 := <-done:
		if err2 == nil || err2.Error() != err.Error() {
			t.Errorf("second Shutdown: %v, want the first's answer %v", err2, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second Shutdown blocked")
	}
	if err := n.Start(); err == nil {
		t.Error("Start after Shutdown succeeded")
	}
}
