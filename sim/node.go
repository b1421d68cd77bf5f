package sim

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/record"
	"github.com/starlingsched/starling/steal"
	"github.com/starlingsched/starling/store"
)

// timers are the cluster's timers: the fast profile's, as in the node's tests.
type timers struct {
	steal         steal.Config
	stealInterval time.Duration
	loadInterval  time.Duration
	loadTTL       time.Duration
	reportResend  time.Duration
	reportKeep    time.Duration
	// confirm is the node's ConfirmDead: how long after gossip declares an owner
	// dead other nodes answer 503 for its tasks before "owner lost". The engine's
	// OwnerGrace is the same, as in the node.
	confirm time.Duration
	// maxSuspicion bounds how long a live node stays declared dead (a false death
	// or a partition): less than confirm, so a node that only looked dead is never
	// answered for as lost.
	maxSuspicion time.Duration
	// nodeLosses is the node-loss budget of a task.
	nodeLosses int
	// maxQueue bounds a node's unfinished tasks; maxGrantBytes the dep results a
	// grant carries.
	maxQueue, maxGrantBytes int
	// calm is how long the run goes on once the workload is done and the faults
	// are over: long enough for peers gone for good to be forgotten.
	calm time.Duration
}

func newTimers(cfg Config) timers {
	t := timers{
		steal:         steal.LocalConfig(),
		stealInterval: 20 * time.Millisecond,
		loadInterval:  20 * time.Millisecond,
		loadTTL:       time.Second,
		reportResend:  200 * time.Millisecond,
		reportKeep:    10 * time.Second,
		confirm:       4 * time.Second,
		maxSuspicion:  2500 * time.Millisecond,
		nodeLosses:    3,
		maxQueue:      max(10_000, cfg.Tasks),
		maxGrantBytes: 1 << 20,
	}
	if cfg.LoadInterval > 0 {
		t.loadInterval = cfg.LoadInterval
		t.loadTTL = max(t.loadTTL, 5*cfg.LoadInterval)
	}
	t.calm = t.reportKeep + t.confirm + 2*time.Second
	return t
}

// member is a node of the cluster by name: what it offers, and the process that is
// it now. An in-memory member restarts as a new process under a new node id; a
// durable one (a data directory) restarts from its disk under the same id, with a
// higher incarnation.
type member struct {
	idx   int
	name  string
	slots int
	tags  []string
	res   map[string]int64
	proc  *proc // the current process; nil while down

	durable bool
	disk    disk // a durable member's, across its processes
	// owned is, for a durable member, what its processes share about the tasks
	// they own: placements, and the deaths gossip told them of.
	owned *ownerLog
}

// ownerLog is what the processes of one owner id saw: for each task, the peers it
// was granted to or ran on, and when gossip said each node was gone (declared dead,
// left, or replaced by a restart). A durable member's processes share one, as they
// share the tasks; an in-memory process has its own.
type ownerLog struct {
	placed map[string][]placement
	goneAt map[string][]time.Time
}

func newOwnerLog() *ownerLog {
	return &ownerLog{placed: map[string][]placement{}, goneAt: map[string][]time.Time{}}
}

// procState is where a node process is in its life.
type procState uint8

const (
	procUp      procState = iota
	procLeaving           // drained or stopping: finishing, then it leaves
	procDead              // crashed or left: it does nothing more
)

