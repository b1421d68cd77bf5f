package engine

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
	"github.com/starlingsched/starling/steal"
)

// The cluster side of the engine: the membership view, executor and owner loss, and
// the glue between the task lifecycle and package steal.

// peer is another node as this one knows it.
type peer struct {
	id       string
	meta     Meta
	name     string
	state    string // alive, suspect, dead, left, restarted
	load     *Load
	loadSeen time.Time
	gone     bool // dead or left: what ran there for this node was re-queued
	goneAt   time.Time
	// final: it left or restarted, so this node id never comes back. A dead peer
	// may: a partition heals, a paused process resumes.
	final bool
	// settled: gone past OwnerGrace, the runs this node had for it were stopped.
	settled bool
}

// pendingCancel is a cancel resent until the executor confirms it.
type pendingCancel struct {
	exec   string
	epoch  uint64
	sentAt time.Time
	tries  int
}

// outgoing is a final report waiting for its owner's acknowledgement.
type outgoing struct {
	owner  string
	report Report
	sentAt time.Time
}

// prefetchBelow: a thief whose stolen runs take less than this on average steals the
// next batch while its slots are still busy. Longer runs leave time to steal once a
// slot frees, and holding them in reserve would keep them from idle peers.
const prefetchBelow = 5 * time.Millisecond

// maxCancelTries bounds the resends of one cancel.
const maxCancelTries = 30

type cluster struct {
	e      *Engine
	cfg    ClusterConfig
	log    *slog.Logger
	thief  *steal.Thief
	victim *steal.Victim

	peers   map[string]*peer  // by node id
	names   map[string]string // name -> current node id
	foreign map[string]*entry // tasks owned elsewhere, granted to this node to run
	fseq    uint64            // submission order of foreign tasks here
	outbox  map[string]*outgoing
	// reports gathers reports to owners (by owner id), sent once per Ready.
	reports map[string][]Report
	// onPeer indexes the tasks this node owns by the peer they are granted to or run
	// on, so a peer's death finds its tasks without a scan.
	onPeer  map[string]map[*entry]struct{}
	cancels map[string]*pendingCancel
	// avgRun is a moving average of how long stolen runs take here.
	avgRun     time.Duration
	capability steal.Capability

	// gone remembers forgotten peers for routing (ClusterView.Gone), newest last.
	gone []PeerView
	// expect holds executors this node restored tasks on (Restore) and has not seen
	// since: when they stay unseen past OwnerGrace, their tasks lost a node.
	expect map[string]time.Time
	// unconfirmed holds tasks this node restored as running on a peer, until the
	// peer reports on them: the time is when the peer was first seen since (zero:
	// not yet). A peer that says nothing within OwnerGrace of being seen no longer
	// has the task (it restarted meanwhile, or dropped it while this node was gone).
	unconfirmed map[*entry]time.Time

	kicked    bool // look for work at the end of the step
	pushLoad  bool // work arrived in an empty queue: tell the peers now
	nextSteal time.Time
	nextLoad  time.Time
	load      Load // the last load published (its Ver is the last version)
	loadSet   bool
	viewDirty bool
}

func newCluster(e *Engine, cfg Config) (*cluster, error) {
	cc := *cfg.Cluster
	rng := rand.New(rand.NewPCG(cfg.Seed[0]^0x9e3779b97f4a7c15, cfg.Seed[1]+1))
	thief, err := steal.NewThief(steal.NodeID(cfg.ID), cfg.Inc, cc.Steal, rng)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	victim, err := steal.NewVictim(steal.NodeID(cfg.ID), cfg.Inc, cc.Steal)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	c := &cluster{
		e: e, cfg: cc, log: cfg.logger(), thief: thief, victim: victim,
		peers: map[string]*peer{}, names: map[string]string{}, foreign: map[string]*entry{},
		outbox: map[string]*outgoing{}, reports: map[string][]Report{}, onPeer: map[string]map[*entry]struct{}{},
		cancels: map[string]*pendingCancel{}, expect: map[string]time.Time{}, unconfirmed: map[*entry]time.Time{}, viewDirty: true,
	}
	c.capability = c.capabilityNow()
	return c, nil
}

// capabilityNow is what this node can run, for the thief.
func (c *cluster) capabilityNow() steal.Capability {
	k := steal.Capability{Types: map[string]bool{}, Tags: map[string]bool{}, Resources: map[string]int64{}}
	maps.Copy(k.Types, c.e.types)
	for _, t := range c.e.cfg.Tags {
		k.Tags[t] = true
	}
	maps.Copy(k.Resources, c.e.cfg.Resources)
	return k
}

