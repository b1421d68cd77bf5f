package steal

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// testConfig has round numbers and no jitter, so that tests can name exact
// times.
func testConfig() Config {
	return Config{
		Buffer:         2,
		Timeout:        time.Second,
		ResendInterval: 100 * time.Millisecond,
		BackoffBase:    10 * time.Millisecond,
		BackoffMax:     80 * time.Millisecond,
		Jitter:         0,
	}
}

func newTestThief(tb testing.TB, cfg Config) *Thief {
	tb.Helper()
	th, err := NewThief("t", 7, cfg, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		tb.Fatal(err)
	}
	return th
}

var capA = Capability{Types: map[string]bool{"a": true}}

func idle() Local { return Local{FreeSlots: 1, Cap: capA} }

func loadA(id NodeID, version uint64, count, top int) PeerLoad {
	return PeerLoad{ID: id, Version: version, Backlog: []Backlog{{Class: Class{Type: "a"}, Count: count, TopPriority: top}}}
}

func grantFor(req StealRequest, victimInc uint64, ids ...string) Grant {
	g := Grant{Victim: req.Victim, VictimInc: victimInc, Thief: req.Thief, ThiefInc: req.ThiefInc, ReqID: req.ReqID}
	for _, id := range ids {
		g.Tasks = append(g.Tasks, GrantedTask{ID: id, Epoch: 1})
	}
	return g
}

// mustNext asks for a request and fails the test if there is none.
func mustNext(tb testing.TB, th *Thief, now time.Time, local Local, peers ...PeerLoad) StealRequest {
	tb.Helper()
	req, ok := th.Next(now, local, peers)
	if !ok {
		tb.Fatalf("Next at %v: no request", now.Sub(t0))
	}
	return req
}

func TestNewThiefRejects(t *testing.T) {
	bad := testConfig()
	bad.Timeout = 0
	rng := rand.New(rand.NewPCG(1, 1))
	tests := []struct {
		name string
		self NodeID
		cfg  Config
		rng  *rand.Rand
	}{
		{"bad config", "t", bad, rng},
		{"empty id", "", testConfig(), rng},
		{"nil rand", "t", testConfig(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewThief(tt.self, 1, tt.cfg, tt.rng); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewThief error = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := NewVictim("", 1, testConfig()); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewVictim with empty id: error = %v, want ErrInvalidConfig", err)
	}
	if _, err := NewVictim("v", 1, bad); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewVictim with bad config: error = %v, want ErrInvalidConfig", err)
	}
}

func TestThiefWhenToSteal(t *testing.T) {
	busy := loadA("v", 1, 6, 0)
	tests := []struct {
		name    string
		local   Local
		peers   []PeerLoad
		want    bool
		wantMax int
	}{
		{"free slot, empty queue", Local{FreeSlots: 1, Cap: capA}, []PeerLoad{busy}, true, 3},
		{"three free slots ask for three plus buffer", Local{FreeSlots: 3, Cap: capA}, []PeerLoad{busy}, true, 5},
		{"no free slot", Local{FreeSlots: 0, Cap: capA}, []PeerLoad{busy}, false, 0},
		{"runnable work queued", Local{FreeSlots: 2, QueueLen: 1, Cap: capA}, []PeerLoad{busy}, false, 0},
		{"no peers", Local{FreeSlots: 1, Cap: capA}, nil, false, 0},
		{"peers have nothing", Local{FreeSlots: 1, Cap: capA}, []PeerLoad{loadA("v", 1, 0, 0)}, false, 0},
		{"peers have nothing we serve", Local{FreeSlots: 1, Cap: Capability{Types: map[string]bool{"b": true}}}, []PeerLoad{busy}, false, 0},
		{"own load is not a peer", Local{FreeSlots: 1, Cap: capA}, []PeerLoad{loadA("t", 1, 9, 0)}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newTestThief(t, testConfig())
			req, ok := th.Next(t0, tt.local, tt.peers)
			if ok != tt.want {
				t.Fatalf("Next ok = %v, want %v", ok, tt.want)
			}
			if !ok {
				if _, inflight := th.InFlight(); inflight {
					t.Error("no request returned, but one is in flight")
				}
				return
			}
			if req.Max != tt.wantMax || req.Victim != "v" || req.Thief != "t" || req.ThiefInc != 7 || req.ReqID != 1 {
				t.Errorf("request = %+v, want Max %d to v from t/7 with id 1", req, tt.wantMax)
			}
		})
	}
}

