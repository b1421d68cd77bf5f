package sim

import (
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/engine"
)

// network carries peer messages between processes, encoded as the wire encodes them
// (msgpack), with a delay drawn for each, and while the run's faults last it drops,
// duplicates and holds some back for long (which reorders them), and cuts the links
// that partitions cut. The real transport is a TCP connection per pair, in order,
// that can lose what it holds when it breaks; the engine must not count on either.
type network struct {
	drop, dup, long float64
	maxDelay        time.Duration
	parts           []*partition
}

// partition cuts the links from the members in a to those in b, and back unless
// oneWay, until it heals.
type partition struct {
	a, b   []bool // by member index
	oneWay bool
	until  time.Time
}

// cut says whether messages from member from to member to are lost now.
func (n *network) cut(now time.Time, from, to *member) bool {
	for _, pt := range n.parts {
		if !now.Before(pt.until) {
			continue
		}
		if pt.a[from.idx] && pt.b[to.idx] || !pt.oneWay && pt.b[from.idx] && pt.a[to.idx] {
			return true
		}
	}
	return false
}

// faulty says whether the network misbehaves now (not in the calm at the end).
func (s *sim) faulty() bool { return s.phase == phaseRun && !s.cfg.NoFaults }

// send sends env from p.
func (n *network) send(s *sim, from *proc, env engine.Envelope) {
	st := &s.res.Network
	st.Sent++
	if g := env.Msg.Grant; g != nil {
		n := 0
		for _, t := range g.Tasks {
			for k, v := range t.Deps {
				n += len(k) + len(v)
			}
		}
		if n > s.timers.maxGrantBytes {
			s.book.violate("", RuleGrant, "%s granted %d tasks to %s with %d bytes of dep results, over the cap of %d",
				from, len(g.Tasks), env.To, n, s.timers.maxGrantBytes)
		}
	}
	b, err := msgpack.Marshal(env.Msg)
	if err != nil {
		panic(fmt.Sprintf("sim: encoding a peer message: %v", err))
	}
	if dest := s.procs[env.To]; dest != nil && n.cut(s.now, from.m, dest.m) {
		st.Blocked++
		if s.tracing() {
			s.tracef("net: %s -> %s cut by a partition: %s", from, dest, describeMsg(env.Msg))
		}
		return
	}
	if s.faulty() && s.chance(n.drop) {
		st.Dropped++
		if s.tracing() {
			s.tracef("net: %s -> %s dropped: %s", from, env.To, describeMsg(env.Msg))
		}
		return
	}
	copies := 1
	if s.faulty() && s.chance(n.dup) {
		copies = 2
		st.Duplicated++
	}
	for range copies {
		d := s.between(100*time.Microsecond, n.maxDelay)
		if s.faulty() && s.chance(n.long) {
			d = s.between(100*time.Millisecond, 1500*time.Millisecond)
		}
		s.after(d, func() { n.deliver(s, from, env, b) })
	}
}

// deliver hands a message to its destination, if it is still there and the link
// holds.
func (n *network) deliver(s *sim, from *proc, env engine.Envelope, b []byte) {
	dest := s.procs[env.To]
	if dest == nil || dest.state == procDead || dest.meta.RPC != env.Addr {
		if s.tracing() {
			s.tracef("net: %s -> %s lost: the destination is down", from, env.To)
		}
		return
	}
	if n.cut(s.now, from.m, dest.m) {
		s.res.Network.Blocked++
		if s.tracing() {
			s.tracef("net: %s -> %s cut by a partition in flight", from, dest)
		}
		return
	}
	var m engine.Message
	if err := msgpack.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("sim: decoding a peer message: %v", err))
	}
	s.res.Network.Delivered++
	dest.input(engine.Receive{From: from.id, Msg: &m})
}
