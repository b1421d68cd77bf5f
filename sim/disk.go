package sim

import "github.com/starlingsched/starling/record"

// disk is a node's simulated disk: an append-only log of the record operations the
// engine asked to persist, and the records they describe. append takes operations
// in; sync makes what was appended durable (the node group-commits each Ready's
// writes before it does anything else with it); crash loses what was appended but
// not synced. The engine keeps its records in memory and recovers nothing from the
// disk yet, so today crash drops nothing that matters; a durable store will.
type disk struct {
	unsynced []record.Op
	// recs are the records the synced log describes, by id.
	recs map[string]*record.Record
	// ops counts the operations synced; orphan names the first operation on a
	// record the log does not hold.
	ops    int
	orphan string
}

func (d *disk) append(ops []record.Op) {
	d.unsynced = append(d.unsynced, ops...)
}

// sync makes every appended operation durable, applying it to the records.
func (d *disk) sync() {
	if d.recs == nil {
		d.recs = map[string]*record.Record{}
	}
	for i := range d.unsynced {
		op := &d.unsynced[i]
		switch op.Kind {
		case record.OpCreate:
			d.recs[op.ID] = (*record.Record)(nil).Apply(op)
		case record.OpExpire:
			delete(d.recs, op.ID)
		default:
			if r := d.recs[op.ID]; r != nil {
				d.recs[op.ID] = r.Apply(op)
			} else if d.orphan == "" {
				d.orphan = op.Kind.String() + " " + op.ID
			}
		}
		d.unsynced[i] = record.Op{}
	}
	d.ops += len(d.unsynced)
	d.unsynced = d.unsynced[:0]
}

// crash loses the operations not synced.
func (d *disk) crash() {
	d.unsynced = nil
}