func TestThiefOneInFlight(t *testing.T) {
	th := newTestThief(t, testConfig())
	peers := []PeerLoad{loadA("v", 1, 6, 0), loadA("w", 1, 6, 0)}
	req := mustNext(t, th, t0, idle(), peers...)
	for _, at := range []time.Duration{0, time.Millisecond, 999 * time.Millisecond} {
		th.Tick(t0.Add(at))
		if _, ok := th.Next(t0.Add(at), idle(), peers); ok {
			t.Fatalf("second request at +%v while %d is in flight", at, req.ReqID)
		}
	}
	// An answer for another request does not end this one.
	th.OnEmpty(t0, Empty{Victim: req.Victim, Thief: "t", ThiefInc: 7, ReqID: req.ReqID + 1})
	th.OnEmpty(t0, Empty{Victim: "elsewhere", Thief: "t", ThiefInc: 7, ReqID: req.ReqID})
	if _, ok := th.InFlight(); !ok {
		t.Fatal("unrelated empty answers ended the request in flight")
	}
	reply, tasks := th.OnGrant(t0, grantFor(req, 1, "x"))
	if !reply.Accept || len(tasks) != 1 {
		t.Fatalf("grant for the request in flight: reply %+v tasks %v", reply, tasks)
	}
	req2 := mustNext(t, th, t0, idle(), peers...)
	if req2.ReqID != req.ReqID+1 {
		t.Errorf("next request id %d, want %d", req2.ReqID, req.ReqID+1)
	}
}

func TestThiefBackoff(t *testing.T) {
	cfg := testConfig()
	th := newTestThief(t, cfg)
	peers := []PeerLoad{loadA("v", 1, 6, 0)}
	now := t0
	var version uint64 = 1
	// Empty answers in a row: the pause doubles up to BackoffMax.
	for i, want := range []time.Duration{10, 20, 40, 80, 80} {
		want *= time.Millisecond
		peers[0].Version = version // a fresh report each time, so v is not avoided
		req := mustNext(t, th, now, idle(), peers...)
		th.OnEmpty(now, Empty{Victim: "v", Thief: "t", ThiefInc: 7, ReqID: req.ReqID})
		version++
		peers[0].Version = version
		if _, ok := th.Next(now.Add(want-1), idle(), peers); ok {
			t.Fatalf("empty #%d: stole again after %v, before the backoff %v", i+1, want-1, want)
		}
		now = now.Add(want)
	}
	// A successful steal resets it.
	req := mustNext(t, th, now, idle(), peers...)
	if r, _ := th.OnGrant(now, grantFor(req, 1, "x")); !r.Accept {
		t.Fatal("grant refused")
	}
	mustNext(t, th, now, idle(), peers...) // no pause after a success
	th.Tick(now.Add(cfg.Timeout))          // a timeout counts as an empty answer
	now = now.Add(cfg.Timeout)
	peers[0].Version++
	if _, ok := th.Next(now.Add(9*time.Millisecond), idle(), peers); ok {
		t.Fatal("stole again before the first backoff after a reset")
	}
	mustNext(t, th, now.Add(10*time.Millisecond), idle(), peers...)
	if s := th.Stats(); s.Empties != 5 || s.Timeouts != 1 || s.Grants != 1 || s.Requests != 8 {
		t.Errorf("stats = %+v", s)
	}
}

func TestThiefBackoffJitter(t *testing.T) {
	cfg := testConfig()
	cfg.Jitter = 0.5
	var pauses []time.Duration
	for seed := range uint64(200) {
		th, _ := NewThief("t", 1, cfg, rand.New(rand.NewPCG(seed, 0)))
		req := mustNext(t, th, t0, idle(), loadA("v", 1, 6, 0))
		th.OnEmpty(t0, Empty{Victim: "v", Thief: "t", ThiefInc: 1, ReqID: req.ReqID})
		// Find the first millisecond at which it steals again.
		for ms := time.Duration(0); ms <= 20; ms++ {
			if _, ok := th.Next(t0.Add(ms*time.Millisecond), idle(), []PeerLoad{loadA("v", 2, 6, 0)}); ok {
				pauses = append(pauses, ms*time.Millisecond)
				break
			}
		}
	}
	if len(pauses) != 200 {
		t.Fatalf("only %d of 200 thieves stole again within 20ms", len(pauses))
	}
	lo, hi := slices.Min(pauses), slices.Max(pauses)
	if lo < 5*time.Millisecond || hi > 10*time.Millisecond || lo == hi {
		t.Errorf("pauses span [%v, %v], want spread within [5ms, 10ms]", lo, hi)
	}
}

