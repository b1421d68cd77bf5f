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
//   - A task whose in-memory owner crashed or left may be lost with the owner: what
//     clients saw while the owner lived must still agree, and the terminal "owner
//     lost" answer may come only once the owner is really gone (not while it is
//     merely suspected). Such tasks are counted (Result.OwnerLost), not failed.
//   - A durable owner loses nothing: it always comes back (from its disk, under its
//     id) before the run ends, and every task it acknowledged ends in exactly one
//     outcome, as if it had lived; "owner lost" is never an answer for its tasks.
//     Every record it published is on its disk, and its disk and its read view
//     agree at the end.
//   - A task runs more than once (beyond its retries) only if its owner saw a node
//     it was placed on die, leave or stop, or its durable owner itself died after
//     acknowledging it; otherwise every run of it is the one.
//   - A node loss is booked on a task only for a death (or a stop) its owner saw of
//     a node it was placed on, for a death of its durable owner, or for a node it
//     ran on that died while its durable owner was down: a one-sided suspicion of
//     the owner costs nothing.
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
		o := s.ownerNow(t)
		rec := o.view[id]
		if rec == nil {
			if o.state != procDead {
				b.violate(id, RuleView, "%s does not hold task %s at the end, which %s acknowledged", o, id, t.owner)
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
		o := s.ownerNow(t)
		if o.state == procDead && !rec.State.Terminal() {
			// Its record went with its owner: not checked as an outcome. (A durable
			// owner is down at the end only in a run that did not settle, which
			// fails already.)
			s.res.OwnerLost++
		} else {
			g.Acked = append(g.Acked, id)
		}
		if t.owner.m.durable {
			s.res.Durable.Tasks++
			if rec.State.Terminal() && s.recovered(t, rec) {
				s.res.Durable.Recovered++
			}
		}
		if rec.State.Terminal() && rec.Finished.After(lastFinish) {
			lastFinish = rec.Finished
		}
		if rec.NodeLosses > explained[id] {
			b.violate(id, RuleNodeLoss, "task %s booked %d node losses (%s, error %q), but its owner %s saw only %d deaths or stops of the nodes it was placed on (%v)%s",
				id, rec.NodeLosses, rec.State, rec.Error, t.owner, explained[id], s.placedOn(t), s.ownerDeaths(t))
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
			t := b.tasks[ob.ID]
			if t != nil && t.owner.m.durable {
				// A durable owner comes back with its tasks: never lost.
				b.violate(ob.ID, RuleOwnerLost, "%s answered at %s that task %s failed: owner lost, but its owner %s is durable and came back with it%s",
					ob.By, fmtDur(info.decided.Sub(epoch0)), ob.ID, t.owner.m.name, s.ownerDeaths(t))
				continue
			}
			// Allowed once the owner is really gone; never while it runs.
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
	for _, p := range s.all {
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
// restarts its gossip told it (any of its processes, for a durable owner) of the
// nodes t was placed on, since it was placed there, and their stops; for a durable
// owner, its own deaths since it acknowledged t (a run it had died with it), and the
// deaths of the nodes t was placed on that a restarted process of it never saw.
func (s *sim) explained(t *task) int {
	o := s.ownerNow(t)
	n := 0
	for _, pl := range o.owned.placed[t.id] {
		for _, at := range o.owned.goneAt[pl.exec] {
			if !at.Before(pl.at) {
				n++
			}
		}
		restarted := false
		for q := o; q != nil && q.gen > 1; q = q.before {
			restarted = restarted || !q.started.Before(pl.at)
		}
		for x := s.procs[pl.exec]; x != nil; x = x.before {
			for _, at := range x.stoppedRuns {
				if !at.Before(pl.at) {
					n++
				}
			}
			if restarted && x.state == procDead && !x.died.Before(pl.at) {
				n++
			}
		}
	}
	if o.m.durable {
		for q := o; q != nil; q = q.before {
			if q.state == procDead && !q.died.Before(t.acked) {
				n++
			}
		}
	}
	return n
}

// ownerNow is the process that holds task t now: its owner, or for a durable owner
// the latest process of its id.
func (s *sim) ownerNow(t *task) *proc {
	if t.owner.m.durable {
		return s.procs[t.owner.id]
	}
	return t.owner
}

// recovered says whether durable task t, finished as rec, was unfinished when a
// process of its owner died, and finished by a later one.
func (s *sim) recovered(t *task, rec *record.Record) bool {
	for q := s.ownerNow(t).before; q != nil; q = q.before {
		if q.state == procDead && q.died.After(t.acked) && rec.Finished.After(q.died) {
			return true
		}
	}
	return false
}

// ownerDeaths describes the deaths of durable task t's owner since it acknowledged
// t, for messages.
func (s *sim) ownerDeaths(t *task) string {
	if !t.owner.m.durable {
		return ""
	}
	var out []string
	for q := s.ownerNow(t); q != nil; q = q.before {
		if q.state == procDead && !q.died.Before(t.acked) {
			back := "not back"
			if q.next != nil {
				back = "back at " + fmtDur(q.next.started.Sub(epoch0))
			}
			out = append(out, fmt.Sprintf("%s %s, %s", q, q.fate(), back))
		}
	}
	if len(out) == 0 {
		return "; its owner did not die since"
	}
	slices.Reverse(out)
	return "; its owner: " + strings.Join(out, "; ")
}

func (s *sim) placedOn(t *task) []string {
	var out []string
	for _, pl := range s.ownerNow(t).owned.placed[t.id] {
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
		if p.writes.orphan != "" {
			b.violate("", RuleDisk, "%s wrote %s, an operation on a record it never created", p, p.writes.orphan)
		}
		if len(p.writes.recs) != len(p.view) {
			b.violate("", RuleDisk, "%s's writes describe %d records, its read view holds %d", p, len(p.writes.recs), len(p.view))
		}
		for id, rec := range sortedView(p) {
			if rec.Version != p.viewVer[id] {
				b.violate(id, RuleView, "%s changed record %s after handing it out (version %d, handed out %d)", p, id, rec.Version, p.viewVer[id])
			}
			if d := p.writes.recs[id]; !reflect.DeepEqual(d, rec) {
				b.violate(id, RuleDisk, "%s's writes describe task %s as %+v, its read view as %+v", p, id, d, rec)
			}
		}
		if m.durable {
			s.checkDisk(p)
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

// checkDisk checks that durable process p's disk holds what its read view shows:
// the same records, at the same versions, and a State with p's identity and a
// sequence no id p handed out is above.
func (s *sim) checkDisk(p *proc) {
	b := &s.book
	d := &p.m.disk
	if d.bad != "" {
		b.violate("", RuleDisk, "%s could not encode a batch for its disk: %s", p, d.bad)
		return
	}
	recs, err := d.load()
	if err != nil {
		b.violate("", RuleDisk, "%s's disk does not read back: %v", p, err)
		return
	}
	if len(recs) != len(p.view) {
		b.violate("", RuleDisk, "%s's disk holds %d records, its read view %d", p, len(recs), len(p.view))
	}
	var maxSeq uint64
	for _, r := range recs {
		maxSeq = max(maxSeq, r.Seq)
		if v := p.view[r.ID]; !sameRecord(r, v) {
			got := "nothing"
			if v != nil {
				got = fmt.Sprintf("v%d %s", v.Version, v.State)
			}
			b.violate(r.ID, RuleDisk, "%s's disk holds task %s at v%d %s, its read view %s", p, r.ID, r.Version, r.State, got)
		}
	}
	if st := d.state; st.NodeID != p.id || st.Inc != p.inc || st.Seq < maxSeq || st.Seq < p.eng.Seq() {
		b.violate("", RuleDisk, "%s's disk holds the state %+v; want id %s, incarnation %d, sequence at least %d (records) and %d (engine)",
			p, st, p.id, p.inc, maxSeq, p.eng.Seq())
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
