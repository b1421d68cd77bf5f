package engine

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
	"github.com/starlingsched/starling/steal"
)

// Engine is a node's decisions: a pure state machine. Give it inputs with Step, take
// what it decided with Ready, carry that out, then Advance. It is not safe for
// concurrent use: one goroutine owns it.
type Engine struct {
	cfg Config
	rng *rand.Rand
	now time.Time

	types map[string]bool
	seq   uint64

	// The records this node owns, and the stolen tasks it runs for others.
	tasks    map[string]*entry
	idem     map[string]*entry
	order    []*entry // owned tasks in submission order (seq ascending)
	orderDel int      // expired entries still in order
	finished []*entry // finished owned tasks in finish order
	finHead  int

	graphs   map[string]*graphRun
	watchers map[string][]*graphRun // graphs waiting on a task outside them, by task id

	q    *queue
	res  *resources
	busy int // slots in use
	live int // owned tasks not terminal

	counts map[api.State]int
	stats  Counters

	timers timerHeap
	tseq   uint64

	stopping bool
	draining bool
	drainBy  time.Time
	drained  bool

	// cluster is nil for a node on its own.
	cluster *cluster

	running map[runKey]*entry // the runs this node's runner holds

	rd      Ready
	changed []*entry // owned entries changed since the last Ready, in the order of their first change
	gchange map[*graphRun]struct{}
}

// Counters are the engine's running totals, for metrics.
type Counters struct {
	Submitted uint64
	Rejected  uint64
	Retries   uint64
	Expired   uint64
	Finished  Finished
}

// Finished counts the tasks that ended, by terminal state.
type Finished struct {
	Succeeded, Failed, Cancelled, UpstreamFailed uint64
}

// Of returns the count of terminal state s (0 for a state that is not terminal).
func (f *Finished) Of(s api.State) uint64 {
	if p := f.at(s); p != nil {
		return *p
	}
	return 0
}

func (f *Finished) at(s api.State) *uint64 {
	switch s {
	case api.Succeeded:
		return &f.Succeeded
	case api.Failed:
		return &f.Failed
	case api.Cancelled:
		return &f.Cancelled
	case api.UpstreamFailed:
		return &f.UpstreamFailed
	}
	return nil
}

// entry is a task as the engine holds it: its record and its runtime state.
type entry struct {
	rec *record.Record
	// shared: rec went out in a Ready; clone it before changing it.
	shared bool
	// dirty: rec changed since the last Ready (it is in Engine.changed).
	dirty bool

	needs   needs
	class   *class
	heapIdx int // index in its class heap; -1 when not queued
	// The run order (see before), copied from the record by keyed.
	prio     int
	deadline *time.Time
	seq      uint64
	graph    *graphRun

	// foreign marks a task another node (owner) owns that this node runs; its rec
	// is a private copy, never written.
	foreign bool
	owner   string

	running  bool // a run of it is in this node's runner
	runEpoch uint64
	expired  bool
}

// New returns an engine for cfg.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(cfg.Seed[0], cfg.Seed[1])),
		types:    map[string]bool{},
		tasks:    map[string]*entry{},
		idem:     map[string]*entry{},
		graphs:   map[string]*graphRun{},
		watchers: map[string][]*graphRun{},
		q:        newQueue(),
		res:      newResources(cfg.Tags, cfg.Resources),
		counts:   map[api.State]int{},
		gchange:  map[*graphRun]struct{}{},
	}
	for _, t := range cfg.Types {
		e.types[t] = true
	}
	if cfg.Cluster != nil {
		c, err := newCluster(e, cfg)
		if err != nil {
			return nil, err
		}
		e.cluster = c
	}
	return e, nil
}

// ID is the node's id.
func (e *Engine) ID() string { return e.cfg.ID }

// Seq is the highest sequence the engine handed out (task and graph ids): a restarted
// node must start above it.
func (e *Engine) Seq() uint64 { return e.seq }

