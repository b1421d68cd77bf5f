package steal

import (
	"cmp"
	"container/heap"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The protocol simulation runs Thieves and Victims — and nothing else — between
// several nodes over a simulated network that drops, delays, reorders and
// duplicates messages, with thief crashes and restarts and false death
// declarations, on a virtual clock. Each seed is deterministic: the same seed
// replays the same run exactly.
//
// A node here is the protocol's caller as the package documents it, no more: a
// victim keeps a queue of the tasks it owns and applies Decision and Settlement
// (take, park, mark acknowledged, put back with epoch+1); a thief holds what it
// accepted for a while and then lets it go ("done"). There are no runs, reports
// or records: the whole node is package engine's, which package sim simulates.
//
// What it checks: a task is accepted at most once per epoch, and more than once
// in all only after a death declaration of a thief that held it; a victim
// records as acknowledged only what the thief accepted; a thief accepts only
// what its victim granted it at that epoch; and after a calm spell nothing is
// parked or unreleased and every task was done.

var (
	simSeeds = flag.Int("steal.seeds", 0, "simulation seeds to run (0: 2000, or 300 with -short)")
	simSeed  = flag.Uint64("steal.seed", 0, "replay only this simulation seed")
	simTrace = flag.Bool("steal.trace", false, "log every simulation event (use with -steal.seed)")
)

func TestSimulation(t *testing.T) {
	var seeds []uint64
	switch {
	case *simSeed != 0:
		seeds = []uint64{*simSeed}
	default:
		n := *simSeeds
		if n <= 0 {
			n = 2000
			if testing.Short() {
				n = 300
			}
		}
		for s := range uint64(n) {
			seeds = append(seeds, s+1)
		}
	}
	start := time.Now()
	outcomes := make([]simOutcome, len(seeds))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(seeds) {
					return
				}
				outcomes[i] = runSim(seeds[i], *simTrace)
			}
		})
	}
	wg.Wait()

	var total simStats
	failed := 0
	for _, o := range outcomes {
		if o.trace != "" {
			t.Logf("trace of seed %d:\n%s", o.seed, o.trace)
		}
		if o.err != "" {
			failed++
			if failed <= 5 {
				t.Errorf("seed %d: %s\n\treplay: go test ./steal -run 'TestSimulation$' -steal.seed=%d -steal.trace -v", o.seed, o.err, o.seed)
			}
			continue
		}
		total.add(o.stats)
	}
	if failed > 5 {
		t.Errorf("%d more seeds failed", failed-5)
	}
	t.Logf("%d seeds in %v (%d failed): %d tasks; %d accepted more than once after a death",
		len(seeds), time.Since(start).Round(time.Millisecond), failed, total.tasks, total.reruns)
	t.Logf("protocol: %d requests, %d grants accepted, %d empty, %d timeouts, %d grants refused, %d grants resent, "+
		"%d withdrawn from dead thieves; %d crashes, %d false deaths; network: %d messages, %d dropped, %d duplicated",
		total.requests, total.grants, total.empties, total.timeouts, total.refused, total.resent,
		total.withdrawn, total.crashes, total.falseDeaths, total.sent, total.dropped, total.duplicated)

	// The simulation must not pass vacuously: over a normal run, every path of
	// the protocol was exercised.
	if len(seeds) >= 100 && failed == 0 {
		for _, c := range []struct {
			what string
			n    uint64
		}{
			{"grants accepted", total.grants},
			{"empty answers", total.empties},
			{"requests timed out", total.timeouts},
			{"grants refused", total.refused},
			{"grants resent", total.resent},
			{"grants withdrawn from dead thieves", total.withdrawn},
			{"tasks accepted again after a death", uint64(total.reruns)},
			{"crashes", uint64(total.crashes)},
			{"false deaths", uint64(total.falseDeaths)},
			{"messages dropped", uint64(total.dropped)},
			{"messages duplicated", uint64(total.duplicated)},
		} {
			if c.n == 0 {
				t.Errorf("no %s in %d seeds: the simulation no longer exercises it", c.what, len(seeds))
			}
		}
	}
}

// simOutcome is the result of one seed.
type simOutcome struct {
	seed  uint64
	err   string
	trace string
	stats simStats
}

type simStats struct {
	tasks, reruns, crashes, falseDeaths                             int
	sent, dropped, duplicated                                       int
	requests, grants, empties, timeouts, refused, resent, withdrawn uint64
}