// send queues m for a live peer; false when the peer is unknown or gone.
func (c *cluster) send(id string, m *Message) bool {
	p := c.peers[id]
	if p == nil || p.gone || p.meta.RPC == "" {
		return false
	}
	c.e.rd.Messages = append(c.e.rd.Messages, Envelope{To: id, Addr: p.meta.RPC, Msg: m})
	return true
}

// route is where reports about a task owned by owner go now.
func (c *cluster) route(owner string) string { return owner }

// index records that t (owned here) is granted to or runs on peer id ("": here or
// nowhere); t.rec.Exec still names the old place.
func (c *cluster) index(t *entry, id string) {
	old := t.rec.Exec
	if old == id {
		return
	}
	if s := c.onPeer[old]; s != nil {
		delete(s, t)
		if len(s) == 0 {
			delete(c.onPeer, old)
		}
	}
	if id != "" {
		if c.onPeer[id] == nil {
			c.onPeer[id] = map[*entry]struct{}{}
		}
		c.onPeer[id][t] = struct{}{}
	}
}

// place records that t is granted to or runs on peer id.
func (c *cluster) place(t *entry, epoch uint64, id, node, waiting string) {
	c.index(t, id)
	c.e.apply(t, record.Op{Kind: record.OpPlace, Epoch: epoch, Exec: id, Node: node, Waiting: waiting})
}

// Membership.

func (c *cluster) onMemberUp(in MemberUp, now time.Time) {
	id := in.Meta.ID
	if id == "" || id == c.e.cfg.ID {
		return
	}
	if old, ok := c.names[in.Name]; ok && old != id {
		// The member restarted under the same name: its old self is gone for good.
		c.peerGone(old, "restarted", now)
		c.peerFinal(old)
		c.forget(old)
	}
	p := c.peers[id]
	if p == nil {
		p = &peer{id: id}
		c.peers[id] = p
		c.gone = slices.DeleteFunc(c.gone, func(g PeerView) bool { return g.ID == id }) // a durable node back
		c.log.Info("peer joined", slog.String("peer", in.Name), slog.String("id", id), slog.String("http", in.Meta.HTTP))
	}
	delete(c.expect, id)
	if in.Alive {
		for t, seen := range c.unconfirmed {
			if seen.IsZero() && t.rec.Exec == id {
				c.unconfirmed[t] = now
			}
		}
	}
	restarted := p.meta.ID != "" && in.Meta.Inc > p.meta.Inc
	if restarted && !p.gone {
		// It restarted (with its data directory: the same id) before gossip noticed
		// it died: what ran there died with its old self.
		c.peerGone(id, "restarted", now)
	}
	if p.gone {
		switch {
		case !in.Alive:
			return
		case p.final && !restarted:
			return // one that left comes back only as a new incarnation
		}
		p.final = false
		c.peerBack(p, now)
	}
	p.meta, p.name, p.state = in.Meta, in.Name, in.State
	c.names[in.Name] = id
	c.viewDirty = true
	if restarted && in.Alive {
		// An owner back from its records waits to hear about what it had here.
		for _, t := range c.foreignOf(id) {
			if t.running {
				c.reportRunning(t, now)
			}
		}
	}
}

func (c *cluster) onMemberGone(in MemberGone, now time.Time) {
	id, ok := c.names[in.Name]
	if !ok {
		// Gone already? Gossip reports a member that left after declaring it dead
		// when the leave intent comes second.
		p := c.peers[in.Meta.ID]
		if p == nil || !p.gone || p.name != in.Name || p.state != "dead" {
			return
		}
		id = in.Meta.ID
		p.state = in.State
		c.viewDirty = true
	}
	c.peerGone(id, in.State, now)
	if p := c.peers[id]; in.Left && p != nil && !p.meta.Durable {
		c.peerFinal(id)
	}
	// A durable node that left comes back with its tasks (a restart, an upgrade):
	// like a dead one, what this node runs for it goes on for the owner grace, and
	// the reports it is owed wait for it.
}

