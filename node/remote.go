package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// Running tasks for other nodes (the thief's side) and the loops that keep stealing
// and load reports going.

// reportRunningLocked tells a foreign task's owner that its run started.
func (n *Node) reportRunningLocked(t *task, now time.Time) {
	n.queueReportLocked(string(t.owner), report{
		ID: t.id, Epoch: t.epoch, Attempt: t.attempt, State: api.Running, Node: n.cfg.Name, At: now,
	})
}

// finishForeignLocked reports a foreign run's outcome to its owner and keeps the
// report until the owner acknowledges it.
func (n *Node) finishForeignLocked(r *run, result json.RawMessage, err error) {
	t := r.t
	c := n.cluster
	if c.foreign[t.id] != t {
		return // cancelled by its owner, or the owner is gone
	}
	delete(c.foreign, t.id)
	if ran := time.Since(t.started); c.avgRun == 0 {
		c.avgRun = ran
	} else {
		c.avgRun = (7*c.avgRun + ran) / 8
	}
	rep := report{ID: t.id, Epoch: t.epoch, Attempt: t.attempt, State: api.Succeeded, Node: n.cfg.Name, At: time.Now(), Result: result}
	if err != nil {
		rep.State = api.Failed
		rep.Error = err.Error()
		rep.Lost = errors.Is(err, ErrStopped)
	}
	c.outbox[t.id] = &outgoing{owner: string(t.owner), report: rep, sentAt: rep.At}
	n.queueReportLocked(string(t.owner), rep)
}

// queueReportLocked queues a report for its owner. Reports to one owner travel many to
// a message: the report loop sends whatever has gathered each time it wakes, so a busy
// node sends few large messages and an idle one sends each report at once.
func (n *Node) queueReportLocked(owner string, r report) {
	c := n.cluster
	c.reports[owner] = append(c.reports[owner], r)
	if len(c.reports[owner]) == 1 {
		select {
		case c.reportWake <- struct{}{}:
		default:
		}
	}
}

// reportLoop sends the queued reports.
func (n *Node) reportLoop() {
	c := n.cluster
	for {
		select {
		case <-c.done:
			return
		case <-c.reportWake:
		}
		n.mu.Lock()
		n.flushReportsLocked()
		n.mu.Unlock()
	}
}

func (n *Node) flushReportsLocked() {
	c := n.cluster
	for owner, rs := range c.reports {
		n.sendLocked(owner, &peerMsg{Reports: rs})
		delete(c.reports, owner)
	}
}

// returnLocked gives a task back to its owner without running it (this node stops).
func (n *Node) returnLocked(id string, epoch uint64, owner string, now time.Time) {
	rep := report{ID: id, Epoch: epoch, State: api.Failed, Node: n.cfg.Name, At: now, Returned: true,
		Error: "returned: " + n.cfg.Name + " is stopping"}
	n.cluster.outbox[id] = &outgoing{owner: owner, report: rep, sentAt: now}
	n.queueReportLocked(owner, rep)
}

// returnQueuedLocked gives every foreign task that has not started back to its owner.
func (n *Node) returnQueuedLocked(now time.Time) {
	for id, t := range n.cluster.foreign {
		if t.heapIdx >= 0 {
			n.dropForeignLocked(id, t)
			n.returnLocked(id, t.epoch, string(t.owner), now)
		}
	}
}

// dropForeignLocked forgets a foreign task: out of the queue, its run cancelled.
func (n *Node) dropForeignLocked(id string, t *task) {
	delete(n.cluster.foreign, id)
	if t.heapIdx >= 0 {
		n.q.remove(t)
	}
	if t.cancelRun != nil {
		t.cancelRun()
	}
}

// stealLoop steals when this node is idle, and resends what is unanswered.
func (n *Node) stealLoop() {
	c := n.cluster
	tick := time.NewTicker(c.cfg.StealInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.done: // resends go on while running tasks finish during a shutdown
			return
		case <-tick.C:
		case <-c.wake:
		}
		n.mu.Lock()
		n.stealTickLocked(time.Now())
		n.mu.Unlock()
	}
}