// proc is one node process: a real engine, driven the way the node's event loop
// drives it, with the simulated runner, disk, network and gossip around it.
type proc struct {
	s    *sim
	m    *member
	id   string
	inc  uint64
	meta engine.Meta
	eng  *engine.Engine

	state     procState
	died      time.Time
	crashed   bool
	drainLate bool

	inbox     []engine.Input
	head      int
	scheduled bool
	tickAt    time.Time

	// The read view, as the node publishes it: records by id (and their versions
	// when handed out, to tell a record changed afterwards), and the membership.
	view    map[string]*record.Record
	viewVer map[string]uint64
	cluster *engine.ClusterView

	// gen numbers the processes of one node id: 1, and 2, 3, … for a durable
	// member's restarts; before and next are its processes before and after this
	// one. started is when it started.
	gen          int
	before, next *proc
	started      time.Time
	// writes applies the engine's Writes; seqSaved is the sequence the disk's
	// State holds (durable); crashInSync arms a crash in the fsync of the next
	// batch.
	writes      writeLog
	seqSaved    uint64
	crashInSync bool
	// runs are the runs the runner holds, executing (executing of them) or
	// waiting for a slot (waiting, in order).
	runs      map[runKey]*run
	executing int
	waiting   []*run
	calls     map[uint64]func(engine.Reply)
	req       uint64

	// What gossip told this process: the process it last announced under each
	// name.
	told map[string]*proc
	// owned is where this process notes the placements of the tasks it owns and
	// the deaths gossip tells it of (shared with the member's other processes when
	// it is durable).
	owned *ownerLog
	// stoppedRuns is when this process stopped runs because it was shutting down.
	stoppedRuns []time.Time

	// loadSeen is, by member name, the load publication last passed to the engine;
	// lastLoad is the last load this process published.
	loadSeen map[string]*loadPub
	lastLoad *engine.Load
	// stats is the engine's last Stats, kept when the process dies.
	stats engine.Stats
}

type placement struct {
	exec string
	at   time.Time
}

func (p *proc) String() string {
	if p.gen > 1 {
		return fmt.Sprintf("%s/%s~%d", p.m.name, p.id, p.gen)
	}
	return p.m.name + "/" + p.id
}

// newID returns a node id no process of this run had: 8 characters of 0-9a-z.
func (s *sim) newID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	for {
		var b [8]byte
		for i := range b {
			b[i] = alphabet[s.rng.IntN(len(alphabet))]
		}
		if id := string(b[:]); s.procs[id] == nil {
			return id
		}
	}
}