func (s *simStats) add(o simStats) {
	s.tasks += o.tasks
	s.reruns += o.reruns
	s.crashes += o.crashes
	s.falseDeaths += o.falseDeaths
	s.sent += o.sent
	s.dropped += o.dropped
	s.duplicated += o.duplicated
	s.requests += o.requests
	s.grants += o.grants
	s.empties += o.empties
	s.timeouts += o.timeouts
	s.refused += o.refused
	s.resent += o.resent
	s.withdrawn += o.withdrawn
}

const (
	simTick          = 25 * time.Millisecond
	simGossip        = 100 * time.Millisecond
	simHorizon       = 2 * time.Minute
	simCalmFor       = time.Second
	simFaultSpacing  = 2500 * time.Millisecond // longer than any fault lasts
	simDeclareMin    = 200 * time.Millisecond
	simDeclareSpread = 600 * time.Millisecond
	simRestartMin    = time.Second // above simDeclareMin+simDeclareSpread
)

// where a task is, as its victim records it.
type where int

const (
	atVictim  where = iota // in the victim's queue
	grantedTo              // granted to at, not answered yet
	ackedBy                // acknowledged by at
)

// simTask is a task: its victim's record of it, and the ledger of what thieves
// did with it, kept apart from the record.
type simTask struct {
	id     string
	seq    uint64
	victim *simNode
	prio   int
	class  Class
	dur    time.Duration

	// The victim's record.
	where where
	epoch uint64
	at    NodeID

	// The ledger: every acceptance, how many a death allows, and how often the
	// task was done.
	accepted []acceptedAt
	allowed  int
	done     int
}

type acceptedAt struct {
	node  NodeID
	inc   uint64
	epoch uint64
}

// holding is a task a thief accepted and holds until it is done.
type holding struct {
	task  *simTask
	epoch uint64
}

type simNode struct {
	idx    int
	id     NodeID
	owns   bool // victims never crash: losing an owner is not this package's
	slots  int
	cap    Capability
	alive  bool
	inc    uint64
	thief  *Thief
	victim *Victim

	queue   []*simTask // the tasks it owns that are queued, for the victim
	holding []*holding
	view    map[NodeID]bool // what gossip says is alive

	load    PeerLoad
	version uint64
}

type simEvent struct {
	at  time.Time
	seq uint64
	fn  func()
}

type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if c := q[i].at.Compare(q[j].at); c != 0 {
		return c < 0
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type sim struct {
	seed   uint64
	rng    *rand.Rand
	cfg    Config
	start  time.Time
	now    time.Time
	events simQueue
	seq    uint64
	nodes  []*simNode
	byID   map[NodeID]*simNode
	tasks  []*simTask

	drop, dup, long float64
	maxDelay        time.Duration

	done     int
	faultEnd time.Time
	calm     bool
	endAt    time.Time

	err   string
	trace *strings.Builder
	stats simStats
}

func (s *sim) logf(format string, args ...any) {
	if s.trace != nil {
		fmt.Fprintf(s.trace, "%9v  ", s.now.Sub(s.start))
		fmt.Fprintf(s.trace, format, args...)
		s.trace.WriteByte('\n')
	}
}

// fail records the first violated property and stops the run.
func (s *sim) fail(format string, args ...any) {
	if s.err == "" {
		s.err = fmt.Sprintf("at %v: ", s.now.Sub(s.start)) + fmt.Sprintf(format, args...)
		s.logf("FAIL %s", s.err)
	}
}

func (s *sim) after(d time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.events, &simEvent{at: s.now.Add(d), seq: s.seq, fn: fn})
}

func (s *sim) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

func runSim(seed uint64, trace bool) simOutcome {
	s := newSim(seed)
	if trace {
		s.trace = &strings.Builder{}
	}
	s.setup()
	for s.err == "" && s.events.Len() > 0 {
		e := heap.Pop(&s.events).(*simEvent)
		s.now = e.at
		if s.calm && s.now.After(s.endAt) {
			break
		}
		if s.now.Sub(s.start) > simHorizon {
			s.fail("%d of %d tasks not done (or not settled with a thief) by the horizon: %s", len(s.tasks)-s.done, len(s.tasks), s.undone())
			break
		}
		e.fn()
		if !s.calm && s.settled() {
			s.calm = true
			s.endAt = s.now.Add(simCalmFor)
			s.logf("all tasks done and with thieves, faults over: network calm until %v", s.endAt.Sub(s.start))
		}
	}
	if s.err == "" {
		s.finalCheck()
	}
	o := simOutcome{seed: seed, err: s.err, stats: s.stats}
	if s.trace != nil {
		o.trace = s.trace.String()
	}
	return o
}

