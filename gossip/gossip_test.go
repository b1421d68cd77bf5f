package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

func TestClusterConverges(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d members", n), func(t *testing.T) {
			cs := cluster(t, n)
			for _, c := range cs {
				ms := c.Members()
				if len(ms) != n {
					t.Fatalf("%s sees %d members, want %d", c.LocalName(), len(ms), n)
				}
				for i, m := range ms {
					if m.Name != fmt.Sprintf("m%d", i) { // sorted by name
						t.Errorf("%s: member %d is %q", c.LocalName(), i, m.Name)
					}
					if m.Local != (m.Name == c.LocalName()) {
						t.Errorf("%s: %s has Local=%v", c.LocalName(), m.Name, m.Local)
					}
					if want := cs[i].LocalAddr(); m.Addr != want {
						t.Errorf("%s: %s has addr %q, want %q", c.LocalName(), m.Name, m.Addr, want)
					}
				}
			}
		})
	}
}

func TestLocalAddrReportsEphemeralPort(t *testing.T) {
	c := start(t, "a")
	host, port, err := net.SplitHostPort(c.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := strconv.Atoi(port); host != "127.0.0.1" || p == 0 {
		t.Fatalf("LocalAddr() = %q, want 127.0.0.1 and a real port", c.LocalAddr())
	}
	// Something is listening there: a peer can join through it.
	b := start(t, "b")
	if n, err := b.Join(context.Background(), []string{c.LocalAddr()}); err != nil || n != 1 {
		t.Fatalf("Join = %d, %v", n, err)
	}
}

func TestAdvertiseAddr(t *testing.T) {
	a := start(t, "a", func(c *Config) { c.AdvertiseAddr = "127.0.0.1:0" })
	if _, port, _ := net.SplitHostPort(a.LocalAddr()); port == "0" {
		t.Fatalf("advertise port 0 not replaced by the bound port: %s", a.LocalAddr())
	}
}

func TestMetaAndUpdate(t *testing.T) {
	rec := &recorder{}
	a := start(t, "a", func(c *Config) { c.Meta = []byte("rpc=1") })
	b := start(t, "b", withEvents(rec), joining(a))
	waitConverged(t, a, b)

	waitFor(t, 5*time.Second, "b's join event for a", func() bool { return rec.has("join", "a") })
	if got := rec.find("join", "a")[0]; string(got.Meta) != "rpc=1" || got.State != StateAlive || got.Addr != a.LocalAddr() {
		t.Fatalf("join event = %+v", got)
	}
	if m, _ := b.Member("a"); string(m.Meta) != "rpc=1" {
		t.Fatalf("b sees a's meta %q", m.Meta)
	}
	if rec.has("join", "b") {
		t.Fatal("an event was delivered about the local member")
	}

	if err := a.UpdateMeta([]byte("rpc=2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b's update event for a", func() bool { return rec.has("update", "a") })
	if got := rec.find("update", "a"); string(got[len(got)-1].Meta) != "rpc=2" {
		t.Fatalf("update event meta = %q", got[len(got)-1].Meta)
	}
	if m, _ := b.Member("a"); string(m.Meta) != "rpc=2" {
		t.Fatalf("b sees a's meta %q after update", m.Meta)
	}
	if m, _ := a.Member("a"); string(m.Meta) != "rpc=2" {
		t.Fatalf("a sees its own meta %q after update", m.Meta)
	}

	if err := a.UpdateMeta(make([]byte, MaxMetaSize+1)); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("oversized UpdateMeta: %v", err)
	}
}

func TestGracefulLeave(t *testing.T) {
	rec := &recorder{}
	cs := cluster(t, 3, withEvents(rec))
	a, b, c := cs[0], cs[1], cs[2]
	if err := c.SetLoad([]byte("busy")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a to see c's load", func() bool { _, _, ok := a.Load("m2"); return ok })

	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	shutdown(t, c)

	for _, x := range []*Cluster{a, b} {
		waitFor(t, 5*time.Second, x.LocalName()+" to see m2 left", func() bool { return stateOf(x, "m2") == "left" })
		if x.NumAlive() != 2 {
			t.Errorf("%s: NumAlive = %d, want 2", x.LocalName(), x.NumAlive())
		}
		if _, _, ok := x.Load("m2"); ok {
			t.Errorf("%s still has the load of a member that left", x.LocalName())
		}
	}
	// Every member (a and b share rec) reported the leave, none a failure.
	waitFor(t, 5*time.Second, "two leave events", func() bool { return len(rec.find("leave", "m2")) == 2 })
	if ev := rec.find("leave", "m2")[0]; ev.State != StateLeft {
		t.Errorf("leave event state = %v", ev.State)
	}
	if rec.has("failed", "m2") {
		t.Error("a graceful leave was reported as a failure")
	}
}

func TestShutdownWithoutLeaveIsFailure(t *testing.T) {
	rec := &recorder{}
	a := start(t, "a", withEvents(rec))
	b := start(t, "b", joining(a))
	waitConverged(t, a, b)
	if err := b.SetLoad([]byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a to see b's load", func() bool { _, _, ok := a.Load("b"); return ok })

	shutdown(t, b)
	waitFor(t, 10*time.Second, "a's failed event for b", func() bool { return rec.has("failed", "b") })
	if ev := rec.find("failed", "b")[0]; ev.State != StateDead {
		t.Errorf("failed event state = %v", ev.State)
	}
	if got := stateOf(a, "b"); got != "dead" {
		t.Errorf("a sees b as %s", got)
	}
	if _, _, ok := a.Load("b"); ok {
		t.Error("a still has the load of a dead member")
	}
	if rec.has("leave", "b") {
		t.Error("a crash was reported as a graceful leave")
	}
}

func TestJoinRetriesUntilSeedAppears(t *testing.T) {
	port := freePort(t)
	seed := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	b := start(t, "b", func(c *Config) { c.Join = []string{seed} })

	// b keeps failing for a while: nobody is there.
	time.Sleep(300 * time.Millisecond)
	if b.NumAlive() != 1 {
		t.Fatalf("b joined a cluster that does not exist")
	}
	a := start(t, "a", func(c *Config) { c.BindAddr = seed })
	waitConverged(t, a, b)
}

func TestJoin(t *testing.T) {
	a := start(t, "a")
	b := start(t, "b")
	ctx := context.Background()

	if _, err := b.Join(ctx, nil); !errors.Is(err, ErrNoSeeds) {
		t.Errorf("Join(nil) = %v", err)
	}
	dead := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	if n, err := b.Join(ctx, []string{dead}); err == nil || n != 0 {
		t.Errorf("Join(nobody) = %d, %v; want an error", n, err)
	}
	if n, err := b.Join(ctx, []string{dead, a.LocalAddr()}); err != nil || n != 1 {
		t.Errorf("Join(nobody, a) = %d, %v; want 1, nil", n, err)
	}
	waitConverged(t, a, b)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Join(cancelled, []string{a.LocalAddr()}); !errors.Is(err, context.Canceled) {
		// The join may also have won the race; both are fine, but it must not hang.
		if err != nil {
			t.Errorf("Join(cancelled) = %v", err)
		}
	}
}

func TestShutdownIsIdempotentAndFinal(t *testing.T) {
	rec := &recorder{}
	a := start(t, "a", withEvents(rec))
	ctx := context.Background()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := a.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown = %v", err)
	}
	if err := a.UpdateMeta(nil); !errors.Is(err, ErrShutdown) {
		t.Errorf("UpdateMeta after Shutdown = %v", err)
	}
	if _, err := a.Join(ctx, []string{"127.0.0.1:1"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Shutdown = %v", err)
	}
}

func TestLeaveThenShutdownAlone(t *testing.T) {
	a := start(t, "a")
	if err := a.Leave(time.Second); err != nil {
		t.Fatalf("Leave with no peers: %v", err)
	}
	if err := a.Leave(time.Second); err != nil {
		t.Fatalf("second Leave: %v", err)
	}
}

func TestMembersAreCopies(t *testing.T) {
	a := start(t, "a", func(c *Config) { c.Meta = []byte("meta") })
	m, _ := a.Member("a")
	m.Meta[0] = 'X'
	if m2, _ := a.Member("a"); !bytes.Equal(m2.Meta, []byte("meta")) {
		t.Fatalf("Member returned shared memory: %q", m2.Meta)
	}
}

func TestLateLeaveIntentTurnsFailureIntoLeave(t *testing.T) {
	rec := &recorder{}
	a := start(t, "a", withEvents(rec))
	b := start(t, "b", joining(a))
	waitConverged(t, a, b)
	inc := b.incarnation
	shutdown(t, b)
	waitFor(t, 10*time.Second, "a's failed event for b", func() bool { return rec.has("failed", "b") })

	a.acceptLeave("b", inc, time.Now())
	waitFor(t, 5*time.Second, "a's leave event for b", func() bool { return rec.has("leave", "b") })
	if got := stateOf(a, "b"); got != "left" {
		t.Fatalf("a sees b as %s", got)
	}
	a.acceptLeave("b", inc, time.Now()) // a relayed duplicate changes nothing
	time.Sleep(50 * time.Millisecond)
	if n := len(rec.find("leave", "b")); n != 1 {
		t.Fatalf("%d leave events for one departure", n)
	}
}
