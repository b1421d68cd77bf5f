// Package sim owns Starling's deterministic whole-cluster simulation: N real
// engines (package engine) driven on one goroutine, off one seeded event heap, over
// a simulated network, clock, disk, runner, failure detector and clients, with the
// run checked by package invariant at the end. One seed replays a run exactly.
//
// Each node process runs the node's event loop as package node does (engine/doc.go):
// Step the waiting inputs, then carry out Ready in order — the step's batch to the
// simulated disk (durable nodes), Messages into the network, Stop and Start into the
// runner, the read view (Records, Cluster) that clients read, Replies to clients, Load
// into gossip, a leave once Drained — then Advance, and Tick at Wake. Nothing here
// uses real sockets, timers, goroutines, files or the wall clock.
//
// # Durable nodes
//
// In about half the runs some or all nodes are durable, as a node with a data
// directory is (node/storage.go): after every step the node appends the batch of what
// it changed (Ready.Records, Ready.Expired, and its State — id, sequence,
// incarnation — when engine.Seq moved) to its disk, through the record codec, and
// syncs it before it sends, starts or answers anything of that step. A crash strikes
// between steps, or in the fsync of a batch, which then lands whole or not at all
// (store cuts a torn batch whole); what was not synced is lost, and nothing of that
// step was said. A crashed, stopped or drained durable node always comes back before
// the run ends, from its disk: the same node id, a higher incarnation, engine.New with
// Config.Durable and engine.Restore with the records it loaded; gossip announces it
// under its name and id again, with the higher Meta.Inc. Some stay down longer than
// peers wait to confirm a death. In-memory nodes lose everything and come back under
// a new id.
//
// What a run does is drawn from its seed: 3 to 7 nodes with different slots, tags
// and resources, in memory or durable; clients that submit single tasks, batches and
// graphs (failing members, all_done clean-up steps, retries, timeouts, panics) mostly
// to one node, cancel some, drain a node, and read tasks through random nodes, routed
// with engine.ClusterView.Route as node/route.go does; and faults — crashes, false,
// one-sided, flapping and late deaths, two-way and one-way partitions, graceful stops,
// and a network that delays, drops, duplicates and reorders messages. Then it calms
// down, settles, and is checked: see check.go for what the system promises and so
// what a run is held to (more for durable nodes: they lose nothing). A run that did
// no real work (nothing finished, nothing stolen, no fault) fails too, and so do many
// seeds that never took a path the simulation is there for (a durable node restarted
// with unfinished tasks, a crash in an fsync, …).
//
// # Running it
//
//	go test ./sim                                  # 300 seeds (100 with -short, 40 with -race)
//	go test ./sim -run 'TestSim$' -sim.seeds=20000 # many more
//	go test ./sim -run 'TestSim$' -sim.seed=42 -sim.trace -v   # replay one, every event
//	go test ./sim -run 'TestSim$' -sim.durable=all  # every node durable (none, some, drawn)
//	go test ./sim -run Scale -v                    # 100 nodes, 100,000 tasks
//
// A failing seed prints its number and the command that replays it. The trace has a
// line for every input a node steps, every record it publishes, every message the
// network sends, drops or cuts, every run, every answer a client gets, every fault,
// and every start (a durable node's says how many records it loaded).
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
