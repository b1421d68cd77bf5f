package node

import "github.com/starlingsched/starling/internal/api"

// The API types, under this package's name for programs that embed a node.
type (
	// Spec is a task spec as submitted.
	Spec = api.Spec
	// Task is a task's record.
	Task = api.Task
	// State is a task state.
	State = api.State
	// Requires is what a task needs from the node that runs it.
	Requires = api.Requires
)
