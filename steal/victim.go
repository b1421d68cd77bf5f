package steal

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Decision is a victim's answer to a steal request.
type Decision struct {
	// Take lists the candidates to remove from the ready queue, as indexes
	// into the candidates passed in; Grant.Tasks[i] is candidates[Take[i]]
	// with its new epoch, which the node stores in the task's record.
	Take []int
	// Grant, when not nil, goes to the thief. The tasks stay parked in the
	// victim until the thief answers.
	Grant *Grant
	// Empty, when not nil, goes to the thief: nothing it can serve is queued.
	Empty *Empty
	// Requeue lists parked tasks to put back in the queue because the request
	// comes from a newer incarnation of the thief, so the one they were
	// granted to is gone. See Settlement.Requeue for how to put them back.
	Requeue []GrantedTask
}

// Settlement is what a thief's reply settles.
type Settlement struct {
	// Acked lists the tasks the thief now holds, with their epochs: the node
	// records them as running there (for a task still at that epoch and not
	// finished).
	Acked []GrantedTask
	// Requeue lists the tasks of a refused grant, each with the epoch it was
	// granted at. The node puts back each task whose record still has that
	// epoch and is not finished, with epoch+1.
	Requeue []GrantedTask
	// Release, when not nil, goes to the thief.
	Release *Release
}

// VictimStats counts what a victim has done, for metrics.
type VictimStats struct {
	Requests  uint64 // requests answered
	Ignored   uint64 // requests dropped as duplicate or stale
	Grants    uint64 // grants made
	Tasks     uint64 // tasks granted
	Empties   uint64 // empty answers
	Acked     uint64 // grants acknowledged
	Refused   uint64 // grants refused
	Resent    uint64 // grant copies resent
	Withdrawn uint64 // grants put back because the thief died or restarted
	Parked    int    // grants waiting for an answer now
}

// Victim is the serving side of a node: it answers steal requests from the
// node's queued tasks and keeps granted tasks parked until the thief answers.
// It is not safe for concurrent use; the node calls it under the lock of its
// ready queue, so that choosing and removing tasks is one step with its own
// dequeuing.
type Victim struct {
	self    NodeID
	inc     uint64
	cfg     Config
	thieves map[NodeID]*thiefRecord
	stats   VictimStats
}

// thiefRecord is what a victim remembers of one thief.
type thiefRecord struct {
	inc uint64
	// lastReq is the highest request id answered for incarnation inc. It is
	// kept even when the thief is declared dead, so that no request id is
	// ever granted twice.
	lastReq uint64
	parked  map[uint64]*parked
}

type parked struct {
	grant    Grant
	resendAt time.Time
}

// NewVictim returns the victim of node self in its incarnation inc.
func NewVictim(self NodeID, inc uint64, cfg Config) (*Victim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if self == "" {
		return nil, fmt.Errorf("%w: empty node id", ErrInvalidConfig)
	}
	return &Victim{self: self, inc: inc, cfg: cfg, thieves: make(map[NodeID]*thiefRecord)}, nil
}

// OnRequest answers a steal request. candidates are the node's own queued
// tasks in queue order (see Choose); the node passes only tasks it owns, never
// ones it stole itself, and only for requests from peers gossip reports alive.
// Requests addressed elsewhere, from an older incarnation of the thief, or
// with an id not above the last one answered (duplicates, reordered copies)
// get no answer.
func (v *Victim) OnRequest(now time.Time, req StealRequest, candidates []Candidate) Decision {
	var d Decision
	if req.Victim != v.self || req.Thief == "" {
		v.stats.Ignored++
		return d
	}
	rec := v.thieves[req.Thief]
	switch {
	case rec == nil:
		rec = &thiefRecord{inc: req.ThiefInc, parked: make(map[uint64]*parked)}
		v.thieves[req.Thief] = rec
	case req.ThiefInc < rec.inc:
		v.stats.Ignored++
		return d
	case req.ThiefInc > rec.inc:
		d.Requeue = v.withdraw(rec)
		*rec = thiefRecord{inc: req.ThiefInc, parked: make(map[uint64]*parked)}
	}
	if req.ReqID <= rec.lastReq {
		v.stats.Ignored++
		return d
	}
	rec.lastReq = req.ReqID
	v.stats.Requests++
	d.Take = Choose(req, candidates)
	if len(d.Take) == 0 {
		v.stats.Empties++
		d.Empty = &Empty{Victim: v.self, Thief: req.Thief, ThiefInc: req.ThiefInc, ReqID: req.ReqID}
		return d
	}
	g := Grant{Victim: v.self, VictimInc: v.inc, Thief: req.Thief, ThiefInc: req.ThiefInc, ReqID: req.ReqID}
	g.Tasks = make([]GrantedTask, len(d.Take))
	for i, k := range d.Take {
		g.Tasks[i] = GrantedTask{ID: candidates[k].ID, Epoch: candidates[k].Epoch + 1, Spec: candidates[k].Spec}
	}
	rec.parked[req.ReqID] = &parked{grant: g, resendAt: now.Add(v.cfg.ResendInterval)}
	v.stats.Grants++
	v.stats.Tasks += uint64(len(g.Tasks))
	d.Grant = cloneGrant(g)
	return d
}