func newSim(seed uint64) *sim {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &sim{seed: seed, rng: rng, start: start, now: start, byID: make(map[NodeID]*simNode)}
	s.cfg = Config{
		Buffer:         rng.IntN(4),
		Timeout:        s.between(150*time.Millisecond, 600*time.Millisecond),
		ResendInterval: s.between(50*time.Millisecond, 150*time.Millisecond),
		BackoffBase:    10 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
		Jitter:         0.5,
	}
	s.drop = rng.Float64() * 0.2
	s.dup = rng.Float64() * 0.1
	s.long = rng.Float64() * 0.05
	s.maxDelay = s.between(2*time.Millisecond, 40*time.Millisecond)
	return s
}

var simTypes = []string{"a", "b"}

func (s *sim) setup() {
	rng := s.rng
	n := 3 + rng.IntN(4)
	owners := 1 + rng.IntN(min(3, n-1))
	for i := range n {
		c := Capability{Types: map[string]bool{"a": true}, Tags: map[string]bool{}, Resources: map[string]int64{"mem": 4}}
		if rng.IntN(10) < 6 {
			c.Types["b"] = true
		}
		if rng.IntN(10) < 4 {
			c.Tags["gpu"] = true
		}
		if rng.IntN(2) == 0 {
			c.Resources["mem"] = 8
		}
		nd := &simNode{idx: i, id: NodeID(fmt.Sprintf("n%d", i)), owns: i < owners, slots: 1 + rng.IntN(3), cap: c}
		s.nodes = append(s.nodes, nd)
		s.byID[nd.id] = nd
	}
	for _, nd := range s.nodes {
		s.boot(nd)
	}
	s.logf("seed %d: %d nodes (%d owners), cfg %+v, drop %.2f dup %.2f long %.3f delay<=%v",
		s.seed, n, owners, s.cfg, s.drop, s.dup, s.long, s.maxDelay)

	// Tasks: mostly on the first owner, half of them at once, the rest over the
	// first two seconds. Every task fits some node that owns none.
	nTasks := 10 + rng.IntN(51)
	for i := range nTasks {
		var k Class
		for {
			k = Class{Type: simTypes[rng.IntN(2)]}
			if rng.IntN(4) == 0 {
				k.Tags = []string{"gpu"}
			}
			if r := rng.IntN(4); r > 0 {
				k.Resources = map[string]int64{"mem": []int64{0, 2, 6}[r-1]}
			}
			if slices.ContainsFunc(s.nodes, func(nd *simNode) bool { return !nd.owns && nd.cap.CanServe(k) }) {
				break
			}
		}
		victim := s.nodes[0]
		if rng.IntN(3) == 0 {
			victim = s.nodes[rng.IntN(owners)]
		}
		task := &simTask{
			id: fmt.Sprintf("t%d", i), seq: uint64(i), victim: victim, prio: rng.IntN(4), class: k,
			dur: s.between(20*time.Millisecond, 300*time.Millisecond), allowed: 1,
		}
		s.tasks = append(s.tasks, task)
		at := time.Duration(0)
		if rng.IntN(2) == 0 {
			at = s.between(0, 2*time.Second)
		}
		s.after(at, func() {
			victim.queue = append(victim.queue, task)
			s.logf("%s: queued %s prio %d class %v", victim.id, task.id, task.prio, task.class)
		})
	}
	s.stats.tasks = nTasks

	// Faults, one at a time: crashes of thieves (they restart), false death
	// declarations of any node.
	at := 300 * time.Millisecond
	s.faultEnd = s.start
	for range rng.IntN(4) {
		at += s.between(0, time.Second)
		s.faultEnd = s.start.Add(at + simFaultSpacing)
		target := s.nodes[rng.IntN(n)]
		if !target.owns && rng.IntN(3) > 0 {
			s.after(at, func() { s.crash(target) })
		} else {
			s.after(at, func() { s.falseDeath(target) })
		}
		at += simFaultSpacing
	}
}

