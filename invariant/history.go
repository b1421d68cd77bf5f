package invariant

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// History is what a harness saw of a run of the cluster: the input of Check.
type History struct {
	// Acked are the ids of the tasks whose submission a client got a 2xx for. An id
	// may appear more than once (an idempotency key returns the first task).
	Acked []string
	// Runs are every run of every task, as the handlers saw them, in any order.
	Runs []Run
	// Final are the records the tasks reached at the end, one a task, in any order.
	// More than one record of a task (one from each node that answers for it) must
	// all show the same outcome; the first is the one checked against the runs.
	Final []api.Task
	// Observations are the answers clients got about tasks while the cluster ran, in
	// any order; Check orders them by their times. Optional.
	Observations []Observation
}

// Run is one run of a task as its handler saw it.
type Run struct {
	ID      string
	Attempt int
	// Node is the name of the node the run happened on (api.Task.Node).
	Node  string
	Start time.Time
	// End is zero while the run goes on, and for a run whose node died under it
	// without ending it.
	End time.Time
	// Err is what the handler returned: nil for a success.
	Err error
	// Result is what the handler returned, encoded as the node encodes it (nil for
	// a nil result).
	Result json.RawMessage
}

// Ended reports whether the run finished, with or without an error.
func (r Run) Ended() bool { return !r.End.IsZero() }

// OK reports whether the run finished without an error.
func (r Run) OK() bool { return r.Ended() && r.Err == nil }

// String is "id attempt N on node (state)", for messages.
func (r Run) String() string {
	s := fmt.Sprintf("%s attempt %d on %s", r.ID, r.Attempt, r.Node)
	switch {
	case !r.Ended():
		return s + " (running)"
	case r.Err != nil:
		return s + fmt.Sprintf(" (failed: %v)", r.Err)
	}
	return s + " (ok)"
}

// Observation is one answer a client got about a task.
type Observation struct {
	ID string
	// By names the node that answered.
	By string
	// Asked is when the request left the client and Answered when the answer came
	// back (equal for a read at one instant). They order the observations: an answer
	// asked for after a terminal answer came back must show the same outcome.
	Asked, Answered time.Time
	State           api.State
	Attempt         int
	Node            string
	Result          json.RawMessage
}

// Observed is the observation of record t, answered by node by.
func Observed(by string, t api.Task, asked, answered time.Time) Observation {
	return Observation{
		ID: t.ID, By: by, Asked: asked, Answered: answered,
		State: t.State, Attempt: t.Attempt, Node: t.Node, Result: t.Result,
	}
}

// Options say what Check accepts beyond the invariants themselves.
type Options struct {
	// Want is the terminal state every acknowledged task must end in ("" accepts
	// any).
	Want api.State
	// Died names the nodes that were killed, stopped, paused or otherwise declared
	// dead during the run: only a task that ran on one of them may have run more than
	// once.
	Died []string
	// Partitioned allows duplicate runs anywhere (a task may run on both sides of a
	// partition). They are still counted.
	Partitioned bool
	// Result, when set, returns the result a succeeded task id must have, and false
	// for a task whose result is not known in advance.
	Result func(id string) (want json.RawMessage, ok bool)
}
