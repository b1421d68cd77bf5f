package steal

import (
	"bytes"
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

// The simulation runs the protocol between several nodes over a simulated
// network that drops, delays, reorders and duplicates messages, with worker
// crashes and restarts and false death declarations, on a virtual clock. Each
// seed is deterministic: the same seed replays the same run exactly.

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
	t.Logf("%d seeds in %v (%d failed): %d tasks, %d (%.0f%%) completed on a node other than their owner; "+
		"in %d seeds tasks ran on more than one node",
		len(seeds), time.Since(start).Round(time.Millisecond), failed, total.tasks, total.stolenDone,
		100*float64(total.stolenDone)/float64(max(total.tasks, 1)), total.balanced)
	t.Logf("protocol: %d requests, %d grants accepted, %d empty, %d timeouts, %d grants refused, %d grants resent, "+
		"%d withdrawn from dead thieves; %d crashes, %d false deaths, %d reruns after a death, %d stale results fenced; "+
		"network: %d messages, %d dropped, %d duplicated",
		total.requests, total.grants, total.empties, total.timeouts, total.refused, total.resent,
		total.withdrawn, total.crashes, total.falseDeaths, total.reruns, total.fenced,
		total.sent, total.dropped, total.duplicated)

	// The simulation must not pass vacuously: over a normal run, stealing
	// balanced work and the failure paths were exercised.
	if len(seeds) >= 100 && failed == 0 {
		checks := []struct {
			what string
			n    int
		}{
			{"seeds with tasks run on several nodes", total.balanced},
			{"tasks completed away from their owner", total.stolenDone},
			{"grants refused", int(total.refused)},
			{"grants resent", int(total.resent)},
			{"grants withdrawn from dead thieves", int(total.withdrawn)},
			{"stale results fenced", total.fenced},
			{"reruns after a death", total.reruns},
		}
		for _, c := range checks {
			if c.n == 0 {
				t.Errorf("no %s in %d seeds: the simulation no longer exercises it", c.what, len(seeds))
			}
		}
		if total.balanced < len(seeds)/2 {
			t.Errorf("tasks ran on several nodes in only %d of %d seeds", total.balanced, len(seeds))
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
	tasks, stolenDone, balanced, fenced, reruns, crashes, falseDeaths int
	sent, dropped, duplicated                                         int
	requests, grants, empties, timeouts, refused, resent, withdrawn   uint64
}

func (s *simStats) add(o simStats) {
	s.tasks += o.tasks
	s.stolenDone += o.stolenDone
	s.balanced += o.balanced
	s.fenced += o.fenced
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
	simResultResend  = 100 * time.Millisecond
	simHorizon       = 2 * time.Minute
	simCalmFor       = time.Second
	simFaultSpacing  = 2500 * time.Millisecond // longer than any fault lasts
	simDeclareMin    = 200 * time.Millisecond
	simDeclareSpread = 600 * time.Millisecond
	simRestartMin    = time.Second // above simDeclareMin+simDeclareSpread
)

// simResult is an executor's report of a finished run to the task's owner.
type simResult struct {
	Task  string
	Epoch uint64
	From  NodeID
}

// simResultAck tells the executor the owner has the report.
type simResultAck struct {
	Task  string
	Epoch uint64
}

type recState int

const (
	queued   recState = iota // in the owner's ready queue
	localRun                 // running on the owner
	granted                  // parked in a grant to rec.at
	remote                   // acknowledged by rec.at
	done
)

// simTask is a task with its ledger: what the checker knows happened to it,
// kept apart from the owner's record.
type simTask struct {
	id    string
	seq   uint64
	owner *simNode
	prio  int
	class Class
	// classKey groups tasks of equal class in the gossiped backlog.
	classKey string
	dur      time.Duration

	execs       []*simExec
	allowed     int // executions allowed: 1 + re-queues after the holder was declared dead
	maxEpoch    uint64
	completions int
	doneOn      NodeID
}

type simExec struct {
	node    NodeID
	epoch   uint64
	running bool
	ended   bool // finished (not aborted by a crash)
}

// simRecord is the owner's record of a task.
type simRecord struct {
	task  *simTask
	state recState
	epoch uint64
	at    NodeID
}

// simItem is an entry of a node's ready queue.
type simItem struct {
	task  *simTask
	epoch uint64
	owned bool
	seq   uint64
}

type simRun struct {
	task  *simTask
	epoch uint64
	exec  *simExec
}

type simPending struct {
	task     *simTask
	epoch    uint64
	resendAt time.Time
}

type simNode struct {
	idx    int
	id     NodeID
	owns   bool // owners never crash: their death is "owner lost", not this package's
	slots  int
	cap    Capability
	alive  bool
	inc    uint64
	thief  *Thief
	victim *Victim

	ready   []*simItem
	running []*simRun
	results []*simPending
	view    map[NodeID]bool
	records map[string]*simRecord
	ownedBy []string // record ids in submission order, for deterministic walks

	load    PeerLoad
	version uint64
	peers   []PeerLoad // reused by trySteal
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
	tasks  map[string]*simTask
	order  []*simTask

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

// fail records the first violated invariant and stops the run.
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
			s.fail("%d of %d tasks not completed by the horizon: %s", len(s.order)-s.done, len(s.order), s.unfinished())
			break
		}
		e.fn()
		if !s.calm && s.done == len(s.order) && !s.now.Before(s.faultEnd) {
			s.calm = true
			s.endAt = s.now.Add(simCalmFor)
			s.logf("all tasks done, faults over: network calm until %v", s.endAt.Sub(s.start))
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
	s := &sim{
		seed:  seed,
		rng:   rng,
		start: start,
		now:   start,
		byID:  make(map[NodeID]*simNode),
		tasks: make(map[string]*simTask),
	}
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
		nd := &simNode{idx: i, id: NodeID(fmt.Sprintf("n%d", i)), owns: i < owners, slots: 1 + rng.IntN(3), cap: c, records: make(map[string]*simRecord)}
		s.nodes = append(s.nodes, nd)
		s.byID[nd.id] = nd
	}
	for _, nd := range s.nodes {
		s.boot(nd)
	}
	s.logf("seed %d: %d nodes (%d owners), cfg %+v, drop %.2f dup %.2f long %.3f delay<=%v",
		s.seed, n, owners, s.cfg, s.drop, s.dup, s.long, s.maxDelay)

	// Tasks: mostly on the first owner, half of them at once, the rest over
	// the first two seconds. Every task fits some node.
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
			if slices.ContainsFunc(s.nodes, func(nd *simNode) bool { return nd.cap.CanServe(k) }) {
				break
			}
		}
		owner := s.nodes[0]
		if rng.IntN(3) == 0 {
			owner = s.nodes[rng.IntN(owners)]
		}
		task := &simTask{
			id:       fmt.Sprintf("t%d", i),
			seq:      uint64(i),
			owner:    owner,
			prio:     rng.IntN(4),
			class:    k,
			classKey: fmt.Sprint(k),
			dur:      s.between(20*time.Millisecond, 300*time.Millisecond),
			allowed:  1,
		}
		s.tasks[task.id] = task
		s.order = append(s.order, task)
		at := time.Duration(0)
		if rng.IntN(2) == 0 {
			at = s.between(0, 2*time.Second)
		}
		s.after(at, func() { s.submit(task) })
	}
	s.stats.tasks = nTasks

	// Faults, one at a time: crashes of workers (they restart), false death
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

