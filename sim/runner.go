package sim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/runner"
)

// The simulated runner, as runner.Pool behaves: at most Slots runs execute at once,
// more wait their turn in order; a run takes a seeded time, then ends with what its
// handler returns; a stop ends it soon after with the stop's cause, and a run stopped
// while it waited ends without its handler being called, once its turn comes.
// Handlers are pure functions of the task, so the checker knows every result.

// handlerTypes are the task types every simulated node runs.
var handlerTypes = []string{"sum", "work"}

// workPayload is the input of a "work" task. Its result is {"id": ID, "sq": V*V}:
// a function of the task, so a result delivered to the wrong task shows.
type workPayload struct {
	V  int64 `json:"v"`
	MS int   `json:"ms"`
	// Fail: the first Fail attempts fail (by panicking if Panic).
	Fail  int  `json:"fail,omitempty"`
	Panic bool `json:"panic,omitempty"`
}

type workResult struct {
	ID string `json:"id"`
	Sq int64  `json:"sq"`
}

// sumPayload is the input of a "sum" task: its result is N plus the results of its
// deps (numbers; null for a dep that did not succeed, under all_done). A failing
// attempt returns a partial result with its error, which dependents must never get.
type sumPayload struct {
	N     int64 `json:"n"`
	MS    int   `json:"ms"`
	Fail  int   `json:"fail,omitempty"`
	Panic bool  `json:"panic,omitempty"`
}

// partialSum is what a failing sum attempt returns along with its error.
const partialSum = 1_000_003

type runKey struct {
	id    string
	epoch uint64
}

func sortedRunKeys(m map[runKey]*run) []runKey {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b runKey) int { return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.epoch, b.epoch)) })
	return keys
}

// run is one run in a process's runner.
type run struct {
	p *proc
	r engine.Run
	// begun: its handler was called, at start.
	begun bool
	start time.Time
	// natural is when the handler returns by itself, with result and err.
	natural time.Time
	result  json.RawMessage
	err     string
	// cause is set once the run was stopped: the stop's error text.
	cause    string
	shutdown bool
	ended    bool
	// hist is the run's index in the book.
	hist int
}

// handle is the handler of run r: what it returns and how long it takes.
func (s *sim) handle(r engine.Run) (json.RawMessage, string, time.Duration) {
	var (
		ms     int
		fail   int
		panics bool
		result json.RawMessage
		errMsg string
		failed json.RawMessage
	)
	switch r.Type {
	case "work":
		var p workPayload
		if err := json.Unmarshal(r.Payload, &p); err != nil {
			return nil, "work: bad payload: " + err.Error(), time.Millisecond
		}
		ms, fail, panics = p.MS, p.Fail, p.Panic
		result, _ = json.Marshal(workResult{ID: r.ID, Sq: p.V * p.V})
	case "sum":
		var p sumPayload
		if err := json.Unmarshal(r.Payload, &p); err != nil {
			return nil, "sum: bad payload: " + err.Error(), time.Millisecond
		}
		ms, fail, panics = p.MS, p.Fail, p.Panic
		total := p.N
		for _, name := range slices.Sorted(maps.Keys(r.Deps)) {
			v := r.Deps[name]
			if len(v) == 0 || bytes.Equal(v, []byte("null")) {
				continue
			}
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				errMsg = fmt.Sprintf("dep %s: want a number, got %s", name, v)
				break
			}
			total += n
		}
		result = strconv.AppendInt(nil, total, 10)
		failed = strconv.AppendInt(nil, partialSum, 10)
	default:
		return nil, fmt.Sprintf("no handler for type %q on this node", r.Type), time.Millisecond
	}
	d := time.Duration(float64(ms) * (0.75 + s.rng.Float64()/2) * float64(time.Millisecond))
	if ms == 0 {
		d = s.between(50*time.Microsecond, 500*time.Microsecond) // a short one: the engine may run them ahead of a slot
	}
	switch {
	case errMsg != "":
		return nil, errMsg, d
	case r.Attempt <= fail && panics:
		return nil, fmt.Sprintf("panic: %s %s gave up in attempt %d", r.Type, r.ID, r.Attempt), d
	case r.Attempt <= fail:
		return failed, fmt.Sprintf("%s %s failed in attempt %d", r.Type, r.ID, r.Attempt), d
	}
	return result, "", d
}