func TestThiefAvoidsPeerThatAnsweredEmpty(t *testing.T) {
	cfg := testConfig()
	th := newTestThief(t, cfg)
	big, small := loadA("big", 1, 50, 0), loadA("small", 1, 2, 0)
	req := mustNext(t, th, t0, idle(), big, small)
	if req.Victim != "big" {
		t.Fatalf("asked %s, want big", req.Victim)
	}
	th.OnEmpty(t0, Empty{Victim: "big", Thief: "t", ThiefInc: 7, ReqID: req.ReqID})
	now := t0.Add(cfg.BackoffBase)
	req = mustNext(t, th, now, idle(), big, small)
	if req.Victim != "small" {
		t.Fatalf("asked %s after big answered empty on an unchanged report, want small", req.Victim)
	}
	th.OnEmpty(now, Empty{Victim: "small", Thief: "t", ThiefInc: 7, ReqID: req.ReqID})
	now = now.Add(2 * cfg.BackoffBase)
	if _, ok := th.Next(now, idle(), []PeerLoad{big, small}); ok {
		t.Fatal("asked a peer whose report has not changed since it answered empty")
	}
	big.Version = 2
	if req = mustNext(t, th, now, idle(), big, small); req.Victim != "big" {
		t.Fatalf("asked %s after big's report changed, want big", req.Victim)
	}
	// The avoidance also lapses after BackoffMax even without a new report.
	th.OnEmpty(now, Empty{Victim: "big", Thief: "t", ThiefInc: 7, ReqID: req.ReqID})
	if req = mustNext(t, th, now.Add(cfg.BackoffMax), idle(), big); req.Victim != "big" {
		t.Fatalf("asked %s, want big once the avoidance lapsed", req.Victim)
	}
}

func TestThiefGiveUpThenLateGrantRefused(t *testing.T) {
	cfg := testConfig()
	th := newTestThief(t, cfg)
	req := mustNext(t, th, t0, idle(), loadA("v", 1, 6, 0))
	th.Tick(t0.Add(cfg.Timeout - 1))
	if _, ok := th.InFlight(); !ok {
		t.Fatal("gave up before the timeout")
	}
	th.Tick(t0.Add(cfg.Timeout))
	if _, ok := th.InFlight(); ok {
		t.Fatal("still in flight after the timeout")
	}
	late := grantFor(req, 1, "x", "y")
	for i := range 3 { // every copy, before and after later requests
		reply, tasks := th.OnGrant(t0.Add(cfg.Timeout), late)
		if reply.Accept || tasks != nil {
			t.Fatalf("copy %d of a late grant: reply %+v tasks %v, want refusal", i, reply, tasks)
		}
		if reply.ReqID != req.ReqID || reply.Victim != "v" || reply.Thief != "t" || reply.ThiefInc != 7 || reply.VictimInc != 1 {
			t.Fatalf("refusal %+v does not name the grant", reply)
		}
		next := mustNext(t, th, t0.Add(cfg.Timeout+time.Duration(i+1)*cfg.BackoffMax), idle(), loadA("v", uint64(i+2), 6, 0))
		th.OnEmpty(t0, Empty{Victim: "v", Thief: "t", ThiefInc: 7, ReqID: next.ReqID})
	}
}

