package sim

import (
	"fmt"
	"maps"
	"slices"

	"github.com/starlingsched/starling/record"
	"github.com/starlingsched/starling/store"
)

// disk is a durable member's disk, kept as node/storage.go keeps a data directory
// with package store: the latest version of every record, encoded with the record
// codec, and the node's State (its id, the sequence high-water mark, its
// incarnation). It outlives the member's processes; a restart loads it.
//
// The node appends one store.Batch after every step (Ready.Records, Ready.Expired,
// and the State when engine.Seq moved) and syncs it before it sends, starts or
// answers anything of that step, so at any instant at most one batch is unsynced: the
// one being written. A crash between steps loses nothing the node said; a crash in
// the middle of a batch's fsync loses that batch or keeps it, whole either way (store
// cuts a torn batch off whole), and nothing of its step was said. Records go through
// the codec both ways, so what a restart loads is what the store would give back,
// never the engine's own pointers.
type disk struct {
	recs  map[string][]byte // by id: the encoded latest version
	state store.State
	// batches counts the batches synced.
	batches int
	// bad is the first batch that could not be encoded, as the node's store would
	// have refused it (then the node acknowledges nothing more).
	bad string
}

// apply makes b durable, all of it.
func (d *disk) apply(b *store.Batch) {
	if d.recs == nil {
		d.recs = map[string][]byte{}
	}
	enc := make(map[string][]byte, len(b.Records))
	for _, r := range b.Records {
		v, err := r.AppendBinary(nil)
		if err != nil {
			if d.bad == "" {
				d.bad = fmt.Sprintf("record %s v%d: %v", r.ID, r.Version, err)
			}
			return
		}
		enc[r.ID] = v // the last of an id wins
	}
	maps.Copy(d.recs, enc)
	for _, id := range b.Expired {
		delete(d.recs, id)
	}
	if b.State != nil {
		d.state = *b.State
	}
	d.batches++
}

// load decodes every record the disk holds, in id order, as store.Load gives them.
func (d *disk) load() ([]*record.Record, error) {
	out := make([]*record.Record, 0, len(d.recs))
	for _, id := range slices.Sorted(maps.Keys(d.recs)) {
		r, err := record.Decode(d.recs[id])
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", id, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// writeLog applies the engine's Ready.Writes, the record operations, to the records
// they describe, for check to hold against the read view (the records the node
// persists): the two descriptions of what changed must agree. A restarted process's
// log starts from the records it loaded.
type writeLog struct {
	recs map[string]*record.Record
	// ops counts the operations applied; orphan names the first operation on a
	// record the log does not hold.
	ops    int
	orphan string
}

func (w *writeLog) init(loaded []*record.Record) {
	w.recs = make(map[string]*record.Record, len(loaded))
	for _, r := range loaded {
		w.recs[r.ID] = r
	}
}

func (w *writeLog) apply(ops []record.Op) {
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case record.OpCreate:
			w.recs[op.ID] = (*record.Record)(nil).Apply(op)
		case record.OpExpire:
			delete(w.recs, op.ID)
		default:
			if r := w.recs[op.ID]; r != nil {
				w.recs[op.ID] = r.Apply(op)
			} else if w.orphan == "" {
				w.orphan = op.Kind.String() + " " + op.ID
			}
		}
	}
	w.ops += len(ops)
}

// sameRecord reports whether a and b are the same record version, as the codec
// writes them (times compare by instant, not by location).
func sameRecord(a, b *record.Record) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, errA := a.AppendBinary(nil)
	y, errB := b.AppendBinary(nil)
	return errA == nil && errB == nil && string(x) == string(y)
}