// start starts a new process for m and announces it to the cluster. A durable
// member's process starts as node/storage.go starts one: it loads its disk, takes
// the node id it holds (a new one the first time), an incarnation above the one it
// holds, makes that State durable before anything else, and restores the engine
// from the records (engine.Restore). It fails only if the engine refuses the
// simulator's configuration or the records.
func (s *sim) start(m *member) (*proc, error) {
	p := &proc{
		s: s, m: m, gen: 1,
		view: map[string]*record.Record{}, viewVer: map[string]uint64{},
		runs: map[runKey]*run{}, calls: map[uint64]func(engine.Reply){},
		told: map[string]*proc{}, loadSeen: map[string]*loadPub{},
	}
	var (
		loaded []*record.Record
		prev   *proc
	)
	if m.durable {
		d := &m.disk
		recs, err := d.load()
		if err != nil {
			return nil, fmt.Errorf("sim: %s's disk: %w", m.name, err)
		}
		loaded = recs
		p.id = d.state.NodeID
		if p.id == "" {
			p.id = s.newID()
			m.owned = newOwnerLog()
		} else {
			prev = s.procs[p.id]
			p.gen = prev.gen + 1
		}
		// The incarnation grows with every start (the node's is its clock's, at
		// least one above the disk's).
		p.inc = max(d.state.Inc+1, s.incs+1)
		d.apply(&store.Batch{State: &store.State{NodeID: p.id, Seq: d.state.Seq, Inc: p.inc}})
		p.seqSaved = d.state.Seq
		p.owned = m.owned
	} else {
		p.id = s.newID()
		p.inc = s.incs + 1
		p.owned = newOwnerLog()
	}
	s.incs = p.inc
	p.meta = engine.Meta{
		ID: p.id, Inc: p.inc, HTTP: m.name + ":8080", RPC: p.id + ":7947", Slots: m.slots,
		Tags: slices.Clone(m.tags), Res: maps.Clone(m.res), Types: slices.Clone(handlerTypes), Ver: "sim",
		Durable: m.durable,
	}
	t := s.timers
	cfg := engine.Config{
		ID: p.id, Name: m.name, Inc: p.inc, Slots: m.slots, Tags: slices.Clone(m.tags), Resources: maps.Clone(m.res),
		Types:    slices.Clone(handlerTypes),
		MaxQueue: t.maxQueue, MaxBatch: 1000, MaxGraphDepth: 100, Retain: time.Hour, MaxRecords: 1 << 20,
		RetryBase: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		Durable: m.durable,
		Seed:    [2]uint64{s.cfg.Seed, uint64(p.inc)<<32 | uint64(m.idx)},
		Cluster: &engine.ClusterConfig{
			Steal: t.steal, NodeLosses: t.nodeLosses, StealInterval: t.stealInterval, LoadInterval: t.loadInterval,
			LoadTTL: t.loadTTL, ReportResend: t.reportResend, ReportKeep: t.reportKeep, MaxGrantBytes: t.maxGrantBytes,
			OwnerGrace: t.confirm,
		},
	}
	if s.tracing() {
		cfg.Logger = slog.New(&traceHandler{s: s, prefix: p.String()})
	}
	eng, err := engine.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	p.eng = eng
	if m.durable {
		// The node publishes the loaded records to its read view itself; the engine
		// gets the same ones (they are its from now on: it copies before changing).
		live := 0
		for _, r := range loaded {
			p.view[r.ID] = r
			p.viewVer[r.ID] = r.Version
			if !r.State.Terminal() {
				live++
			}
		}
		p.writes.init(loaded)
		if prev != nil {
			s.checkRestart(prev, p)
			s.res.Durable.Restarts++
			if live > 0 {
				s.res.Durable.LiveRestarts++
				s.res.Durable.Restored += live
			}
		}
		if err := eng.Restore(s.now, loaded, m.disk.state.Seq); err != nil {
			return nil, fmt.Errorf("sim: %s: %w", p, err)
		}
	} else {
		p.writes.init(nil)
	}
	if prev != nil {
		p.before, prev.next = prev, p
	}
	p.started = s.now
	m.proc = p
	s.procs[p.id] = p
	s.all = append(s.all, p)
	s.res.Procs++
	if m.durable {
		s.tracef("%s: START (incarnation %d, %d slots, tags %v, resources %v; durable: %d records loaded, sequence %d)",
			p, p.inc, m.slots, m.tags, m.res, len(loaded), m.disk.state.Seq)
	} else {
		s.tracef("%s: START (incarnation %d, %d slots, tags %v, resources %v)", p, p.inc, m.slots, m.tags, m.res)
	}
	s.gossip.join(s, p)
	s.gossip.startPolling(s, p)
	p.input(engine.Tick{})
	return p, nil
}

// checkRestart holds what durable process p loaded against what its previous
// process prev published: every record prev handed out is there, at the same version
// or a later one (a batch caught in its fsync may have landed unsaid), and a finished
// task has not changed its outcome.
func (s *sim) checkRestart(prev, p *proc) {
	b := &s.book
	for id, old := range sortedView(prev) {
		rec := p.view[id]
		switch {
		case rec == nil:
			b.violate(id, RuleDisk, "%s published record %s (v%d, %s), but %s did not find it on its disk", prev, id, old.Version, old.State, p)
		case rec.Version < old.Version:
			b.violate(id, RuleDisk, "%s published record %s at v%d, but %s loaded v%d", prev, id, old.Version, p, rec.Version)
		case old.State.Terminal() && (rec.State != old.State || rec.Attempt != old.Attempt || rec.Node != old.Node ||
			!sameJSON(rec.Result, old.Result)):
			b.violate(id, RuleDisk, "%s had finished task %s as %s (attempt %d on %q); %s loaded it as %s (attempt %d on %q)",
				prev, id, old.State, old.Attempt, old.Node, p, rec.State, rec.Attempt, rec.Node)
		}
	}
}

