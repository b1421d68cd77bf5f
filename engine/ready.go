package engine

import (
	"encoding/json"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

// Ready is what the engine decided since the last Advance, for the caller to carry
// out in this order: persist Writes; send Messages; start and stop runs; answer
// Replies and publish Events and the read view (Records, Graphs, Cluster); publish
// Load; then Advance, and call Step with a Tick at Wake.
type Ready struct {
	// Writes are the record operations to persist, in order.
	Writes []record.Op
	// Records are the records changed (each once, its latest version), and Expired
	// the ids of records dropped, for the read view. Records handed out are
	// immutable.
	Records []*record.Record
	Expired []string
	// Graphs are graphs created or whose state changed; GraphsExpired were dropped.
	Graphs        []*GraphView
	GraphsExpired []string

	Messages []Envelope
	// Drop names peer RPC addresses whose connections should be closed (the peer
	// is gone).
	Drop []string

	Start []Run
	Stop  []StopRun

	Replies []Reply
	Events  []api.Event

	// Load, when set, is this node's new load report for gossip.
	Load *Load
	// Cluster, when set, is the membership as this node now sees it.
	Cluster *ClusterView

	// Drained is set once a drain has finished (or timed out, DrainTimedOut): the
	// node should shut down.
	Drained       bool
	DrainTimedOut bool

	// Wake is when to Tick the engine next (zero: no timer needed).
	Wake time.Time
}

// Envelope is a message for a peer.
type Envelope struct {
	To   string // node id
	Addr string // its peer RPC address
	Msg  *Message
}

// Run is an order to start one attempt of a task.
type Run struct {
	ID      string
	Attempt int
	Epoch   uint64
	Type    string
	Payload json.RawMessage
	Deps    map[string]json.RawMessage
	// Timeout is the task's timeout (0: none); the engine stops the run past it.
	Timeout time.Duration
}

// StopReason says why a run is stopped.
type StopReason uint8

// The reasons a run is stopped.
const (
	StopCancelled StopReason = iota + 1 // the task was cancelled, or its owner took it back
	StopTimeout                         // the run exceeded the task's timeout
	StopShutdown                        // the node is stopping
)

// StopRun is an order to stop a run (cancel its context).
type StopRun struct {
	ID     string
	Epoch  uint64
	Reason StopReason
	// Timeout is the exceeded timeout, for StopTimeout.
	Timeout time.Duration
}

// Reply answers a Submit, Cancel, CancelGraph, Drain or Stop.
type Reply struct {
	Req uint64
	// Err is an *api.Error when the request was refused.
	Err error
	// IDs are the submitted tasks' ids, in order; Graph and Names are set for a
	// graph.
	IDs   []string
	Graph string
	Names map[string]string
	// Rec is a cancelled task's record (also set with a conflict).
	Rec *record.Record
	// Unfinished is the tasks not yet finished when a drain began.
	Unfinished int
}

// GraphView is a graph as the read view shows it.
type GraphView struct {
	ID      string
	Created time.Time
	Tasks   []string          // task ids, in submission order
	Names   map[string]string // name -> task id
	Done    bool
}

// ClusterView is the membership as this node sees it, peers sorted by name.
type ClusterView struct {
	Peers []PeerView
	// Gone are the members forgotten since (restarted under a new id, or gone past
	// the reconnect window), newest first, at most MaxGone: routing still answers
	// "owner lost" for their tasks.
	Gone []PeerView
}

// MaxGone bounds ClusterView.Gone.
const MaxGone = 1024

// PeerView is a peer as this node sees it.
type PeerView struct {
	ID     string
	Name   string
	State  string // alive, suspect, dead, left, restarted
	Gone   bool
	GoneAt time.Time
	// Final: it left or restarted, so it never comes back.
	Final    bool
	Meta     Meta
	Load     *Load
	LoadSeen time.Time
}