// Step feeds one input at time now (the caller's clock; it must not go back).
func (e *Engine) Step(now time.Time, in Input) {
	if now.After(e.now) {
		e.now = now
	}
	now = e.now
	e.fire(now)
	switch in := in.(type) {
	case Submit:
		e.onSubmit(in, now)
	case Cancel:
		e.onCancel(in, now)
	case CancelGraph:
		e.onCancelGraph(in, now)
	case RunDone:
		e.onRunDone(in, now)
	case Receive:
		if e.cluster != nil {
			e.cluster.onMessage(in.From, in.Msg, now)
		}
	case MemberUp:
		if e.cluster != nil {
			e.cluster.onMemberUp(in, now)
		}
	case MemberGone:
		if e.cluster != nil {
			e.cluster.onMemberGone(in, now)
		}
	case PeerLoad:
		if e.cluster != nil {
			e.cluster.onPeerLoad(in, now)
		}
	case Tick:
	case Drain:
		e.onDrain(in, now)
	case Stop:
		e.onStop(in, now)
	case SetTypes:
		e.onSetTypes(in)
	default:
		panic(fmt.Sprintf("engine: unknown input %T", in))
	}
	e.dispatch(now)
	e.trim(now)
	if c := e.cluster; c != nil {
		if c.pushLoad {
			c.pushLoad = false
			c.publishLoad(true)
		}
		if c.kicked {
			c.kicked = false
			c.stealTick(now, false)
		}
	}
	e.checkDrained(now)
}

// HasReady reports whether Ready has anything to carry out.
func (e *Engine) HasReady() bool {
	r := &e.rd
	return len(e.changed) > 0 || len(e.gchange) > 0 || len(r.Writes) > 0 || len(r.Messages) > 0 || len(r.Start) > 0 ||
		len(r.Stop) > 0 || len(r.Replies) > 0 || len(r.Events) > 0 || r.Load != nil || r.Cluster != nil ||
		len(r.Expired) > 0 || len(r.GraphsExpired) > 0 || len(r.Drop) > 0 || r.Drained ||
		(e.cluster != nil && e.cluster.pendingReports())
}

// Ready returns what to carry out. The caller must Advance before the next Step.
func (e *Engine) Ready() Ready {
	if c := e.cluster; c != nil {
		c.flushReports()
	}
	rd := e.rd
	if len(e.changed) > 0 {
		rd.Records = make([]*record.Record, 0, len(e.changed))
		for _, t := range e.changed {
			if !t.expired {
				rd.Records = append(rd.Records, t.rec)
			}
		}
	}
	if len(e.gchange) > 0 {
		gs := make([]*graphRun, 0, len(e.gchange))
		for g := range e.gchange {
			gs = append(gs, g)
		}
		slices.SortFunc(gs, func(a, b *graphRun) int { return cmpUint(a.seq, b.seq) })
		for _, g := range gs {
			rd.Graphs = append(rd.Graphs, g.view())
		}
	}
	rd.Wake = e.wake()
	return rd
}

