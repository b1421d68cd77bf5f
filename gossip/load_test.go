package gossip

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func loadIs(c *Cluster, name, want string) bool {
	got, _, ok := c.Load(name)
	return ok && string(got) == want
}

func TestLoadPropagates(t *testing.T) {
	cs := cluster(t, 4)
	a := cs[0]
	if err := a.SetLoad([]byte("q=1")); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		waitFor(t, 5*time.Second, c.LocalName()+" to see m0's load q=1", func() bool { return loadIs(c, "m0", "q=1") })
	}
	// A newer report replaces the old everywhere.
	if err := a.SetLoad([]byte("q=2")); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		waitFor(t, 5*time.Second, c.LocalName()+" to see m0's load q=2", func() bool { return loadIs(c, "m0", "q=2") })
	}
	// Members carries it too, with a plausible age.
	for _, m := range cs[3].Members() {
		if m.Name == "m0" {
			if string(m.Load) != "q=2" || m.LoadAge < 0 || m.LoadAge > time.Second {
				t.Errorf("Members: m0 load %q age %v", m.Load, m.LoadAge)
			}
		} else if m.Load != nil {
			t.Errorf("Members: %s has load %q but never set one", m.Name, m.Load)
		}
	}
	if err := a.SetLoad(make([]byte, MaxLoadSize+1)); !errors.Is(err, ErrLoadTooLarge) {
		t.Errorf("oversized SetLoad: %v", err)
	}
}