// boot starts a node's incarnation: fresh protocol state, nothing held.
func (s *sim) boot(n *simNode) {
	n.inc++
	var err error
	n.thief, err = NewThief(n.id, n.inc, s.cfg, rand.New(rand.NewPCG(s.seed, uint64(n.idx)<<32|n.inc)))
	if err != nil {
		panic(err)
	}
	n.victim, err = NewVictim(n.id, n.inc, s.cfg)
	if err != nil {
		panic(err)
	}
	n.alive = true
	n.holding = nil
	n.view = make(map[NodeID]bool)
	for _, o := range s.nodes {
		n.view[o.id] = true
	}
	inc := n.inc
	var tick, gossip func()
	tick = func() {
		if n.alive && n.inc == inc {
			s.tick(n)
			s.after(simTick, tick)
		}
	}
	gossip = func() {
		if n.alive && n.inc == inc {
			s.publish(n)
			s.after(simGossip, gossip)
		}
	}
	s.after(s.between(0, simTick), tick)
	s.after(s.between(0, simGossip), gossip)
}

func (s *sim) tick(n *simNode) {
	for _, r := range n.thief.Tick(s.now) {
		s.send(n, r.Victim, r)
	}
	for _, g := range n.victim.Tick(s.now) {
		s.send(n, g.Thief, g)
	}
	s.trySteal(n)
}

// publish is the node's gossiped load: its queued tasks by class.
func (s *sim) publish(n *simNode) {
	byKey := map[string]*Backlog{}
	var keys []string
	for _, t := range n.queue {
		key := fmt.Sprint(t.class)
		b := byKey[key]
		if b == nil {
			b = &Backlog{Class: t.class, TopPriority: t.prio}
			byKey[key] = b
			keys = append(keys, key)
		}
		b.Count++
		b.TopPriority = max(b.TopPriority, t.prio)
	}
	slices.Sort(keys)
	n.version++
	n.load = PeerLoad{ID: n.id, Version: n.version}
	for _, k := range keys {
		n.load.Backlog = append(n.load.Backlog, *byKey[k])
	}
}

// trySteal asks for work when the thief has a free slot. Owners hold no slots:
// their own tasks run through thieves only.
func (s *sim) trySteal(n *simNode) {
	if n.owns {
		return
	}
	local := Local{FreeSlots: n.slots - len(n.holding), Cap: n.cap}
	var peers []PeerLoad
	for _, o := range s.nodes {
		if o != n && n.view[o.id] {
			peers = append(peers, o.load)
		}
	}
	if req, ok := n.thief.Next(s.now, local, peers); ok {
		s.logf("%s: request %d to %s max %d", n.id, req.ReqID, req.Victim, req.Max)
		s.send(n, req.Victim, req)
	}
}

func (s *sim) send(from *simNode, to NodeID, msg any) {
	s.stats.sent++
	if !s.calm && s.rng.Float64() < s.drop {
		s.stats.dropped++
		s.logf("net: drop %s->%s %T%+v", from.id, to, msg, msg)
		return
	}
	copies := 1
	if !s.calm && s.rng.Float64() < s.dup {
		copies = 2
		s.stats.duplicated++
	}
	for range copies {
		d := s.between(time.Millisecond, s.maxDelay)
		if !s.calm && s.rng.Float64() < s.long {
			d = s.between(100*time.Millisecond, 3*time.Second)
		}
		dest := s.byID[to]
		s.after(d, func() { s.deliver(dest, from.id, msg) })
	}
}

func (s *sim) deliver(n *simNode, from NodeID, msg any) {
	if !n.alive {
		return
	}
	s.logf("%s: got from %s %T%+v", n.id, from, msg, msg)
	switch m := msg.(type) {
	case StealRequest:
		s.onRequest(n, m)
	case Grant:
		s.onGrant(n, m)
	case Empty:
		n.thief.OnEmpty(s.now, m)
	case Reply:
		st := n.victim.OnReply(m)
		for _, gt := range st.Acked {
			t := s.task(gt.ID)
			if t.where == grantedTo && t.epoch == gt.Epoch && t.at == m.Thief {
				if !slices.ContainsFunc(t.accepted, func(a acceptedAt) bool {
					return a.node == m.Thief && a.inc == m.ThiefInc && a.epoch == gt.Epoch
				}) {
					s.fail("%s records %s (epoch %d) as acknowledged by %s, which never accepted it", n.id, t.id, gt.Epoch, m.Thief)
				}
				t.where = ackedBy
			}
		}
		s.requeue(n, st.Requeue, false)
		if st.Release != nil {
			s.send(n, m.Thief, *st.Release)
		}
	case Release:
		n.thief.OnRelease(m)
	default:
		panic(fmt.Sprintf("unknown message %T", msg))
	}
}

