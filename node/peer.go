package node

import (
	"encoding/json"
	"log/slog"
	"slices"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// peerMsg is what nodes send each other over peer RPC (msgpack). One message may carry
// several parts; the transport batches messages to a peer into one write.
type peerMsg struct {
	Req     *steal.StealRequest `msgpack:"q,omitempty"`
	Grant   *grantMsg           `msgpack:"g,omitempty"`
	Empty   *steal.Empty        `msgpack:"e,omitempty"`
	Reply   *steal.Reply        `msgpack:"p,omitempty"`
	Release *steal.Release      `msgpack:"l,omitempty"`
	Reports []report            `msgpack:"r,omitempty"`
	Acks    []ack               `msgpack:"a,omitempty"` // final reports the owner has recorded
	Cancel  []cancelMsg         `msgpack:"c,omitempty"`
	// CancelAcks confirm cancels, whether the run was there or not.
	CancelAcks []ack `msgpack:"k,omitempty"`
	Load       *load `msgpack:"o,omitempty"` // the sender's load, pushed when work arrives
}

// grantMsg is a steal grant with what the thief needs to run the tasks.
type grantMsg struct {
	Grant steal.Grant  `msgpack:"g"`
	Tasks []grantedRun `msgpack:"t"`
}

// grantedRun is a task as a thief receives it.
type grantedRun struct {
	ID string `msgpack:"i"`
	// Void marks a task the owner no longer has for this grant (finished, cancelled,
	// moved on or expired since the grant was first sent): the thief must not run it.
	Void    bool                       `msgpack:"v,omitempty"`
	Spec    api.Spec                   `msgpack:"s"`
	Attempt int                        `msgpack:"a"` // attempts started before this one
	Deps    map[string]json.RawMessage `msgpack:"d,omitempty"`
}

// report tells a task's owner how a run on another node goes.
type report struct {
	ID      string          `msgpack:"i"`
	Epoch   uint64          `msgpack:"e"`
	Attempt int             `msgpack:"a"`
	State   api.State       `msgpack:"s"` // running, succeeded or failed
	Node    string          `msgpack:"n"`
	At      time.Time       `msgpack:"t"`
	Result  json.RawMessage `msgpack:"r,omitempty"`
	Error   string          `msgpack:"x,omitempty"`
	// Lost means the run ended because its node is shutting down, not because the
	// task failed: the owner runs it again elsewhere.
	Lost bool `msgpack:"l,omitempty"`
	// Returned means the task never started here (the node is stopping): the owner
	// queues it again without counting a node loss.
	Returned bool `msgpack:"b,omitempty"`
}

// ack names a report or a cancel by task and epoch.
type ack struct {
	ID    string `msgpack:"i"`
	Epoch uint64 `msgpack:"e"`
}

// cancelMsg asks an executor to stop a run.
type cancelMsg struct {
	ID    string `msgpack:"i"`
	Epoch uint64 `msgpack:"e"`
}

// handlePeer handles one message from a peer; it runs on the peer connection's reader
// goroutine.
func (n *Node) handlePeer(from string, m *peerMsg) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	c := n.cluster
	if m.Req != nil {
		n.onStealRequestLocked(*m.Req, now)
	}
	if m.Grant != nil {
		n.onGrantLocked(m.Grant, now)
	}
	if m.Empty != nil {
		c.thief.OnEmpty(now, *m.Empty)
	}
	if m.Reply != nil {
		n.onReplyLocked(*m.Reply, now)
	}
	if m.Release != nil {
		c.thief.OnRelease(*m.Release)
	}
	if len(m.Reports) > 0 {
		var acks []ack
		for i := range m.Reports {
			if n.onReportLocked(from, &m.Reports[i], now) {
				acks = append(acks, ack{m.Reports[i].ID, m.Reports[i].Epoch})
			}
		}
		if len(acks) > 0 {
			n.sendLocked(from, &peerMsg{Acks: acks})
		}
	}
	for _, a := range m.Acks {
		if o := c.outbox[a.ID]; o != nil && o.owner == from && o.report.Epoch == a.Epoch {
			delete(c.outbox, a.ID)
		}
	}
	if m.Load != nil {
		if p, ok := n.peerLocked(from); ok && (p.load == nil || m.Load.Ver > p.load.Ver) {
			p.load, p.loadSeen = m.Load, now
		}
	}
	if len(m.Cancel) > 0 {
		acks := make([]ack, 0, len(m.Cancel))
		for _, cm := range m.Cancel {
			if t := c.foreign[cm.ID]; t != nil && t.epoch <= cm.Epoch && string(t.owner) == from {
				n.dropForeignLocked(cm.ID, t)
			}
			acks = append(acks, ack(cm))
		}
		n.sendLocked(from, &peerMsg{CancelAcks: acks})
	}
	for _, a := range m.CancelAcks {
		if pc := c.cancels[a.ID]; pc != nil && pc.exec == from && pc.epoch == a.Epoch {
			delete(c.cancels, a.ID)
		}
	}
	n.dispatchLocked()
	n.trimLocked()
}

