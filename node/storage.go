package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
	"github.com/starlingsched/starling/store"
)

// Durability: with Config.DataDir the node keeps its records and its identity in a
// write-ahead log (package store). Every step's changed records are appended, with one
// fsync, before anything the step decided is said to anyone: a 2xx, a report's
// acknowledgement, a grant. A restarted node with its directory is the same node: the
// same id, its tasks back (engine.Restore). Without a data directory the node keeps
// everything in memory and says so.

// openStore opens cfg.DataDir, loads what it holds and makes the node's identity
// durable before anything else happens. It sets n.id, n.inc and n.store.
func (n *Node) openStore() ([]*record.Record, store.State, error) {
	if n.cfg.DataDir == "" {
		n.store = store.Mem()
		return nil, store.State{}, nil
	}
	start := time.Now()
	lg, err := store.Open(n.cfg.DataDir, store.Options{Logger: n.log.With(slog.String("part", "store"))})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, store.State{}, fmt.Errorf("node: %w", err) // it names the directory and the holder
		}
		return nil, store.State{}, fmt.Errorf("node: data directory %s: %w", n.cfg.DataDir, err)
	}
	var recs []*record.Record
	st, err := lg.Load(func(r *record.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		lg.Close()
		return nil, store.State{}, fmt.Errorf("node: data directory %s: %w", n.cfg.DataDir, err)
	}
	if st.NodeID != "" {
		n.id = st.NodeID
	}
	// The incarnation grows with every start, whatever the clock says.
	n.inc = max(st.Inc+1, n.inc)
	st = store.State{NodeID: n.id, Seq: st.Seq, Inc: n.inc}
	if err := lg.Append(&store.Batch{State: &st}); err != nil {
		lg.Close()
		return nil, store.State{}, fmt.Errorf("node: data directory %s: %w", n.cfg.DataDir, err)
	}
	n.store = lg
	n.recovered, n.recoveredIn = len(recs), time.Since(start)
	return recs, st, nil
}

// persist makes what a step changed durable. It returns false when storage failed:
// nothing of the step may then be acknowledged.
func (n *Node) persist(rd *engine.Ready) bool {
	if n.storeErr.Load() != nil || n.killed.Load() {
		return false
	}
	b := store.Batch{Records: rd.Records, Expired: rd.Expired}
	if seq := n.eng.Seq(); seq != n.seqSaved {
		b.State = &store.State{NodeID: n.id, Seq: seq, Inc: n.inc}
	}
	if b.Empty() {
		return true
	}
	if err := n.store.Append(&b); err != nil {
		n.storeErr.Store(&err)
		n.log.Error("storage failed: the node takes no more work and acknowledges nothing more; restart it", slog.Any("err", err))
		return false
	}
	if b.State != nil {
		n.seqSaved = b.State.Seq
	}
	return true
}

// errStorage answers what could not be made durable.
func (n *Node) errStorage() error {
	msg := "the node's storage failed, so it cannot make this durable; submit to another node"
	if p := n.storeErr.Load(); p != nil {
		msg += " (" + (*p).Error() + ")"
	}
	return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeStorageUnavailable, Message: msg}
}

// storageName says where the node keeps its records, for /v1/cluster.
func (n *Node) storageName() string {
	if n.cfg.DataDir == "" {
		return "memory"
	}
	return "disk"
}
