// Package steal owns Starling's work-stealing policy and protocol as a pure
// state machine: when a node steals, from whom, how many tasks it takes, and
// the grant/acknowledge/refuse exchange that moves queued tasks between nodes
// without running one twice or losing one.
//
// Like etcd-io/raft's core, the package does no I/O, starts no goroutines and
// reads no clock: time comes in as an argument, randomness from a *rand.Rand
// the caller seeds, messages come in as arguments and go out as return values.
// The node owns the tasks, sends the messages and feeds the events in. That is
// what makes the seeded simulation in sim_test.go possible.
//
// # Roles
//
// Every node has a Thief and a Victim, created with the node's id and its
// incarnation (a number that grows with every process start, such as the start
// time in Unix nanoseconds). Neither is safe for concurrent use: call the Thief
// from the node's event loop and the Victim under the lock of the ready queue.
//
// # The protocol
//
//  1. A thief with a free slot and nothing runnable queued picks a victim among
//     the peers whose gossiped backlog it can serve (highest servable priority
//     first, then power of two choices by servable backlog) and sends a
//     StealRequest for at most its free slots plus Config.Buffer tasks. It has
//     one request in flight at a time.
//  2. The victim chooses half of the backlog the thief can serve, rounded up,
//     highest priority first, at most the requested number; removes them from
//     its queue in the same critical section as its own dequeuing; bumps each
//     task's epoch; parks them as granted to the thief; and sends a Grant. With
//     nothing to give it sends Empty, and the thief backs off exponentially with
//     jitter (reset by a successful steal).
//  3. The thief acknowledges the grant of its request in flight with an
//     accepting Reply and queues the tasks. The victim then records the tasks
//     as running on the thief and answers with a Release.
//  4. A thief that got no answer within Config.Timeout gives the request up and
//     refuses any grant that comes for it later; the victim puts those tasks
//     back in its queue. A victim withdraws a parked grant only on a refusal, or
//     when gossip declares the thief dead (or it restarts with a new
//     incarnation).
//  5. Messages may be lost, duplicated or reordered. The victim resends a
//     parked grant every Config.ResendInterval; the thief answers every copy the
//     same way: it acknowledges again a grant it accepted and still remembers
//     (same victim incarnation, same tasks and epochs), and refuses anything
//     else. The victim answers each request id of a thief incarnation at most
//     once, ignoring duplicates and older ids. Request ids grow, so "every id up to the last
//     one I issued that I do not hold as accepted is refused" stays true for
//     the life of the incarnation. The thief remembers an accepted grant until
//     the victim's Release, resending its acknowledgement meanwhile; once the
//     victim has settled a grant, a late refusal of it changes nothing.
//  6. Epochs fence: the executor reports running and the result to the owner
//     with the granted epoch, and the owner drops reports for which Stale is
//     true. When gossip declares an executor dead, the owner re-queues its
//     unfinished tasks with epoch+1, so a run the owner gave up on can never
//     report. That is the only way a task runs twice.
//
// # Driving it from a node
//
// The victim is always the task's owner: a node offers only tasks it owns, so
// stolen tasks are not stolen again, and the owner is the one node that moves
// a task's epoch. Candidate.Spec carries what the thief needs to run a task
// (its encoded spec) through the grant, resends included. A sketch of the
// node's event loop:
//
//	thief, _ := steal.NewThief(self, inc, cfg, rand.New(rand.NewPCG(seed1, seed2)))
//	victim, _ := steal.NewVictim(self, inc, cfg)
//	for {
//		select {
//		case <-ticker.C: // every few tens of milliseconds
//			now := time.Now()
//			for _, r := range thief.Tick(now) { send(r.Victim, r) }
//			for _, g := range victim.Tick(now) { send(g.Thief, g) } // under the queue lock
//			if req, ok := thief.Next(now, local(), gossipLoads()); ok { send(req.Victim, req) }
//		case m := <-inbox:
//			switch m := m.(type) {
//			case steal.StealRequest: // under the queue lock, only if m.Thief is alive
//				d := victim.OnRequest(now, m, ownedQueued())
//				removeFromQueue(d.Take) // records get d.Grant.Tasks[i].Epoch, state granted
//				requeue(d.Requeue)
//				if d.Grant != nil { send(m.Thief, *d.Grant) } else if d.Empty != nil { send(m.Thief, *d.Empty) }
//			case steal.Grant:
//				reply, tasks := thief.OnGrant(now, m)
//				enqueueStolen(tasks) // run them; report to the owner with their epochs
//				send(m.Victim, reply)
//			case steal.Empty:
//				thief.OnEmpty(now, m)
//			case steal.Reply:
//				s := victim.OnReply(m) // under the queue lock
//				markRemote(s.Acked, m.Thief)
//				requeue(s.Requeue) // if record epoch == t.Epoch and not finished: epoch+1, back in the queue
//				if s.Release != nil { send(m.Thief, *s.Release) }
//			case steal.Release:
//				thief.OnRelease(m)
//			}
//		case id := <-gossipDead:
//			thief.PeerDead(id)
//			requeue(victim.PeerDead(id))
//			requeueRunningOn(id) // acknowledged tasks there: epoch+1
//		case id := <-gossipAlive:
//			thief.PeerAlive(id)
//		}
//	}
package steal