// onStealRequestLocked answers a thief: a grant of queued tasks it can serve, or empty.
func (n *Node) onStealRequestLocked(req steal.StealRequest, now time.Time) {
	c := n.cluster
	thief, ok := n.peerLocked(string(req.Thief))
	if !ok {
		return // not (yet) a live member for us: it will time out and try elsewhere
	}
	var cands []steal.Candidate
	var tasks []*task
	if !n.stopping {
		cands, tasks = n.candidatesLocked(req)
	}
	d := c.victim.OnRequest(now, req, cands)
	taken := make([]bool, len(tasks))
	for i, k := range d.Take {
		t := tasks[k]
		taken[k] = true
		t.epoch = d.Grant.Tasks[i].Epoch
		n.setExecLocked(t, string(req.Thief))
		t.waiting = "granted to " + thief.name
	}
	for k, t := range tasks {
		if !taken[k] {
			n.q.push(t)
		}
	}
	for _, g := range d.Requeue {
		n.requeueGrantedLocked(g, now)
	}
	switch {
	case d.Grant != nil:
		n.sendGrantLocked(*d.Grant)
	case d.Empty != nil:
		n.sendLocked(string(req.Thief), &peerMsg{Empty: d.Empty})
	}
}

// candidatesLocked takes out of the queue the best queued tasks this node owns that the
// thief can serve: enough for the victim to choose from (twice what it may take, so
// "half the backlog" still holds for small backlogs). The caller puts back those not
// granted.
func (n *Node) candidatesLocked(req steal.StealRequest) ([]steal.Candidate, []*task) {
	limit := 2*req.Max + 2
	var tasks []*task
	// Popping a class empty takes it out of q.active: range over a copy.
	for _, cl := range slices.Clone(n.q.active) {
		if cl.heap.Len() == cl.foreign || !req.Cap.CanServe(cl.stealClass()) {
			continue
		}
		var aside []*task
		got := 0
		for cl.heap.Len() > 0 && got < limit {
			t := n.q.pop(cl)
			if t.foreign {
				aside = append(aside, t)
				continue
			}
			tasks = append(tasks, t)
			got++
		}
		for _, t := range aside {
			n.q.push(t)
		}
	}
	sortTasks(tasks)
	if len(tasks) > limit {
		for _, t := range tasks[limit:] {
			n.q.push(t)
		}
		tasks = tasks[:limit]
	}
	cands := make([]steal.Candidate, len(tasks))
	for i, t := range tasks {
		cands[i] = steal.Candidate{ID: t.id, Epoch: t.epoch, Priority: t.spec.Priority, Class: t.class.stealClass()}
	}
	return cands, tasks
}

// sendGrantLocked sends (or resends) a grant with the specs of its tasks.
func (n *Node) sendGrantLocked(g steal.Grant) {
	gm := &grantMsg{Grant: g, Tasks: make([]grantedRun, 0, len(g.Tasks))}
	for _, gt := range g.Tasks {
		t := n.store.get(gt.ID)
		if t == nil || t.state.Terminal() || t.epoch != gt.Epoch {
			// A resend for a task that moved on meanwhile: the thief acknowledges the
			// grant but does not run it.
			gm.Tasks = append(gm.Tasks, grantedRun{ID: gt.ID, Void: true})
			continue
		}
		gm.Tasks = append(gm.Tasks, grantedRun{ID: t.id, Spec: t.spec, Attempt: t.attempt, Deps: t.deps})
	}
	n.sendLocked(string(g.Thief), &peerMsg{Grant: gm})
}

