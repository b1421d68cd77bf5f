package sim

import (
	"container/heap"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"
)

// epoch0 is when every run starts on the simulated clock.
var epoch0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// minHorizon bounds the simulated time of a run; a large workload gets longer (see
// setup). A run that has not settled by its horizon fails.
const minHorizon = 2 * time.Minute

// sim is one run: the cluster, its clients and its faults, driven off one event heap
// on one goroutine.
type sim struct {
	cfg Config
	rng *rand.Rand
	now time.Time

	events eventHeap
	seq    uint64
	nevent int

	tr    io.Writer
	trbuf strings.Builder

	timers  timers
	members []*member
	// procs holds the latest process of every node id ever started (a durable
	// member's restarts keep their id), all every process, in start order.
	procs map[string]*proc
	all   []*proc
	incs  uint64

	net    network
	gossip membership
	work   workload
	book   book

	res     Result
	horizon time.Duration
	// phase: running the workload and faults, calm (the network heals and
	// everything settles), over.
	phase   phase
	calmEnd time.Time
}

type phase uint8

const (
	phaseRun phase = iota
	phaseCalm
	phaseOver
)

// Run simulates the cluster cfg describes, checks the invariants at the end, and
// returns what happened. The error wraps invariant.ErrViolated when an invariant
// broke (Result.Report lists the violations) and ErrVacuous when the run did no
// real work.
func Run(cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	wall := time.Now()
	s := newSim(cfg)
	if err := s.setup(); err != nil {
		return Result{}, err
	}
	s.loop()
	err := s.check()
	s.res.Wall = time.Since(wall)
	return s.res, err
}

func newSim(cfg Config) *sim {
	s := &sim{
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(cfg.Seed, 0x5157a21e)),
		now:   epoch0,
		tr:    cfg.Trace,
		procs: map[string]*proc{},
	}
	s.res.Seed = cfg.Seed
	s.book.init()
	return s
}

// loop runs events until the run is over or the horizon passes.
func (s *sim) loop() {
	sameInstant := 0
	for s.events.Len() > 0 && s.phase != phaseOver {
		ev := heap.Pop(&s.events).(*event)
		if ev.at.After(s.now) {
			sameInstant = 0
		}
		s.now = ev.at
		if s.now.Sub(epoch0) > s.horizon {
			s.book.violate("", RuleProgress, "the run had not settled after %v of simulated time: %s", s.horizon, s.unsettled())
			break
		}
		if sameInstant++; sameInstant > 1_000_000 {
			s.book.violate("", RuleProgress, "a million events at %v without the clock moving: a livelock", s.elapsed())
			break
		}
		s.nevent++
		ev.fn()
	}
	s.res.Events = s.nevent
	s.res.Simulated = s.now.Sub(epoch0)
}

// at schedules fn at t (now if t is in the past).
func (s *sim) at(t time.Time, fn func()) {
	if t.Before(s.now) {
		t = s.now
	}
	s.seq++
	heap.Push(&s.events, &event{at: t, seq: s.seq, fn: fn})
}

// after schedules fn d from now.
func (s *sim) after(d time.Duration, fn func()) { s.at(s.now.Add(d), fn) }

// between draws a duration in [lo, hi].
func (s *sim) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

// chance is true with probability p.
func (s *sim) chance(p float64) bool { return p > 0 && s.rng.Float64() < p }

func (s *sim) elapsed() time.Duration { return s.now.Sub(epoch0) }

// tracing says whether trace lines are wanted; callers check it before building one.
func (s *sim) tracing() bool { return s.tr != nil }

// tracef writes one trace line, stamped with the simulated time.
func (s *sim) tracef(format string, args ...any) {
	if s.tr == nil {
		return
	}
	b := &s.trbuf
	b.Reset()
	fmt.Fprintf(b, "%12s  ", fmtDur(s.elapsed()))
	fmt.Fprintf(b, format, args...)
	b.WriteByte('\n')
	io.WriteString(s.tr, b.String())
}

// fmtDur renders a simulated time as seconds with microseconds.
func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%d.%06ds", d/time.Second, (d%time.Second)/time.Microsecond)
}

// event is something that happens at a simulated instant. Events at the same
// instant run in the order they were scheduled.
type event struct {
	at  time.Time
	seq uint64
	fn  func()
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