// OnReply takes a thief's answer to a grant. An acknowledgement of a parked
// grant hands its tasks to the thief; a refusal gives them back to the queue.
// Every acknowledgement, even of a grant already settled, is released, so the
// thief can forget it; a refusal of a grant not parked changes nothing.
func (v *Victim) OnReply(r Reply) Settlement {
	var s Settlement
	if r.Accept {
		s.Release = &Release{Victim: r.Victim, VictimInc: r.VictimInc, Thief: r.Thief, ThiefInc: r.ThiefInc, ReqID: r.ReqID}
	}
	if r.Victim != v.self || r.VictimInc != v.inc {
		return s
	}
	rec := v.thieves[r.Thief]
	if rec == nil || rec.inc != r.ThiefInc {
		return s
	}
	p, ok := rec.parked[r.ReqID]
	if !ok {
		return s
	}
	delete(rec.parked, r.ReqID)
	if r.Accept {
		v.stats.Acked++
		s.Acked = p.grant.Tasks
	} else {
		v.stats.Refused++
		s.Requeue = p.grant.Tasks
	}
	return s
}

// Tick returns the parked grants that have waited Config.ResendInterval
// since they were last sent, to send again, ordered by thief and request id.
func (v *Victim) Tick(now time.Time) []Grant {
	var out []Grant
	for _, rec := range v.thieves {
		for _, p := range rec.parked {
			if now.Before(p.resendAt) {
				continue
			}
			p.resendAt = now.Add(v.cfg.ResendInterval)
			out = append(out, *cloneGrant(p.grant))
		}
	}
	slices.SortFunc(out, func(a, b Grant) int {
		return cmp.Or(cmp.Compare(a.Thief, b.Thief), cmp.Compare(a.ReqID, b.ReqID))
	})
	v.stats.Resent += uint64(len(out))
	return out
}

// PeerDead tells the victim that gossip declared thief dead: every grant
// parked for it is withdrawn and returned to be put back in the queue (see
// Settlement.Requeue). Grants it acknowledged are the node's to re-queue, as
// for any task running on a dead node.
func (v *Victim) PeerDead(thief NodeID) []GrantedTask {
	rec := v.thieves[thief]
	if rec == nil {
		return nil
	}
	return v.withdraw(rec)
}

// withdraw empties rec's parked grants and returns their tasks, ordered by
// request id.
func (v *Victim) withdraw(rec *thiefRecord) []GrantedTask {
	ids := make([]uint64, 0, len(rec.parked))
	for id := range rec.parked {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []GrantedTask
	for _, id := range ids {
		out = append(out, rec.parked[id].grant.Tasks...)
		delete(rec.parked, id)
	}
	v.stats.Withdrawn += uint64(len(ids))
	return out
}

// Stats returns the victim's counters.
func (v *Victim) Stats() VictimStats {
	s := v.stats
	for _, rec := range v.thieves {
		s.Parked += len(rec.parked)
	}
	return s
}

func cloneGrant(g Grant) *Grant {
	g.Tasks = slices.Clone(g.Tasks)
	return &g
}

// Forget drops the victim's record of a thief that will never come back (it left,
// or restarted under a new id), after withdrawing its parked grants (PeerDead).
// Without it, a long-lived victim would remember every thief it ever served.
func (v *Victim) Forget(thief NodeID) {
	delete(v.thieves, thief)
}
