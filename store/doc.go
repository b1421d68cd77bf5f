// Package store owns a node's durable state: the latest version of every record it
// keeps and its identity (State), behind the Store interface, with Mem for the
// in-memory node and Log for a data directory.
//
// The node persists record versions, not operations: each Batch is the latest
// version of every record one step of the engine changed, the ids that retention
// expired, and the State when it changed. Replay is idempotent (the last version
// of an id wins) and compaction needs no snapshot.
//
// The node's event loop drives it; one goroutine uses a Store:
//
//	var st store.Store = store.Mem() // without a data directory
//	if dir != "" {
//		st, err = store.Open(dir, store.Options{Logger: logger})
//	}
//	state, err := st.Load(func(r *record.Record) error {
//		recs = append(recs, r) // for the engine, which sorts them
//		return nil
//	})
//	if state.NodeID == "" {
//		state.NodeID = newID() // a new node
//	}
//	state.Inc++ // a new incarnation
//	state.Seq = max(state.Seq, maxSeq(recs))
//	err = st.Append(&store.Batch{State: &state}) // before the node says anything
//	for {
//		e.Step(clock.Now(), in)
//		rd := e.Ready()
//		b := store.Batch{Records: rd.Records, Expired: rd.Expired}
//		if seq := e.Seq(); seq > state.Seq {
//			state.Seq = seq
//			b.State = &state
//		}
//		if err := st.Append(&b); err != nil { // 1. durable before anything is said
//			// answer 503 storage_unavailable: every later Append fails too
//		}
//		// 2. send Messages; 3. start and stop runs; 4. answer Replies; … Advance
//	}
//	st.Close()
//
// # The log
//
// A Log owns its directory while it is open: a LOCK file held with flock (a second
// Open, in this process or another, fails with ErrLocked), a VERSION file (a
// directory of a newer format fails with ErrFormat, and is never misread), and
// segment files 000001.log, 000002.log, … Append writes each batch to the last
// segment with one write and one fdatasync, and starts a new segment past
// Options.SegmentBytes. Every entry is framed with its length and a CRC-32C, and
// carries a log sequence number; the index in memory maps each id to its latest
// entry, like Bitcask's keydir.
//
// Open reads every segment. A torn write at the end of the last segment (the only
// place a crash can tear one, since a batch is written only once the previous one
// is synced) is cut off, its whole batch with it, and logged; everything before it
// is intact. A damaged entry elsewhere whose length still frames the next entry is
// skipped alone; past a damaged length nothing more of that segment can be framed,
// so the rest of that segment is skipped, logged, and the file is kept (renamed
// *.corrupt once compacted) rather than misread. An entry whose checksum is right
// but which this build cannot read fails Open with ErrCorrupt.
//
// Compaction keeps the directory bounded by what is retained: when the sealed
// segments hold more dead bytes (superseded versions, expired records) than live
// ones, a background goroutine copies the live entries into new segments and
// removes the old ones (see compact.go for why that is safe at any crash). Close
// stops it and waits for it.
package store
