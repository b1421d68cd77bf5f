package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// errGoexit is the error of a handler that ended its goroutine (runtime.Goexit, as
// t.FailNow does) instead of returning.
var errGoexit = errors.New("the handler exited without returning (runtime.Goexit)")

// runOne runs j's handler and reports how the run ended.
func (p *Pool) runOne(j *job) {
	start := time.Now()
	returned := false
	defer func() {
		if !returned {
			// The handler called runtime.Goexit: this worker's goroutine ends once
			// the deferred calls are done. Report the run and put a worker in its place.
			p.report(j, nil, errGoexit, time.Since(start))
			if !p.startWorker() {
				p.log.Error("a worker ended with its handler and could not be replaced", slog.String("task", j.run.ID))
			}
		}
	}()
	var (
		v       any
		err     error
		elapsed time.Duration
	)
	if j.ctx.Err() == nil { // a run stopped before it started never reaches its handler
		v, err = p.call(j)
		elapsed = time.Since(start)
	}
	returned = true
	p.report(j, v, err, elapsed)
}

// call calls j's handler, turning a panic into an error.
func (p *Pool) call(j *job) (v any, err error) {
	defer func() {
		if pv := recover(); pv != nil {
			v, err = nil, fmt.Errorf("panic: %v", pv)
			p.log.Error("handler panicked", slog.String("task", j.run.ID), slog.String("type", j.run.Type),
				slog.Int("attempt", j.run.Attempt), slog.Any("panic", pv), slog.String("stack", string(debug.Stack())))
		}
	}()
	h, ok := p.cfg.Registry.Lookup(j.run.Type)
	if !ok {
		return nil, fmt.Errorf("no handler for type %q on this node", j.run.Type)
	}
	in := &Input{ID: j.run.ID, Attempt: j.run.Attempt, Type: j.run.Type, Payload: j.run.Payload, Deps: j.run.Deps}
	return h(j.ctx, in)
}

// report turns a handler's outcome into a Done and delivers it.
func (p *Pool) report(j *job, v any, err error, elapsed time.Duration) {
	p.ended(j) // before looking at the context: a Stop from now on changes nothing
	d := Done{ID: j.run.ID, Attempt: j.run.Attempt, Epoch: j.run.Epoch, Elapsed: elapsed}
	if ctxErr := j.ctx.Err(); ctxErr != nil {
		// The run's context ended (timeout, cancel, shutdown): say why, whatever the
		// handler made of it. A handler that ignored its context still timed out, and
		// one that returned ctx.Err() reports the cause, not "context canceled".
		cause := context.Cause(j.ctx)
		switch {
		case err == nil || err == ctxErr || err == context.Canceled || err == context.DeadlineExceeded:
			err = cause
		case !errors.Is(err, cause):
			err = fmt.Errorf("%w: %w", cause, err)
		}
		d.Stopped = errors.Is(cause, ErrStopped)
	}
	j.cancel(nil) // the run is over: release its context
	res, encErr := encodeResult(v, p.cfg.MaxResultBytes)
	if encErr != nil && err == nil {
		err = encErr
	}
	d.Result = res
	if err != nil {
		d.Err = err.Error()
	}
	p.cfg.Done(d)
}

// encodeResult renders a handler's result as JSON within limit bytes.
func encodeResult(v any, limit int) (json.RawMessage, error) {
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
	if len(b) > limit {
		return nil, fmt.Errorf("result too large: %d bytes, over the %d-byte cap (--max-result)", len(b), limit)
	}
	if _, raw := v.(json.RawMessage); raw {
		b = append(json.RawMessage(nil), b...) // the handler may hold on to its slice
	}
	return b, nil
}

// runContext is a run's context. A run stopped with a TimeoutError reads as one whose
// deadline passed: Err returns context.DeadlineExceeded, as under context.WithTimeout,
// and context.Cause the TimeoutError. (Contexts a handler derives from it report
// context.Canceled with the same cause.)
type runContext struct {
	context.Context
	info runInfo // what TaskID and Attempt read
}

func (c runContext) Value(key any) any {
	if key == (ctxKey{}) {
		return c.info
	}
	return c.Context.Value(key)
}

func (c runContext) Err() error {
	err := c.Context.Err()
	if err != nil {
		var te TimeoutError
		if errors.As(context.Cause(c.Context), &te) {
			return context.DeadlineExceeded
		}
	}
	return err
}