// peerBack takes back a peer that was declared dead but lives: a partition healed, or
// it was paused. What it ran for this node was re-queued with a new epoch when it was
// declared dead, so its late reports are fenced off; it works with this node again
// from now on, and hears the reports this node kept for it.
func (c *cluster) peerBack(p *peer, now time.Time) {
	p.gone, p.goneAt, p.settled = false, time.Time{}, false
	c.log.Warn("peer back after being declared dead", slog.String("peer", p.name), slog.String("id", p.id))
	c.thief.PeerAlive(steal.NodeID(p.id))
	for _, o := range c.outbox {
		if o.owner == p.id {
			o.sentAt = now.Add(-c.cfg.ReportResend) // resend at the next tick
		}
	}
	c.kicked = true
}

// peerGone gives a peer up: what it was running for this node runs again elsewhere.
// What this node runs for it goes on for OwnerGrace (the peer may only be suspected
// by this node), except what has not started, which is handed back with a report
// that costs the task no node loss. The reports owed to it are kept in case it comes
// back (a false death).
func (c *cluster) peerGone(id, why string, now time.Time) {
	p := c.peers[id]
	if p == nil || p.gone {
		return
	}
	p.gone, p.goneAt = true, now
	if why != "" {
		p.state = why
	}
	if c.names[p.name] == id {
		delete(c.names, p.name)
	}
	c.viewDirty = true
	c.log.Warn("peer gone", slog.String("peer", p.name), slog.String("id", id), slog.String("state", p.state))
	sid := steal.NodeID(id)
	c.thief.PeerDead(sid)
	for _, g := range c.victim.PeerDead(sid) {
		// A grant it had not acknowledged yet: it may have started the tasks (a thief
		// runs them before its acknowledgement is even sent), so they lost a node
		// like the ones it acknowledged. A task that kills every node it starts on
		// must use up its budget, whatever the timing.
		if t := c.e.tasks[g.ID]; t != nil && t.rec.Epoch == g.Epoch && !t.rec.State.Terminal() && t.heapIdx < 0 {
			c.executorLost(t, p, now)
		}
	}
	lost := make([]*entry, 0, len(c.onPeer[id]))
	for t := range c.onPeer[id] {
		if !t.rec.State.Terminal() {
			lost = append(lost, t)
		}
	}
	slices.SortFunc(lost, func(a, b *entry) int { return cmpUint(a.rec.Seq, b.rec.Seq) })
	for _, t := range lost {
		c.executorLost(t, p, now)
	}
	for _, t := range c.foreignOf(id) {
		if t.heapIdx >= 0 {
			c.dropForeign(t)
			c.giveBack(t.rec.ID, t.rec.Epoch, id, "returned: its owner "+p.name+" was declared "+p.state, now)
		}
	}
	if p.meta.RPC != "" {
		c.e.rd.Drop = append(c.e.rd.Drop, p.meta.RPC)
	}
}

// foreignOf lists the tasks this node runs or holds for owner, by id.
func (c *cluster) foreignOf(owner string) []*entry {
	var out []*entry
	for _, t := range c.foreign {
		if t.owner == owner {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *entry) int { return cmp.Compare(a.rec.ID, b.rec.ID) })
	return out
}

// peerFinal marks a gone peer as never coming back (it left, or restarted under a new
// id): what this node still runs for it is stopped, and the reports kept for it are
// dropped.
func (c *cluster) peerFinal(id string) {
	p := c.peers[id]
	if p == nil {
		return
	}
	p.final = true
	for _, t := range c.foreignOf(id) {
		c.dropForeign(t)
	}
	for k, o := range c.outbox {
		if o.owner == id {
			delete(c.outbox, k)
		}
	}
	c.viewDirty = true
}

// forget drops a gone peer from the view and the protocols' memory; routing still
// knows it is gone for good.
func (c *cluster) forget(id string) {
	if p := c.peers[id]; p != nil {
		c.gone = append(c.gone, PeerView{ID: id, Name: p.name, State: p.state, Gone: true, GoneAt: p.goneAt, Final: true, Meta: p.meta})
		if len(c.gone) > MaxGone {
			c.gone = slices.Delete(c.gone, 0, len(c.gone)-MaxGone)
		}
	}
	delete(c.peers, id)
	c.thief.Forget(steal.NodeID(id))
	c.victim.Forget(steal.NodeID(id))
	c.viewDirty = true
}

// executorLost re-queues a task whose executing node is gone, or fails it once it has
// lost too many nodes.
func (c *cluster) executorLost(t *entry, p *peer, now time.Time) {
	losses := t.rec.NodeLosses + 1
	if losses > c.cfg.NodeLosses {
		c.e.finish(t, api.Failed, fmt.Sprintf("node lost: %s (%s) was %s; the task lost %d nodes, over the budget of %d",
			p.name, p.id, p.state, losses, c.cfg.NodeLosses), t.rec.Result, t.rec.Failures, losses, now)
		return
	}
	c.e.enqueue(t, now, t.rec.Epoch+1, t.rec.Node, losses, nil)
}