// Advance tells the engine the last Ready was carried out.
func (e *Engine) Advance() {
	for i, t := range e.changed {
		t.shared, t.dirty = true, false
		e.changed[i] = nil
	}
	e.changed = e.changed[:0]
	clear(e.gchange)
	e.rd = Ready{
		Writes:   e.rd.Writes[:0],
		Messages: e.rd.Messages[:0],
		Start:    e.rd.Start[:0],
		Events:   e.rd.Events[:0],
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// apply changes an owned task's record by op, and queues op for persistence.
func (e *Engine) apply(t *entry, op record.Op) {
	op.ID = t.rec.ID
	if t.foreign {
		t.rec.ApplyInPlace(&op)
		return
	}
	if t.shared {
		t.rec = t.rec.Apply(&op)
		t.shared = false
	} else {
		t.rec.ApplyInPlace(&op)
	}
	e.markChanged(t)
	e.rd.Writes = append(e.rd.Writes, op)
}

// markChanged notes that t's record changed since the last Ready.
func (e *Engine) markChanged(t *entry) {
	if !t.dirty {
		t.dirty = true
		e.changed = append(e.changed, t)
	}
}

// setState notes a state change of an owned task: counts and the event stream.
func (e *Engine) event(t *entry, old api.State, now time.Time) {
	if t.foreign {
		return
	}
	s := t.rec.State
	if old != "" {
		e.counts[old]--
	}
	e.counts[s]++
	e.rd.Events = append(e.rd.Events, api.Event{Task: t.rec.ID, Graph: t.rec.Graph, Type: t.rec.Spec.Type, State: s,
		Attempt: t.rec.Attempt, Node: t.rec.Node, Error: t.rec.Error, Time: now})
}

// Timers: retries, run timeouts. One heap, lazily cleaned: a timer whose entry moved
// on is dropped when it comes due.

type timerKind uint8

const (
	timerRetry timerKind = iota + 1
	timerTimeout
)

type timer struct {
	at    time.Time
	seq   uint64
	kind  timerKind
	t     *entry
	epoch uint64
	d     time.Duration
}

type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	return x
}

func (e *Engine) addTimer(tm timer) {
	e.tseq++
	tm.seq = e.tseq
	heap.Push(&e.timers, tm)
}

// fire runs the timers due at now.
func (e *Engine) fire(now time.Time) {
	for len(e.timers) > 0 && !e.timers[0].at.After(now) {
		tm := heap.Pop(&e.timers).(timer)
		t := tm.t
		switch tm.kind {
		case timerRetry:
			if t.expired || t.rec.State != api.Queued || t.rec.Epoch != tm.epoch || t.heapIdx >= 0 || t.rec.RetryAt.IsZero() || e.stopping {
				continue
			}
			e.enqueue(t, now, t.rec.Epoch, t.rec.Node, t.rec.NodeLosses, nil)
		case timerTimeout:
			if !t.running || t.runEpoch != tm.epoch {
				continue
			}
			e.rd.Stop = append(e.rd.Stop, StopRun{ID: t.rec.ID, Epoch: tm.epoch, Reason: StopTimeout, Timeout: tm.d})
		}
	}
	if c := e.cluster; c != nil {
		c.fire(now)
	}
	if e.draining && !e.drained && !e.drainBy.IsZero() && !now.Before(e.drainBy) {
		e.drained = true
		e.rd.Drained, e.rd.DrainTimedOut = true, true
	}
	if e.finHead < len(e.finished) && !e.finished[e.finHead].rec.Finished.Add(e.cfg.Retain).After(now) {
		e.expire(now)
	}
}

// wake is when the engine next needs a Tick.
func (e *Engine) wake() time.Time {
	var w time.Time
	at := func(t time.Time) {
		if !t.IsZero() && (w.IsZero() || t.Before(w)) {
			w = t
		}
	}
	if len(e.timers) > 0 {
		at(e.timers[0].at)
	}
	if e.finHead < len(e.finished) {
		at(e.finished[e.finHead].rec.Finished.Add(e.cfg.Retain))
	}
	if e.draining && !e.drained {
		at(e.drainBy)
	}
	if c := e.cluster; c != nil {
		at(c.wake())
	}
	return w
}

func taskID(nodeID string, seq uint64) string {
	return nodeID + "-" + strconv.FormatUint(seq, 36)
}

func graphID(nodeID string, seq uint64) string {
	return nodeID + "-g" + strconv.FormatUint(seq, 36)
}

// Stats is a snapshot of the engine's state, for metrics and the node's own member
// entry.
type Stats struct {
	Queued     int
	Live       int
	Busy       int
	Slots      int
	Foreign    int
	Bands      []api.Band
	FreeRes    map[string]int64
	Counters   Counters
	Thief      steal.ThiefStats
	Victim     steal.VictimStats
	PeersAlive int
	// Outbox counts final reports waiting for their owners' acknowledgement.
	Outbox   int
	Draining bool
	Stopping bool
}

// Stats returns a snapshot the caller may keep. It is cheap enough to take after
// every step: its FreeRes map and Bands slice are shared between snapshots and must
// not be changed.
func (e *Engine) Stats() Stats {
	s := Stats{
		Queued: e.q.len, Live: e.live, Busy: e.busy, Slots: e.cfg.Slots, Bands: e.q.bandsSnapshot(maxBands),
		FreeRes: e.res.snapshot(), Draining: e.draining, Stopping: e.stopping, Counters: e.stats,
	}
	if c := e.cluster; c != nil {
		s.Foreign = len(c.foreign)
		s.Thief, s.Victim = c.thief.Stats(), c.victim.Stats()
		s.Outbox = len(c.outbox)
		for _, p := range c.peers {
			if !p.gone {
				s.PeersAlive++
			}
		}
	}
	return s
}

// Types lists the task types this node runs, sorted.
func (e *Engine) Types() []string {
	out := make([]string, 0, len(e.types))
	for t := range e.types {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
