package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/invariant"
	"github.com/starlingsched/starling/record"
)

// What the system promises today (README "Guarantees and limits", DESIGN §4), and
// so what check holds a run to:
//
//   - A task whose owner lives to the end ends in exactly one outcome, the same in
//     every answer any client got, and no client sees it go back from a terminal
//     state; a succeeded task has the result of one of its runs, the right one.
//   - A task whose owner crashed or left may be lost with the owner: what clients
//     saw while the owner lived must still agree, and the terminal "owner lost"
//     answer may come only once the owner is really gone (not while it is merely
//     suspected). Such tasks are counted (Result.OwnerLost), not failed.
//   - A task runs more than once (beyond its retries) only if its owner saw a node
//     it was placed on die, leave or stop; otherwise every run of it is the one.
//   - A node loss is booked on a task only for a death (or a stop) its owner saw of
//     a node it was placed on: a one-sided suspicion of the owner costs nothing.
//   - Nothing is left behind: after the calm at the end, no node holds grants,
//     stolen tasks, runs or unacknowledged reports.

// check checks the run at its end and fills the result.
func (s *sim) check() error {
	b := &s.book
	var (
		finals     = map[string]*record.Record{} // by id: the owner's record now, or when it died
		explained  = map[string]int{}            // by id: node losses its owner saw
		runsOf     = map[string][]int{}          // by id: indexes into b.runs
		strict     = map[string]bool{}           // tasks that must have run once (beyond retries)
		h          = [2]invariant.History{}      // strict, loose
		lastFinish time.Time
	)
	for i, r := range b.runs {
		runsOf[r.ID] = append(runsOf[r.ID], i)
	}
	for _, id := range b.acked {
		t := b.tasks[id]
		explained[id] = s.explained(t)
		strict[id] = explained[id] == 0
		rec := t.owner.view[id]
		if rec == nil {
			if t.owner.state != procDead {
				b.violate(id, RuleView, "%s does not hold task %s at the end, which it acknowledged", t.owner, id)
			}
			continue
		}
		finals[id] = rec
	}
	group := func(id string) int {
		if strict[id] {
			return 0
		}
		return 1
	}
	for _, id := range b.acked {
		t := b.tasks[id]
		rec := finals[id]
		if rec == nil {
			continue
		}
		g := &h[group(id)]
		g.Final = append(g.Final, rec.Task(t.owner.m.name))
		if t.owner.state == procDead && !rec.State.Terminal() {
			s.res.OwnerLost++ // its record went with its owner: not checked as an outcome
		} else {
			g.Acked = append(g.Acked, id)
		}
		if rec.State.Terminal() && rec.Finished.After(lastFinish) {
			lastFinish = rec.Finished
		}
		if rec.NodeLosses > explained[id] {
			b.violate(id, RuleNodeLoss, "task %s booked %d node losses (%s, error %q), but its owner %s saw only %d deaths or stops of the nodes it was placed on (%v)",
				id, rec.NodeLosses, rec.State, rec.Error, t.owner, explained[id], s.placedOn(t))
		}
		s.res.NodeLosses += rec.NodeLosses
		if rec.State == api.Failed && strings.HasPrefix(rec.Error, "node lost: ") {
			s.res.NodeLost++
		}
		if rec.State.Terminal() && rec.Node != "" && rec.Node != t.owner.m.name {
			s.res.StolenDone++
		}
		s.checkTask(t, rec, finals, runsOf[id])
	}
	for _, r := range b.runs {
		if r.Ended() {
			s.res.Ideal += r.End.Sub(r.Start)
		}
		g := &h[group(r.ID)]
		g.Runs = append(g.Runs, r)
	}
	if s.res.Slots > 0 {
		s.res.Ideal /= time.Duration(s.res.Slots)
	}
	if !lastFinish.IsZero() {
		s.res.Makespan = lastFinish.Sub(s.work.firstSubmit)
	}
	for i, ob := range b.obs {
		info := b.obsInfo[i]
		if info.ownerLost {
			// Allowed once the owner is really gone; never while it runs.
			t := b.tasks[ob.ID]
			if t == nil || (t.owner.state == procDead && !info.decided.Before(t.owner.died)) {
				continue
			}
			// An answer a client must never get: invariant holds it against the
			// task's outcome too.
			b.violate(ob.ID, RuleOwnerLost, "%s answered at %s that task %s failed: owner lost, but its owner %s was running (it %s)",
				ob.By, fmtDur(info.decided.Sub(epoch0)), ob.ID, t.owner, t.owner.fate())
		}
		g := &h[group(ob.ID)]
		g.Observations = append(g.Observations, ob)
	}
	opts := invariant.Options{Result: func(id string) (json.RawMessage, bool) { return s.expected(id, finals, map[string]json.RawMessage{}) }}
	strictOpts, looseOpts := opts, opts
	looseOpts.Partitioned = true // its owner saw a node it was on die: it may have run twice
	rep := merge(invariant.Check(h[0], strictOpts), invariant.Check(h[1], looseOpts))
	s.checkProcs()
	s.res.Tasks = len(b.acked)
	s.res.Outcomes = rep.Outcomes
	for _, p := range s.procs {
		st := p.stats
		if p.state != procDead {
			st = p.eng.Stats()
		}
		s.res.Steals += st.Thief.Grants
		s.res.Stolen += st.Thief.Tasks
	}
	rep.Violations = append(rep.Violations, b.violations...)
	s.res.Report = rep
	var errs []error
	if err := rep.Err(); err != nil {
		errs = append(errs, err)
	}
	if err := s.vacuous(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// explained counts the node losses task t's owner could book: the deaths, leaves and
// restarts its gossip told it of, and the stops, of the nodes t was placed on, since
// it was placed there.
func (s *sim) explained(t *task) int {
	o := t.owner
	n := 0
	for _, pl := range o.placed[t.id] {
		for _, at := range o.goneAt[pl.exec] {
			if !at.Before(pl.at) {
				n++
			}
		}
		if x := s.procs[pl.exec]; x != nil {
			for _, at := range x.stoppedRuns {
				if !at.Before(pl.at) {
					n++
				}
			}
		}
	}
	return n
}

func (s *sim) placedOn(t *task) []string {
	var out []string
	for _, pl := range t.owner.placed[t.id] {
		name := pl.exec
		if x := s.procs[pl.exec]; x != nil {
			name = x.String() + " (" + x.fate() + ")"
		}
		out = append(out, name)
	}
	return out
}

// fate says how a process ended, for messages.
func (p *proc) fate() string {
	switch {
	case p.state != procDead:
		return "lived to the end"
	case p.crashed:
		return "crashed at " + fmtDur(p.died.Sub(epoch0))
	}
	return "left at " + fmtDur(p.died.Sub(epoch0))
}

// attemptSuffix is what the engine adds to the error of a task that used its
// retries.
var attemptSuffix = regexp.MustCompile(` \(attempt \d+ of \d+\)$`)

// checkTask checks what invariant does not know about task t: why it failed, that
// a client cancelled it, and that its graph ran it only once its deps allowed.
func (s *sim) checkTask(t *task, rec *record.Record, finals map[string]*record.Record, runs []int) {
	b := &s.book
	switch rec.State {
	case api.Failed:
		msg := attemptSuffix.ReplaceAllString(rec.Error, "")
		ok := strings.HasPrefix(msg, "node lost: ")
		for _, i := range runs {
			ok = ok || b.runInfo[i].err == msg
		}
		ok = ok || slices.Contains(b.unbegun[t.id], msg)
		if !ok {
			b.violate(t.id, RuleFailure, "task %s failed with %q, which none of its runs ended with and is not a node loss", t.id, rec.Error)
		}
	case api.Cancelled:
		if t.cancelled.IsZero() || t.cancelled.After(rec.Finished) {
			b.violate(t.id, RuleCancel, "task %s was cancelled (%q) but no client asked", t.id, rec.Error)
		}
	case api.UpstreamFailed:
		failedDep := false
		for _, d := range t.deps {
			if dr := finals[d]; dr != nil && dr.State.Terminal() && dr.State != api.Succeeded {
				failedDep = true
			}
		}
		if t.spec.Trigger == api.TriggerAllDone || !failedDep {
			b.violate(t.id, RuleGraph, "task %s (trigger %q) is upstream_failed, but no dep of %v failed", t.id, t.spec.Trigger, t.deps)
		}
	}
	for _, i := range runs {
		r := b.runs[i]
		for _, d := range t.deps {
			dr := finals[d]
			switch {
			case dr == nil:
				continue // its owner's record went with it
			case !dr.State.Terminal() || dr.Finished.After(r.Start):
				b.violate(t.id, RuleGraph, "task %s started at %s (attempt %d on %s) before its dep %s had finished",
					t.id, fmtDur(r.Start.Sub(epoch0)), r.Attempt, r.Node, d)
			case t.spec.Trigger != api.TriggerAllDone && dr.State != api.Succeeded:
				b.violate(t.id, RuleGraph, "task %s ran (attempt %d on %s) though its dep %s ended %s", t.id, r.Attempt, r.Node, d, dr.State)
			}
		}
	}
}

// expected is the result task id must have if it succeeded: work's is a function of
// the task, a sum's adds its payload to the results of the deps that succeeded.
func (s *sim) expected(id string, finals map[string]*record.Record, memo map[string]json.RawMessage) (json.RawMessage, bool) {
	if v, ok := memo[id]; ok {
		return v, v != nil
	}
	memo[id] = nil
	t := s.book.tasks[id]
	if t == nil {
		return nil, false
	}
	switch t.spec.Type {
	case "work":
		var p workPayload
		if json.Unmarshal(t.spec.Payload, &p) != nil {
			return nil, false
		}
		v, _ := json.Marshal(workResult{ID: id, Sq: p.V * p.V})
		memo[id] = v
		return v, true
	case "sum":
		var p sumPayload
		if json.Unmarshal(t.spec.Payload, &p) != nil {
			return nil, false
		}
		total := p.N
		for _, d := range t.deps {
			dr := finals[d]
			if dr == nil {
				return nil, false
			}
			if dr.State != api.Succeeded {
				continue // null under all_done
			}
			v, ok := s.expected(d, finals, memo)
			if !ok {
				return nil, false
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return nil, false
			}
			total += n
		}
		v := strconv.AppendInt(nil, total, 10)
		memo[id] = v
		return v, true
	}
	return nil, false
}

// checkProcs checks the processes alive at the end: their disks describe their read
// views, records handed out never changed, and nothing is left over after the calm.
func (s *sim) checkProcs() {
	b := &s.book
	for _, m := range s.members {
		p := m.proc
		if p == nil || p.state == procDead {
			continue
		}
		if p.disk.orphan != "" {
			b.violate("", RuleDisk, "%s wrote %s, an operation on a record it never created", p, p.disk.orphan)
		}
		if len(p.disk.recs) != len(p.view) {
			b.violate("", RuleDisk, "%s's writes describe %d records, its read view holds %d", p, len(p.disk.recs), len(p.view))
		}
		for id, rec := range sortedView(p) {
			if rec.Version != p.viewVer[id] {
				b.violate(id, RuleView, "%s changed record %s after handing it out (version %d, handed out %d)", p, id, rec.Version, p.viewVer[id])
			}
			if d := p.disk.recs[id]; !reflect.DeepEqual(d, rec) {
				b.violate(id, RuleDisk, "%s's writes describe task %s as %+v, its read view as %+v", p, id, d, rec)
			}
		}
		if s.phase != phaseOver {
			continue // the run did not settle; the leftovers say nothing more
		}
		st := p.eng.Stats()
		for _, l := range []struct {
			what string
			n    int
		}{
			{"unfinished tasks it owns", st.Live}, {"queued tasks", st.Queued}, {"runs", st.Busy},
			{"stolen tasks", st.Foreign}, {"unacknowledged reports", st.Outbox},
			{"grants parked for thieves", st.Victim.Parked}, {"accepted grants not released", st.Thief.Unreleased},
		} {
			if l.n != 0 {
				b.violate("", RuleLeftover, "%s still holds %d %s after %v of calm", p, l.n, l.what, s.timers.calm)
			}
		}
		s.checkView(p)
	}
}

// checkView checks that p sees the cluster as it is after the calm: every other
// member once, as its current process, alive; the processes gone forgotten.
func (s *sim) checkView(p *proc) {
	seen := map[string]bool{}
	if p.cluster != nil {
		for _, pv := range p.cluster.Peers {
			q := s.procs[pv.ID]
			switch {
			case q == nil || q.m.proc != q:
				s.book.violate("", RuleLeftover, "%s still lists %s (%s, %s) among its peers after %v of calm", p, pv.Name, pv.ID, pv.State, s.timers.calm)
			case pv.Gone:
				s.book.violate("", RuleLeftover, "%s sees %s as %s after %v of calm", p, q, pv.State, s.timers.calm)
			case seen[pv.Name]:
				s.book.violate("", RuleLeftover, "%s lists %s twice", p, pv.Name)
			}
			seen[pv.Name] = true
		}
	}
	for _, m := range s.members {
		if m != p.m && !seen[m.name] {
			s.book.violate("", RuleLeftover, "%s does not list %s among its peers after %v of calm", p, m.name, s.timers.calm)
		}
	}
}

func sortedView(p *proc) func(yield func(string, *record.Record) bool) {
	return func(yield func(string, *record.Record) bool) {
		ids := make([]string, 0, len(p.view))
		for id := range p.view {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if !yield(id, p.view[id]) {
				return
			}
		}
	}
}

// vacuous says why the run did no real work, if it did none.
func (s *sim) vacuous() error {
	var why []string
	finished := 0
	for _, n := range s.res.Outcomes {
		finished += n
	}
	if finished == 0 {
		why = append(why, "no task finished")
	}
	if s.res.Stolen == 0 {
		why = append(why, "nothing was stolen")
	}
	if !s.cfg.NoFaults && s.res.Faults.Total() == 0 {
		why = append(why, "no fault was injected")
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrVacuous, strings.Join(why, "; "))
}

// merge adds two reports up.
func merge(a, b invariant.Report) invariant.Report {
	r := invariant.Report{
		Violations: append(a.Violations, b.Violations...),
		Tasks:      a.Tasks + b.Tasks, Lost: a.Lost + b.Lost, Outcomes: map[api.State]int{},
		Runs: a.Runs + b.Runs, Retries: a.Retries + b.Retries, Duplicates: a.Duplicates + b.Duplicates,
		Overlaps: a.Overlaps + b.Overlaps, Observations: a.Observations + b.Observations,
	}
	for _, o := range []map[api.State]int{a.Outcomes, b.Outcomes} {
		for k, v := range o {
			r.Outcomes[k] += v
		}
	}
	return r
}

// sameJSON reports whether a and b are the same JSON value (empty is null).
func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if len(a) == 0 {
		a = json.RawMessage("null")
	}
	if len(b) == 0 {
		b = json.RawMessage("null")
	}
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}
