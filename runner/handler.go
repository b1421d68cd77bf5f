package runner

import (
	"context"
	"encoding/json"
	"fmt"
)

// Handler runs one attempt of a task. It returns a JSON-able result (nil, a value for
// json.Marshal, a json.RawMessage used as is, or []byte sent as base64) or an error,
// which fails the attempt (the engine retries it while the task has retries left).
//
// ctx is cancelled when the task is cancelled, times out, or the node shuts down;
// handlers must return promptly then. context.Cause(ctx) says which (ErrCancelled, a
// TimeoutError, ErrStopped). A panic fails the attempt, never the node.
type Handler func(ctx context.Context, in *Input) (any, error)

// Input is what a handler gets for one attempt. It is the handler's own copy: what the
// handler does to it reaches nobody else.
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

// Decode unmarshals the payload into v, with a clear error when it does not fit. An
// empty payload leaves v as it is.
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

// Attempt returns the attempt number of the run a handler's context belongs to (0
// outside one).
func Attempt(ctx context.Context) int {
	ri, _ := ctx.Value(ctxKey{}).(runInfo)
	return ri.attempt
}