// Peer messages.

func (c *cluster) onMessage(from string, m *Message, now time.Time) {
	if m.Req != nil {
		c.onStealRequest(*m.Req, now)
	}
	if m.Grant != nil {
		c.onGrant(m.Grant, now)
	}
	if m.Empty != nil {
		c.thief.OnEmpty(now, *m.Empty)
	}
	if m.Reply != nil {
		c.onReply(*m.Reply, now)
	}
	if m.Release != nil {
		c.thief.OnRelease(*m.Release)
	}
	if len(m.Reports) > 0 {
		var acks []Ack
		for i := range m.Reports {
			if c.onReport(from, &m.Reports[i], now) {
				acks = append(acks, Ack{m.Reports[i].ID, m.Reports[i].Epoch})
			}
		}
		if len(acks) > 0 {
			c.send(from, &Message{Acks: acks})
		}
	}
	for _, a := range m.Acks {
		if o := c.outbox[a.ID]; o != nil && o.owner == from && o.report.Epoch == a.Epoch {
			delete(c.outbox, a.ID)
		}
	}
	if m.Load != nil {
		c.takeLoad(c.peers[from], m.Load, now)
	}
	if len(m.Cancel) > 0 {
		acks := make([]Ack, 0, len(m.Cancel))
		for _, cm := range m.Cancel {
			if t := c.foreign[cm.ID]; t != nil && t.rec.Epoch <= cm.Epoch && t.owner == from {
				c.dropForeign(t)
			}
			acks = append(acks, cm)
		}
		c.send(from, &Message{CancelAcks: acks})
	}
	for _, a := range m.CancelAcks {
		if pc := c.cancels[a.ID]; pc != nil && pc.exec == from && pc.epoch == a.Epoch {
			delete(c.cancels, a.ID)
		}
	}
}

// onStealRequest answers a thief: a grant of queued tasks it can serve, or empty.
func (c *cluster) onStealRequest(req steal.StealRequest, now time.Time) {
	e := c.e
	thief := c.peers[string(req.Thief)]
	if thief == nil || thief.gone {
		return // not (yet) a live member for us: it will time out and try elsewhere
	}
	var (
		cands []steal.Candidate
		tasks []*entry
	)
	if !e.stopping {
		cands, tasks = c.candidates(req)
	}
	d := c.victim.OnRequest(now, req, cands)
	taken := make([]bool, len(tasks))
	for i, k := range d.Take {
		t := tasks[k]
		taken[k] = true
		c.place(t, d.Grant.Tasks[i].Epoch, string(req.Thief), t.rec.Node, "granted to "+thief.name)
	}
	for k, t := range tasks {
		if !taken[k] {
			e.q.push(t)
		}
	}
	for _, g := range d.Requeue {
		c.requeueGranted(g, now)
	}
	switch {
	case d.Grant != nil:
		c.sendGrant(*d.Grant)
	case d.Empty != nil:
		c.send(string(req.Thief), &Message{Empty: d.Empty})
	}
}

// candidates takes out of the queue the best queued tasks this node owns that the
// thief can serve: enough for the victim to choose from (twice what it may take, so
// "half the backlog" still holds for small backlogs), and no more dep results than
// a grant may carry. The caller puts back those not granted.
func (c *cluster) candidates(req steal.StealRequest) ([]steal.Candidate, []*entry) {
	q := c.e.q
	limit := 2*req.Max + 2
	var tasks []*entry
	// Popping a class empty takes it out of q.active: range over a copy.
	for _, cl := range slices.Clone(q.active) {
		if cl.heap.Len() == cl.foreign || !req.Cap.CanServe(cl.stealClass()) {
			continue
		}
		var aside []*entry
		got := 0
		for cl.heap.Len() > 0 && got < limit {
			t := q.pop(cl)
			if t.foreign || depBytes(t) > c.cfg.MaxGrantBytes {
				aside = append(aside, t)
				continue
			}
			tasks = append(tasks, t)
			got++
		}
		for _, t := range aside {
			q.push(t)
		}
	}
	sortTasks(tasks)
	budget := c.cfg.MaxGrantBytes
	for i, t := range tasks {
		if budget -= depBytes(t); budget < 0 || i == limit {
			for _, t := range tasks[i:] {
				q.push(t)
			}
			tasks = tasks[:i]
			break
		}
	}
	cands := make([]steal.Candidate, len(tasks))
	for i, t := range tasks {
		cands[i] = steal.Candidate{ID: t.rec.ID, Epoch: t.rec.Epoch, Priority: t.rec.Spec.Priority, Class: t.class.stealClass()}
	}
	return cands, tasks
}

