package sim

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// formed is when the cluster has formed: every member has heard of every other.
// Clients start then.
const formed = 500 * time.Millisecond

// workload is what the clients do and which faults strike, drawn from the seed at
// the start, and what the clients learned since.
type workload struct {
	// planEnd is when the last planned submission, cancel, drain or fault is over.
	planEnd time.Time
	// firstSubmit is when the first submission was planned.
	firstSubmit time.Time

	graphs []string
	// sums are the acknowledged sum tasks by owner process id: a graph may name
	// one by id.
	sums map[string][]string
	// byMember are the acknowledged tasks by the member that owns them.
	byMember [][]string
	// focus: members under a fault recently, until when. Readers favour their tasks.
	focus []focus

	hasGPU, hasMem8 bool
	keys            int
	// settledTo is how many acknowledged tasks settled found settled.
	settledTo int
}

type focus struct {
	member int
	until  time.Time
}

// acked notes tasks p acknowledged.
func (w *workload) acked(p *proc, ids []string, specs []api.Spec) {
	for i, id := range ids {
		w.byMember[p.m.idx] = append(w.byMember[p.m.idx], id)
		if specs[i].Type == "sum" {
			w.sums[p.id] = append(w.sums[p.id], id)
		}
	}
}

// sumOf picks an acknowledged sum task p owns ("" if none).
func (w *workload) sumOf(s *sim, p *proc) string {
	ids := w.sums[p.id]
	if len(ids) == 0 {
		return ""
	}
	return ids[s.rng.IntN(len(ids))]
}

// setup builds the cluster, starts it, and plans the workload and the faults.
func (s *sim) setup() error {
	cfg := s.cfg
	s.timers = newTimers(cfg)
	if !cfg.NoFaults {
		// Small budgets too, so that tasks fail "node lost".
		s.timers.nodeLosses = []int{0, 1, 1, 2, 3, 3, 3}[s.rng.IntN(7)]
		if s.chance(0.2) {
			s.timers.maxQueue = 40 + s.rng.IntN(40) // clients see 429s (but every submission fits)
		}
		if s.chance(0.2) {
			s.timers.maxGrantBytes = 4 + s.rng.IntN(30) // graph tasks with big deps stay home
		}
	}
	s.gossip.init()
	s.work.sums = map[string][]string{}
	if cfg.NoFaults {
		s.net.maxDelay = s.between(time.Millisecond, 5*time.Millisecond)
	} else {
		s.net.drop = s.rng.Float64() * 0.08
		s.net.dup = s.rng.Float64() * 0.04
		s.net.long = s.rng.Float64() * 0.02
		s.net.maxDelay = s.between(time.Millisecond, 20*time.Millisecond)
	}
	n := cfg.Nodes
	if n == 0 {
		n = 3 + s.rng.IntN(5)
	}
	s.work.byMember = make([][]string, n)
	for i := range n {
		m := &member{idx: i, name: fmt.Sprintf("node-%02d", i), slots: cfg.Slots, res: map[string]int64{"mem": 4}}
		if m.slots == 0 {
			m.slots = 1 + s.rng.IntN(3)
		}
		if !cfg.Plain {
			if s.chance(0.4) {
				m.tags = []string{"gpu"}
				s.work.hasGPU = true
			}
			if s.chance(0.5) {
				m.res["mem"] = 8
				s.work.hasMem8 = true
			}
		}
		s.members = append(s.members, m)
		s.res.Slots += m.slots
	}
	s.res.Nodes = n
	s.drawDurable()
	// Long enough for four times the work on every slot, at 300ms a task.
	s.horizon = max(minHorizon, time.Duration(cfg.Tasks)*4*max(cfg.RunTime, 300*time.Millisecond)/time.Duration(s.res.Slots))
	s.tracef("seed %d: %d nodes, network drop %.3f dup %.3f long %.3f delay up to %v", cfg.Seed, n,
		s.net.drop, s.net.dup, s.net.long, s.net.maxDelay)
	for _, m := range s.members {
		if _, err := s.start(m); err != nil {
			return err
		}
	}
	if cfg.Plain {
		s.planPlain()
	} else {
		s.planMixed()
	}
	if !cfg.NoFaults {
		s.planFaults()
	}
	s.planReads()
	s.at(s.work.planEnd, s.settle)
	return nil
}

