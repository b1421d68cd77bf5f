package gossip

import (
	"bytes"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberlist marks a member that announced its own death as left, but the
// Node it hands to EventDelegate.NotifyLeave does not carry that state
// (hashicorp/memberlist#266, #321). So, like serf, we announce a graceful
// departure ourselves: Leave first broadcasts a leave intent (name +
// incarnation), which every member records and relays, and then lets
// memberlist broadcast its dead message. A member whose death arrives with
// a recent intent on record is reported as left; if the intent arrives
// after the death, the member is converted from dead to left and a
// MemberLeave follows the MemberFailed.

// leaveIntentTTL is how long an intent counts after it is first seen.
func (c *Cluster) leaveIntentTTL() time.Duration {
	if c.cfg.Profile == ProfileFast {
		return 5 * time.Second
	}
	return 30 * time.Second
}

// leaveIntent is a recorded announcement that a member is leaving.
type leaveIntent struct {
	incarnation int64
	seen        time.Time
}

func encodeLeave(name string, incarnation int64) []byte {
	b := []byte{msgLeave}
	b = appendString(b, name)
	return appendVarint(b, incarnation)
}

func decodeLeave(buf []byte) (name string, incarnation int64, err error) {
	if len(buf) == 0 || buf[0] != msgLeave {
		return "", 0, errMalformed
	}
	d := reader{b: buf[1:]}
	name = string(d.bytes())
	incarnation = d.varint()
	return name, incarnation, d.err
}

// leaveBroadcast carries a leave intent; Finished signals notify once the
// queue is done transmitting it.
type leaveBroadcast struct {
	name   string
	msg    []byte
	notify chan struct{}
}

var _ memberlist.NamedBroadcast = (*leaveBroadcast)(nil)

// Invalidates reports whether b replaces other (same member's intent).
func (b *leaveBroadcast) Invalidates(other memberlist.Broadcast) bool {
	nb, ok := other.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}

// Name identifies the leaving member.
func (b *leaveBroadcast) Name() string { return b.name }

// Message returns the encoded intent.
func (b *leaveBroadcast) Message() []byte { return b.msg }

// Finished signals notify, if any.
func (b *leaveBroadcast) Finished() {
	if b.notify != nil {
		select {
		case b.notify <- struct{}{}:
		default:
		}
	}
}

func newLeaveBroadcast(name string, incarnation int64, notify chan struct{}) *leaveBroadcast {
	return &leaveBroadcast{name: "leave/" + name, msg: encodeLeave(name, incarnation), notify: notify}
}

// Leave announces a graceful departure: peers see MemberLeave instead of
// MemberFailed, and this member stops joining and sending load. It waits up
// to timeout for the announcement to go out (half for this package's leave
// intent, the rest for memberlist's). Call Shutdown afterwards; a member
// cannot rejoin after Leave.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.leaveMu.RLock()
	defer c.leaveMu.RUnlock()
	if c.isClosed() {
		return ErrShutdown // memberlist panics on Leave after Shutdown
	}
	deadline := time.Now().Add(timeout)
	if !c.left.Swap(true) {
		c.logger.Info("leaving cluster")
		if c.NumAlive() > 1 {
			notify := make(chan struct{}, 1)
			c.broadcasts.QueueBroadcast(newLeaveBroadcast(c.cfg.Name, c.incarnation, notify))
			t := time.NewTimer(timeout / 2)
			select {
			case <-notify:
			case <-t.C:
				c.logger.Warn("leave intent not fully broadcast before timeout")
			case <-c.stop:
			}
			t.Stop()
		}
	}
	if err := c.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// acceptLeave records a leave intent from the network, converts the member
// from dead to left if its death arrived first, and relays the intent the
// first time it is seen.
func (c *Cluster) acceptLeave(name string, incarnation int64, now time.Time) {
	if name == c.cfg.Name {
		return
	}
	c.stateLock.Lock()
	if old := c.intents[name]; (old != nil && old.incarnation >= incarnation) || c.latestInc[name] > incarnation {
		c.stateLock.Unlock() // seen already, or from a previous life of the member
		return
	}
	c.intents[name] = &leaveIntent{incarnation: incarnation, seen: now}
	var converted *Member
	if e := c.members[name]; e != nil && e.state == StateDead {
		e.state, e.since = StateLeft, now
		m := Member{Name: name, Addr: e.addr, Meta: bytes.Clone(e.meta), State: StateLeft}
		converted = &m
	}
	c.stateLock.Unlock()

	c.broadcasts.QueueBroadcast(newLeaveBroadcast(name, incarnation, nil))
	if converted != nil {
		c.logger.Info("failed member had left", slog.String("peer", name))
		c.emit(eventLeave, *converted)
	}
}

// leftLocked reports whether a recorded intent explains the death of
// member name that has been alive since aliveSince.
func (c *Cluster) leftLocked(name string, aliveSince, now time.Time) bool {
	in := c.intents[name]
	return in != nil && now.Sub(in.seen) < c.leaveIntentTTL() &&
		!in.seen.Before(aliveSince) && c.latestInc[name] <= in.incarnation
}

// sweepIntentsLocked forgets expired intents.
func (c *Cluster) sweepIntentsLocked(now time.Time) {
	for name, in := range c.intents {
		if now.Sub(in.seen) >= c.leaveIntentTTL() {
			delete(c.intents, name)
		}
	}
}