// input hands the process an input; it is stepped in the next batch.
func (p *proc) input(in engine.Input) {
	if p.state == procDead {
		return
	}
	p.inbox = append(p.inbox, in)
	if !p.scheduled {
		p.scheduled = true
		p.s.at(p.s.now, p.process)
	}
}

// maxBatch is how many inputs the node's loop steps before one Ready.
const maxBatch = 256

// process is one turn of the node's event loop: step the waiting inputs, then carry
// out the Ready and Advance.
func (p *proc) process() {
	p.scheduled = false
	if p.state == procDead {
		return
	}
	s := p.s
	for n := 0; p.head < len(p.inbox) && n < maxBatch; n++ {
		in := p.inbox[p.head]
		p.inbox[p.head] = nil
		p.head++
		if s.tracing() {
			s.tracef("%s: step %s", p, describeInput(in))
		}
		s.res.Steps++
		p.eng.Step(s.now, in)
	}
	if p.head == len(p.inbox) {
		p.inbox, p.head = p.inbox[:0], 0
	} else {
		p.scheduled = true
		s.at(s.now, p.process)
	}
	rd := p.eng.Ready()
	if !p.apply(&rd) {
		return // it crashed in the batch's fsync
	}
	p.eng.Advance()
	p.arm(rd.Wake)
}

// apply carries out a Ready in the node's order: persist, send, stop and start runs,
// publish the read view, answer, publish the load; a finished drain makes the node
// leave. It returns false if the process crashed persisting it: then nothing of the
// Ready was carried out.
func (p *proc) apply(rd *engine.Ready) bool {
	s := p.s
	// 1. The step's changes, durable before anything below (node.persist).
	if !p.persist(rd) {
		return false
	}
	if len(rd.Writes) > 0 {
		p.writes.apply(rd.Writes)
		for i := range rd.Writes {
			if op := &rd.Writes[i]; op.Kind == record.OpPlace && op.Exec != "" {
				p.place(op.ID, op.Exec)
			}
		}
	}
	// 2. Messages.
	for _, env := range rd.Messages {
		s.net.send(s, p, env)
	}
	// 3. Runs.
	for _, st := range rd.Stop {
		s.stopRun(p, st)
	}
	for _, r := range rd.Start {
		s.startRun(p, r)
	}
	// 4 and 5. The read view, then the answers and events.
	for _, rec := range rd.Records {
		p.publish(rec)
	}
	for _, id := range rd.Expired {
		delete(p.view, id)
		delete(p.viewVer, id)
	}
	if rd.Cluster != nil {
		p.cluster = rd.Cluster
	}
	for _, r := range rd.Replies {
		if cb := p.calls[r.Req]; cb != nil {
			delete(p.calls, r.Req)
			cb(r)
		}
	}
	if rd.Load != nil {
		s.gossip.publish(s, p, rd.Load)
	}
	if rd.Drained && p.state == procUp {
		p.drainLate = rd.DrainTimedOut
		s.leave(p)
	}
	return true
}

// persist appends and syncs the step's batch to a durable member's disk, as
// node.persist does: the records the step changed, the ids it expired, and the State
// when the sequence moved. A crash armed for this batch strikes in its fsync: the
// batch lands whole or not at all, and the process dies before it says anything of
// the step (persist returns false).
func (p *proc) persist(rd *engine.Ready) bool {
	if !p.m.durable {
		return true
	}
	s := p.s
	d := &p.m.disk
	b := store.Batch{Records: rd.Records, Expired: rd.Expired}
	if seq := p.eng.Seq(); seq != p.seqSaved {
		b.State = &store.State{NodeID: p.id, Seq: seq, Inc: p.inc}
	}
	if b.Empty() {
		return true
	}
	if p.crashInSync {
		if s.chance(0.5) {
			d.apply(&b)
			s.res.Durable.Landed++
			s.tracef("%s: CRASH in the fsync of a batch of %d records, %d expired: it landed", p, len(b.Records), len(b.Expired))
		} else {
			s.res.Durable.Torn++
			s.tracef("%s: CRASH in the fsync of a batch of %d records, %d expired: it was lost", p, len(b.Records), len(b.Expired))
		}
		s.crash(p)
		return false
	}
	d.apply(&b)
	if b.State != nil {
		p.seqSaved = b.State.Seq
	}
	return true
}

