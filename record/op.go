package record

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Kind names what an Op does.
type Kind uint8

// The operations on a record. Each carries the resulting values of the fields it
// sets (not increments), so applying an op twice is harmless and a replica applies
// exactly what the owner decided.
const (
	// OpCreate makes a new record: ID, Seq, Spec, Graph, GIdx, Created=At.
	OpCreate Kind = iota + 1
	// OpPending: the task waits for its deps. Sets Waiting.
	OpPending
	// OpQueue puts the task in the ready queue: Queued=At, Epoch, Node, NodeLosses,
	// Waiting, Deps when not nil; clears Exec and RetryAt.
	OpQueue
	// OpRetry schedules the next attempt after a failed one: the task is queued but
	// waits until RetryAt. Sets Failures, Error, Result, RetryAt, Waiting, Epoch,
	// Attempt, Node; clears Exec.
	OpRetry
	// OpPlace records where a task is granted or runs for its owner: Epoch, Exec,
	// Node, Waiting.
	OpPlace
	// OpRun: an attempt started (here, or where Exec says). Started=At, Attempt,
	// Node; clears Waiting and Error.
	OpRun
	// OpFinish ends the task in State (terminal): Finished=At, Error, Result, Epoch,
	// Attempt, Failures, NodeLosses, Node; clears Exec, Waiting and RetryAt.
	OpFinish
	// OpExpire drops the record (retention).
	OpExpire
)

var kindNames = [...]string{"", "create", "pending", "queue", "retry", "place", "run", "finish", "expire"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Op is one change of one record.
type Op struct {
	Kind Kind   `msgpack:"k"`
	ID   string `msgpack:"i"`

	// An OpCreate's record: its sequence, its spec (shared by every version of the
	// record, never changed), and its graph and place there.
	Seq   uint64    `msgpack:"q,omitempty"`
	Spec  *api.Spec `msgpack:"p,omitempty"`
	Graph string    `msgpack:"g,omitempty"`
	GIdx  int       `msgpack:"gi,omitempty"`

	State      api.State                  `msgpack:"s,omitempty"`
	At         time.Time                  `msgpack:"t,omitempty"`
	Epoch      uint64                     `msgpack:"e,omitempty"`
	Attempt    int                        `msgpack:"a,omitempty"`
	Failures   int                        `msgpack:"f,omitempty"`
	NodeLosses int                        `msgpack:"l,omitempty"`
	Exec       string                     `msgpack:"x,omitempty"`
	Node       string                     `msgpack:"n,omitempty"`
	Waiting    string                     `msgpack:"w,omitempty"`
	Error      string                     `msgpack:"r,omitempty"`
	Result     json.RawMessage            `msgpack:"v,omitempty"`
	RetryAt    time.Time                  `msgpack:"y,omitempty"`
	Deps       map[string]json.RawMessage `msgpack:"d,omitempty"`
}

// Apply returns r changed by op, with its Version bumped. r is not modified; for
// OpCreate r is ignored (it may be nil) and the new record is returned. OpExpire
// returns nil.
func (r *Record) Apply(op *Op) *Record {
	if op.Kind == OpCreate {
		return &Record{ID: op.ID, Seq: op.Seq, Spec: op.Spec, Graph: op.Graph, GIdx: op.GIdx, Created: op.At, Version: 1}
	}
	if op.Kind == OpExpire {
		return nil
	}
	c := *r
	c.ApplyInPlace(op)
	return &c
}

// ApplyInPlace changes r by op and bumps its Version. Only the owner of an unshared
// record may call it; OpCreate and OpExpire are not allowed here.
func (r *Record) ApplyInPlace(op *Op) {
	switch op.Kind {
	case OpPending:
		r.State = api.Pending
		r.Waiting = op.Waiting
	case OpQueue:
		r.State = api.Queued
		r.Queued = op.At
		r.Epoch = op.Epoch
		r.Node = op.Node
		r.NodeLosses = op.NodeLosses
		r.Waiting = op.Waiting
		if op.Deps != nil {
			r.Deps = op.Deps
		}
		r.Exec = ""
		r.RetryAt = time.Time{}
	case OpRetry:
		r.State = api.Queued
		r.Failures = op.Failures
		r.Error = op.Error
		r.Result = op.Result
		r.RetryAt = op.RetryAt
		r.Waiting = op.Waiting
		r.Epoch = op.Epoch
		r.Attempt = op.Attempt
		r.Node = op.Node
		r.Exec = ""
	case OpPlace:
		r.Epoch = op.Epoch
		r.Exec = op.Exec
		r.Node = op.Node
		r.Waiting = op.Waiting
	case OpRun:
		r.State = api.Running
		r.Started = op.At
		r.Attempt = op.Attempt
		r.Node = op.Node
		r.Waiting = ""
		r.Error = ""
	case OpFinish:
		r.State = op.State
		r.Finished = op.At
		r.Error = op.Error
		r.Result = op.Result
		r.Epoch = op.Epoch
		r.Attempt = op.Attempt
		r.Failures = op.Failures
		r.NodeLosses = op.NodeLosses
		r.Node = op.Node
		r.Exec = ""
		r.Waiting = ""
		r.RetryAt = time.Time{}
	default:
		panic(fmt.Sprintf("record: ApplyInPlace of %s", op.Kind))
	}
	r.Version++
}
