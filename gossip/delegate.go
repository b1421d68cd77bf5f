package gossip

import (
	"bytes"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate plugs the Cluster into memberlist, as serf does.
//
// memberlist calls the Delegate methods concurrently from its network
// goroutines, and the EventDelegate methods one at a time while holding its
// node lock. So none of these methods may block or call back into
// memberlist: they only touch Cluster.stateLock (briefly), the broadcast
// queue and the event queue.
type delegate struct {
	c *Cluster
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

// NodeMeta returns the local metadata for memberlist's alive messages.
func (d *delegate) NodeMeta(limit int) []byte {
	d.c.stateLock.Lock()
	defer d.c.stateLock.Unlock()
	if len(d.c.meta) > limit {
		return nil // unreachable: New and UpdateMeta check MaxMetaSize
	}
	return bytes.Clone(d.c.meta)
}

// NotifyMsg handles a user message from a peer's gossip.
func (d *delegate) NotifyMsg(buf []byte) {
	if len(buf) == 0 {
		return
	}
	now := time.Now()
	switch buf[0] {
	case msgLoad:
		r, err := decodeLoad(buf, now)
		if err != nil {
			d.c.logger.Debug("dropping malformed load report", slog.Int("bytes", len(buf)))
			return
		}
		d.c.acceptLoad(r, true, now)
	case msgLeave:
		name, inc, err := decodeLeave(buf)
		if err != nil {
			d.c.logger.Debug("dropping malformed leave intent", slog.Int("bytes", len(buf)))
			return
		}
		d.c.acceptLeave(name, inc, now)
	default:
		d.c.logger.Debug("dropping unknown gossip message", slog.Int("type", int(buf[0])))
	}
}

// GetBroadcasts hands memberlist our queued load reports to piggyback.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.c.broadcasts.GetBroadcasts(overhead, limit)
}

// LocalState returns all load reports for a push/pull exchange.
func (d *delegate) LocalState(join bool) []byte {
	return d.c.loadState(time.Now())
}

// MergeRemoteState merges a peer's load reports from a push/pull exchange.
// memberlist has merged the peer's member list already, so reports of
// members new to us are accepted.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 {
		return
	}
	now := time.Now()
	reports, err := decodeState(buf, now)
	if err != nil {
		d.c.logger.Debug("dropping malformed push/pull state", slog.Int("bytes", len(buf)))
		return
	}
	for _, r := range reports {
		d.c.acceptLoad(r, false, now)
	}
}

// NotifyJoin records a member becoming alive.
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.c.observe(n, eventJoin) }

// NotifyUpdate records a member's new metadata.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.c.observe(n, eventUpdate) }

// NotifyLeave records a member leaving or failing. memberlist does not say
// which (n.State is not maintained), so observe decides from leave intents.
func (d *delegate) NotifyLeave(n *memberlist.Node) { d.c.observe(n, eventFailed) }

// observe updates the member table from a memberlist node (copying it: it
// belongs to memberlist) and queues the event for the user. A death
// (eventFailed) becomes a leave when the member announced one.
func (c *Cluster) observe(n *memberlist.Node, kind eventKind) {
	now := time.Now()
	name, addr := n.Name, hostPort(n.Addr, n.Port)
	meta := bytes.Clone(n.Meta)

	c.stateLock.Lock()
	e := c.members[name]
	if e == nil {
		e = &memberEntry{state: StateDead} // so that a join counts as a change
		c.members[name] = e
	}
	if kind == eventFailed && name != c.cfg.Name && c.leftLocked(name, e.since, now) {
		kind = eventLeave
	}
	if kind == eventFailed && name == c.cfg.Name && c.left.Load() {
		kind = eventLeave
	}
	state := StateAlive
	switch kind {
	case eventLeave:
		state = StateLeft
	case eventFailed:
		state = StateDead
	}
	if e.state != state || e.since.IsZero() {
		e.since = now
	}
	e.addr, e.meta, e.state = addr, meta, state
	if state != StateAlive {
		delete(c.loads, name)
	}
	alive := 0
	for _, e := range c.members {
		if e.state == StateAlive {
			alive++
		}
	}
	c.numAlive.Store(int32(alive))
	c.stateLock.Unlock()

	if name == c.cfg.Name {
		return
	}
	c.logger.Info("member "+[...]string{"joined", "updated", "left", "failed"}[kind],
		slog.String("peer", name), slog.String("addr", addr))
	c.emit(kind, Member{Name: name, Addr: addr, Meta: bytes.Clone(meta), State: state})
}

// emit queues an event for the user's Events, if any.
func (c *Cluster) emit(kind eventKind, m Member) {
	if c.events != nil {
		c.events.push(event{kind: kind, member: m})
	}
}