// onRequest is the victim's side: candidates are its queue in queue order
// (priority, then submission), taken out at once with the decision.
func (s *sim) onRequest(n *simNode, m StealRequest) {
	if !n.view[m.Thief] {
		return // a node serves only peers gossip says are alive
	}
	slices.SortStableFunc(n.queue, func(a, b *simTask) int {
		return cmp.Or(cmp.Compare(b.prio, a.prio), cmp.Compare(a.seq, b.seq))
	})
	cands := make([]Candidate, len(n.queue))
	for i, t := range n.queue {
		cands[i] = Candidate{ID: t.id, Epoch: t.epoch, Priority: t.prio, Class: t.class, Spec: []byte(t.id)}
	}
	d := n.victim.OnRequest(s.now, m, cands)
	taken := make([]*simTask, len(d.Take))
	for i, k := range d.Take {
		t := n.queue[k]
		taken[i] = t
		gt := d.Grant.Tasks[i]
		if gt.ID != t.id || gt.Epoch != t.epoch+1 || string(gt.Spec) != t.id {
			s.fail("grant entry %+v for candidate %s at epoch %d", gt, t.id, t.epoch)
		}
		t.where, t.epoch, t.at = grantedTo, gt.Epoch, m.Thief
	}
	n.queue = slices.DeleteFunc(n.queue, func(t *simTask) bool { return slices.Contains(taken, t) })
	s.requeue(n, d.Requeue, true)
	switch {
	case d.Grant != nil:
		s.send(n, m.Thief, *d.Grant)
	case d.Empty != nil:
		s.send(n, m.Thief, *d.Empty)
	}
}

// onGrant is the thief's side: it holds what it accepts, and is done with each
// task after the task's time.
func (s *sim) onGrant(n *simNode, g Grant) {
	reply, tasks := n.thief.OnGrant(s.now, g)
	for _, gt := range tasks {
		t := s.task(gt.ID)
		if string(gt.Spec) != gt.ID {
			s.fail("grant carries spec %q for task %s", gt.Spec, gt.ID)
		}
		if g.Victim != t.victim.id {
			s.fail("%s accepted %s from %s, which does not own it", n.id, t.id, g.Victim)
		}
		for _, a := range t.accepted {
			if a.epoch == gt.Epoch {
				s.fail("%s accepted %s at epoch %d, already accepted at it by %s", n.id, t.id, gt.Epoch, a.node)
			}
		}
		if len(t.accepted) >= t.allowed {
			s.fail("%s accepted %s a %d. time (epoch %d) with only %d death(s) of its holders; earlier: %v",
				n.id, t.id, len(t.accepted)+1, gt.Epoch, t.allowed-1, t.accepted)
		}
		if len(t.accepted) > 0 {
			s.stats.reruns++
		}
		t.accepted = append(t.accepted, acceptedAt{node: n.id, inc: n.inc, epoch: gt.Epoch})
		h := &holding{task: t, epoch: gt.Epoch}
		n.holding = append(n.holding, h)
		inc := n.inc
		s.after(t.dur, func() {
			if n.alive && n.inc == inc {
				n.holding = slices.DeleteFunc(n.holding, func(x *holding) bool { return x == h })
				t.done++
				if t.done == 1 {
					s.done++
				}
				s.logf("%s: done with %s (epoch %d), %d/%d", n.id, t.id, gt.Epoch, s.done, len(s.tasks))
				s.trySteal(n)
			}
		})
	}
	s.send(n, g.Victim, reply)
}

// requeue is the victim putting tasks back in its queue: each whose record still
// carries the epoch it was granted at goes back with epoch+1. After a death the
// task may be accepted once more.
func (s *sim) requeue(v *simNode, tasks []GrantedTask, death bool) {
	for _, gt := range tasks {
		t := s.task(gt.ID)
		if t.epoch != gt.Epoch || t.where == atVictim {
			continue
		}
		s.putBack(v, t, death)
	}
}

func (s *sim) putBack(v *simNode, t *simTask, death bool) {
	t.where, t.epoch, t.at = atVictim, t.epoch+1, ""
	if death {
		t.allowed++
	}
	v.queue = append(v.queue, t)
	s.logf("%s: requeued %s at epoch %d (death %v)", v.id, t.id, t.epoch, death)
}