// depBytes is the size of the dep results a grant of t carries.
func depBytes(t *entry) int {
	n := 0
	for k, v := range t.rec.Deps {
		n += len(k) + len(v)
	}
	return n
}

// sendGrant sends (or resends) a grant with the specs of its tasks.
func (c *cluster) sendGrant(g steal.Grant) {
	gm := &GrantMsg{Grant: g, Tasks: make([]GrantedRun, 0, len(g.Tasks))}
	for _, gt := range g.Tasks {
		t := c.e.tasks[gt.ID]
		if t == nil || t.rec.State.Terminal() || t.rec.Epoch != gt.Epoch {
			// A resend for a task that moved on meanwhile: the thief acknowledges the
			// grant but does not run it.
			gm.Tasks = append(gm.Tasks, GrantedRun{ID: gt.ID, Void: true})
			continue
		}
		gm.Tasks = append(gm.Tasks, GrantedRun{ID: t.rec.ID, Spec: *t.rec.Spec, Attempt: t.rec.Attempt, Deps: t.rec.Deps})
	}
	c.send(string(g.Thief), &Message{Grant: gm})
}

// onGrant takes the tasks of an accepted grant into the queue as foreign tasks.
func (c *cluster) onGrant(gm *GrantMsg, now time.Time) {
	e := c.e
	reply, accepted := c.thief.OnGrant(now, gm.Grant)
	specs := make(map[string]*GrantedRun, len(gm.Tasks))
	for i := range gm.Tasks {
		specs[gm.Tasks[i].ID] = &gm.Tasks[i]
	}
	owner := string(gm.Grant.Victim)
	for _, gt := range accepted {
		g := specs[gt.ID]
		if g == nil || g.Void {
			continue
		}
		if old := c.foreign[gt.ID]; old != nil {
			// Granted again while a copy from an earlier grant is still here (this
			// node was taken for dead and back): that copy carries on under the new
			// epoch, so its result counts.
			if old.owner == owner && gt.Epoch > old.rec.Epoch {
				old.rec.Epoch = gt.Epoch
				if old.rec.State == api.Running {
					c.reportRunning(old, now)
				}
			}
			continue
		}
		if e.stopping {
			c.giveBack(g.ID, gt.Epoch, owner, "returned: "+e.cfg.Name+" is stopping", now)
			continue
		}
		c.fseq++
		t := &entry{
			rec: &record.Record{ID: g.ID, Seq: c.fseq, Spec: &g.Spec, Attempt: g.Attempt, Epoch: gt.Epoch, Deps: g.Deps,
				State: api.Queued, Created: now, Queued: now},
			needs: needsOf(g.Spec.Requires), foreign: true, owner: owner, heapIdx: -1,
		}
		t.keyed()
		t.class = e.classFor(t.rec.Spec.Type, t.needs)
		c.foreign[t.rec.ID] = t
		e.q.push(t)
	}
	c.send(owner, &Message{Reply: &reply})
}

// onReply settles a grant the thief answered.
func (c *cluster) onReply(r steal.Reply, now time.Time) {
	s := c.victim.OnReply(r)
	thief := c.peers[string(r.Thief)]
	for _, g := range s.Acked {
		t := c.e.tasks[g.ID]
		if t == nil || t.rec.Epoch != g.Epoch || t.rec.State.Terminal() {
			continue
		}
		node, waiting := t.rec.Node, t.rec.Waiting
		if thief != nil && !thief.gone {
			node, waiting = thief.name, "stolen by "+thief.name+"; starting there"
		}
		c.place(t, t.rec.Epoch, string(r.Thief), node, waiting)
	}
	for _, g := range s.Requeue {
		c.requeueGranted(g, now)
	}
	if s.Release != nil {
		c.send(string(r.Thief), &Message{Release: s.Release})
	}
}

// requeueGranted puts a task back in the queue after its grant fell through.
func (c *cluster) requeueGranted(g steal.GrantedTask, now time.Time) {
	t := c.e.tasks[g.ID]
	if t == nil || t.rec.Epoch != g.Epoch || t.rec.State.Terminal() || t.heapIdx >= 0 {
		return
	}
	c.e.enqueue(t, now, t.rec.Epoch+1, t.rec.Node, t.rec.NodeLosses, nil)
}

