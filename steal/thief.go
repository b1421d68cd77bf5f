package steal

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Local is what a thief needs to know about its own node when it decides
// whether to steal.
type Local struct {
	// FreeSlots is how many worker slots are idle.
	FreeSlots int
	// QueueLen is how many tasks in the local ready queue this node can run
	// itself (stolen ones included; tasks only a peer can serve do not count).
	QueueLen int
	// Cap is what this node can run.
	Cap Capability
}

// ThiefStats counts what a thief has done, for metrics.
type ThiefStats struct {
	Requests   uint64 // requests sent
	Grants     uint64 // grants accepted
	Tasks      uint64 // tasks received in accepted grants
	Empties    uint64 // empty answers
	Timeouts   uint64 // requests given up for lack of an answer
	Refusals   uint64 // grants refused (late, stale, or not ours)
	Unreleased int    // accepted grants the victim has not released yet
}

// Thief is the stealing side of a node: it decides when to steal and from
// whom, and answers grants. It is not safe for concurrent use; the node calls
// it from one goroutine or under one lock.
type Thief struct {
	self NodeID
	inc  uint64
	cfg  Config
	rng  *rand.Rand

	// lastReq is the highest request id issued. Every id up to it that is not
	// in accepted is refused, forever.
	lastReq  uint64
	inflight *inflight
	// failures counts empty answers and timeouts since the last steal.
	failures  int
	notBefore time.Time
	avoid     map[NodeID]avoidance
	accepted  map[uint64]*acceptance
	stats     ThiefStats
}

// inflight is the one outstanding request.
type inflight struct {
	req      StealRequest
	version  uint64 // the victim's load version it was chosen on
	deadline time.Time
}

// avoidance keeps a peer that answered empty, or did not answer, out of the
// draw while its load report is the one that drew us there.
type avoidance struct {
	version uint64
	until   time.Time
}

// acceptance is an accepted grant the victim has not released yet.
type acceptance struct {
	victim    NodeID
	victimInc uint64
	resendAt  time.Time
	quiet     bool // the victim was declared dead: no periodic resends
	// tasks identify the grant: a copy must carry the same ones. A victim
	// never grants one request id twice, but if it did (say it lost its
	// memory of the id), acking the second grant would hand over tasks the
	// thief never takes.
	tasks []taskEpoch
}

type taskEpoch struct {
	id    string
	epoch uint64
}

// same reports whether tasks are the ones accepted.
func (a *acceptance) same(tasks []GrantedTask) bool {
	return slices.EqualFunc(a.tasks, tasks, func(x taskEpoch, y GrantedTask) bool {
		return x.id == y.ID && x.epoch == y.Epoch
	})
}

// NewThief returns the thief of node self in its incarnation inc (see the
// messages for what an incarnation is). rng supplies all its randomness; the
// caller seeds it.
func NewThief(self NodeID, inc uint64, cfg Config, rng *rand.Rand) (*Thief, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if self == "" {
		return nil, fmt.Errorf("%w: empty node id", ErrInvalidConfig)
	}
	if rng == nil {
		return nil, fmt.Errorf("%w: nil rand", ErrInvalidConfig)
	}
	return &Thief{
		self:     self,
		inc:      inc,
		cfg:      cfg,
		rng:      rng,
		avoid:    make(map[NodeID]avoidance),
		accepted: make(map[uint64]*acceptance),
	}, nil
}

// Next decides whether to steal now and from whom. It steals only when the
// node has a free slot and nothing runnable queued, no request is in flight,
// the backoff has passed, and some peer reports a backlog it can serve. Among
// those peers (leaving out one that answered empty or timed out while its
// load report is unchanged) it keeps the ones with the highest servable top
// priority, so the most urgent work in the cluster goes first, then applies
// power of two choices: two of them drawn at random, the one with the larger
// servable backlog wins, the first drawn on a tie. It returns the request to
// send to req.Victim, for at most local.FreeSlots + Config.Buffer tasks.
func (t *Thief) Next(now time.Time, local Local, peers []PeerLoad) (req StealRequest, ok bool) {
	if t.inflight != nil || now.Before(t.notBefore) || local.FreeSlots <= 0 || local.QueueLen > 0 {
		return StealRequest{}, false
	}
	skip := func(p PeerLoad) bool {
		a, ok := t.avoid[p.ID]
		if !ok {
			return false
		}
		if a.version == p.Version && now.Before(a.until) {
			return true
		}
		delete(t.avoid, p.ID)
		return false
	}
	e, ok := pickVictim(t.rng, local.Cap, t.self, peers, skip)
	if !ok {
		return StealRequest{}, false
	}
	t.lastReq++
	req = StealRequest{
		Thief:    t.self,
		ThiefInc: t.inc,
		Victim:   e.load.ID,
		ReqID:    t.lastReq,
		Max:      local.FreeSlots + t.cfg.Buffer,
		Cap:      local.Cap,
	}
	t.inflight = &inflight{req: req, version: e.load.Version, deadline: now.Add(t.cfg.Timeout)}
	t.stats.Requests++
	return req, true
}

// InFlight returns the outstanding request, if any.
func (t *Thief) InFlight() (StealRequest, bool) {
	if t.inflight == nil {
		return StealRequest{}, false
	}
	return t.inflight.req, true
}

