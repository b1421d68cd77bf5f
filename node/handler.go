package node

import (
	"context"

	"github.com/starlingsched/starling/runner"
)

// The handler API lives in package runner; these names keep it reachable as
// node.Handler and node.Input for programs that embed a node.
type (
	// Handler runs one attempt of a task. It returns a JSON-able result (nil, a
	// value for json.Marshal, a json.RawMessage used as is, or []byte sent as
	// base64) or an error, which fails the attempt (retried while the task has
	// retries left).
	//
	// ctx is cancelled when the task is cancelled, times out, or the node shuts
	// down; handlers must return promptly then. A panic fails the attempt, never
	// the node.
	Handler = runner.Handler
	// Input is what a handler gets for one attempt.
	Input = runner.Input
)

var (
	// ErrHandlerExists is returned by Handle for a type that has a handler already.
	ErrHandlerExists = runner.ErrHandlerExists
	// ErrStopped is the cause given to handler runs cancelled by Shutdown.
	ErrStopped = runner.ErrStopped
)

// TaskID returns the id of the task a handler's context belongs to ("" outside one).
func TaskID(ctx context.Context) string { return runner.TaskID(ctx) }

// Attempt returns the attempt number of the run a handler's context belongs to.
func Attempt(ctx context.Context) int { return runner.Attempt(ctx) }

// The exec handler's payload and result, for programs that build exec tasks.
type (
	ExecPayload = runner.ExecPayload
	ExecResult  = runner.ExecResult
)
