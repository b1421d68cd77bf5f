// Package testcluster runs a whole Starling cluster in one process: N nodes on
// 127.0.0.1 with free ports and fast timers, joined by gossip, with faults on demand.
// It is an exported harness, like etcd-io/raft's rafttest, for tests, benchmarks and
// `starling dev`; the production path never uses it otherwise.
//
//	func TestSomething(t *testing.T) {
//		c := testcluster.Start(t, testcluster.Options{Nodes: 3})
//		ids, err := c.Submit(ctx, 0, client.Spec{Type: "sleep", Payload: json.RawMessage(`{"ms": 20}`)})
//		...
//		c.Kill(1)                 // abrupt: no graceful leave
//		c.Partition([]int{0}, []int{1, 2})
//		c.Heal()
//		recs, err := c.Await(ctx, ids) // from any live node
//	}
//
// Kill stops a node as a crash would; Stop stops it gracefully; Restart brings a
// stopped or killed node back under the same name (with a new node id); Pause cuts a
// node off the network without stopping it; Partition splits the nodes into groups
// that cannot reach each other, for gossip and for peer RPC alike. Start registers
// Close with t.Cleanup.
//
// With Options.Durable every node keeps its records in a data directory (a temporary
// one that Close removes, or one under Options.DataDir), and Restart brings a killed
// or stopped node back as the same node, with its id and its tasks:
//
//	c := testcluster.Start(t, testcluster.Options{Nodes: 3, Durable: true})
//	ids, err := c.Submit(ctx, 0, specs...)
//	c.Kill(0)                 // no Shutdown: what was not synced is gone
//	err = c.Restart(0)        // node 0 again, on its directory
//	recs, err := c.Await(ctx, ids)
package testcluster
