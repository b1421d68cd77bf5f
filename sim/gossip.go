package sim

import (
	"fmt"
	"reflect"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/gossip"
)

// membership is the simulated gossip layer: the failure detector that tells each
// process who joined, who is dead (truly, falsely, one-sidedly, late) and who left,
// and the load reports it spreads.
//
// Events about one member reach one observer in the order they were decided, as
// memberlist's do; a live member declared dead always comes back within
// timers.maxSuspicion.
type membership struct {
	// last is when the last event about a member (by name) was scheduled for an
	// observer process: later ones come after it.
	last map[noticeKey]time.Time
	// pendingGone holds the death notices not yet delivered, so that a restart can
	// overtake some.
	pendingGone map[noticeKey][]*notice
	// loads holds each member's latest load publications, newest first.
	loads map[string]*loadPub
}

// noticeKey names the events about one member (by name) for one observer.
type noticeKey struct {
	obs     *proc
	subject string
}

// notice is one membership event on its way to one observer.
type notice struct {
	cancelled bool
}

// loadPub is a load report as a process published it.
type loadPub struct {
	p   *proc
	raw []byte // as gossip carries it (trimmed to its limit)
	at  time.Time
	// visible is when gossip has spread it to every member.
	visible time.Time
	prev    *loadPub
}

func (g *membership) init() {
	g.last = map[noticeKey]time.Time{}
	g.pendingGone = map[noticeKey][]*notice{}
	g.loads = map[string]*loadPub{}
}

// tell schedules a membership input about subject for observer, d from now but not
// before the events about subject already scheduled for it.
func (g *membership) tell(s *sim, obs, subject *proc, in engine.Input, d time.Duration) {
	key := noticeKey{obs, subject.m.name}
	t := s.now.Add(d)
	if l := g.last[key]; t.Before(l) {
		t = l
	}
	g.last[key] = t
	n := &notice{}
	_, gone := in.(engine.MemberGone)
	if gone {
		g.pendingGone[key] = append(g.pendingGone[key], n)
	}
	s.at(t, func() {
		if gone {
			if q := g.pendingGone[key]; len(q) > 0 && q[0] == n {
				g.pendingGone[key] = q[1:]
			}
		}
		if n.cancelled || obs.state == procDead {
			return
		}
		goneAt := obs.owned.goneAt
		switch in := in.(type) {
		case engine.MemberUp:
			if subject.state == procDead {
				return // a stale "alive": the process died meanwhile
			}
			// Replaced by a restart: under a new id, or a durable one under its
			// own id with a higher incarnation.
			if old := obs.told[in.Name]; old != nil && old != subject {
				goneAt[old.id] = append(goneAt[old.id], s.now)
			}
			obs.told[in.Name] = subject
		case engine.MemberGone:
			// The engine takes it for the process it last heard of under the name.
			if old := obs.told[in.Name]; old != nil && old.id != subject.id {
				goneAt[old.id] = append(goneAt[old.id], s.now)
			}
			goneAt[subject.id] = append(goneAt[subject.id], s.now)
		}
		obs.input(in)
	})
}

// metaOf is p's metadata as gossip carries it: a copy, decoded.
func metaOf(p *proc) engine.Meta {
	b, err := msgpack.Marshal(&p.meta)
	if err != nil {
		panic(fmt.Sprintf("sim: encoding meta: %v", err))
	}
	var m engine.Meta
	if err := msgpack.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("sim: decoding meta: %v", err))
	}
	return m
}

func upOf(p *proc) engine.MemberUp {
	return engine.MemberUp{Name: p.m.name, State: "alive", Alive: true, Meta: metaOf(p)}
}

// others lists the processes of the other members that are not dead, by member.
func (s *sim) others(p *proc) []*proc {
	var out []*proc
	for _, m := range s.members {
		if q := m.proc; q != nil && q != p && q.state != procDead {
			out = append(out, q)
		}
	}
	return out
}

// join announces a new process to the others and the others to it. A restart may
// overtake a death notice of the member's previous process that has not arrived
// yet: the observer then learns of the restart first, as it would from memberlist.
func (g *membership) join(s *sim, p *proc) {
	for _, q := range s.others(p) {
		if s.faulty() {
			for _, n := range g.pendingGone[noticeKey{q, p.m.name}] {
				if s.chance(0.5) {
					n.cancelled = true
				}
			}
		}
		g.tell(s, q, p, upOf(p), s.between(5*time.Millisecond, 300*time.Millisecond))
		g.tell(s, p, q, upOf(q), s.between(5*time.Millisecond, 100*time.Millisecond))
	}
}

