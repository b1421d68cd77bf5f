package engine

import (
	"encoding/json"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Input is one thing that happened to the node: give it to Step.
type Input interface{ isInput() }

// Submit asks to accept validated specs as one submission (a graph when any has
// deps). The answer is a Reply with Req. The engine keeps the specs (the records
// point into Specs): the caller must not change them afterwards.
type Submit struct {
	Req   uint64
	Specs []api.Spec
	// Batch: the specs came as {"tasks": [...]}; errors name them tasks[i].
	Batch bool
}

// Cancel asks to cancel a task this node owns; the Reply carries its record.
type Cancel struct {
	Req uint64
	ID  string
}

// CancelGraph asks to cancel what has not finished of a graph this node owns.
type CancelGraph struct {
	Req uint64
	ID  string
}

// Receive is a message from a peer; From is the authenticated sender's node id.
type Receive struct {
	From string
	Msg  *Message
}

// MemberUp is a member joining or updating (gossip). State is gossip's word for it
// ("alive", "suspect").
type MemberUp struct {
	Name  string
	State string
	Alive bool
	Meta  Meta
}

// MemberGone is a member declared dead, or one that left (Left). Meta is what
// gossip last knew of it (it may be empty).
type MemberGone struct {
	Name  string
	State string
	Left  bool
	Meta  Meta
}

// PeerLoad is a peer's load report as gossip delivered it, Age old.
type PeerLoad struct {
	Name string
	Load Load
	Age  time.Duration
}

// RunDone is the end of a run the engine started (a Start order).
type RunDone struct {
	ID      string
	Epoch   uint64
	Attempt int
	Result  json.RawMessage
	// Err is "" on success, else what the run said.
	Err string
	// Stopped: the run ended because the node is stopping, not by its own fault.
	Stopped bool
	Elapsed time.Duration
}

// Tick tells the engine time passed (its Wake came).
type Tick struct{}

// Drain starts draining: refuse new work, stop stealing, hand back stolen tasks
// that have not started, finish the queue, then Ready.Drained. Timeout bounds it.
type Drain struct {
	Req     uint64
	Timeout time.Duration
}

// Stop: the node is shutting down. New work is refused and nothing more starts; a
// graceful stop gives stolen tasks that have not started back to their owners. The
// Reply (Req) comes once the engine stopped starting runs.
type Stop struct {
	Req      uint64
	Graceful bool
}

// SetTypes changes the task types this node has handlers for (a handler
// registered after start).
type SetTypes struct {
	Types []string
}

func (Submit) isInput()      {}
func (Cancel) isInput()      {}
func (CancelGraph) isInput() {}
func (Receive) isInput()     {}
func (MemberUp) isInput()    {}
func (MemberGone) isInput()  {}
func (PeerLoad) isInput()    {}
func (RunDone) isInput()     {}
func (Tick) isInput()        {}
func (Drain) isInput()       {}
func (Stop) isInput()        {}
func (SetTypes) isInput()    {}

// The HTTP statuses of the refusals the engine decides (api.Error.Status); the engine
// does not import net/http.
const (
	statusBadRequest  = 400
	statusNotFound    = 404
	statusConflict    = 409
	statusTooLarge    = 413
	statusTooMany     = 429
	statusUnavailable = 503
)