// drawDurable makes members durable as the Config says, or as the seed draws.
func (s *sim) drawDurable() {
	d := s.cfg.Durable
	if d == DurableDrawn {
		switch r := s.rng.Float64(); {
		case r < 0.5:
			d = DurableNone
		case r < 0.8:
			d = DurableAll
		default:
			d = DurableSome
		}
	}
	switch d {
	case DurableAll:
		for _, m := range s.members {
			m.durable = true
		}
	case DurableSome:
		for _, m := range s.members {
			m.durable = s.chance(0.5)
		}
		// At least one of each.
		s.members[s.rng.IntN(len(s.members))].durable = true
		for !slices.ContainsFunc(s.members, func(m *member) bool { return !m.durable }) {
			s.members[s.rng.IntN(len(s.members))].durable = false
		}
		if !slices.ContainsFunc(s.members, func(m *member) bool { return m.durable }) {
			s.members[0].durable = true
		}
	}
	var names []string
	for _, m := range s.members {
		if m.durable {
			s.res.Durable.Nodes++
			names = append(names, m.name)
		}
	}
	if len(names) > 0 {
		s.tracef("durable nodes: %v", names)
	}
}

// planPlain submits independent tasks that succeed, in batches of up to 1,000, to
// the owners round robin, at the start.
func (s *sim) planPlain() {
	total := s.cfg.Tasks
	if total == 0 {
		total = 1000
	}
	owners := max(1, min(s.cfg.Owners, len(s.members)))
	at := formed
	s.work.firstSubmit = epoch0.Add(at)
	for i := 0; total > 0; i++ {
		k := min(total, 1000)
		total -= k
		specs := make([]api.Spec, k)
		for j := range specs {
			specs[j] = s.workSpec(false)
		}
		sub := &submission{specs: specs, batch: true, to: i % owners}
		s.at(epoch0.Add(at), func() { s.submit(sub) })
		at += time.Millisecond
	}
	s.work.planEnd = epoch0.Add(at + time.Second)
}

// planMixed plans single tasks, batches and graphs over the first five seconds,
// mostly to the first node, and cancels.
func (s *sim) planMixed() {
	total := s.cfg.Tasks
	if total == 0 {
		total = 40 + s.rng.IntN(121)
	}
	target := func() int {
		switch {
		case s.cfg.Owners > 0:
			return s.rng.IntN(min(s.cfg.Owners, len(s.members)))
		case s.chance(0.6):
			return 0
		}
		return -1
	}
	// A burst to the first node at the start, so that its peers steal.
	burst := min(total, 20+s.rng.IntN(20))
	specs := make([]api.Spec, burst)
	for i := range specs {
		specs[i] = s.workSpec(true)
	}
	s.work.firstSubmit = epoch0.Add(formed)
	first := &submission{specs: specs, batch: true, to: 0}
	s.at(s.work.firstSubmit, func() { s.submit(first) })
	end := s.work.firstSubmit
	for left := total - burst; left > 0; {
		sub := &submission{to: target()}
		switch r := s.rng.Float64(); {
		case r < 0.45:
			sp := s.workSpec(true)
			if s.chance(0.1) {
				s.work.keys++
				sp.IdempotencyKey = fmt.Sprintf("key-%d", s.work.keys)
				sub.key = sp.IdempotencyKey
			}
			sub.specs = []api.Spec{sp}
		case r < 0.7:
			k := min(left, 2+s.rng.IntN(11))
			for range k {
				sub.specs = append(sub.specs, s.workSpec(true))
			}
			sub.batch = true
		default:
			sub.specs = s.graphSpecs(min(left, 3+s.rng.IntN(8)))
			sub.batch = true
			sub.extDep = s.chance(0.15)
		}
		left -= len(sub.specs)
		at := epoch0.Add(s.between(formed+50*time.Millisecond, 5*time.Second))
		end = maxTime(end, at)
		s.at(at, func() { s.submit(sub) })
	}
	if !s.cfg.NoFaults {
		for range total / 10 {
			s.at(epoch0.Add(s.between(formed+100*time.Millisecond, 6*time.Second)), func() {
				ids := s.book.acked
				if n := s.anyUp(); n != nil && len(ids) > 0 {
					s.cancel(ids[s.rng.IntN(len(ids))], n)
				}
			})
		}
		if s.chance(0.35) {
			s.at(epoch0.Add(s.between(time.Second, 6*time.Second)), func() {
				if n := s.anyUp(); n != nil && len(s.work.graphs) > 0 {
					s.cancelGraph(s.work.graphs[s.rng.IntN(len(s.work.graphs))], n)
				}
			})
		}
	}
	s.work.planEnd = maxTime(end, epoch0.Add(6*time.Second))
}

