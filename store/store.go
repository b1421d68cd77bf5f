package store

import (
	"errors"

	"github.com/starlingsched/starling/record"
)

// State is the node's durable identity and counters.
type State struct {
	NodeID string // stable across restarts
	Seq    uint64 // high-water mark of the task/graph sequence (never reuse an id)
	Inc    uint64 // incarnation: bumped by every start
}

// Batch is what one step of the node changed.
type Batch struct {
	// Records are new versions; the last of each id in the batch wins.
	Records []*record.Record
	// Expired are ids to forget, applied after Records. An id once expired must
	// not be appended again (the engine never reuses an id).
	Expired []string
	// State is set when it changed (nil: unchanged).
	State *State
}

// Empty reports whether b changes nothing.
func (b *Batch) Empty() bool {
	return len(b.Records) == 0 && len(b.Expired) == 0 && b.State == nil
}

// Store persists a node's records and State. One goroutine uses it (the node's
// event loop): its methods are not safe for concurrent use.
type Store interface {
	// Load calls f with every live record (its latest version), in no particular
	// order, and returns the last State. It runs once, before the first Append.
	Load(f func(*record.Record) error) (State, error)
	// Append makes b durable before it returns: one write and one fsync for the
	// whole batch, so the caller's batching is the group commit. After an error
	// nothing of b may be assumed durable or lost, and a file-backed store refuses
	// every later Append: restart to recover from what is on disk.
	Append(b *Batch) error
	// Close syncs and releases the directory. It is idempotent.
	Close() error
}

// The errors of Open and of a Log.
var (
	// ErrLocked: another process (or another Open in this one) holds the directory.
	ErrLocked = errors.New("store: data directory in use")
	// ErrFormat: the directory is not one this build reads (a newer format, or not
	// a Starling data directory at all).
	ErrFormat = errors.New("store: unsupported data directory")
	// ErrCorrupt: an entry passed its checksum but cannot be read. The Log refuses
	// to guess rather than misread it.
	ErrCorrupt = errors.New("store: unreadable entry")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// Mem returns the in-memory Store: it keeps nothing (the in-memory node keeps its
// records in its engine), and Load finds nothing.
func Mem() Store { return mem{} }

type mem struct{}

func (mem) Load(func(*record.Record) error) (State, error) { return State{}, nil }
func (mem) Append(*Batch) error                            { return nil }
func (mem) Close() error                                   { return nil }