// onReport applies an executor's report; it returns whether to acknowledge it (every
// final report is acknowledged, applied or stale, so the executor stops sending).
func (c *cluster) onReport(from string, r *Report, now time.Time) bool {
	e := c.e
	final := r.State != api.Running
	t := e.tasks[r.ID]
	if t == nil || t.rec.State.Terminal() || steal.Stale(t.rec.Epoch, r.Epoch) || t.rec.Epoch != r.Epoch || t.rec.Exec != from {
		return final
	}
	delete(c.unconfirmed, t)
	attempt := max(t.rec.Attempt, r.Attempt)
	switch {
	case r.Returned:
		e.enqueue(t, now, t.rec.Epoch+1, "", t.rec.NodeLosses, nil)
	case r.State == api.Running:
		old := t.rec.State
		e.apply(t, record.Op{Kind: record.OpRun, At: r.At, Attempt: attempt, Node: r.Node})
		e.event(t, old, now)
	case r.Lost:
		if p := c.peers[from]; p != nil {
			c.executorLost(t, p, now)
		}
	case r.State == api.Succeeded:
		e.setExec(t, "")
		// The outcome is the reporting run's: a copy that carried on under a newer
		// grant (onGrant) is the attempt it started as, not the owner's latest.
		e.finishAt(t, api.Succeeded, "", r.Result, r.Attempt, r.Node, now)
	default:
		e.setExec(t, "")
		e.attemptFailedAt(t, r.Error, r.Result, attempt, r.Node, now)
	}
	return final
}

// The executor's side.

// reportRunning tells a foreign task's owner that its run started.
func (c *cluster) reportRunning(t *entry, now time.Time) {
	c.reports[t.owner] = append(c.reports[t.owner], Report{
		ID: t.rec.ID, Epoch: t.rec.Epoch, Attempt: t.rec.Attempt, State: api.Running, Node: c.e.cfg.Name, At: now,
	})
}

// finishForeign reports a foreign run's outcome to its owner and keeps the report
// until the owner acknowledges it.
func (c *cluster) finishForeign(t *entry, in RunDone, now time.Time) {
	if c.foreign[t.rec.ID] != t {
		return // cancelled by its owner, or the owner is gone for good
	}
	delete(c.foreign, t.rec.ID)
	if c.avgRun == 0 {
		c.avgRun = in.Elapsed
	} else {
		c.avgRun = (7*c.avgRun + in.Elapsed) / 8
	}
	rep := Report{ID: t.rec.ID, Epoch: t.rec.Epoch, Attempt: t.rec.Attempt, State: api.Succeeded, Node: c.e.cfg.Name, At: now, Result: in.Result}
	if in.Err != "" {
		rep.State = api.Failed
		rep.Error = in.Err
		rep.Lost = in.Stopped
	}
	c.outbox[t.rec.ID] = &outgoing{owner: t.owner, report: rep, sentAt: now}
	c.reports[t.owner] = append(c.reports[t.owner], rep)
}

// giveBack returns a task to its owner without running it.
func (c *cluster) giveBack(id string, epoch uint64, owner, why string, now time.Time) {
	rep := Report{ID: id, Epoch: epoch, State: api.Failed, Node: c.e.cfg.Name, At: now, Returned: true, Error: why}
	c.outbox[id] = &outgoing{owner: owner, report: rep, sentAt: now}
	c.reports[owner] = append(c.reports[owner], rep)
}

// returnQueued gives every foreign task that has not started back to its owner.
func (c *cluster) returnQueued(now time.Time) {
	var back []*entry
	for _, t := range c.foreign {
		if t.heapIdx >= 0 {
			back = append(back, t)
		}
	}
	slices.SortFunc(back, func(a, b *entry) int { return cmp.Compare(a.rec.ID, b.rec.ID) })
	for _, t := range back {
		c.dropForeign(t)
		c.giveBack(t.rec.ID, t.rec.Epoch, t.owner, "returned: "+c.e.cfg.Name+" is stopping", now)
	}
}

// dropForeign forgets a foreign task: out of the queue, its run stopped.
func (c *cluster) dropForeign(t *entry) {
	delete(c.foreign, t.rec.ID)
	if t.heapIdx >= 0 {
		c.e.q.remove(t)
	}
	if t.running {
		c.e.rd.Stop = append(c.e.rd.Stop, StopRun{ID: t.rec.ID, Epoch: t.runEpoch, Reason: StopCancelled})
	}
}

