package gossip

import (
	"log/slog"
	"math/rand/v2"
	"time"
)

// memberlist never re-contacts a member it declared dead, so two sides of a
// healed partition would stay apart. Like serf's reconnector, every
// ReconnectInterval we pick one failed member (not one that left) and join
// it again; the push/pull makes each side refute the other's death notice
// and the halves merge. Failed members are retried, and listed by Members,
// until ReconnectTimeout; members that left are listed until
// TombstoneTimeout.

// reconnectLoop runs until Shutdown.
func (c *Cluster) reconnectLoop() {
	for c.sleep(c.cfg.ReconnectInterval) {
		addr, name := c.reapAndPick(time.Now())
		if addr == "" || c.left.Load() {
			continue
		}
		n, err := c.ml.Join([]string{addr})
		if err != nil {
			c.logger.Debug("reconnect failed", slog.String("peer", name),
				slog.String("addr", addr), slog.Any("error", err))
			continue
		}
		c.logger.Info("reconnected to failed member", slog.String("peer", name),
			slog.String("addr", addr), slog.Int("contacted", n))
	}
}

// reapAndPick forgets failed members past ReconnectTimeout and left ones
// past TombstoneTimeout, then returns a random remaining failed member.
func (c *Cluster) reapAndPick(now time.Time) (addr, name string) {
	c.stateLock.Lock()
	defer c.stateLock.Unlock()
	var failed []string
	for n, e := range c.members {
		switch {
		case e.state == StateDead && now.Sub(e.since) > c.cfg.ReconnectTimeout,
			e.state == StateLeft && now.Sub(e.since) > c.cfg.TombstoneTimeout:
			delete(c.members, n)
			c.logger.Debug("forgetting member", slog.String("peer", n), slog.String("state", e.state.String()))
		case e.state == StateDead && n != c.cfg.Name:
			failed = append(failed, n)
		}
	}
	if len(failed) == 0 {
		return "", ""
	}
	name = failed[rand.IntN(len(failed))]
	return c.members[name].addr, name
}