// OnGrant answers a grant; the node sends the reply to g.Victim. The first
// copy of a grant for the request in flight is accepted: tasks are the tasks
// to put in the local ready queue, with their epochs. Further copies of an
// accepted grant (same victim incarnation, same tasks and epochs) are
// acknowledged again with no tasks. Everything else is refused: grants for
// requests given up or never made, for another incarnation of this node, from
// another victim than the one asked, or differing from the one accepted.
func (t *Thief) OnGrant(now time.Time, g Grant) (reply Reply, tasks []GrantedTask) {
	reply = Reply{Thief: g.Thief, ThiefInc: g.ThiefInc, Victim: g.Victim, VictimInc: g.VictimInc, ReqID: g.ReqID}
	if g.Thief != t.self || g.ThiefInc != t.inc {
		t.stats.Refusals++
		return reply, nil
	}
	t.dropSuperseded(g.Victim, g.VictimInc)
	if a, ok := t.accepted[g.ReqID]; ok {
		if a.victim == g.Victim && a.victimInc == g.VictimInc && a.same(g.Tasks) {
			a.quiet = false // the victim is evidently up
			a.resendAt = now.Add(t.cfg.ResendInterval)
			reply.Accept = true
			return reply, nil
		}
		t.stats.Refusals++
		return reply, nil
	}
	f := t.inflight
	if f == nil || f.req.ReqID != g.ReqID || f.req.Victim != g.Victim {
		t.stats.Refusals++
		return reply, nil
	}
	t.inflight = nil
	t.failures = 0
	t.notBefore = time.Time{}
	delete(t.avoid, g.Victim)
	a := &acceptance{victim: g.Victim, victimInc: g.VictimInc, resendAt: now.Add(t.cfg.ResendInterval)}
	for _, gt := range g.Tasks {
		a.tasks = append(a.tasks, taskEpoch{gt.ID, gt.Epoch})
	}
	t.accepted[g.ReqID] = a
	t.stats.Grants++
	t.stats.Tasks += uint64(len(g.Tasks))
	reply.Accept = true
	return reply, slices.Clone(g.Tasks)
}

// dropSuperseded forgets accepted grants from older incarnations of victim:
// those processes are gone and will never ask again.
func (t *Thief) dropSuperseded(victim NodeID, inc uint64) {
	for id, a := range t.accepted {
		if a.victim == victim && a.victimInc < inc {
			delete(t.accepted, id)
		}
	}
}

// OnEmpty takes an empty answer. If it answers the request in flight, the
// thief backs off and avoids that victim until its load report changes.
func (t *Thief) OnEmpty(now time.Time, e Empty) {
	f := t.inflight
	if f == nil || e.Thief != t.self || e.ThiefInc != t.inc || e.ReqID != f.req.ReqID || e.Victim != f.req.Victim {
		return
	}
	t.stats.Empties++
	t.fail(now)
}

// fail ends the request in flight as unsuccessful and backs off.
func (t *Thief) fail(now time.Time) {
	f := t.inflight
	t.inflight = nil
	t.avoid[f.req.Victim] = avoidance{version: f.version, until: now.Add(t.cfg.BackoffMax)}
	t.failures++
	t.notBefore = now.Add(backoff(t.rng, t.cfg, t.failures))
}

// OnRelease forgets an accepted grant the victim has recorded.
func (t *Thief) OnRelease(r Release) {
	if r.Thief != t.self || r.ThiefInc != t.inc {
		return
	}
	if a, ok := t.accepted[r.ReqID]; ok && a.victim == r.Victim && a.victimInc == r.VictimInc {
		delete(t.accepted, r.ReqID)
	}
}

// Tick advances time: it gives up the request in flight once Config.Timeout
// has passed (counting as an empty answer), and returns the acknowledgements
// to send again for accepted grants not released within
// Config.ResendInterval, ordered by request id.
func (t *Thief) Tick(now time.Time) []Reply {
	if f := t.inflight; f != nil && !now.Before(f.deadline) {
		t.stats.Timeouts++
		t.fail(now)
	}
	var out []Reply
	for id, a := range t.accepted {
		if a.quiet || now.Before(a.resendAt) {
			continue
		}
		a.resendAt = now.Add(t.cfg.ResendInterval)
		out = append(out, Reply{Thief: t.self, ThiefInc: t.inc, Victim: a.victim, VictimInc: a.victimInc, ReqID: id, Accept: true})
	}
	slices.SortFunc(out, func(a, b Reply) int { return cmp.Compare(a.ReqID, b.ReqID) })
	return out
}

// PeerDead tells the thief that gossip declared victim dead. A request in
// flight to it is given up at once (without backoff); a grant that still
// comes for it is refused. Accepted grants from it are kept, because a victim
// declared dead by mistake may still ask, but their acknowledgements are no
// longer resent until PeerAlive or a copy of the grant shows the victim up.
func (t *Thief) PeerDead(victim NodeID) {
	if f := t.inflight; f != nil && f.req.Victim == victim {
		t.inflight = nil
	}
	for _, a := range t.accepted {
		if a.victim == victim {
			a.quiet = true
		}
	}
}

// PeerAlive tells the thief that gossip sees victim alive again after
// declaring it dead: acknowledgements of its grants are resent again.
func (t *Thief) PeerAlive(victim NodeID) {
	for _, a := range t.accepted {
		if a.victim == victim {
			a.quiet = false
		}
	}
}

// Stats returns the thief's counters.
func (t *Thief) Stats() ThiefStats {
	s := t.stats
	s.Unreleased = len(t.accepted)
	return s
}

// Forget drops what the thief remembers of a peer that will never come back (it
// left, or restarted under a new id): its avoidance and its unreleased grants.
func (t *Thief) Forget(victim NodeID) {
	t.PeerDead(victim)
	delete(t.avoid, victim)
	for id, a := range t.accepted {
		if a.victim == victim {
			delete(t.accepted, id)
		}
	}
}
