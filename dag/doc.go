// Package dag owns task graphs as pure logic: it validates a batch of task
// specs whose deps name each other (cycles, unknown and duplicate names and
// deps, size limits), decides when each task is ready, and propagates
// failures to the tasks downstream.
//
// It does no I/O, starts no goroutines and reads no clock. It never sees a
// real task: tasks are indexes 0..n-1 into the batch the graph was built
// from, and external deps are opaque ids the caller resolves. The caller
// (the node that owns the graph) runs the tasks and reports how they ended;
// the graph answers with the tasks that are now released or now
// upstream_failed. Its methods are not safe for concurrent use.
//
// # Semantics
//
// A task with the AllSuccess trigger (the default) is released when all its
// deps succeeded; as soon as any dep ends failed, cancelled or
// upstream_failed it becomes UpstreamFailed without running, and so,
// transitively, do its own AllSuccess dependents. An AllDone task is
// released once every dep is terminal, whatever the outcome, and never
// becomes UpstreamFailed: it is meant for clean-up steps.
//
// # Driving a graph
//
// Build the graph, Start it, queue what is ready, and report every end with
// Complete; each call returns the tasks it released and the tasks it marked
// upstream_failed:
//
//	g, err := dag.Build(specs, knownTaskID, dag.Limits{})
//	if err != nil {
//		return err // a *dag.Error naming the task and field at fault
//	}
//	apply := func(s dag.Step) {
//		for _, i := range s.Ready {
//			queue(i) // run task i; its deps are g.Deps(i)
//		}
//		for _, i := range s.UpstreamFailed {
//			record(i, "upstream_failed")
//		}
//	}
//	apply(g.Start())
//	for _, ref := range g.Externals() {
//		if o, ok := alreadyFinished(ref); ok {
//			apply(g.CompleteExternal(ref, o))
//		}
//	}
//	for !g.Done() {
//		ev := <-results // a task of this graph, or an external one, ended
//		if ev.External {
//			apply(g.CompleteExternal(ev.Ref, ev.Outcome))
//		} else {
//			apply(g.Complete(ev.Index, ev.Outcome))
//		}
//	}
//
// To cancel a graph, call CancelPending for the tasks that wait, stop the
// Ready ones and report each with Complete(i, dag.Cancelled).
//
// Misuse is harmless: completing a task that is not Ready (or Pending, for
// Cancelled), completing it twice, or an index out of range changes nothing
// and returns an empty Step.
package dag