func (n *Node) stealTickLocked(now time.Time) {
	c := n.cluster
	for _, r := range c.thief.Tick(now) {
		n.sendLocked(string(r.Victim), &peerMsg{Reply: &r})
	}
	for _, g := range c.victim.Tick(now) {
		n.sendGrantLocked(g)
	}
	for id, pc := range c.cancels {
		if p, ok := n.peerLocked(pc.exec); !ok || pc.tries >= maxCancelTries {
			if ok {
				n.log.Warn("a cancel got no answer; giving up on it", slog.String("task", id), slog.String("node", p.name))
			}
			delete(c.cancels, id)
			continue
		}
		if now.Sub(pc.sentAt) >= c.cfg.ReportResend {
			pc.sentAt = now
			pc.tries++
			n.sendLocked(pc.exec, &peerMsg{Cancel: []cancelMsg{{ID: id, Epoch: pc.epoch}}})
		}
	}
	for k, o := range c.outbox {
		if n.abandonedLocked(o, now) {
			delete(c.outbox, k)
			continue
		}
		if now.Sub(o.sentAt) >= c.cfg.ReportResend {
			o.sentAt = now
			n.queueReportLocked(o.owner, o.report)
		}
	}
	if n.stopping || n.draining {
		return // a node on its way out takes no more work
	}
	local := steal.Local{FreeSlots: n.cfg.Slots - n.busy, QueueLen: n.runnableLocked(), Cap: c.capability}
	if local.FreeSlots <= 0 && local.QueueLen == 0 && c.avgRun > 0 && c.avgRun < prefetchBelow {
		// Every slot is busy with short stolen runs and nothing waits behind them:
		// ask ahead for one slot's worth, so the next batch arrives before a slot
		// idles for a steal's round trip.
		local.FreeSlots = 1
	}
	if local.FreeSlots <= 0 || local.QueueLen > 0 {
		return
	}
	if req, ok := c.thief.Next(now, local, n.peerLoadsLocked()); ok {
		n.sendLocked(string(req.Victim), &peerMsg{Req: &req})
	}
}

// runnableLocked counts the queued tasks this node can run itself.
func (n *Node) runnableLocked() int {
	k := 0
	for _, cl := range n.q.active {
		if cl.unfit == "" {
			k += cl.heap.Len()
		}
	}
	return k
}

// peerLoadsLocked lists the live peers' last load reports for the thief.
func (n *Node) peerLoadsLocked() []steal.PeerLoad {
	var out []steal.PeerLoad
	for id, p := range n.cluster.peers {
		if p.gone || p.load == nil || len(p.load.Backlog) == 0 {
			continue
		}
		out = append(out, steal.PeerLoad{ID: steal.NodeID(id), Version: p.load.Ver, Backlog: p.load.Backlog})
	}
	return out
}

// capabilityLocked is what this node can run, for the thief.
func (n *Node) capabilityLocked() steal.Capability {
	c := steal.Capability{Types: map[string]bool{}, Tags: map[string]bool{}, Resources: map[string]int64{}}
	for typ := range n.handlers {
		c.Types[typ] = true
	}
	for _, t := range n.cfg.Tags {
		c.Tags[t] = true
	}
	for k, v := range n.cfg.Resources {
		c.Resources[k] = v
	}
	return c
}

// loadLoop publishes this node's load and reads the peers'.
func (n *Node) loadLoop() {
	c := n.cluster
	tick := time.NewTicker(c.cfg.LoadInterval)
	defer tick.Stop()
	var (
		last    load
		lastRaw []byte // last, encoded: an unchanged load is not sent again
	)
	raw := map[string][]byte{}
	for {
		push := false
		select {
		case <-n.stopped:
			return
		case <-tick.C:
		case <-c.loadWake:
			push = true
		}
		n.mu.Lock()
		l := n.loadLocked()
		n.mu.Unlock()
		l.Ver = last.Ver
		if b, err := msgpack.Marshal(&l); err == nil && !bytes.Equal(b, lastRaw) {
			lastRaw = b
			l.Ver++
			last = l
			if b, err := msgpack.Marshal(&l); err == nil {
				if err := c.gossip.SetLoad(b); err != nil {
					n.log.Debug("publishing load", "err", err)
				}
			}
			if push {
				// Work just arrived in an empty queue: tell the peers now rather than
				// when gossip gets there, so idle thieves start at once.
				n.mu.Lock()
				for id, p := range c.peers {
					if !p.gone {
						n.sendLocked(id, &peerMsg{Load: &l})
					}
				}
				n.mu.Unlock()
			}
		}
		for _, m := range c.gossip.Members() {
			if m.Local || len(m.Load) == 0 || bytes.Equal(raw[m.Name], m.Load) {
				continue
			}
			var pl load
			if msgpack.Unmarshal(m.Load, &pl) != nil {
				continue
			}
			raw[m.Name] = m.Load
			n.mu.Lock()
			if p := c.peers[c.names[m.Name]]; p != nil {
				p.load, p.loadSeen = &pl, time.Now().Add(-m.LoadAge)
			}
			n.mu.Unlock()
		}
	}
}

// stealableLocked counts the queued tasks this node owns (the ones peers may steal).
func (n *Node) stealableLocked() int {
	k := 0
	for _, cl := range n.q.active {
		k += cl.heap.Len() - cl.foreign
	}
	return k
}

// loadLocked is this node's load now.
func (n *Node) loadLocked() load {
	l := load{Queued: n.q.len, Bands: n.q.bands(maxBands), Running: n.busy, Free: n.cfg.Slots - n.busy, FreeRes: make(map[string]int64, len(n.res.free))}
	for k, v := range n.res.free {
		l.FreeRes[k] = v
	}
	for _, cl := range n.q.active {
		if owned := cl.heap.Len() - cl.foreign; owned > 0 {
			l.Backlog = append(l.Backlog, steal.Backlog{Class: cl.stealClass(), Count: owned, TopPriority: cl.heap[0].spec.Priority})
		}
	}
	return l
}
