package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPool_outcomes: what a handler returns becomes the Done a user's record is made
// of: the result as JSON and the error's text.
func TestPool_outcomes(t *testing.T) {
	for _, c := range []struct {
		name       string
		handler    Handler // registered as "h"; nil: run typ
		typ        string
		payload    string
		maxResult  int
		wantResult string // compact JSON; "" means none
		wantErr    string // exact; "" means success
	}{
		{name: "nil result", typ: "noop"},
		{name: "a value", handler: func(context.Context, *Input) (any, error) { return map[string]int{"x": 1}, nil },
			wantResult: `{"x":1}`},
		{name: "raw JSON as is", typ: "echo", payload: `{"b": [1, 2]}`, wantResult: `{"b":[1,2]}`},
		{name: "bytes as base64", handler: func(context.Context, *Input) (any, error) { return []byte("hi"), nil },
			wantResult: `"aGk="`},
		{name: "raw JSON that is not JSON",
			handler: func(context.Context, *Input) (any, error) { return json.RawMessage(`{`), nil },
			wantErr: "the handler returned a json.RawMessage that is not valid JSON"},
		{name: "not JSON-able", handler: func(context.Context, *Input) (any, error) { return make(chan int), nil },
			wantErr: "the handler's result is not JSON-able: json: unsupported type: chan int"},
		{name: "an error", handler: func(context.Context, *Input) (any, error) { return nil, errors.New("boom") },
			wantErr: "boom"},
		{name: "an error keeps the result",
			handler:    func(context.Context, *Input) (any, error) { return map[string]int{"exit": 3}, errors.New("exit 3") },
			wantResult: `{"exit":3}`, wantErr: "exit 3"},
		{name: "a panic", handler: func(context.Context, *Input) (any, error) { panic("kaboom") },
			wantErr: "panic: kaboom"},
		{name: "a panic with an error", handler: func(context.Context, *Input) (any, error) { panic(errors.New("bad state")) },
			wantErr: "panic: bad state"},
		{name: "result at the cap", typ: "echo", payload: `"0123456789abcd"`, maxResult: 16,
			wantResult: `"0123456789abcd"`},
		{name: "result over the cap", typ: "echo", payload: `"a string of more than sixteen bytes"`, maxResult: 16,
			wantErr: "result too large: 37 bytes, over the 16-byte cap (--max-result)"},
		{name: "result over the cap with an error", maxResult: 4,
			handler: func(context.Context, *Input) (any, error) { return "long output", errors.New("failed") },
			wantErr: "failed"},
		{name: "no handler", typ: "nosuch", wantErr: `no handler for type "nosuch" on this node`},
		{name: "built-in with deps", typ: "sum", payload: `1`, wantResult: `1`},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newPool(t, func(cfg *Config) {
				if c.maxResult > 0 {
					cfg.MaxResultBytes = c.maxResult
				}
			})
			typ := c.typ
			if c.handler != nil {
				typ = "h"
				h.handle(t, typ, c.handler)
			}
			r := Run{ID: "t-1", Attempt: 1, Epoch: 7, Type: typ}
			if c.payload != "" {
				r.Payload = json.RawMessage(c.payload)
			}
			h.pool.Start(r)
			d := h.next(t)
			if d.ID != "t-1" || d.Attempt != 1 || d.Epoch != 7 {
				t.Errorf("Done names %s attempt %d epoch %d, want t-1 attempt 1 epoch 7", d.ID, d.Attempt, d.Epoch)
			}
			if d.Err != c.wantErr {
				t.Errorf("Err %q, want %q", d.Err, c.wantErr)
			}
			if got := compact(d.Result); got != c.wantResult {
				t.Errorf("Result %s, want %s", got, c.wantResult)
			}
			if d.Stopped {
				t.Error("Stopped set for a run nobody stopped")
			}
			if h.pool.Running() != 0 {
				t.Errorf("Running() = %d after the only run ended", h.pool.Running())
			}
		})
	}
}

