package steal

// NodeID names a node in the cluster, as gossip knows it.
type NodeID string

// The messages below travel between nodes; the node package encodes them with
// msgpack and sends them over its peer connections. Every field is exported and
// of a plain type so that the encoding needs no hooks.
//
// Each message names both ends with their incarnation: a number a node picks when
// its process starts and that grows from one start to the next (the start time in
// Unix nanoseconds will do). Incarnations keep a message meant for a process that
// has since restarted from being taken by its successor.

// StealRequest asks a victim for work. A thief sends it and has at most one
// outstanding at a time.
type StealRequest struct {
	Thief    NodeID
	ThiefInc uint64
	Victim   NodeID
	// ReqID grows by one with every request a thief incarnation sends.
	ReqID uint64
	// Max is the most tasks the thief takes: its free slots plus Config.Buffer.
	Max int
	// Cap is what the thief can run; the victim grants only tasks it can serve.
	Cap Capability
}

// GrantedTask is one task moved by a grant.
type GrantedTask struct {
	ID string
	// Epoch is the task's epoch for this grant: the executor reports running and
	// the result to the owner with it, and the owner ignores other epochs.
	Epoch uint64
	// Spec is opaque to this package: what the thief needs to run the task
	// (its spec as the node encodes it), carried over from Candidate.Spec.
	Spec []byte
}

// Grant gives tasks to a thief in answer to its request ReqID. The victim keeps
// the tasks parked and resends the grant until the thief answers it with a Reply.
type Grant struct {
	Victim    NodeID
	VictimInc uint64
	Thief     NodeID
	ThiefInc  uint64
	ReqID     uint64
	Tasks     []GrantedTask
}

// Empty tells a thief that the victim had nothing it could serve.
type Empty struct {
	Victim   NodeID
	Thief    NodeID
	ThiefInc uint64
	ReqID    uint64
}

// Reply is a thief's answer to a Grant: Accept true acknowledges it (the thief
// now holds the tasks), false refuses it (the victim puts the tasks back in its
// queue). A thief answers every copy of the same grant the same way.
type Reply struct {
	Thief     NodeID
	ThiefInc  uint64
	Victim    NodeID
	VictimInc uint64
	ReqID     uint64
	Accept    bool
}

// Release tells a thief that the victim has recorded its acknowledgement of
// ReqID, so the thief may forget that request. A victim sends one for every
// accepting Reply, including repeated ones.
type Release struct {
	Victim    NodeID
	VictimInc uint64
	Thief     NodeID
	ThiefInc  uint64
	ReqID     uint64
}