// boot starts a node's incarnation: fresh protocol state, an empty queue.
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
	n.ready, n.running, n.results = nil, nil, nil
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

func (s *sim) submit(t *simTask) {
	o := t.owner
	o.records[t.id] = &simRecord{task: t, state: queued}
	o.ownedBy = append(o.ownedBy, t.id)
	o.ready = append(o.ready, &simItem{task: t, owned: true, seq: t.seq})
	s.logf("%s: submit %s prio %d class %v", o.id, t.id, t.prio, t.class)
	s.tryRun(o)
}

func (s *sim) tick(n *simNode) {
	for _, r := range n.thief.Tick(s.now) {
		s.send(n, r.Victim, r)
	}
	for _, g := range n.victim.Tick(s.now) {
		s.send(n, g.Thief, g)
	}
	for _, p := range n.results {
		if !s.now.Before(p.resendAt) {
			p.resendAt = s.now.Add(simResultResend)
			s.send(n, p.task.owner.id, simResult{Task: p.task.id, Epoch: p.epoch, From: n.id})
		}
	}
	s.tryRun(n)
	s.trySteal(n)
}

// publish is the node's gossiped load: its own queued tasks by class.
func (s *sim) publish(n *simNode) {
	type agg struct {
		b   Backlog
		key string
	}
	byKey := map[string]*agg{}
	var keys []string
	for _, it := range n.ready {
		if !it.owned {
			continue
		}
		key := it.task.classKey
		a := byKey[key]
		if a == nil {
			a = &agg{b: Backlog{Class: it.task.class, TopPriority: it.task.prio}, key: key}
			byKey[key] = a
			keys = append(keys, key)
		}
		a.b.Count++
		a.b.TopPriority = max(a.b.TopPriority, it.task.prio)
	}
	slices.Sort(keys)
	n.version++
	n.load = PeerLoad{ID: n.id, Version: n.version}
	for _, k := range keys {
		n.load.Backlog = append(n.load.Backlog, byKey[k].b)
	}
}

