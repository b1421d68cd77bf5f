package gossip

import (
	"strconv"
	"time"
)

// State is a member's liveness as this member sees it.
type State int

const (
	// StateAlive: the member answers probes.
	StateAlive State = iota
	// StateSuspect: the member missed probes and may be declared dead.
	// memberlist does not report suspicion to its delegates, so Members
	// currently shows a suspected member as StateAlive until it is declared
	// StateDead; callers should treat Suspect like Alive.
	StateSuspect
	// StateDead: the member was declared failed. It is re-joined
	// periodically until Config.ReconnectTimeout.
	StateDead
	// StateLeft: the member left gracefully (Leave). It is not re-joined.
	StateLeft
)

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	default:
		return "state(" + strconv.Itoa(int(s)) + ")"
	}
}

// Member is a snapshot of one cluster member. Its slices are copies the
// caller may keep.
type Member struct {
	// Name is the member's unique name (Config.Name).
	Name string
	// Addr is the member's gossip address, host:port.
	Addr string
	// Meta is the member's opaque metadata (Config.Meta, UpdateMeta).
	Meta []byte
	// State is the member's liveness.
	State State
	// Local is true for the member this Cluster runs.
	Local bool
	// Load is the member's latest opaque load report (SetLoad), nil when
	// none is known or the last one went stale. Not set in events.
	Load []byte
	// LoadAge is roughly how long ago the member produced Load.
	LoadAge time.Duration
}