// crashed tells every other process that p died, each after its own detection
// delay; some notice only seconds later.
func (g *membership) crashed(s *sim, p *proc) {
	late := false
	for _, q := range s.others(p) {
		d := s.between(300*time.Millisecond, 1500*time.Millisecond)
		if s.chance(0.25) {
			d = s.between(1500*time.Millisecond, 4*time.Second)
			late = true
		}
		g.tell(s, q, p, engine.MemberGone{Name: p.m.name, State: "dead", Meta: metaOf(p)}, d)
	}
	if late {
		s.res.Faults.Late++
	}
}

// left tells every other process that p left.
func (g *membership) left(s *sim, p *proc) {
	for _, q := range s.others(p) {
		g.tell(s, q, p, engine.MemberGone{Name: p.m.name, State: "left", Left: true, Meta: metaOf(p)},
			s.between(5*time.Millisecond, 200*time.Millisecond))
	}
}

// suspect has observer declare the live process p dead after d, and alive again
// after d+dur.
func (g *membership) suspect(s *sim, obs, p *proc, d, dur time.Duration) {
	g.tell(s, obs, p, engine.MemberGone{Name: p.m.name, State: "dead", Meta: metaOf(p)}, d)
	g.tell(s, obs, p, upOf(p), d+dur)
}

// publish takes p's new load report for gossip to spread.
func (g *membership) publish(s *sim, p *proc, l *engine.Load) {
	if last := p.lastLoad; last != nil {
		a, b := *last, *l
		a.Ver, b.Ver = 0, 0
		if reflect.DeepEqual(a, b) {
			s.book.violate("", RuleLoad, "%s published load version %d, unchanged since version %d", p, l.Ver, last.Ver)
		}
	}
	c := *l
	p.lastLoad = &c
	raw, _, err := engine.EncodeLoad(l, gossip.MaxLoadSize)
	if err != nil {
		panic(fmt.Sprintf("sim: encoding a load: %v", err))
	}
	pub := &loadPub{p: p, raw: raw, at: s.now, visible: s.now.Add(s.between(2*time.Millisecond, 60*time.Millisecond)),
		prev: g.loads[p.m.name]}
	if pp := pub.prev; pp != nil && pp.prev != nil {
		pp.prev.prev = nil // three kept: enough for every observer to find the one it can see
	}
	g.loads[p.m.name] = pub
}

// startPolling has p read its peers' loads every load interval, as the node does.
func (g *membership) startPolling(s *sim, p *proc) {
	every := s.timers.loadInterval
	var poll func()
	poll = func() {
		if p.state == procDead {
			return
		}
		g.poll(s, p)
		s.after(every, poll)
	}
	s.after(s.between(0, every), poll)
}

// poll passes p the load reports gossip holds for its peers that are new to it:
// changed ones, and unchanged ones re-sent (gossip re-sends an unchanged report
// every third of its time to live, so that a live member's never goes stale).
func (g *membership) poll(s *sim, p *proc) {
	ttl := s.timers.loadTTL
	resend := ttl / 3
	for _, m := range s.members {
		if m == p.m {
			continue
		}
		pub := g.loads[m.name]
		for pub != nil && pub.visible.After(s.now) {
			pub = pub.prev
		}
		if pub == nil || pub.p.state == procDead || s.net.cut(s.now, m, p.m) {
			continue
		}
		// Its latest copy: the publication, or the last periodic re-send of it.
		produced := pub.at.Add(resend * (s.now.Sub(pub.visible) / resend))
		age := s.now.Sub(produced)
		if age >= ttl {
			continue
		}
		if last := p.loadSeen[m.name]; last != nil && last.p == pub.p && string(last.raw) == string(pub.raw) && !produced.After(last.at) {
			continue
		}
		p.loadSeen[m.name] = &loadPub{p: pub.p, raw: pub.raw, at: produced}
		var l engine.Load
		if err := msgpack.Unmarshal(pub.raw, &l); err != nil {
			panic(fmt.Sprintf("sim: decoding a load: %v", err))
		}
		p.input(engine.PeerLoad{Name: m.name, Load: l, Age: age})
	}
}