// place notes that owned task id was placed on peer exec.
func (p *proc) place(id, exec string) {
	pl := p.owned.placed[id]
	if !slices.ContainsFunc(pl, func(x placement) bool { return x.exec == exec }) {
		p.owned.placed[id] = append(pl, placement{exec: exec, at: p.s.now})
	}
}

// publish updates the read view with rec, checking that the engine never changes a
// record it handed out, never goes back a version, and never changes the outcome of
// a finished task.
func (p *proc) publish(rec *record.Record) {
	b := &p.s.book
	if old := p.view[rec.ID]; old != nil {
		if old.Version != p.viewVer[rec.ID] {
			b.violate(rec.ID, RuleView, "%s changed record %s after handing it out: version %d became %d in place",
				p, rec.ID, p.viewVer[rec.ID], old.Version)
		}
		switch {
		case rec.Version <= p.viewVer[rec.ID]:
			b.violate(rec.ID, RuleView, "%s published record %s at version %d after version %d", p, rec.ID, rec.Version, p.viewVer[rec.ID])
		case old.State.Terminal() && (rec.State != old.State || rec.Attempt != old.Attempt || rec.Node != old.Node ||
			!sameJSON(rec.Result, old.Result)):
			b.violate(rec.ID, RuleView, "%s changed finished task %s: %s (attempt %d on %q) became %s (attempt %d on %q)",
				p, rec.ID, old.State, old.Attempt, old.Node, rec.State, rec.Attempt, rec.Node)
		}
	}
	p.view[rec.ID] = rec
	p.viewVer[rec.ID] = rec.Version
	if p.s.tracing() {
		p.s.tracef("%s: record %s v%d %s attempt %d node %q epoch %d%s", p, rec.ID, rec.Version, rec.State, rec.Attempt,
			rec.Node, rec.Epoch, errSuffix(rec.Error))
	}
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " error " + e
}

// arm sets the node's one timer to wake, as the loop does.
func (p *proc) arm(wake time.Time) {
	if wake.Equal(p.tickAt) {
		return
	}
	p.tickAt = wake
	if wake.IsZero() {
		return
	}
	p.s.at(wake, func() {
		if p.state != procDead && p.tickAt.Equal(wake) {
			p.tickAt = time.Time{}
			p.input(engine.Tick{})
		}
	})
}

// call sends a request input and calls cb with the engine's Reply. A process that
// dies first never answers.
func (p *proc) call(mk func(req uint64) engine.Input, cb func(engine.Reply)) {
	p.req++
	p.calls[p.req] = cb
	p.input(mk(p.req))
}

// up says whether the process takes requests: running, not leaving.
func (p *proc) up() bool { return p != nil && p.state == procUp }

// crash kills p as kill -9 would: its runs, queue and memory are gone, and on a
// durable member the batch being written, if any (see persist); peers notice through
// gossip, some late. The member restarts later: an in-memory one as a new process
// under a new id, a durable one from its disk under the same id.
func (s *sim) crash(p *proc) {
	s.res.Faults.Crashes++
	s.tracef("%s: CRASH", p)
	p.crashed = true
	s.die(p)
	s.gossip.crashed(s, p)
	m := p.m
	down := s.between(500*time.Millisecond, 4*time.Second)
	if m.durable && s.chance(0.15) {
		// Down for longer than peers wait before they call a death confirmed, but
		// not so long that they forget it (ReportKeep after they declared it dead,
		// which a suspicion before the crash may have done up to maxSuspicion
		// earlier): a durable owner is unreachable, never lost, until then
		// (engine.Route), and the sim's durable nodes all come back.
		down = s.between(s.timers.confirm+500*time.Millisecond, s.timers.reportKeep-s.timers.maxSuspicion-time.Second)
		s.res.Durable.LongDown++
	}
	s.after(down, func() { s.restart(m) })
}