// runTime draws a task's nominal run time in milliseconds.
func (s *sim) runTime() int {
	if s.cfg.RunTime > 0 {
		return max(1, int(s.cfg.RunTime/time.Millisecond))
	}
	switch r := s.rng.Float64(); {
	case r < 0.1:
		return 0 // under a millisecond
	case r < 0.85:
		return 5 + s.rng.IntN(146)
	case r < 0.95:
		return 150 + s.rng.IntN(451)
	}
	return 1000 + s.rng.IntN(2001)
}

// workSpec draws a "work" task; mixed ones fail, retry, time out and need things.
func (s *sim) workSpec(mixed bool) api.Spec {
	p := workPayload{V: s.rng.Int64N(1000), MS: s.runTime()}
	sp := api.Spec{Type: "work"}
	if mixed {
		if s.chance(0.3) {
			sp.Priority = 1 + s.rng.IntN(3)
		}
		if s.chance(0.15) {
			p.Fail = 1 + s.rng.IntN(2)
			p.Panic = s.chance(0.3)
		}
		if s.chance(0.3) {
			sp.Retries = 1 + s.rng.IntN(2)
		}
		if s.chance(0.08) {
			ms := float64(p.MS) * (0.5 + s.rng.Float64()*1.5)
			sp.Timeout = api.Duration(max(time.Millisecond, time.Duration(ms*float64(time.Millisecond))))
		}
		var req api.Requires
		if s.work.hasGPU && s.chance(0.15) {
			req.Tags = []string{"gpu"}
		}
		if s.chance(0.15) {
			amount := int64(2)
			if s.work.hasMem8 && s.chance(0.5) {
				amount = 6
			}
			req.Resources = map[string]int64{"mem": amount}
		}
		if !req.Empty() && !s.servable(&req) {
			req.Resources = nil // gpu nodes are all small: ask for the tag only
		}
		if !req.Empty() {
			sp.Requires = &req
		}
	}
	sp.Payload, _ = json.Marshal(p)
	return sp
}

// servable says whether some member can run a task that requires req.
func (s *sim) servable(req *api.Requires) bool {
	for _, m := range s.members {
		ok := true
		for _, t := range req.Tags {
			ok = ok && slices.Contains(m.tags, t)
		}
		for r, n := range req.Resources {
			ok = ok && m.res[r] >= n
		}
		if ok {
			return true
		}
	}
	return false
}

// graphSpecs draws a graph of k sum tasks: each depends on up to three earlier
// ones; some fail, some are all_done clean-up steps.
func (s *sim) graphSpecs(k int) []api.Spec {
	specs := make([]api.Spec, k)
	for i := range specs {
		p := sumPayload{N: s.rng.Int64N(100), MS: 5 + s.rng.IntN(100)}
		sp := api.Spec{Type: "sum", Name: fmt.Sprintf("t%d", i)}
		for j := range i {
			if len(sp.Deps) < 3 && s.chance(2/float64(i+1)) {
				sp.Deps = append(sp.Deps, fmt.Sprintf("t%d", j))
			}
		}
		if s.chance(0.12) {
			p.Fail = 1 + s.rng.IntN(2)
			p.Panic = s.chance(0.2)
			if s.chance(0.4) {
				sp.Retries = 1
			}
		}
		if len(sp.Deps) > 0 && s.chance(0.2) {
			sp.Trigger = api.TriggerAllDone
		}
		if s.chance(0.2) {
			sp.Priority = 1 + s.rng.IntN(2)
		}
		sp.Payload, _ = json.Marshal(p)
		specs[i] = sp
	}
	return specs
}

// planFaults plans one to four faults, a drain now and then.
func (s *sim) planFaults() {
	at := s.between(formed+500*time.Millisecond, formed+2*time.Second)
	k := 1 + s.rng.IntN(4)
	for range k {
		t := epoch0.Add(at)
		var kind faultKind
		r := s.rng.Float64()
		if s.res.Durable.Nodes > 0 && s.chance(0.15) {
			r = 0 // more crashes where nodes come back from their disks
		}
		switch {
		case r < 0.22:
			kind = faultCrash
		case r < 0.35:
			kind = faultFalseDeath
		case r < 0.55:
			kind = faultOneSided
		case r < 0.67:
			kind = faultFlap
		case r < 0.83:
			kind = faultPartition
		case r < 0.95:
			kind = faultOneWay
		default:
			kind = faultStop
		}
		subject := 0
		if s.chance(0.5) {
			subject = s.rng.IntN(len(s.members))
		}
		s.at(t, func() { s.fault(kind, subject) })
		at += s.between(300*time.Millisecond, 2500*time.Millisecond)
	}
	end := epoch0.Add(at + 5*time.Second)
	if s.chance(0.35) {
		t := epoch0.Add(s.between(time.Second, 5*time.Second))
		s.at(t, func() {
			ups := s.upProcs()
			if len(ups) >= 3 {
				s.drain(ups[s.rng.IntN(len(ups))])
			}
		})
	}
	s.work.planEnd = maxTime(s.work.planEnd, end)
}