func TestThiefAnswersGrantsConsistently(t *testing.T) {
	cfg := testConfig()
	th := newTestThief(t, cfg)
	req := mustNext(t, th, t0, idle(), loadA("v", 1, 6, 0))
	g := grantFor(req, 3, "x", "y")

	reply, tasks := th.OnGrant(t0, g)
	if !reply.Accept || !equalTasks(tasks, g.Tasks) {
		t.Fatalf("first copy: reply %+v tasks %v", reply, tasks)
	}
	tasks[0].ID = "mutated" // the caller owns what it got
	if g.Tasks[0].ID != "x" {
		t.Fatal("OnGrant returned the grant's own slice")
	}

	tests := []struct {
		name   string
		grant  Grant
		accept bool
	}{
		{"same grant again is acked again", g, true},
		{"same id from another victim", func() Grant { g := g; g.Victim = "w"; return g }(), false},
		{"same id from another incarnation of the victim", func() Grant { g := g; g.VictimInc = 2; return g }(), false},
		{"same id with other tasks", func() Grant { g := g; g.Tasks = []GrantedTask{{ID: "z", Epoch: 1}}; return g }(), false},
		{"same id with other epochs", func() Grant {
			g := g
			g.Tasks = slices.Clone(g.Tasks)
			g.Tasks[1].Epoch++
			return g
		}(), false},
		{"same id with fewer tasks", func() Grant { g := g; g.Tasks = g.Tasks[:1]; return g }(), false},
		{"for another incarnation of this thief", func() Grant { g := g; g.ThiefInc = 6; return g }(), false},
		{"for another thief", func() Grant { g := g; g.Thief = "u"; return g }(), false},
		{"an id never issued", func() Grant { g := g; g.ReqID = 99; return g }(), false},
		{"an id never issued, zero", func() Grant { g := g; g.ReqID = 0; return g }(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, tasks := th.OnGrant(t0, tt.grant)
			if reply.Accept != tt.accept || tasks != nil {
				t.Errorf("reply %+v tasks %v, want accept %v and no tasks", reply, tasks, tt.accept)
			}
			if reply.ReqID != tt.grant.ReqID || reply.Victim != tt.grant.Victim || reply.VictimInc != tt.grant.VictimInc || reply.ThiefInc != tt.grant.ThiefInc {
				t.Errorf("reply %+v does not echo grant %+v", reply, tt.grant)
			}
		})
	}

	// The acknowledgement is resent until the victim releases it.
	if out := th.Tick(t0.Add(cfg.ResendInterval - 1)); len(out) != 0 {
		t.Fatalf("resent %v before the interval", out)
	}
	out := th.Tick(t0.Add(cfg.ResendInterval))
	want := Reply{Thief: "t", ThiefInc: 7, Victim: "v", VictimInc: 3, ReqID: req.ReqID, Accept: true}
	if len(out) != 1 || out[0] != want {
		t.Fatalf("resent %+v, want [%+v]", out, want)
	}
	th.OnRelease(Release{Victim: "v", VictimInc: 2, Thief: "t", ThiefInc: 7, ReqID: req.ReqID}) // wrong incarnation
	if th.Stats().Unreleased != 1 {
		t.Fatal("a release from another victim incarnation was taken")
	}
	th.OnRelease(Release{Victim: "v", VictimInc: 3, Thief: "t", ThiefInc: 7, ReqID: req.ReqID})
	if s := th.Stats(); s.Unreleased != 0 {
		t.Fatalf("unreleased %d after release", s.Unreleased)
	}
	if out := th.Tick(t0.Add(time.Hour)); len(out) != 0 {
		t.Fatalf("resent %v after release", out)
	}
	// Once released, the victim has settled the grant: a stray copy is refused,
	// which the victim ignores.
	if reply, _ := th.OnGrant(t0, g); reply.Accept {
		t.Error("stray copy after release acked")
	}
}

func TestThiefPeerDead(t *testing.T) {
	cfg := testConfig()
	th := newTestThief(t, cfg)
	req := mustNext(t, th, t0, idle(), loadA("v", 1, 6, 0))
	g := grantFor(req, 1, "x")
	th.OnGrant(t0, g)
	req2 := mustNext(t, th, t0, idle(), loadA("v", 1, 6, 0))

	th.PeerDead("v")
	if _, ok := th.InFlight(); ok {
		t.Fatal("request to a dead victim still in flight")
	}
	// Given up without backoff: another peer can be asked at once.
	if r := mustNext(t, th, t0, idle(), loadA("w", 1, 6, 0)); r.Victim != "w" {
		t.Fatalf("asked %s, want w", r.Victim)
	}
	if reply, _ := th.OnGrant(t0, grantFor(req2, 1, "y")); reply.Accept {
		t.Fatal("accepted a grant for a request given up when the victim died")
	}
	// The accepted grant is kept but its ack is no longer resent...
	if out := th.Tick(t0.Add(time.Hour)); len(out) != 0 {
		t.Fatalf("resent %v to a dead victim", out)
	}
	// ...until gossip sees the victim alive again...
	th.PeerAlive("v")
	if out := th.Tick(t0.Add(time.Hour)); len(out) != 1 {
		t.Fatalf("resent %v after PeerAlive, want one ack", out)
	}
	th.PeerDead("v")
	// ...or the victim shows it is up with a copy of the grant.
	if reply, _ := th.OnGrant(t0.Add(time.Hour), g); !reply.Accept {
		t.Fatal("an accepted grant was refused after a false death of its victim")
	}
	if out := th.Tick(t0.Add(time.Hour + 2*cfg.ResendInterval)); len(out) != 1 {
		t.Fatalf("resent %v, want one ack once the victim is back", out)
	}
}

func TestThiefForgetsGrantsOfRestartedVictim(t *testing.T) {
	th := newTestThief(t, testConfig())
	req := mustNext(t, th, t0, idle(), loadA("v", 1, 6, 0))
	th.OnGrant(t0, grantFor(req, 1, "x"))
	req2 := mustNext(t, th, t0, idle(), loadA("v", 1, 6, 0))
	if reply, _ := th.OnGrant(t0, grantFor(req2, 2, "y")); !reply.Accept {
		t.Fatal("grant from the restarted victim refused")
	}
	if s := th.Stats(); s.Unreleased != 1 {
		t.Errorf("unreleased %d, want 1: the old incarnation's grant should be forgotten", s.Unreleased)
	}
}