func (s *sim) runnable(n *simNode) int {
	c := 0
	for _, it := range n.ready {
		if n.cap.CanServe(it.task.class) {
			c++
		}
	}
	return c
}

func (s *sim) trySteal(n *simNode) {
	local := Local{FreeSlots: n.slots - len(n.running), QueueLen: s.runnable(n), Cap: n.cap}
	if local.FreeSlots <= 0 || local.QueueLen > 0 {
		return // Next would say no; skip gathering the peers
	}
	peers := n.peers[:0]
	for _, o := range s.nodes {
		if o != n && n.view[o.id] {
			peers = append(peers, o.load)
		}
	}
	n.peers = peers
	if req, ok := n.thief.Next(s.now, local, peers); ok {
		s.logf("%s: request %d to %s max %d", n.id, req.ReqID, req.Victim, req.Max)
		s.send(n, req.Victim, req)
	}
}

// tryRun fills free slots from the ready queue: priority first, then FIFO.
func (s *sim) tryRun(n *simNode) {
	for len(n.running) < n.slots {
		best := -1
		for i, it := range n.ready {
			if !n.cap.CanServe(it.task.class) {
				continue
			}
			if best < 0 || it.task.prio > n.ready[best].task.prio ||
				(it.task.prio == n.ready[best].task.prio && it.seq < n.ready[best].seq) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		it := n.ready[best]
		n.ready = slices.Delete(n.ready, best, best+1)
		epoch := it.epoch
		if it.owned {
			rec := n.records[it.task.id]
			rec.state = localRun
			epoch = rec.epoch
		}
		run := &simRun{task: it.task, epoch: epoch, exec: s.startExec(it.task, n, epoch)}
		n.running = append(n.running, run)
		inc := n.inc
		s.after(it.task.dur, func() {
			if n.alive && n.inc == inc {
				s.finish(n, run)
			}
		})
	}
}

// startExec checks and records the start of a run.
func (s *sim) startExec(t *simTask, n *simNode, epoch uint64) *simExec {
	s.logf("%s: run %s epoch %d", n.id, t.id, epoch)
	for _, e := range t.execs {
		if e.epoch == epoch {
			s.fail("task %s runs on %s with epoch %d, already run with it on %s", t.id, n.id, epoch, e.node)
		}
	}
	if len(t.execs) >= t.allowed {
		var where []string
		for _, e := range t.execs {
			where = append(where, fmt.Sprintf("%s@%d(running=%v)", e.node, e.epoch, e.running))
		}
		s.fail("task %s runs a %d. time on %s (epoch %d) with only %d death(s) of its holders; earlier runs: %s",
			t.id, len(t.execs)+1, n.id, epoch, t.allowed-1, strings.Join(where, ", "))
	}
	if len(t.execs) > 0 {
		s.stats.reruns++
	}
	e := &simExec{node: n.id, epoch: epoch, running: true}
	t.execs = append(t.execs, e)
	return e
}

func (s *sim) finish(n *simNode, run *simRun) {
	n.running = slices.DeleteFunc(n.running, func(r *simRun) bool { return r == run })
	run.exec.running, run.exec.ended = false, true
	s.logf("%s: finished %s epoch %d", n.id, run.task.id, run.epoch)
	if run.task.owner == n {
		s.ownerResult(n, n.id, run.task, run.epoch)
	} else {
		n.results = append(n.results, &simPending{task: run.task, epoch: run.epoch, resendAt: s.now.Add(simResultResend)})
		s.send(n, run.task.owner.id, simResult{Task: run.task.id, Epoch: run.epoch, From: n.id})
	}
	s.tryRun(n)
	s.trySteal(n)
}

// ownerResult is the owner taking a report of a finished run.
func (s *sim) ownerResult(o *simNode, from NodeID, t *simTask, epoch uint64) {
	rec := o.records[t.id]
	switch {
	case rec.state == done:
		return
	case Stale(rec.epoch, epoch):
		s.stats.fenced++
		s.logf("%s: fenced result of %s from %s: epoch %d, current %d", o.id, t.id, from, epoch, rec.epoch)
		return
	}
	// The checker's own account, independent of the record.
	if epoch != t.maxEpoch {
		s.fail("owner %s accepts a result of %s with epoch %d, but it last assigned epoch %d", o.id, t.id, epoch, t.maxEpoch)
	}
	i := slices.IndexFunc(t.execs, func(e *simExec) bool { return e.epoch == epoch && e.node == from })
	if i < 0 || !t.execs[i].ended {
		s.fail("owner %s accepts a result of %s epoch %d from %s that no finished run produced", o.id, t.id, epoch, from)
	}
	t.completions++
	if t.completions > 1 {
		s.fail("task %s completed %d times", t.id, t.completions)
	}
	t.doneOn = from
	rec.state = done
	s.done++
	s.logf("%s: completed %s (epoch %d, ran on %s), %d/%d", o.id, t.id, epoch, from, s.done, len(s.order))
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
		if !n.view[m.Thief] {
			return // a node serves only peers gossip says are alive
		}
		var cands []Candidate
		var items []*simItem
		for _, it := range n.ready {
			if it.owned {
				items = append(items, it)
			}
		}
		slices.SortStableFunc(items, func(a, b *simItem) int {
			return cmp.Or(cmp.Compare(b.task.prio, a.task.prio), cmp.Compare(a.seq, b.seq))
		})
		for _, it := range items {
			rec := n.records[it.task.id]
			cands = append(cands, Candidate{ID: it.task.id, Epoch: rec.epoch, Priority: it.task.prio, Class: it.task.class, Spec: []byte(it.task.id)})
		}
		d := n.victim.OnRequest(s.now, m, cands)
		for i, k := range d.Take {
			it := items[k]
			n.ready = slices.DeleteFunc(n.ready, func(x *simItem) bool { return x == it })
			rec := n.records[it.task.id]
			gt := d.Grant.Tasks[i]
			if gt.ID != it.task.id || gt.Epoch <= rec.epoch {
				s.fail("grant entry %+v for candidate %s at epoch %d", gt, it.task.id, rec.epoch)
			}
			rec.state, rec.epoch, rec.at = granted, gt.Epoch, m.Thief
			it.task.maxEpoch = max(it.task.maxEpoch, gt.Epoch)
		}
		s.requeue(n, d.Requeue, true)
		switch {
		case d.Grant != nil:
			s.send(n, m.Thief, *d.Grant)
		case d.Empty != nil:
			s.send(n, m.Thief, *d.Empty)
		}
	case Grant:
		reply, tasks := n.thief.OnGrant(s.now, m)
		for _, gt := range tasks {
			t := s.tasks[gt.ID]
			if !bytes.Equal(gt.Spec, []byte(gt.ID)) {
				s.fail("grant carries spec %q for task %s", gt.Spec, gt.ID)
			}
			n.ready = append(n.ready, &simItem{task: t, epoch: gt.Epoch, seq: t.seq})
		}
		s.send(n, m.Victim, reply)
		s.tryRun(n)
	case Empty:
		n.thief.OnEmpty(s.now, m)
	case Reply:
		st := n.victim.OnReply(m)
		for _, gt := range st.Acked {
			if rec := n.records[gt.ID]; rec.state == granted && rec.epoch == gt.Epoch {
				rec.state = remote
			}
		}
		s.requeue(n, st.Requeue, false)
		if st.Release != nil {
			s.send(n, m.Thief, *st.Release)
		}
		s.tryRun(n)
	case Release:
		n.thief.OnRelease(m)
	case simResult:
		s.ownerResult(n, m.From, s.tasks[m.Task], m.Epoch)
		s.send(n, m.From, simResultAck{Task: m.Task, Epoch: m.Epoch})
	case simResultAck:
		n.results = slices.DeleteFunc(n.results, func(p *simPending) bool { return p.task.id == m.Task && p.epoch == m.Epoch })
	default:
		panic(fmt.Sprintf("unknown message %T", msg))
	}
}