type faultKind uint8

const (
	faultCrash faultKind = iota
	faultFalseDeath
	faultOneSided
	faultFlap
	faultPartition
	faultOneWay
	faultStop
)

// fault strikes: subject is the member at its centre.
func (s *sim) fault(kind faultKind, subject int) {
	m := s.members[subject]
	p := m.proc
	until := s.now.Add(s.timers.maxSuspicion + 3*time.Second)
	s.work.focus = append(s.work.focus, focus{member: subject, until: until})
	switch kind {
	case faultCrash:
		if !p.up() || len(s.upProcs()) < 3 {
			return
		}
		s.crashFault(p)
	case faultStop:
		if !p.up() || len(s.upProcs()) < 3 {
			return
		}
		// A graceful shutdown (SIGTERM), not a drain: its queue goes with it.
		s.res.Faults.Stops++
		grace := s.between(0, 2*time.Second)
		s.tracef("%s: STOP (grace %v)", p, grace)
		s.shutdown(p, grace)
	case faultFalseDeath, faultOneSided:
		if p == nil || p.state == procDead {
			return
		}
		obs := s.others(p)
		if kind == faultOneSided && len(obs) > 1 {
			s.rng.Shuffle(len(obs), func(i, j int) { obs[i], obs[j] = obs[j], obs[i] })
			obs = obs[:1+s.rng.IntN(len(obs)-1)]
			slices.SortFunc(obs, func(a, b *proc) int { return a.m.idx - b.m.idx })
			s.res.Faults.OneSided++
		} else {
			s.res.Faults.FalseDeaths++
		}
		var names []string
		for _, q := range obs {
			d := s.between(100*time.Millisecond, 800*time.Millisecond)
			s.gossip.suspect(s, q, p, d, s.between(200*time.Millisecond, s.timers.maxSuspicion))
			names = append(names, q.m.name)
		}
		s.tracef("%s: FALSE DEATH as seen by %v", p, names)
	case faultFlap:
		if p == nil || p.state == procDead {
			return
		}
		// Some peers (the ones running its tasks, say) declare it dead and back,
		// three to five times.
		obs := s.others(p)
		s.rng.Shuffle(len(obs), func(i, j int) { obs[i], obs[j] = obs[j], obs[i] })
		obs = obs[:1+s.rng.IntN(len(obs))]
		slices.SortFunc(obs, func(a, b *proc) int { return a.m.idx - b.m.idx })
		s.res.Faults.Flaps++
		k := 3 + s.rng.IntN(3)
		var names []string
		for _, q := range obs {
			d := s.between(50*time.Millisecond, 300*time.Millisecond)
			for range k {
				dur := s.between(150*time.Millisecond, 500*time.Millisecond)
				s.gossip.suspect(s, q, p, d, dur)
				d += dur + s.between(100*time.Millisecond, 400*time.Millisecond)
			}
			names = append(names, q.m.name)
		}
		s.tracef("%s: FLAPS %d times as seen by %v", p, k, names)
	case faultPartition, faultOneWay:
		a := make([]bool, len(s.members))
		b := make([]bool, len(s.members))
		a[subject] = true
		na, nb := 1, 0
		for _, o := range s.members {
			if o.idx == subject {
				continue
			}
			if s.chance(0.3) {
				a[o.idx] = true
				na++
			} else {
				b[o.idx] = true
				nb++
			}
		}
		if nb == 0 { // the subject's side took everyone: move one across
			o := s.members[(subject+1+s.rng.IntN(len(s.members)-1))%len(s.members)]
			a[o.idx], b[o.idx] = false, true
		}
		oneWay := kind == faultOneWay
		dur := s.between(300*time.Millisecond, 2*time.Second)
		s.net.parts = append(s.net.parts, &partition{a: a, b: b, oneWay: oneWay, until: s.now.Add(dur)})
		if oneWay {
			s.res.Faults.OneWay++
		} else {
			s.res.Faults.Partitions++
		}
		s.tracef("net: PARTITION %v | %v one-way %v for %v", memberNames(s, a), memberNames(s, b), oneWay, dur)
		detect := !oneWay || s.chance(0.5) // indirect probes may hide a one-way cut
		if !detect {
			return
		}
		for _, x := range s.members {
			for _, y := range s.members {
				px, py := x.proc, y.proc
				if !a[x.idx] || !b[y.idx] || px == nil || py == nil || px.state == procDead || py.state == procDead {
					continue
				}
				if d := s.between(300*time.Millisecond, 900*time.Millisecond); d < dur {
					s.gossip.suspect(s, px, py, d, dur-d+s.between(50*time.Millisecond, 500*time.Millisecond))
				}
				if !oneWay {
					if d := s.between(300*time.Millisecond, 900*time.Millisecond); d < dur {
						s.gossip.suspect(s, py, px, d, dur-d+s.between(50*time.Millisecond, 500*time.Millisecond))
					}
				}
			}
		}
	}
}