func (s *sim) task(id string) *simTask {
	var i int
	fmt.Sscanf(id, "t%d", &i)
	return s.tasks[i]
}

// declareDead is gossip at node o declaring w dead: its parked grants are
// withdrawn, and what it acknowledged is put back too (the caller's part).
func (s *sim) declareDead(o *simNode, w NodeID) {
	if !o.alive || !o.view[w] {
		return
	}
	s.logf("%s: gossip says %s is dead", o.id, w)
	o.view[w] = false
	o.thief.PeerDead(w)
	s.requeue(o, o.victim.PeerDead(w), true)
	for _, t := range s.tasks {
		if t.victim == o && t.where == ackedBy && t.at == w {
			s.putBack(o, t, true)
		}
	}
}

func (s *sim) declareAlive(o *simNode, w NodeID) {
	if !o.alive || o.view[w] {
		return
	}
	s.logf("%s: gossip says %s is alive", o.id, w)
	o.view[w] = true
	o.thief.PeerAlive(w)
}

// crash kills thief w: what it held is lost; gossip declares it dead at each
// peer after a delay, and it restarts later as a new incarnation.
func (s *sim) crash(w *simNode) {
	s.stats.crashes++
	s.logf("%s: CRASH (incarnation %d)", w.id, w.inc)
	w.alive = false
	w.holding = nil
	w.load = PeerLoad{ID: w.id}
	for _, o := range s.nodes {
		if o != w {
			s.after(s.between(simDeclareMin, simDeclareMin+simDeclareSpread), func() { s.declareDead(o, w.id) })
		}
	}
	s.after(s.between(simRestartMin, simRestartMin+time.Second), func() {
		s.boot(w)
		s.logf("%s: RESTART as incarnation %d", w.id, w.inc)
		for _, o := range s.nodes {
			if o != w {
				s.after(s.between(50*time.Millisecond, 300*time.Millisecond), func() { s.declareAlive(o, w.id) })
			}
		}
	})
}

// falseDeath has gossip declare a live node dead for a while.
func (s *sim) falseDeath(w *simNode) {
	s.stats.falseDeaths++
	s.logf("%s: FALSE DEATH", w.id)
	for _, o := range s.nodes {
		if o != w {
			d := s.between(simDeclareMin, simDeclareMin+simDeclareSpread)
			s.after(d, func() { s.declareDead(o, w.id) })
			s.after(d+s.between(300*time.Millisecond, time.Second), func() { s.declareAlive(o, w.id) })
		}
	}
}

// settled says whether the run may calm down: the faults are over, every task
// was done, and every one is with a thief (none queued or granted again after a
// death).
func (s *sim) settled() bool {
	if s.done < len(s.tasks) || s.now.Before(s.faultEnd) {
		return false
	}
	for _, t := range s.tasks {
		if t.where != ackedBy {
			return false
		}
	}
	return true
}

func (s *sim) undone() string {
	var out []string
	for _, t := range s.tasks {
		if t.done == 0 || t.where != ackedBy {
			out = append(out, fmt.Sprintf("%s(%d at %q epoch %d, class %v)", t.id, t.where, t.at, t.epoch, t.class))
			if len(out) == 5 {
				out = append(out, "...")
				break
			}
		}
	}
	return strings.Join(out, " ")
}

// finalCheck runs after the network has been calm for a while with every task
// done: nothing may be left parked or unreleased.
func (s *sim) finalCheck() {
	for _, n := range s.nodes {
		if !n.alive {
			s.fail("%s still down at the end", n.id)
			return
		}
		ts, vs := n.thief.Stats(), n.victim.Stats()
		if vs.Parked != 0 {
			s.fail("%s still has %d grants parked after %v of calm", n.id, vs.Parked, simCalmFor)
		}
		if ts.Unreleased != 0 {
			s.fail("%s still holds %d unreleased grants after %v of calm", n.id, ts.Unreleased, simCalmFor)
		}
		s.stats.requests += ts.Requests
		s.stats.grants += ts.Grants
		s.stats.empties += ts.Empties
		s.stats.timeouts += ts.Timeouts
		s.stats.refused += vs.Refused
		s.stats.resent += vs.Resent
		s.stats.withdrawn += vs.Withdrawn
	}
}