// crashFault is a crash fault striking p: between two steps, or, on a durable
// member now and then, in the fsync of its next batch (or between steps if it
// writes none soon).
func (s *sim) crashFault(p *proc) {
	if !p.m.durable || !s.chance(0.5) {
		s.crash(p)
		return
	}
	p.crashInSync = true
	s.tracef("%s: a crash is armed for the fsync of its next batch", p)
	s.after(300*time.Millisecond, func() {
		if p.state != procDead && p.crashInSync {
			p.crashInSync = false
			s.crash(p)
		}
	})
}

// die ends a process: it takes no more inputs and its runs are gone.
func (s *sim) die(p *proc) {
	p.stats = p.eng.Stats()
	p.state = procDead
	p.died = s.now
	p.crashInSync = false
	p.inbox, p.head = nil, 0
	p.calls = nil
	for _, r := range p.runs {
		r.vanish()
	}
	clear(p.runs)
	p.waiting = nil
	if p.m.proc == p {
		p.m.proc = nil
	}
}

// restart starts member m again: a new process, from its disk if it is durable.
func (s *sim) restart(m *member) {
	if m.proc != nil {
		return
	}
	p, err := s.start(m)
	if err != nil {
		// The same configuration started every member at the beginning: the disk
		// or the engine's Restore refused.
		s.book.violate("", RuleDisk, "%s could not restart: %v", m.name, err)
		s.phase = phaseOver
		return
	}
	if p.gen > 1 {
		s.tracef("%s: RESTART from its disk as %s (incarnation %d)", m.name, p, p.inc)
	} else {
		s.tracef("%s: RESTART as %s", m.name, p.id)
	}
}

// leave is how a drained node stops: as node.Shutdown, with the grace the node gives
// it (a second after a drain that timed out).
func (s *sim) leave(p *proc) {
	grace := 3 * time.Second
	if p.drainLate {
		s.res.Faults.DrainLate++
		grace = time.Second
		s.tracef("%s: DRAINED (timed out): stopping", p)
	} else {
		s.tracef("%s: DRAINED: stopping", p)
	}
	s.shutdown(p, grace)
}

// shutdown stops p as node.Shutdown does: no new work, its runs get grace to end and
// are then stopped, its reports a moment to be acknowledged; then it leaves the
// cluster gracefully.
func (s *sim) shutdown(p *proc, grace time.Duration) {
	p.state = procLeaving
	p.input(engine.Stop{Graceful: true})
	deadline := s.now.Add(grace)
	var waitIdle, stopAll, flush func()
	waitIdle = func() {
		if p.state == procDead {
			return
		}
		if len(p.runs) == 0 || !s.now.Before(deadline) {
			stopAll()
			return
		}
		s.after(5*time.Millisecond, waitIdle)
	}
	stopAll = func() {
		if len(p.runs) > 0 {
			p.stoppedRuns = append(p.stoppedRuns, s.now)
			for _, k := range sortedRunKeys(p.runs) {
				s.stopRun(p, engine.StopRun{ID: k.id, Epoch: k.epoch, Reason: engine.StopShutdown})
			}
		}
		tail := s.now.Add(time.Second)
		flush = func() {
			if p.state == procDead {
				return
			}
			if (len(p.runs) == 0 && p.eng.Outbox() == 0) || !s.now.Before(tail) {
				s.tracef("%s: LEFT", p)
				s.die(p)
				s.gossip.left(s, p)
				s.afterLeave(p.m)
				return
			}
			s.after(5*time.Millisecond, flush)
		}
		s.after(5*time.Millisecond, flush)
	}
	s.after(5*time.Millisecond, waitIdle)
}

