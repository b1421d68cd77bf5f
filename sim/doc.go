// Package sim owns Starling's deterministic whole-cluster simulation: N real
// engines (package engine) driven on one goroutine, off one seeded event heap, over
// a simulated network, clock, disk, runner, failure detector and clients, with the
// run checked by package invariant at the end. One seed replays a run exactly.
//
// Each node process runs the node's event loop as package node does (engine/doc.go):
// Step the waiting inputs, then carry out Ready in order — Writes to the simulated
// disk, Messages into the network, Stop and Start into the runner, the read view
// (Records, Cluster) that clients read, Replies to clients, Load into gossip, a leave
// once Drained — then Advance, and Tick at Wake. Nothing here uses real sockets,
// timers, goroutines or the wall clock.
//
// What a run does is drawn from its seed: 3 to 7 nodes with different slots, tags
// and resources; clients that submit single tasks, batches and graphs (failing
// members, all_done clean-up steps, retries, timeouts, panics) mostly to one node,
// cancel some, drain a node, and read tasks through random nodes, routed with
// engine.ClusterView.Route as node/route.go does; and faults — crashes (a restart
// gets a new node id), false, one-sided, flapping and late deaths, two-way and
// one-way partitions, and a network that delays, drops, duplicates and reorders
// messages. Then it calms down, settles, and is checked: see check.go for what the
// system promises today and so what a run is held to. A run that did no real work
// (nothing finished, nothing stolen, no fault) fails too.
//
// # Running it
//
//	go test ./sim                                  # 300 seeds (100 with -short, 40 with -race)
//	go test ./sim -run 'TestSim$' -sim.seeds=20000 # many more
//	go test ./sim -run 'TestSim$' -sim.seed=42 -sim.trace -v   # replay one, every event
//	go test ./sim -run Scale -v                    # 100 nodes, 100,000 tasks
//
// A failing seed prints its number and the command that replays it. The trace has a
// line for every input a node steps, every record it publishes, every message the
// network sends, drops or cuts, every run, every answer a client gets, and every
// fault.
//
// # From a program
//
// Run simulates one Config and returns a Result with what happened and how it
// measured up; a benchmark can run a large plain workload without faults:
//
//	res, err := sim.Run(sim.Config{Seed: 1, Nodes: 100, Slots: 4, Tasks: 100_000, Owners: 10,
//		RunTime: 100 * time.Millisecond, Plain: true, NoFaults: true, LoadInterval: 100 * time.Millisecond})
//	fmt.Println(res.Makespan, res.Ideal, res.Ratio(), res.Steals, res.Wall)
package sim