func TestLoadStaysFreshWhileStaleReportsExpire(t *testing.T) {
	const ttl = 600 * time.Millisecond
	cs := cluster(t, 3, func(c *Config) { c.LoadTTL = ttl })
	a, b := cs[0], cs[1]
	if err := a.SetLoad([]byte("live")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b to see a's load", func() bool { return loadIs(b, "m0", "live") })

	// m2 never reports load; plant a report from it that nobody refreshes.
	planted := &loadReport{origin: "m2", incarnation: 1, version: 1, payload: []byte("ghost"), produced: time.Now()}
	if !b.acceptLoad(planted, false, time.Now()) {
		t.Fatal("b rejected a fresh report from an alive member")
	}
	if !loadIs(b, "m2", "ghost") {
		t.Fatal("planted report not visible")
	}
	plantedAt := time.Now()
	waitFor(t, 5*time.Second, "the unrefreshed report to expire", func() bool { _, _, ok := b.Load("m2"); return !ok })
	if age := time.Since(plantedAt); age < ttl-50*time.Millisecond {
		t.Errorf("report expired after %v, before its TTL %v", age, ttl)
	}
	// a's unchanged report is re-sent, so it never went stale meanwhile.
	time.Sleep(ttl) // let more than a TTL pass with a's load unchanged
	if !loadIs(b, "m0", "live") {
		t.Error("a live member's unchanged load went stale")
	}
}

func TestLoadVersioning(t *testing.T) {
	a := start(t, "a")
	b := start(t, "b", joining(a))
	waitConverged(t, a, b)
	now := time.Now()
	rep := func(inc int64, ver uint64, p string) *loadReport {
		return &loadReport{origin: "b", incarnation: inc, version: ver, payload: []byte(p), produced: now}
	}
	steps := []struct {
		r      *loadReport
		accept bool
		want   string
	}{
		{rep(100, 5, "v5"), true, "v5"},
		{rep(100, 4, "v4"), false, "v5"},                                                   // older version
		{rep(100, 5, "v5 again"), false, "v5"},                                             // same version
		{rep(100, 6, "v6"), true, "v6"},                                                    // newer version
		{rep(99, 1000, "old life"), false, "v6"},                                           // previous incarnation, higher version
		{rep(200, 1, "restarted"), true, "restarted"},                                      // restart: new incarnation, version reset
		{&loadReport{origin: "a", incarnation: 300, version: 1, produced: now}, false, ""}, // own name
	}
	for i, s := range steps {
		if got := a.acceptLoad(s.r, false, now); got != s.accept {
			t.Errorf("step %d: accept = %v, want %v", i, got, s.accept)
		}
		if s.want != "" && !loadIs(a, "b", s.want) {
			got, _, _ := a.Load("b")
			t.Errorf("step %d: load = %q, want %q", i, got, s.want)
		}
	}
	if a.acceptLoad(&loadReport{origin: "stranger", incarnation: 1, version: 1, produced: now}, false, now) {
		t.Error("accepted a report from an unknown member")
	}
	stale := rep(300, 1, "stale")
	stale.produced = now.Add(-a.cfg.LoadTTL)
	if a.acceptLoad(stale, false, now) {
		t.Error("accepted a report older than LoadTTL")
	}
}

func TestNewcomerLearnsLoadByPushPull(t *testing.T) {
	// A long TTL means unchanged reports are re-sent only every 10s, so the
	// newcomer can only learn them from the join's push/pull exchange.
	long := func(c *Config) { c.LoadTTL = 30 * time.Second }
	a := start(t, "a", long)
	b := start(t, "b", long, joining(a))
	waitConverged(t, a, b)
	if err := a.SetLoad([]byte("a-load")); err != nil {
		t.Fatal(err)
	}
	if err := b.SetLoad([]byte("b-load")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a and b to see each other's load", func() bool {
		return loadIs(a, "b", "b-load") && loadIs(b, "a", "a-load")
	})
	time.Sleep(200 * time.Millisecond) // let the broadcast queues drain

	c := start(t, "c", long)
	if _, err := c.Join(context.Background(), []string{a.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	// Join returns after the push/pull has been merged: no waiting needed.
	if !loadIs(c, "a", "a-load") || !loadIs(c, "b", "b-load") {
		ga, _, _ := c.Load("a")
		gb, _, _ := c.Load("b")
		t.Fatalf("newcomer after join: a=%q b=%q", ga, gb)
	}
}

func TestLoadEncoding(t *testing.T) {
	now := time.Now()
	r := &loadReport{origin: "node-ü", incarnation: -7, version: 1 << 40, payload: []byte{0, 1, 2}, produced: now.Add(-1500 * time.Millisecond)}
	got, err := decodeLoad(encodeLoad(r, now), now)
	if err != nil {
		t.Fatal(err)
	}
	if got.origin != r.origin || got.incarnation != r.incarnation || got.version != r.version || !bytes.Equal(got.payload, r.payload) {
		t.Fatalf("round trip: %+v", got)
	}
	if d := got.produced.Sub(r.produced); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("age drifted by %v", d)
	}

	state := encodeState([]*loadReport{r, {origin: "x", payload: []byte{}}}, now)
	rs, err := decodeState(state, now)
	if err != nil || len(rs) != 2 || rs[1].origin != "x" {
		t.Fatalf("state round trip: %v %+v", err, rs)
	}

	name, inc, err := decodeLeave(encodeLeave("n", 42))
	if err != nil || name != "n" || inc != 42 {
		t.Fatalf("leave round trip: %q %d %v", name, inc, err)
	}

	for _, bad := range [][]byte{nil, {msgLoad}, {msgLoad, 200}, {msgState, 5, 1}, {msgLoad, 1, 'a', 2, 2, 0, 9, 1}} {
		if _, err := decodeLoad(bad, now); err == nil && len(bad) > 0 && bad[0] == msgLoad {
			t.Errorf("decodeLoad(%v) accepted garbage", bad)
		}
		if _, err := decodeState(bad, now); err == nil && len(bad) > 0 && bad[0] == msgState {
			t.Errorf("decodeState(%v) accepted garbage", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	now := time.Now()
	f.Add(encodeLoad(&loadReport{origin: "a", payload: []byte("p")}, now))
	f.Add(encodeState([]*loadReport{{origin: "a"}}, now))
	f.Add(encodeLeave("a", 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeLoad(b, now)
		_, _ = decodeState(b, now)
		_, _, _ = decodeLeave(b)
	})
}