func memberNames(s *sim, in []bool) []string {
	var out []string
	for i, ok := range in {
		if ok {
			out = append(out, s.members[i].name)
		}
	}
	return out
}

// planReads has clients read tasks through random nodes while the workload runs,
// favouring tasks whose owners are under a fault.
func (s *sim) planReads() {
	var read func()
	read = func() {
		if s.phase != phaseRun {
			return
		}
		if id := s.pickTask(); id != "" {
			if n := s.anyUp(); n != nil {
				s.read(id, n)
			}
		}
		s.after(s.between(5*time.Millisecond, 50*time.Millisecond), read)
	}
	s.at(s.work.firstSubmit.Add(time.Millisecond), read)
}

// pickTask picks an acknowledged task to read: half the time one whose owner is
// under a fault.
func (s *sim) pickTask() string {
	w := &s.work
	w.focus = slices.DeleteFunc(w.focus, func(f focus) bool { return !s.now.Before(f.until) })
	if len(w.focus) > 0 && s.chance(0.5) {
		f := w.focus[s.rng.IntN(len(w.focus))]
		if ids := w.byMember[f.member]; len(ids) > 0 {
			return ids[s.rng.IntN(len(ids))]
		}
	}
	if ids := s.book.acked; len(ids) > 0 {
		return ids[s.rng.IntN(len(ids))]
	}
	return ""
}

// settle waits until every member is back and every task whose owner lives is
// finished, then calms the network for the rest of the run and reads every task a
// last time.
func (s *sim) settle() {
	if !s.settled() {
		s.after(100*time.Millisecond, s.settle)
		return
	}
	s.phase = phaseCalm
	s.calmEnd = s.now.Add(s.timers.calm)
	s.tracef("settled: calm until %s", fmtDur(s.calmEnd.Sub(epoch0)))
	s.after(time.Second, s.finalReads)
	s.at(s.calmEnd, func() { s.phase = phaseOver })
}

// settled says whether the run may calm down: members all back, tasks whose owners
// live all finished, no drain under way.
func (s *sim) settled() bool {
	for _, m := range s.members {
		if !m.proc.up() {
			return false
		}
	}
	// Tasks stay finished (the view checks it), so the scan resumes where it
	// stopped last time.
	w := &s.work
	for ; w.settledTo < len(s.book.acked); w.settledTo++ {
		id := s.book.acked[w.settledTo]
		t := s.book.tasks[id]
		o := s.ownerNow(t)
		if o.state == procDead {
			continue // lost with its in-memory owner (a durable one is back: all are up)
		}
		if rec := o.view[id]; rec == nil || !rec.State.Terminal() {
			return false
		}
	}
	return true
}

// unsettled says what keeps the run from settling, for the horizon's violation.
func (s *sim) unsettled() string {
	var out []string
	for _, m := range s.members {
		if !m.proc.up() {
			out = append(out, m.name+" is not up")
		}
	}
	for _, id := range s.book.acked {
		t := s.book.tasks[id]
		o := s.ownerNow(t)
		if o.state == procDead && !o.m.durable {
			continue
		}
		if rec := o.view[id]; rec == nil || !rec.State.Terminal() {
			st := "unknown"
			if rec != nil {
				st = fmt.Sprintf("%s at epoch %d on %q (exec %q, waiting %q)", rec.State, rec.Epoch, rec.Node, rec.Exec, rec.Waiting)
			}
			out = append(out, fmt.Sprintf("task %s of %s is %s", id, o, st))
		}
		if len(out) >= 5 {
			out = append(out, "…")
			break
		}
	}
	return fmt.Sprint(out)
}

// finalReads reads every task (at most a few thousand) through two nodes.
func (s *sim) finalReads() {
	ids := s.book.acked
	if len(ids) > 3000 {
		ids = make([]string, 3000)
		for i := range ids {
			ids[i] = s.book.acked[s.rng.IntN(len(s.book.acked))]
		}
	}
	for _, id := range ids {
		for range 2 {
			if n := s.anyUp(); n != nil {
				s.read(id, n)
			}
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