// requeue is the owner putting back withdrawn grants: a task whose record
// still carries the granted epoch goes back in the queue with epoch+1. After
// a death the task may run once more.
func (s *sim) requeue(o *simNode, tasks []GrantedTask, death bool) {
	for _, gt := range tasks {
		rec := o.records[gt.ID]
		if rec == nil || rec.epoch != gt.Epoch || (rec.state != granted && rec.state != remote) {
			continue
		}
		s.putBack(o, rec, death)
	}
}

func (s *sim) putBack(o *simNode, rec *simRecord, death bool) {
	rec.epoch++
	rec.state, rec.at = queued, ""
	rec.task.maxEpoch = max(rec.task.maxEpoch, rec.epoch)
	if death {
		rec.task.allowed++
	}
	o.ready = append(o.ready, &simItem{task: rec.task, owned: true, seq: rec.task.seq})
	s.logf("%s: requeued %s at epoch %d (death %v)", o.id, rec.task.id, rec.epoch, death)
}

// declareDead is gossip at node o declaring w dead.
func (s *sim) declareDead(o *simNode, w NodeID) {
	if !o.alive || !o.view[w] {
		return
	}
	s.logf("%s: gossip says %s is dead", o.id, w)
	o.view[w] = false
	o.thief.PeerDead(w)
	s.requeue(o, o.victim.PeerDead(w), true)
	for _, id := range o.ownedBy {
		if rec := o.records[id]; rec.state == remote && rec.at == w {
			s.putBack(o, rec, true)
		}
	}
	s.tryRun(o)
}