// sendCancel stops t on the node it was granted to or runs on, resending until that
// node confirms.
func (c *cluster) sendCancel(t *entry, now time.Time) {
	c.cancels[t.rec.ID] = &pendingCancel{exec: t.rec.Exec, epoch: t.rec.Epoch, sentAt: now}
	c.send(t.rec.Exec, &Message{Cancel: []Ack{{ID: t.rec.ID, Epoch: t.rec.Epoch}}})
}

func (c *cluster) pendingReports() bool { return len(c.reports) > 0 || c.viewDirty }

// flushReports sends the gathered reports, many to a message, and publishes the
// membership view when it changed.
func (c *cluster) flushReports() {
	if len(c.reports) > 0 {
		for _, owner := range slices.Sorted(maps.Keys(c.reports)) {
			c.send(c.route(owner), &Message{Reports: c.reports[owner]})
		}
		clear(c.reports)
	}
	if c.viewDirty {
		c.viewDirty = false
		c.e.rd.Cluster = c.view()
	}
}

// Outbox returns how many final reports wait for their owners' acknowledgement.
func (e *Engine) Outbox() int {
	if e.cluster == nil {
		return 0
	}
	return len(e.cluster.outbox)
}

// Timers.

func (c *cluster) fire(now time.Time) {
	if !now.Before(c.nextSteal) {
		c.stealTick(now, true)
	}
	if !now.Before(c.nextLoad) {
		c.loadTick(now)
	}
}

func (c *cluster) wake() time.Time {
	if c.nextLoad.Before(c.nextSteal) {
		return c.nextLoad
	}
	return c.nextSteal
}

// stealTick resends what is unanswered and, when this node is idle, asks a peer for
// work. periodic is set for the timer's tick (not a kick).
func (c *cluster) stealTick(now time.Time, periodic bool) {
	e := c.e
	if periodic {
		c.nextSteal = now.Add(c.cfg.StealInterval)
	}
	for _, r := range c.thief.Tick(now) {
		c.send(string(r.Victim), &Message{Reply: &r})
	}
	for _, g := range c.victim.Tick(now) {
		c.sendGrant(g)
	}
	if len(c.cancels) > 0 {
		for _, id := range slices.Sorted(maps.Keys(c.cancels)) {
			pc := c.cancels[id]
			p := c.peers[pc.exec]
			if p == nil || p.gone || pc.tries >= maxCancelTries {
				if p != nil && !p.gone {
					c.log.Warn("a cancel got no answer; giving up on it", slog.String("task", id), slog.String("node", p.name))
				}
				delete(c.cancels, id)
				continue
			}
			if now.Sub(pc.sentAt) >= c.cfg.ReportResend {
				pc.sentAt = now
				pc.tries++
				c.send(pc.exec, &Message{Cancel: []Ack{{ID: id, Epoch: pc.epoch}}})
			}
		}
	}
	if len(c.outbox) > 0 {
		for _, id := range slices.Sorted(maps.Keys(c.outbox)) {
			o := c.outbox[id]
			if p := c.peers[o.owner]; p == nil || (p.gone && now.Sub(p.goneAt) > c.cfg.ReportKeep) {
				delete(c.outbox, id) // its owner has been gone longer than gossip retries it
				continue
			}
			if now.Sub(o.sentAt) >= c.cfg.ReportResend {
				o.sentAt = now
				c.reports[o.owner] = append(c.reports[o.owner], o.report)
			}
		}
	}
	if periodic && len(c.unconfirmed) > 0 {
		var lost []*entry
		for t, seen := range c.unconfirmed {
			switch {
			case t.rec.State != api.Running || t.rec.Exec == "":
				delete(c.unconfirmed, t)
			case !seen.IsZero() && now.Sub(seen) > c.cfg.OwnerGrace:
				lost = append(lost, t)
			}
		}
		slices.SortFunc(lost, func(a, b *entry) int { return cmpUint(a.rec.Seq, b.rec.Seq) })
		for _, t := range lost {
			delete(c.unconfirmed, t)
			name := t.rec.Exec
			if p := c.peers[t.rec.Exec]; p != nil {
				name = p.name
			}
			c.executorLost(t, &peer{id: t.rec.Exec, name: name, state: "silent about the task since this node restarted"}, now)
		}
	}
	if periodic && len(c.expect) > 0 {
		for _, id := range slices.Sorted(maps.Keys(c.expect)) {
			if now.Sub(c.expect[id]) > c.cfg.OwnerGrace {
				c.neverSeen(id, now)
			}
		}
	}
	if periodic {
		for _, id := range slices.Sorted(maps.Keys(c.peers)) {
			p := c.peers[id]
			if !p.gone {
				continue
			}
			if !p.settled && now.Sub(p.goneAt) > c.cfg.OwnerGrace {
				// Its death stands: what still runs here for it is stopped and
				// handed back, at no node-loss cost should it come back after all.
				p.settled = true
				for _, t := range c.foreignOf(id) {
					c.dropForeign(t)
					c.giveBack(t.rec.ID, t.rec.Epoch, id, "returned: its owner "+p.name+" was declared "+p.state, now)
				}
			}
			// Peers gone longer than gossip tries to reconnect them are forgotten.
			if now.Sub(p.goneAt) > c.cfg.ReportKeep && !c.owes(id) {
				c.forget(id)
			}
		}
	}
	if e.stopping || e.draining {
		return // a node on its way out takes no more work
	}
	local := steal.Local{FreeSlots: max(e.cfg.Slots-e.busy, 0), QueueLen: e.runnable(), Cap: c.capability}
	if local.FreeSlots <= 0 && local.QueueLen == 0 && c.avgRun > 0 && c.avgRun < prefetchBelow {
		// Every slot is busy with short stolen runs and nothing waits behind them:
		// ask ahead for one slot's worth, so the next batch arrives before a slot
		// idles for a steal's round trip.
		local.FreeSlots = 1
	}
	if local.FreeSlots <= 0 || local.QueueLen > 0 {
		return
	}
	if req, ok := c.thief.Next(now, local, c.peerLoads()); ok {
		c.send(string(req.Victim), &Message{Req: &req})
	}
}

