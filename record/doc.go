// Package record owns the durable task record and the operations that change it.
//
// A Record holds only what must survive the node: the spec, the state, the counters
// that decide retries and node losses, the epoch that fences executors, where the task
// runs, its timestamps and its outcome. Runtime handles (queue positions, timers,
// cancel functions, channels) live in the engine's own entries, never here.
//
// Every change of a record is an Op. The engine builds an Op, applies it with Apply
// (which bumps the record's Version) and hands the same Op to the caller in
// Ready.Writes, so a write-ahead log can persist exactly what changed before the
// change has any effect, and a replica or a restarted node can replay it:
//
//	op := record.Op{Kind: record.OpStart, ID: id, At: now, Attempt: 2, Node: "n1"}
//	rec = rec.Apply(&op) // a new *Record; rec's old value is unchanged
//
// Records handed out are immutable: Apply returns a copy. The engine clones only what
// it has already shared (see engine.Ready), so several ops on one record in one step
// cost one copy.
package record