// startRun carries out a Start order of p's engine: the run begins at once if a
// slot is free, and waits its turn if not.
func (s *sim) startRun(p *proc, r engine.Run) {
	k := runKey{r.ID, r.Epoch}
	if p.runs[k] != nil {
		// runner.Pool ignores it (and logs): the engine must not ask.
		s.book.violate(r.ID, RuleEpoch, "%s started task %s epoch %d while that run was still going", p, r.ID, r.Epoch)
		return
	}
	ru := &run{p: p, r: r}
	p.runs[k] = ru
	if p.executing < p.m.slots {
		s.begin(ru)
		return
	}
	p.waiting = append(p.waiting, ru)
	if s.tracing() {
		s.tracef("%s: run %s epoch %d attempt %d waits for a slot", p, r.ID, r.Epoch, r.Attempt)
	}
}

// begin gives ru a slot: its handler is called, unless it was stopped while it
// waited, in which case it ends at once.
func (s *sim) begin(ru *run) {
	p, r := ru.p, ru.r
	p.executing++
	ru.start = s.now
	if ru.cause != "" {
		ru.end(s, false)
		return
	}
	ru.begun = true
	result, errMsg, d := s.handle(r)
	ru.natural, ru.result, ru.err = s.now.Add(d), result, errMsg
	ru.hist = s.book.runStarted(s, p, r)
	if s.tracing() {
		s.tracef("%s: run %s epoch %d attempt %d starts (%s)", p, r.ID, r.Epoch, r.Attempt, d)
	}
	s.at(ru.natural, func() { ru.end(s, true) })
}

// stopRun carries out a StopRun: the run's context ends with the cause, and the
// handler returns soon after.
func (s *sim) stopRun(p *proc, st engine.StopRun) {
	ru := p.runs[runKey{st.ID, st.Epoch}]
	if ru == nil || ru.cause != "" {
		return // not outstanding, or stopped already: the first cause stays
	}
	switch st.Reason {
	case engine.StopTimeout:
		ru.cause = runner.TimeoutError{D: st.Timeout}.Error()
	case engine.StopShutdown:
		ru.cause, ru.shutdown = runner.ErrStopped.Error(), true
	default:
		ru.cause = runner.ErrCancelled.Error()
	}
	if s.tracing() {
		s.tracef("%s: run %s epoch %d stopped: %s", p, st.ID, st.Epoch, ru.cause)
	}
	if !ru.begun {
		return // it ends when its turn comes, without its handler
	}
	if at := s.now.Add(s.between(0, 3*time.Millisecond)); at.Before(ru.natural) {
		s.at(at, func() { ru.end(s, false) })
	}
}

// end ends the run, by itself (natural) or because it was stopped, and tells the
// engine as runner.Pool would.
func (ru *run) end(s *sim, natural bool) {
	p := ru.p
	if ru.ended || p.state == procDead {
		return
	}
	ru.ended = true
	delete(p.runs, runKey{ru.r.ID, ru.r.Epoch})
	p.executing--
	result, errMsg := ru.result, ru.err
	if ru.cause != "" {
		// A stopped run reports its cause; the handler's own error follows it when
		// it returned one before it noticed.
		switch {
		case !natural:
			result, errMsg = nil, ru.cause
		case errMsg == "":
			errMsg = ru.cause
		default:
			errMsg = ru.cause + ": " + errMsg
		}
	}
	if ru.begun {
		s.book.runEnded(ru.hist, s.now, errMsg, result)
	} else {
		s.book.unbegun[ru.r.ID] = append(s.book.unbegun[ru.r.ID], errMsg)
	}
	d := engine.RunDone{ID: ru.r.ID, Epoch: ru.r.Epoch, Attempt: ru.r.Attempt, Result: result, Err: errMsg,
		Stopped: ru.shutdown, Elapsed: s.now.Sub(ru.start)}
	if s.tracing() {
		s.tracef("%s: run %s epoch %d attempt %d ends%s", p, d.ID, d.Epoch, d.Attempt, errSuffix(errMsg))
	}
	p.input(d)
	if len(p.waiting) > 0 {
		next := p.waiting[0]
		p.waiting = p.waiting[1:]
		s.begin(next)
	}
}

// vanish ends a run with its process: it never reports.
func (ru *run) vanish() { ru.ended = true }