// afterLeave brings a member that left back later as a new process, so the
// cluster's capacity comes back (a rolling restart).
func (s *sim) afterLeave(m *member) {
	s.after(s.between(500*time.Millisecond, 3*time.Second), func() { s.restart(m) })
}

// describeInput renders an input for the trace.
func describeInput(in engine.Input) string {
	switch in := in.(type) {
	case engine.Submit:
		return fmt.Sprintf("submit #%d (%d specs)", in.Req, len(in.Specs))
	case engine.Cancel:
		return fmt.Sprintf("cancel #%d %s", in.Req, in.ID)
	case engine.CancelGraph:
		return fmt.Sprintf("cancel graph #%d %s", in.Req, in.ID)
	case engine.Receive:
		return fmt.Sprintf("receive from %s: %s", in.From, describeMsg(in.Msg))
	case engine.MemberUp:
		return fmt.Sprintf("member up %s (%s, %s)", in.Name, in.Meta.ID, in.State)
	case engine.MemberGone:
		return fmt.Sprintf("member gone %s (%s, %s)", in.Name, in.Meta.ID, in.State)
	case engine.PeerLoad:
		return fmt.Sprintf("load of %s v%d queued %d running %d free %d", in.Name, in.Load.Ver, in.Load.Queued, in.Load.Running, in.Load.Free)
	case engine.RunDone:
		return fmt.Sprintf("run done %s epoch %d attempt %d err %q stopped %v", in.ID, in.Epoch, in.Attempt, in.Err, in.Stopped)
	case engine.Tick:
		return "tick"
	case engine.Drain:
		return fmt.Sprintf("drain #%d", in.Req)
	case engine.Stop:
		return fmt.Sprintf("stop (graceful %v)", in.Graceful)
	}
	return fmt.Sprintf("%T", in)
}

// describeMsg renders a peer message for the trace.
func describeMsg(m *engine.Message) string {
	var parts []string
	if r := m.Req; r != nil {
		parts = append(parts, fmt.Sprintf("steal request #%d max %d", r.ReqID, r.Max))
	}
	if g := m.Grant; g != nil {
		var ts []string
		for i, t := range g.Grant.Tasks {
			v := ""
			if i < len(g.Tasks) && g.Tasks[i].Void {
				v = " void"
			}
			ts = append(ts, fmt.Sprintf("%s@%d%s", t.ID, t.Epoch, v))
		}
		parts = append(parts, fmt.Sprintf("grant #%d [%s]", g.Grant.ReqID, strings.Join(ts, " ")))
	}
	if e := m.Empty; e != nil {
		parts = append(parts, fmt.Sprintf("empty #%d", e.ReqID))
	}
	if r := m.Reply; r != nil {
		parts = append(parts, fmt.Sprintf("reply #%d accept %v", r.ReqID, r.Accept))
	}
	if r := m.Release; r != nil {
		parts = append(parts, fmt.Sprintf("release #%d", r.ReqID))
	}
	for _, r := range m.Reports {
		parts = append(parts, fmt.Sprintf("report %s@%d attempt %d %s%s%s%s", r.ID, r.Epoch, r.Attempt, r.State,
			map[bool]string{true: " lost"}[r.Lost], map[bool]string{true: " returned"}[r.Returned], errSuffix(r.Error)))
	}
	for _, a := range m.Acks {
		parts = append(parts, fmt.Sprintf("ack %s@%d", a.ID, a.Epoch))
	}
	for _, a := range m.Cancel {
		parts = append(parts, fmt.Sprintf("cancel %s@%d", a.ID, a.Epoch))
	}
	for _, a := range m.CancelAcks {
		parts = append(parts, fmt.Sprintf("cancel ack %s@%d", a.ID, a.Epoch))
	}
	if l := m.Load; l != nil {
		parts = append(parts, fmt.Sprintf("load v%d queued %d", l.Ver, l.Queued))
	}
	return strings.Join(parts, "; ")
}