func (s *sim) declareAlive(o *simNode, w NodeID) {
	if !o.alive || o.view[w] {
		return
	}
	s.logf("%s: gossip says %s is alive", o.id, w)
	o.view[w] = true
	o.thief.PeerAlive(w)
}

// crash kills worker w: everything it held is lost; gossip declares it dead
// at each peer after a delay, and it restarts later as a new incarnation.
func (s *sim) crash(w *simNode) {
	s.stats.crashes++
	s.logf("%s: CRASH (incarnation %d)", w.id, w.inc)
	w.alive = false
	for _, r := range w.running {
		r.exec.running = false
	}
	w.ready, w.running, w.results = nil, nil, nil
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

func (s *sim) unfinished() string {
	var out []string
	for _, t := range s.order {
		if t.completions == 0 {
			rec := t.owner.records[t.id]
			state := "not submitted"
			if rec != nil {
				state = fmt.Sprintf("state %d epoch %d at %q", rec.state, rec.epoch, rec.at)
			}
			out = append(out, fmt.Sprintf("%s(%s, class %v)", t.id, state, t.class))
			if len(out) == 5 {
				out = append(out, "...")
				break
			}
		}
	}
	return strings.Join(out, " ")
}

// finalCheck runs after the network has been calm for a while with all tasks
// done: nothing may be left parked, unreleased or unreported.
func (s *sim) finalCheck() {
	nodesUsed := map[NodeID]bool{}
	for _, t := range s.order {
		if t.completions != 1 {
			s.fail("task %s completed %d times", t.id, t.completions)
			return
		}
		nodesUsed[t.doneOn] = true
		if t.doneOn != t.owner.id {
			s.stats.stolenDone++
		}
	}
	if len(nodesUsed) > 1 {
		s.stats.balanced = 1
	}
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
		if len(n.results) != 0 || len(n.running) != 0 {
			s.fail("%s still has %d unacknowledged results and %d runs", n.id, len(n.results), len(n.running))
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