// owes reports whether this node still holds anything for or from peer id.
func (c *cluster) owes(id string) bool {
	if len(c.onPeer[id]) > 0 {
		return true
	}
	for _, o := range c.outbox {
		if o.owner == id {
			return true
		}
	}
	for _, t := range c.foreign {
		if t.owner == id {
			return true
		}
	}
	return false
}

// peerLoads lists the live peers' last load reports for the thief, by id.
func (c *cluster) peerLoads() []steal.PeerLoad {
	var out []steal.PeerLoad
	for _, id := range slices.Sorted(maps.Keys(c.peers)) {
		p := c.peers[id]
		if p.gone || p.load == nil || len(p.load.Backlog) == 0 {
			continue
		}
		out = append(out, steal.PeerLoad{ID: steal.NodeID(id), Version: p.load.Ver, Backlog: p.load.Backlog})
	}
	return out
}

func (c *cluster) onPeerLoad(in PeerLoad, now time.Time) {
	id, ok := c.names[in.Name]
	if !ok {
		return
	}
	c.takeLoad(c.peers[id], &in.Load, now.Add(-in.Age))
}

// takeLoad keeps a peer's load report produced at seen: a newer version replaces the
// one it has, the same version again says it still holds (gossip repeats an
// unchanged report so that it does not go stale).
func (c *cluster) takeLoad(p *peer, l *Load, seen time.Time) {
	if p == nil || p.gone {
		return
	}
	switch {
	case p.load == nil || l.Ver > p.load.Ver:
		lc := *l
		p.load, p.loadSeen = &lc, seen
		c.viewDirty = true
	case l.Ver == p.load.Ver && seen.After(p.loadSeen):
		p.loadSeen = seen
	}
}

// view is the membership for the read view.
func (c *cluster) view() *ClusterView {
	v := &ClusterView{Peers: make([]PeerView, 0, len(c.peers))}
	for _, p := range c.peers {
		pv := PeerView{ID: p.id, Name: p.name, State: p.state, Gone: p.gone, GoneAt: p.goneAt, Final: p.final, Meta: p.meta, LoadSeen: p.loadSeen}
		if p.load != nil && !p.gone {
			l := *p.load
			pv.Load = &l
		}
		v.Peers = append(v.Peers, pv)
	}
	v.Gone = make([]PeerView, len(c.gone))
	for i, p := range c.gone {
		v.Gone[len(c.gone)-1-i] = p
	}
	slices.SortFunc(v.Peers, func(a, b PeerView) int {
		if r := cmp.Compare(a.Name, b.Name); r != 0 {
			return r
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return v
}
