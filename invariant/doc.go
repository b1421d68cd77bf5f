// Package invariant owns the checker every Starling harness shares: given what a run
// of the cluster did — the tasks clients got acknowledged, every run of every task,
// the records the tasks reached and what clients saw along the way — it says whether
// each acknowledged task ended in exactly one outcome, none lost, with the result of
// one of its runs, and whether a task ran twice where no death or partition allows
// it (DESIGN.md §8).
//
// It works on plain data, not on clusters or clients, so testcluster's tests, the
// multi-process tests and the deterministic simulator feed it alike. Check is pure:
// no clock, no I/O, no goroutines; the same History gives the same Report.
//
// # Feeding it
//
// A Recorder collects runs and observations as they happen, on the clock it is
// given. Handlers call Start when a run begins and the function it returns when the
// run ends:
//
//	rec := invariant.NewRecorder(time.Now) // a simulator passes its simulated clock
//
//	func work(ctx context.Context, in *node.Input) (any, error) {
//		end := rec.Start(in.ID, in.Attempt, nodeName)
//		res, err := doWork(ctx, in)
//		end(res, err)
//		return res, err
//	}
//
// Clients that read a task record what they saw, with when they asked and when the
// answer came back:
//
//	asked := rec.Now()
//	t, err := cl.Get(ctx, id)
//	if err == nil {
//		rec.Observe(invariant.Observed(nodeName, t, asked, rec.Now()))
//	}
//
// At the end, the harness gathers the final records and checks:
//
//	rep := invariant.Check(rec.History(ackedIDs, finalRecords), invariant.Options{
//		Want: api.Succeeded,
//		Died: []string{"node-2"}, // killed: its tasks may have run twice
//	})
//	rep.Assert(t, 20)   // in a test: at most 20 violations printed
//	err := rep.Err()    // elsewhere: nil, or wraps ErrViolated
//
// A simulator, which knows every run and every read, may also build the History
// itself: History is plain data, and Recorder only a convenience.
//
// # What it counts
//
// Report counts the tasks, their outcomes by state, the lost ones, the runs, the
// retries, the duplicate runs (allowed or not) and the runs that overlapped another
// run of their task, so a harness can also tell that a run did real work.
package invariant
