package gossip

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestPartitionHeals cuts {a} off from {b, c} until both sides declare the
// other dead, waits until memberlist alone would never contact the dead
// again (its GossipToTheDeadTime has passed and push/pull only picks alive
// members), heals the network and checks the halves merge through the
// reconnector.
func TestPartitionHeals(t *testing.T) {
	fn := newFaultNet()
	recA, recB := &recorder{}, &recorder{}
	logA, recordsA := newCapture()
	logB, recordsB := newCapture()
	logC, recordsC := newCapture()
	faulty := func(c *Config) { c.Transport = newFaultTransport(t, fn) }
	with := func(rec *recorder, logger *slog.Logger) func(*Config) {
		return func(c *Config) { c.Events, c.Logger = rec, logger }
	}
	a := start(t, "a", faulty, with(recA, logA))
	b := start(t, "b", faulty, with(recB, logB), joining(a))
	c := start(t, "c", faulty, joining(a), func(c *Config) { c.Logger = logC })
	waitConverged(t, a, b, c)

	fn.partition([]string{a.LocalAddr()}, []string{b.LocalAddr(), c.LocalAddr()})
	waitFor(t, 10*time.Second, "both sides to declare the other dead", func() bool {
		return stateOf(a, "b") == "dead" && stateOf(a, "c") == "dead" &&
			stateOf(b, "a") == "dead" && stateOf(c, "a") == "dead" &&
			stateOf(b, "c") == "alive" && a.NumAlive() == 1 && b.NumAlive() == 2
	})
	if !recA.has("failed", "b") || !recB.has("failed", "a") {
		t.Fatal("no MemberFailed events for the partitioned members")
	}
	// Dead members are listed, and retried, but memberlist would not
	// gossip to them any more after GossipToTheDeadTime.
	time.Sleep(memberlistConfig(ProfileFast).GossipToTheDeadTime + 200*time.Millisecond)
	if stateOf(a, "b") != "dead" {
		t.Fatalf("a sees b as %s during the partition", stateOf(a, "b"))
	}

	fn.heal()
	waitConverged(t, a, b, c)
	waitFor(t, 5*time.Second, "rejoin events", func() bool {
		return len(recA.find("join", "b")) == 2 && len(recB.find("join", "a")) == 2
	})
	reconnected := func(records func() []slog.Record) bool {
		for _, r := range records() {
			if strings.HasPrefix(r.Message, "reconnected to failed member") {
				return true
			}
		}
		return false
	}
	// Any member's reconnector may be the one that rejoins (c's too).
	if !reconnected(recordsA) && !reconnected(recordsB) && !reconnected(recordsC) {
		t.Error("the halves merged, but not through the reconnector")
	}
}

// TestFailedMembersAreForgotten checks ReconnectTimeout: a failed member is
// listed as dead, then dropped.
func TestFailedMembersAreForgotten(t *testing.T) {
	quick := func(c *Config) { c.ReconnectTimeout = 300 * time.Millisecond }
	a := start(t, "a", quick)
	b := start(t, "b", quick, joining(a))
	waitConverged(t, a, b)
	shutdown(t, b)
	waitFor(t, 10*time.Second, "a to see b dead", func() bool { return stateOf(a, "b") == "dead" })
	waitFor(t, 5*time.Second, "a to forget b", func() bool { return stateOf(a, "b") == "absent" })
	if len(a.Members()) != 1 {
		t.Fatalf("members = %+v", a.Members())
	}
}
