package node

import (
	"context"
	"encoding/json"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// task is a task's authoritative state on its owner. Every field is guarded by
// Node.mu; the handler run gets copies, never the task.
type task struct {
	id    string
	seq   uint64
	spec  api.Spec
	needs needs
	class *class
	deps  map[string]json.RawMessage // results of the deps, by the name the task used
	graph *graphRun                  // nil unless the task belongs to a graph
	gidx  int                        // its index in the graph

	// exec is the id of the node running the task for its owner, when that is not
	// this node (granted, stolen or running there).
	exec string
	// foreign marks a task owned by another node (owner) that this node runs.
	foreign bool
	owner   steal.NodeID

	state      api.State
	attempt    int
	failures   int // application failures, counted against spec.Retries
	nodeLosses int
	epoch      uint64
	node       string
	created    time.Time
	queued     time.Time
	started    time.Time
	finished   time.Time
	retryAt    time.Time
	waiting    string
	result     json.RawMessage
	err        string

	expired    bool               // dropped from the store by retention
	heapIdx    int                // index in its class heap; -1 when not in the queue
	cancelRun  context.CancelFunc // cancels the running handler
	retryTimer *time.Timer        // pending retry
	done       chan struct{}      // closed when the task is terminal
}

// record renders the task for the API.
func (t *task) record(owner string) api.Task {
	r := api.Task{
		ID:         t.id,
		Spec:       t.spec,
		State:      t.state,
		Attempt:    t.attempt,
		NodeLosses: t.nodeLosses,
		Epoch:      t.epoch,
		Owner:      owner,
		Node:       t.node,
		CreatedAt:  t.created,
		QueuedAt:   timePtr(t.queued),
		StartedAt:  timePtr(t.started),
		FinishedAt: timePtr(t.finished),
		RetryAt:    timePtr(t.retryAt),
		Waiting:    t.waiting,
		Result:     t.result,
		Error:      t.err,
	}
	if t.graph != nil {
		r.Graph = t.graph.id
	}
	return r
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
