package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"
)

// Handler runs one attempt of a task. It returns a JSON-able result (nil, a value for
// json.Marshal, a json.RawMessage used as is, or []byte sent as base64) or an error,
// which fails the attempt (retried while the task has retries left).
//
// ctx is cancelled when the task is cancelled, times out, or the node shuts down;
// handlers must return promptly then. A panic fails the attempt, never the node.
type Handler func(ctx context.Context, in *Input) (any, error)

// Input is what a handler gets for one attempt.
type Input struct {
	// ID is the task id and Attempt the attempt number, 1 for the first run.
	ID      string
	Attempt int
	// Type is the task type the handler was registered for.
	Type string
	// Payload is the task's payload as submitted (JSON; nil when none).
	Payload json.RawMessage
	// Deps holds the results of the task's deps, by the name (or id) the task's deps
	// list used for them.
	Deps map[string]json.RawMessage
}

// Decode unmarshals the payload into v, with a clear error when it does not fit.
func (in *Input) Decode(v any) error {
	if len(in.Payload) == 0 {
		return nil
	}
	if err := json.Unmarshal(in.Payload, v); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	return nil
}

type ctxKey struct{}

type runInfo struct {
	id      string
	attempt int
}

// TaskID returns the id of the task a handler's context belongs to ("" outside one).
func TaskID(ctx context.Context) string {
	ri, _ := ctx.Value(ctxKey{}).(runInfo)
	return ri.id
}

// Attempt returns the attempt number of the run a handler's context belongs to.
func Attempt(ctx context.Context) int {
	ri, _ := ctx.Value(ctxKey{}).(runInfo)
	return ri.attempt
}

var typeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.:/-]{0,127}$`)

// ErrHandlerExists is returned by Handle for a type that has a handler already.
var ErrHandlerExists = errors.New("node: a handler is registered for this type already")

// builtins are the handlers every node has.
func builtins() map[string]Handler {
	return map[string]Handler{
		"noop":  func(context.Context, *Input) (any, error) { return nil, nil },
		"echo":  func(_ context.Context, in *Input) (any, error) { return in.Payload, nil },
		"sleep": sleepHandler,
		"sum":   sumHandler,
	}
}

// sumHandler adds up numbers: the payload's (a number or an array of numbers) and its
// deps' results (each a number, an array of numbers, or null). The reduce step of a
// map-reduce graph, and a demo of how deps feed a task. Whole numbers stay exact.
func sumHandler(_ context.Context, in *Input) (any, error) {
	var ints int64
	var floats float64
	isFloat := false
	add := func(where string, raw json.RawMessage) error {
		if len(raw) == 0 || string(raw) == "null" {
			return nil
		}
		var one json.Number
		var many []json.Number
		dec := func(v any) error {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			return d.Decode(v)
		}
		if dec(&one) != nil {
			if err := dec(&many); err != nil {
				return fmt.Errorf("%s: want a number or an array of numbers, got %s", where, raw)
			}
		} else {
			many = []json.Number{one}
		}
		for _, x := range many {
			if i, err := x.Int64(); err == nil {
				ints += i
				continue
			}
			f, err := x.Float64()
			if err != nil {
				return fmt.Errorf("%s: %q is not a number", where, x)
			}
			floats += f
			isFloat = true
		}
		return nil
	}
	if err := add("payload", in.Payload); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(in.Deps)) {
		if err := add("dep "+name, in.Deps[name]); err != nil {
			return nil, err
		}
	}
	if isFloat {
		return float64(ints) + floats, nil
	}
	return ints, nil
}

type sleepPayload struct {
	MS float64 `json:"ms"`
}

func sleepHandler(ctx context.Context, in *Input) (any, error) {
	var p sleepPayload
	if err := in.Decode(&p); err != nil {
		return nil, err
	}
	d := time.Duration(p.MS * float64(time.Millisecond))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return map[string]float64{"slept_ms": p.MS}, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// validateSleep checks a sleep payload at submission.
func validateSleep(payload []byte) error {
	var p sleepPayload
	if len(payload) == 0 {
		return errors.New(`sleep needs {"ms": N}`)
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return fmt.Errorf(`sleep needs {"ms": N}: %v`, err)
	}
	if p.MS < 0 {
		return errors.New("ms must not be negative")
	}
	return nil
}
