// Package engine owns every decision a Starling node makes, as a pure, deterministic
// state machine: admission, the ready queue and resources, the task lifecycle (retries
// and timeouts as deadlines), graphs (driving package dag), cancels, the steal glue
// (driving package steal), report handling with epoch fences, executor and owner loss,
// drain, the membership view and load reports.
//
// Like etcd-io/raft's RawNode it does no I/O, starts no goroutines, reads no clock and
// draws randomness only from the seed in its Config: inputs come in through Step, and
// what to do comes out of Ready. One goroutine owns an Engine; the node's event loop
// is the model (package node), and package sim drives many engines from one seed.
//
//	e, err := engine.New(cfg)
//	for {
//		var in engine.Input
//		select {
//		case in = <-inbox: // submissions, cancels, peer messages, membership, run ends
//		case <-timer.C:
//			in = engine.Tick{}
//		}
//		e.Step(clock.Now(), in)
//		rd := e.Ready()
//		store.Append(rd.Writes)           // 1. durable before anything is said
//		for _, m := range rd.Messages {}  // 2. send to peers
//		for _, r := range rd.Start {}     // 3. start and stop runs
//		for _, r := range rd.Stop {}
//		for _, r := range rd.Replies {}   // 4. answer clients; publish events
//		view.publish(rd.Records, rd.Graphs, rd.Cluster) // 5. the read view
//		e.Advance()                       // 6.
//		timer.Reset(time.Until(rd.Wake))
//	}
//
// Every change of a task's record is a record.Op in Ready.Writes, applied to the record
// before Ready returns it: the write-ahead log's seam. Records in Ready.Records are
// immutable; the engine copies a record it has handed out before changing it again.
//
// # Determinism
//
// The same Config (with its Seed) and the same inputs at the same times give the same
// Ready, byte for byte: map iterations that reach the output are sorted, and time is
// only the now given to Step. Runs end when a RunDone comes in; a timeout is a
// deadline that makes the engine emit a StopRun.
package engine
