package record

import (
	"encoding/json"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Record is a task's durable record on its owner.
type Record struct {
	ID  string `msgpack:"i"`
	Seq uint64 `msgpack:"q"`
	// Graph is the id of the graph the task belongs to, and GIdx its index there.
	Graph string `msgpack:"g,omitempty"`
	GIdx  int    `msgpack:"x,omitempty"`
	// Spec is the task as submitted; it never changes, so versions of a record share it.
	Spec *api.Spec `msgpack:"s"`

	State      api.State `msgpack:"st"`
	Attempt    int       `msgpack:"a"`
	Failures   int       `msgpack:"f,omitempty"` // application failures, counted against Spec.Retries
	NodeLosses int       `msgpack:"l,omitempty"`
	Epoch      uint64    `msgpack:"e"`
	// Exec is the id of the node the task is granted to or runs on for its owner,
	// when that is not the owner itself.
	Exec string `msgpack:"ex,omitempty"`
	// Node is the name of the node where the task runs or ran.
	Node string `msgpack:"n,omitempty"`

	Created  time.Time `msgpack:"c"`
	Queued   time.Time `msgpack:"qa,omitempty"`
	Started  time.Time `msgpack:"sa,omitempty"`
	Finished time.Time `msgpack:"fa,omitempty"`
	RetryAt  time.Time `msgpack:"ra,omitempty"`

	Waiting string                     `msgpack:"w,omitempty"`
	Deps    map[string]json.RawMessage `msgpack:"d,omitempty"` // its deps' results, once released
	Result  json.RawMessage            `msgpack:"r,omitempty"`
	Error   string                     `msgpack:"er,omitempty"`

	// Version counts the ops applied to the record.
	Version uint64 `msgpack:"v"`
}

// Task renders the record for the API; owner is the owner's name.
func (r *Record) Task(owner string) api.Task {
	return api.Task{
		ID:         r.ID,
		Graph:      r.Graph,
		Spec:       *r.Spec,
		State:      r.State,
		Attempt:    r.Attempt,
		NodeLosses: r.NodeLosses,
		Epoch:      r.Epoch,
		Owner:      owner,
		Node:       r.Node,
		CreatedAt:  r.Created,
		QueuedAt:   timePtr(r.Queued),
		StartedAt:  timePtr(r.Started),
		FinishedAt: timePtr(r.Finished),
		RetryAt:    timePtr(r.RetryAt),
		Waiting:    r.Waiting,
		Result:     r.Result,
		Error:      r.Error,
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
