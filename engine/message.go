package engine

import (
	"encoding/json"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// Message is what nodes send each other over peer RPC (msgpack). One message may
// carry several parts; the transport batches messages to a peer into one write.
type Message struct {
	Req     *steal.StealRequest `msgpack:"q,omitempty"`
	Grant   *GrantMsg           `msgpack:"g,omitempty"`
	Empty   *steal.Empty        `msgpack:"e,omitempty"`
	Reply   *steal.Reply        `msgpack:"p,omitempty"`
	Release *steal.Release      `msgpack:"l,omitempty"`
	Reports []Report            `msgpack:"r,omitempty"`
	Acks    []Ack               `msgpack:"a,omitempty"` // final reports the owner has recorded
	Cancel  []Ack               `msgpack:"c,omitempty"` // runs the owner wants stopped
	// CancelAcks confirm cancels, whether the run was there or not.
	CancelAcks []Ack `msgpack:"k,omitempty"`
	Load       *Load `msgpack:"o,omitempty"` // the sender's load, pushed when work arrives
}

// GrantMsg is a steal grant with what the thief needs to run the tasks.
type GrantMsg struct {
	Grant steal.Grant  `msgpack:"g"`
	Tasks []GrantedRun `msgpack:"t"`
}

// GrantedRun is a task as a thief receives it.
type GrantedRun struct {
	ID string `msgpack:"i"`
	// Void marks a task the owner no longer has for this grant (finished, cancelled,
	// moved on or expired since the grant was first sent): the thief must not run it.
	Void    bool                       `msgpack:"v,omitempty"`
	Spec    api.Spec                   `msgpack:"s"`
	Attempt int                        `msgpack:"a"` // attempts started before this one
	Deps    map[string]json.RawMessage `msgpack:"d,omitempty"`
}

// Report tells a task's owner how a run on another node goes.
type Report struct {
	ID      string          `msgpack:"i"`
	Epoch   uint64          `msgpack:"e"`
	Attempt int             `msgpack:"a"`
	State   api.State       `msgpack:"s"` // running, succeeded or failed
	Node    string          `msgpack:"n"`
	At      time.Time       `msgpack:"t"`
	Result  json.RawMessage `msgpack:"r,omitempty"`
	Error   string          `msgpack:"x,omitempty"`
	// Lost means the run ended because its node is shutting down (or thought its
	// owner gone), not because the task failed: the owner runs it again elsewhere.
	Lost bool `msgpack:"l,omitempty"`
	// Returned means the task never started here (the node is stopping): the owner
	// queues it again without counting a node loss.
	Returned bool `msgpack:"b,omitempty"`
}

// Ack names a report or a cancel by task and epoch.
type Ack struct {
	ID    string `msgpack:"i"`
	Epoch uint64 `msgpack:"e"`
}

// Meta is the static description of a node that gossip carries (at most 512 bytes).
type Meta struct {
	ID    string           `msgpack:"i"`
	Inc   uint64           `msgpack:"n"`
	HTTP  string           `msgpack:"h"`
	RPC   string           `msgpack:"r"`
	Slots int              `msgpack:"s"`
	Tags  []string         `msgpack:"t,omitempty"`
	Res   map[string]int64 `msgpack:"c,omitempty"`
	Types []string         `msgpack:"y,omitempty"`
	Ver   string           `msgpack:"v,omitempty"`
	// Durable: the node keeps its records on disk, so when it leaves it comes back
	// with the same id and its tasks.
	Durable bool `msgpack:"d,omitempty"`
}

// Load is a node's load report, as gossip spreads it a few times a second. Backlog
// is ordered by top priority, highest first, so a report trimmed to fit gossip keeps
// what thieves need most.
type Load struct {
	Ver     uint64           `msgpack:"v"`
	Queued  int              `msgpack:"q"`
	Bands   []api.Band       `msgpack:"p,omitempty"`
	Running int              `msgpack:"r"`
	Free    int              `msgpack:"f"`
	FreeRes map[string]int64 `msgpack:"x,omitempty"`
	Backlog []steal.Backlog  `msgpack:"b,omitempty"`
}