// onGrantLocked takes the tasks of an accepted grant into the queue as foreign tasks.
func (n *Node) onGrantLocked(gm *grantMsg, now time.Time) {
	c := n.cluster
	reply, accepted := c.thief.OnGrant(now, gm.Grant)
	specs := make(map[string]*grantedRun, len(gm.Tasks))
	for i := range gm.Tasks {
		specs[gm.Tasks[i].ID] = &gm.Tasks[i]
	}
	for _, gt := range accepted {
		g := specs[gt.ID]
		if g == nil || g.Void {
			continue
		}
		if old := c.foreign[gt.ID]; old != nil {
			// Granted again while a copy from an earlier grant is still here (this
			// node was taken for dead and back): that copy carries on under the new
			// epoch, so its result counts.
			if old.owner == gm.Grant.Victim && gt.Epoch > old.epoch {
				old.epoch = gt.Epoch
				if old.state == api.Running {
					n.reportRunningLocked(old, now)
				}
			}
			continue
		}
		if n.stopping {
			n.returnLocked(g.ID, gt.Epoch, string(gm.Grant.Victim), now)
			continue
		}
		t := &task{
			id: g.ID, spec: g.Spec, needs: needsOf(g.Spec.Requires), attempt: g.Attempt, epoch: gt.Epoch,
			deps: g.Deps, foreign: true, owner: gm.Grant.Victim, created: now, heapIdx: -1, state: api.Queued,
		}
		t.class = n.classLocked(t.spec.Type, t.needs)
		c.foreign[t.id] = t
		t.queued = now
		n.q.push(t)
	}
	n.sendLocked(string(gm.Grant.Victim), &peerMsg{Reply: &reply})
}

// onReplyLocked settles a grant the thief answered.
func (n *Node) onReplyLocked(r steal.Reply, now time.Time) {
	c := n.cluster
	s := c.victim.OnReply(r)
	thief, _ := n.peerLocked(string(r.Thief))
	for _, g := range s.Acked {
		t := n.store.get(g.ID)
		if t == nil || t.epoch != g.Epoch || t.state.Terminal() {
			continue
		}
		n.setExecLocked(t, string(r.Thief))
		if thief != nil {
			t.node = thief.name
			t.waiting = "stolen by " + thief.name + "; starting there"
		}
	}
	for _, g := range s.Requeue {
		n.requeueGrantedLocked(g, now)
	}
	if s.Release != nil {
		n.sendLocked(string(r.Thief), &peerMsg{Release: s.Release})
	}
}

// requeueGrantedLocked puts a task back in the queue after its grant fell through.
func (n *Node) requeueGrantedLocked(g steal.GrantedTask, now time.Time) {
	t := n.store.get(g.ID)
	if t == nil || t.epoch != g.Epoch || t.state.Terminal() || t.heapIdx >= 0 {
		return
	}
	t.epoch++
	n.setExecLocked(t, "")
	n.enqueueLocked(t, now)
}

// onReportLocked applies an executor's report; it returns whether to acknowledge it
// (every final report is acknowledged, applied or stale, so the executor stops sending).
func (n *Node) onReportLocked(from string, r *report, now time.Time) bool {
	final := r.State != api.Running
	t := n.store.get(r.ID)
	if t == nil || t.foreign || t.state.Terminal() || steal.Stale(t.epoch, r.Epoch) || t.epoch != r.Epoch || t.exec != from {
		return final
	}
	t.attempt = max(t.attempt, r.Attempt)
	t.node = r.Node
	switch {
	case r.Returned:
		n.setExecLocked(t, "")
		t.node = ""
		t.epoch++
		n.enqueueLocked(t, now)
	case r.State == api.Running:
		t.started = r.At
		t.waiting = ""
		t.err = ""
		n.setStateLocked(t, api.Running, now)
	case r.Lost:
		p := n.cluster.peers[from]
		if p != nil {
			n.executorLostLocked(t, p, now)
		}
	case r.State == api.Succeeded:
		n.setExecLocked(t, "")
		t.result = r.Result
		n.terminateLocked(t, api.Succeeded, "", now)
	default:
		n.setExecLocked(t, "")
		t.result = r.Result
		n.attemptFailedLocked(t, r.Error, now)
	}
	if final {
		n.log.Debug("remote run finished", slog.String("task", t.id), slog.String("node", r.Node), slog.String("state", string(r.State)))
	}
	return final
}