// TestPool_panicIsLogged: a panic is logged at Error with its stack, and the worker
// goes on with the next run.
func TestPool_panicIsLogged(t *testing.T) {
	h := newPool(t, func(c *Config) { c.Slots = 1 })
	h.handle(t, "panic", func(context.Context, *Input) (any, error) { panic("kaboom") })
	h.pool.Start(Run{ID: "p-1", Attempt: 1, Type: "panic"})
	h.pool.Start(Run{ID: "e-1", Attempt: 1, Type: "echo", Payload: json.RawMessage(`"still here"`)})
	got := h.collect(t, 2)
	if got["p-1"].Err != "panic: kaboom" {
		t.Errorf("panicking run: %q", got["p-1"].Err)
	}
	if d := got["e-1"]; d.Err != "" || string(d.Result) != `"still here"` {
		t.Errorf("the run after the panic: %+v", d)
	}
	logs := h.logs.String()
	for _, want := range []string{"level=ERROR", "handler panicked", "task=p-1", "type=panic", "panic=kaboom", "stack=", "runtime/debug.Stack"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

// TestPool_goexit: a handler that ends its goroutine instead of returning fails its
// run, and the pool keeps its slot.
func TestPool_goexit(t *testing.T) {
	h := newPool(t, func(c *Config) { c.Slots = 1 })
	h.handle(t, "goexit", func(context.Context, *Input) (any, error) { runtime.Goexit(); return nil, nil })
	h.pool.Start(Run{ID: "g-1", Attempt: 1, Type: "goexit"})
	if d := h.next(t); d.ID != "g-1" || d.Err != errGoexit.Error() {
		t.Errorf("Done of the run that called Goexit: %+v", d)
	}
	h.pool.Start(Run{ID: "n-1", Attempt: 1, Type: "noop"})
	if d := h.next(t); d.ID != "n-1" || d.Err != "" {
		t.Errorf("the run after it: %+v", d)
	}
}

// TestPool_stopCause: a stopped run's error is its cause, whatever the handler made
// of it, followed by the handler's own error when that adds something; the handler
// sees the cause, and a deadline when the cause is a timeout.
func TestPool_stopCause(t *testing.T) {
	type seen struct{ err, cause error }
	for _, c := range []struct {
		name        string
		cause       error
		handler     func(ctx context.Context) (any, error) // after ctx ended
		derived     bool                                   // handler gets a context derived before the stop
		typ         string                                 // a built-in instead
		payload     string
		wantErr     string
		wantResult  string
		wantCtxErr  error
		wantStopped bool
	}{
		{name: "timeout, handler returns ctx.Err()", cause: TimeoutError{50 * time.Millisecond},
			handler: func(ctx context.Context) (any, error) { return nil, ctx.Err() },
			wantErr: "timeout: the run exceeded 50ms", wantCtxErr: context.DeadlineExceeded},
		{name: "timeout, handler returns the cause", cause: TimeoutError{5 * time.Second},
			handler: func(ctx context.Context) (any, error) { return nil, context.Cause(ctx) },
			wantErr: "timeout: the run exceeded 5s", wantCtxErr: context.DeadlineExceeded},
		{name: "timeout, the sleep built-in", cause: TimeoutError{50 * time.Millisecond},
			typ: "sleep", payload: `{"ms":30000}`, wantErr: "timeout: the run exceeded 50ms"},
		{name: "timeout, handler ignores it and succeeds", cause: TimeoutError{50 * time.Millisecond},
			handler: func(ctx context.Context) (any, error) { return "late", nil },
			wantErr: "timeout: the run exceeded 50ms", wantResult: `"late"`, wantCtxErr: context.DeadlineExceeded},
		{name: "timeout, handler's own error", cause: TimeoutError{50 * time.Millisecond},
			handler: func(ctx context.Context) (any, error) { return nil, errors.New("cleanup failed") },
			wantErr: "timeout: the run exceeded 50ms: cleanup failed", wantCtxErr: context.DeadlineExceeded},
		{name: "timeout, handler wraps the cause", cause: TimeoutError{50 * time.Millisecond},
			handler: func(ctx context.Context) (any, error) { return nil, fmt.Errorf("step 2: %w", context.Cause(ctx)) },
			wantErr: "step 2: timeout: the run exceeded 50ms", wantCtxErr: context.DeadlineExceeded},
		{name: "timeout, handler returns a derived context's error", cause: TimeoutError{50 * time.Millisecond},
			derived: true, handler: func(sub context.Context) (any, error) { return nil, sub.Err() },
			wantErr: "timeout: the run exceeded 50ms", wantCtxErr: context.DeadlineExceeded},
		{name: "timeout, handler panics", cause: TimeoutError{50 * time.Millisecond},
			handler: func(ctx context.Context) (any, error) { panic("on the way out") },
			wantErr: "timeout: the run exceeded 50ms: panic: on the way out", wantCtxErr: context.DeadlineExceeded},
		{name: "cancel", cause: ErrCancelled,
			handler: func(ctx context.Context) (any, error) { return nil, ctx.Err() },
			wantErr: "cancelled", wantCtxErr: context.Canceled},
		{name: "cancel without a cause", cause: nil,
			handler: func(ctx context.Context) (any, error) { return nil, ctx.Err() },
			wantErr: "cancelled", wantCtxErr: context.Canceled},
		{name: "shutdown", cause: ErrStopped,
			handler: func(ctx context.Context) (any, error) { return nil, ctx.Err() },
			wantErr: "node: shutting down", wantCtxErr: context.Canceled, wantStopped: true},
		{name: "shutdown, handler's own error", cause: ErrStopped,
			handler: func(ctx context.Context) (any, error) { return nil, errors.New("flush: closed") },
			wantErr: "node: shutting down: flush: closed", wantCtxErr: context.Canceled, wantStopped: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newPool(t, nil)
			started := make(chan struct{})
			saw := make(chan seen, 1)
			typ := c.typ
			if c.handler != nil {
				typ = "h"
				h.handle(t, typ, func(ctx context.Context, in *Input) (any, error) {
					sub, cancel := context.WithCancel(ctx)
					defer cancel()
					close(started)
					<-ctx.Done()
					saw <- seen{ctx.Err(), context.Cause(ctx)}
					if c.derived {
						<-sub.Done()
						return c.handler(sub)
					}
					return c.handler(ctx)
				})
			}
			r := Run{ID: "t-1", Attempt: 1, Epoch: 3, Type: typ}
			if c.payload != "" {
				r.Payload = json.RawMessage(c.payload)
			}
			h.pool.Start(r)
			if c.handler != nil {
				<-started
			} else {
				waitFor(t, 10*time.Second, "the run to start", func() bool { return h.pool.Running() == 1 })
			}
			h.pool.Stop("t-1", 3, c.cause)
			d := h.next(t)
			if d.Err != c.wantErr {
				t.Errorf("Err %q, want %q", d.Err, c.wantErr)
			}
			if got := compact(d.Result); got != c.wantResult {
				t.Errorf("Result %s, want %s", got, c.wantResult)
			}
			if d.Stopped != c.wantStopped {
				t.Errorf("Stopped %v, want %v", d.Stopped, c.wantStopped)
			}
			if c.handler == nil {
				return
			}
			s := <-saw
			if s.err != c.wantCtxErr {
				t.Errorf("the handler's ctx.Err() = %v, want %v", s.err, c.wantCtxErr)
			}
			want := c.cause
			if want == nil {
				want = ErrCancelled
			}
			if s.cause != want {
				t.Errorf("the handler's context.Cause = %v, want %v", s.cause, want)
			}
		})
	}
}

// TestPool_stopBeforeStart: a run stopped while it waits for a slot ends with its
// cause and never reaches its handler.
func TestPool_stopBeforeStart(t *testing.T) {
	h := newPool(t, func(c *Config) { c.Slots = 1 })
	b := newBlocker()
	h.handle(t, "block", b.handler)
	var calls atomic.Int32
	h.handle(t, "count", func(context.Context, *Input) (any, error) { calls.Add(1); return nil, nil })
	h.pool.Start(Run{ID: "a", Attempt: 1, Type: "block"})
	b.waitStarted(t, 1)
	h.pool.Start(Run{ID: "b", Attempt: 1, Type: "count"})
	if n := h.pool.Running(); n != 2 {
		t.Errorf("Running() = %d, want 2 (one running, one queued)", n)
	}
	h.pool.Stop("b", 0, TimeoutError{time.Second})
	close(b.release)
	got := h.collect(t, 2)
	if d := got["b"]; d.Err != "timeout: the run exceeded 1s" || d.Elapsed != 0 || d.Stopped {
		t.Errorf("the run stopped in the queue: %+v; want the timeout, no elapsed time", d)
	}
	if d := got["a"]; d.Err != "" {
		t.Errorf("the run before it: %+v", d)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the handler of the stopped run was called %d times", n)
	}
}

// TestPool_stopNamesOneRun: Stop reaches only the run with that id and epoch.
func TestPool_stopNamesOneRun(t *testing.T) {
	h := newPool(t, nil)
	b := newBlocker()
	h.handle(t, "block", b.handler)
	h.pool.Start(Run{ID: "a", Attempt: 2, Epoch: 5, Type: "block"})
	b.waitStarted(t, 1)
	h.pool.Stop("a", 4, ErrCancelled) // an earlier epoch of the same task
	h.pool.Stop("a", 6, ErrCancelled)
	h.pool.Stop("b", 5, ErrCancelled)
	close(b.release)
	if d := h.next(t); d.Err != "" {
		t.Errorf("a run stopped under other names ended with %q", d.Err)
	}
	h.pool.Stop("a", 5, ErrCancelled) // it has ended: a no-op
	h.noMoreDone(t)
}

// TestPool_sameTaskTwoEpochs: a task may run under a new epoch while its old run
// winds down; each is stopped and reported on its own.
func TestPool_sameTaskTwoEpochs(t *testing.T) {
	h := newPool(t, nil)
	b := newBlocker()
	h.handle(t, "block", b.handler)
	h.pool.Start(Run{ID: "a", Attempt: 1, Epoch: 1, Type: "block"})
	h.pool.Start(Run{ID: "a", Attempt: 2, Epoch: 2, Type: "block"})
	b.waitStarted(t, 2)
	h.pool.Stop("a", 1, ErrCancelled)
	d := h.next(t)
	if d.Epoch != 1 || d.Err != "cancelled" {
		t.Errorf("the stopped run: %+v", d)
	}
	close(b.release)
	if d := h.next(t); d.Epoch != 2 || d.Attempt != 2 || d.Err != "" {
		t.Errorf("the other run: %+v", d)
	}
}

// TestPool_duplicateStart: a second Start of an outstanding run is ignored and
// logged; the run ends once.
func TestPool_duplicateStart(t *testing.T) {
	h := newPool(t, nil)
	b := newBlocker()
	h.handle(t, "block", b.handler)
	h.pool.Start(Run{ID: "a", Attempt: 1, Epoch: 1, Type: "block"})
	h.pool.Start(Run{ID: "a", Attempt: 1, Epoch: 1, Type: "block"})
	b.waitStarted(t, 1)
	if n := h.pool.Running(); n != 1 {
		t.Errorf("Running() = %d, want 1", n)
	}
	close(b.release)
	h.next(t)
	h.noMoreDone(t)
	if logs := h.logs.String(); !strings.Contains(logs, "run started twice") {
		t.Errorf("the duplicate was not logged:\n%s", logs)
	}
}

// TestPool_stopAll: StopAll ends every run, queued ones without calling their
// handlers, and every run started after it; they are marked Stopped.
func TestPool_stopAll(t *testing.T) {
	h := newPool(t, func(c *Config) { c.Slots = 3 })
	b := newBlocker()
	h.handle(t, "block", b.handler)
	for i := range 4 { // one more than the slots: it waits in the queue
		h.pool.Start(Run{ID: fmt.Sprintf("t-%d", i), Attempt: 1, Type: "block"})
	}
	b.waitStarted(t, 3)
	h.pool.StopAll(ErrStopped)
	h.pool.Start(Run{ID: "late", Attempt: 1, Type: "block"})
	got := h.collect(t, 5)
	for id, d := range got {
		if d.Err != "node: shutting down" || !d.Stopped {
			t.Errorf("run %s: %+v; want stopped, saying the node shuts down", id, d)
		}
	}
	if n := len(b.started); n != 0 {
		t.Errorf("%d more handlers started after StopAll", n)
	}
	for range 3 {
		if c := <-b.causes; c != ErrStopped {
			t.Errorf("a handler's cause: %v, want ErrStopped", c)
		}
	}
}

// TestPool_copies: the handler gets copies of the payload and the deps: what it does
// to them does not reach the caller, and what the caller does after Start does not
// reach the handler.
func TestPool_copies(t *testing.T) {
	h := newPool(t, nil)
	gate := make(chan struct{})
	h.handle(t, "mutate", func(_ context.Context, in *Input) (any, error) {
		<-gate
		out := map[string]string{"payload": string(in.Payload), "dep": string(in.Deps["a"])}
		in.Payload[0] = 'X'
		in.Deps["a"][0] = 'X'
		in.Deps["new"] = json.RawMessage(`1`)
		return out, nil
	})
	payload := json.RawMessage(`"p"`)
	deps := map[string]json.RawMessage{"a": json.RawMessage(`"d"`)}
	h.pool.Start(Run{ID: "t-1", Attempt: 1, Type: "mutate", Payload: payload, Deps: deps})
	payload[1] = 'Y' // the caller reuses its buffers
	deps["a"][1] = 'Y'
	deps["b"] = json.RawMessage(`2`)
	close(gate)
	d := h.next(t)
	if d.Err != "" || compact(d.Result) != `{"dep":"\"d\"","payload":"\"p\""}` {
		t.Errorf("the handler saw %s (%s); want the payload and deps as they were at Start", d.Result, d.Err)
	}
	if string(payload) != `"Y"` || string(deps["a"]) != `"Y"` || len(deps) != 2 {
		t.Errorf("the handler changed the caller's input: payload %s, deps %v", payload, deps)
	}
}

// TestPool_context: the handler's context and input name its run.
func TestPool_context(t *testing.T) {
	h := newPool(t, nil)
	h.handle(t, "who", func(ctx context.Context, in *Input) (any, error) {
		return fmt.Sprintf("%s/%d %s/%d %s", TaskID(ctx), Attempt(ctx), in.ID, in.Attempt, in.Type), nil
	})
	h.pool.Start(Run{ID: "n1-42", Attempt: 3, Epoch: 9, Type: "who"})
	if d := h.next(t); string(d.Result) != `"n1-42/3 n1-42/3 who"` {
		t.Errorf("the handler saw %s (%s), want n1-42/3 from both and type who", d.Result, d.Err)
	}
	if TaskID(context.Background()) != "" || Attempt(context.Background()) != 0 {
		t.Error("TaskID or Attempt outside a run is not empty")
	}
}

// TestPool_slots: at most Slots runs execute at once; the rest wait in order, and
// every run ends exactly once.
func TestPool_slots(t *testing.T) {
	const slots, runs = 3, 12
	h := newPool(t, func(c *Config) { c.Slots = slots })
	var active, most atomic.Int32
	gate := make(chan struct{})
	h.handle(t, "busy", func(_ context.Context, in *Input) (any, error) {
		now := active.Add(1)
		defer active.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		<-gate
		return nil, nil
	})
	for i := range runs {
		h.pool.Start(Run{ID: fmt.Sprintf("t-%02d", i), Attempt: 1, Type: "busy"})
	}
	waitFor(t, 10*time.Second, "every slot to be busy", func() bool { return active.Load() == slots })
	if n := h.pool.Running(); n != runs {
		t.Errorf("Running() = %d with %d started, want %d", n, runs, runs)
	}
	close(gate)
	h.collect(t, runs)
	if m := most.Load(); m != slots {
		t.Errorf("%d runs at once, want %d", m, slots)
	}
	if n := h.pool.Running(); n != 0 {
		t.Errorf("Running() = %d after every run ended", n)
	}
}

// TestPool_queueOrder: runs waiting for a slot start in the order they were started.
func TestPool_queueOrder(t *testing.T) {
	h := newPool(t, func(c *Config) { c.Slots = 1 })
	b := newBlocker()
	h.handle(t, "block", b.handler)
	h.pool.Start(Run{ID: "first", Attempt: 1, Type: "block"})
	b.waitStarted(t, 1)
	var want []string
	for i := range 10 {
		id := fmt.Sprintf("t-%02d", i)
		want = append(want, id)
		h.pool.Start(Run{ID: id, Attempt: 1, Type: "noop"})
	}
	close(b.release)
	h.next(t)
	var got []string
	for range want {
		got = append(got, h.next(t).ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("queued runs ended in the order %v, want %v", got, want)
	}
}

// TestPool_doneOnce: under a mix of outcomes and stops, every run ends with exactly
// one Done.
func TestPool_doneOnce(t *testing.T) {
	const runs = 200
	h := newPool(t, func(c *Config) { c.Slots = 8 })
	h.handle(t, "mixed", func(ctx context.Context, in *Input) (any, error) {
		switch in.Attempt % 4 {
		case 0:
			return in.ID, nil
		case 1:
			return nil, errors.New("boom")
		case 2:
			panic("kaboom")
		default:
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	for i := range runs {
		h.pool.Start(Run{ID: fmt.Sprintf("t-%03d", i), Attempt: i, Epoch: 1, Type: "mixed"})
	}
	for i := 3; i < runs; i += 4 {
		h.pool.Stop(fmt.Sprintf("t-%03d", i), 1, ErrCancelled)
	}
	got := h.collect(t, runs)
	for id, d := range got {
		want := []string{"", "boom", "panic: kaboom", "cancelled"}[d.Attempt%4]
		if d.Err != want {
			t.Errorf("run %s: %q, want %q", id, d.Err, want)
		}
	}
	h.pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.pool.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	h.noMoreDone(t)
}

// TestPool_close: after Close the workers finish what was accepted, Start ignores the
// rest, and Wait returns once the workers are gone.
func TestPool_close(t *testing.T) {
	h := newPool(t, func(c *Config) { c.Slots = 1 })
	b := newBlocker()
	h.handle(t, "block", b.handler)
	h.pool.Start(Run{ID: "a", Attempt: 1, Type: "block"})
	b.waitStarted(t, 1)
	h.pool.Start(Run{ID: "b", Attempt: 1, Type: "noop"})
	h.pool.Close()
	h.pool.Close()
	h.pool.Start(Run{ID: "c", Attempt: 1, Type: "noop"})
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := h.pool.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait while a run goes on: %v, want it to give up with its context", err)
	}
	close(b.release)
	got := h.collect(t, 2)
	if got["a"].Err != "" || got["b"].Err != "" {
		t.Errorf("runs accepted before Close: %+v", got)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := h.pool.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	h.noMoreDone(t)
	if n := h.pool.Running(); n != 0 {
		t.Errorf("Running() = %d after Close and Wait", n)
	}
}

// TestPool_handlerIgnoresContext: a handler that ignores its context holds Wait only
// as long as Wait's context; its Done still comes when it returns.
func TestPool_handlerIgnoresContext(t *testing.T) {
	h := newPool(t, nil)
	stuck := make(chan struct{})
	began := make(chan struct{})
	h.handle(t, "stuck", func(context.Context, *Input) (any, error) { close(began); <-stuck; return "done", nil })
	h.pool.Start(Run{ID: "s", Attempt: 1, Type: "stuck"})
	<-began
	h.pool.Close()
	h.pool.StopAll(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := h.pool.Wait(ctx); err == nil || !strings.Contains(err.Error(), "workers still running") {
		t.Errorf("Wait with a stuck handler: %v", err)
	}
	close(stuck)
	if d := h.next(t); d.Err != "node: shutting down" || !d.Stopped || string(d.Result) != `"done"` {
		t.Errorf("the stuck run: %+v; want it stopped, its late result kept", d)
	}
}

// TestPool_goLedger: the workers start through Config.Go and exit after Close.
func TestPool_goLedger(t *testing.T) {
	var wg sync.WaitGroup
	var started atomic.Int32
	h := newPool(t, func(c *Config) {
		c.Slots = 3
		c.Go = func(f func()) bool {
			started.Add(1)
			wg.Go(f)
			return true
		}
	})
	h.pool.Start(Run{ID: "a", Attempt: 1, Type: "noop"})
	h.next(t)
	if n := started.Load(); n != 3 {
		t.Errorf("%d goroutines through Config.Go, want 3", n)
	}
	h.pool.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the workers did not exit after Close")
	}
}

func TestNewPool_config(t *testing.T) {
	good := func() Config {
		return Config{Slots: 1, MaxResultBytes: 1, Registry: NewRegistry(), Done: func(Done) {}}
	}
	for _, c := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no slots", func(c *Config) { c.Slots = 0 }, "Slots must be positive, got 0"},
		{"no result bytes", func(c *Config) { c.MaxResultBytes = -1 }, "MaxResultBytes must be positive, got -1"},
		{"no registry", func(c *Config) { c.Registry = nil }, "Registry is nil"},
		{"no done", func(c *Config) { c.Done = nil }, "Done is nil"},
		{"go refuses", func(c *Config) { c.Go = func(func()) bool { return false } }, "Config.Go refused"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := good()
			c.mutate(&cfg)
			p, err := NewPool(cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("NewPool: %v, want an error containing %q", err, c.want)
			}
			if p != nil {
				t.Error("NewPool returned a pool with its error")
			}
		})
	}

	// Go refuses the second worker: the first exits.
	var wg sync.WaitGroup
	cfg := good()
	cfg.Slots = 2
	calls := 0
	cfg.Go = func(f func()) bool {
		if calls++; calls > 1 {
			return false
		}
		wg.Go(f)
		return true
	}
	if _, err := NewPool(cfg); err == nil {
		t.Fatal("NewPool succeeded with a refused worker")
	}
	wg.Wait()
}
