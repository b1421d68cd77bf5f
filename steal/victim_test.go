package steal

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

func equalTasks(a, b []GrantedTask) bool {
	return slices.EqualFunc(a, b, func(x, y GrantedTask) bool {
		return x.ID == y.ID && x.Epoch == y.Epoch && bytes.Equal(x.Spec, y.Spec)
	})
}

func newTestVictim(tb testing.TB) *Victim {
	tb.Helper()
	v, err := NewVictim("v", 3, testConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func request(id uint64, max int) StealRequest {
	return StealRequest{Thief: "t", ThiefInc: 7, Victim: "v", ReqID: id, Max: max, Cap: capA}
}

func TestVictimOnRequest(t *testing.T) {
	gpu := Class{Type: "a", Tags: []string{"gpu"}}
	queue := []Candidate{
		{ID: "q0", Epoch: 0, Priority: 5, Class: Class{Type: "a"}, Spec: []byte("spec0")},
		{ID: "q1", Epoch: 4, Priority: 5, Class: gpu},
		{ID: "q2", Epoch: 2, Priority: 1, Class: Class{Type: "a"}},
		{ID: "q3", Epoch: 0, Priority: 0, Class: Class{Type: "a"}},
		{ID: "q4", Epoch: 9, Priority: 0, Class: Class{Type: "a"}},
	}
	tests := []struct {
		name  string
		req   StealRequest
		cands []Candidate
		take  []int
		tasks []GrantedTask
		empty bool
	}{
		{"half the servable, epochs bumped", request(1, 10), queue,
			[]int{0, 2}, []GrantedTask{{"q0", 1, []byte("spec0")}, {"q2", 3, nil}}, false},
		{"bounded by max", request(1, 1), queue,
			[]int{0}, []GrantedTask{{"q0", 1, []byte("spec0")}}, false},
		{"gpu thief gets gpu work too", StealRequest{Thief: "t", ThiefInc: 7, Victim: "v", ReqID: 1, Max: 10,
			Cap: Capability{Types: map[string]bool{"a": true}, Tags: map[string]bool{"gpu": true}}}, queue,
			[]int{0, 1, 2}, []GrantedTask{{"q0", 1, []byte("spec0")}, {"q1", 5, nil}, {"q2", 3, nil}}, false},
		{"nothing queued", request(1, 10), nil, nil, nil, true},
		{"nothing servable", request(1, 10), queue[1:2], nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTestVictim(t)
			d := v.OnRequest(t0, tt.req, tt.cands)
			if !slices.Equal(d.Take, tt.take) || len(d.Requeue) != 0 {
				t.Fatalf("decision %+v, want take %v", d, tt.take)
			}
			if tt.empty {
				want := Empty{Victim: "v", Thief: "t", ThiefInc: 7, ReqID: 1}
				if d.Grant != nil || d.Empty == nil || *d.Empty != want {
					t.Fatalf("decision %+v, want empty %+v", d, want)
				}
				if v.Stats().Parked != 0 {
					t.Fatal("parked an empty answer")
				}
				return
			}
			if d.Empty != nil || d.Grant == nil {
				t.Fatalf("decision %+v, want a grant", d)
			}
			g := *d.Grant
			if g.Victim != "v" || g.VictimInc != 3 || g.Thief != "t" || g.ThiefInc != 7 || g.ReqID != 1 || !equalTasks(g.Tasks, tt.tasks) {
				t.Fatalf("grant %+v, want tasks %v", g, tt.tasks)
			}
			if s := v.Stats(); s.Parked != 1 || s.Grants != 1 || s.Tasks != uint64(len(tt.tasks)) {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestVictimIgnoresStaleRequests(t *testing.T) {
	queue := cands(0, 0, 0, 0, 0, 0, 0, 0)
	v := newTestVictim(t)
	if d := v.OnRequest(t0, request(5, 2), queue); d.Grant == nil {
		t.Fatal("no grant for the first request")
	}
	tests := []struct {
		name string
		req  StealRequest
	}{
		{"duplicate", request(5, 2)},
		{"older id", request(4, 2)},
		{"older thief incarnation", func() StealRequest { r := request(9, 2); r.ThiefInc = 6; return r }()},
		{"addressed to another node", func() StealRequest { r := request(9, 2); r.Victim = "w"; return r }()},
		{"no thief", func() StealRequest { r := request(9, 2); r.Thief = ""; return r }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := v.OnRequest(t0, tt.req, queue)
			if d.Grant != nil || d.Empty != nil || d.Take != nil || d.Requeue != nil {
				t.Errorf("decision %+v, want nothing", d)
			}
		})
	}
	if s := v.Stats(); s.Parked != 1 || s.Grants != 1 || s.Ignored != uint64(len(tests)) {
		t.Errorf("stats %+v", s)
	}
}

func TestVictimOnReply(t *testing.T) {
	setup := func(t *testing.T) (*Victim, Grant) {
		v := newTestVictim(t)
		d := v.OnRequest(t0, request(1, 5), cands(0, 0, 0))
		return v, *d.Grant
	}
	reply := func(g Grant, accept bool) Reply {
		return Reply{Thief: g.Thief, ThiefInc: g.ThiefInc, Victim: g.Victim, VictimInc: g.VictimInc, ReqID: g.ReqID, Accept: accept}
	}
	release := func(g Grant) *Release {
		return &Release{Victim: g.Victim, VictimInc: g.VictimInc, Thief: g.Thief, ThiefInc: g.ThiefInc, ReqID: g.ReqID}
	}

	t.Run("ack hands the tasks over and releases, once", func(t *testing.T) {
		v, g := setup(t)
		s := v.OnReply(reply(g, true))
		if !equalTasks(s.Acked, g.Tasks) || s.Requeue != nil || *s.Release != *release(g) {
			t.Fatalf("settlement %+v", s)
		}
		for i := range 2 {
			s = v.OnReply(reply(g, true))
			if s.Acked != nil || s.Requeue != nil || s.Release == nil || *s.Release != *release(g) {
				t.Fatalf("repeat ack %d: settlement %+v, want a release only", i, s)
			}
		}
		if s := v.OnReply(reply(g, false)); s.Acked != nil || s.Requeue != nil || s.Release != nil {
			t.Fatalf("refusal after ack: settlement %+v, want nothing", s)
		}
		if s := v.Stats(); s.Parked != 0 || s.Acked != 1 || s.Refused != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
	t.Run("refusal gives the tasks back, once", func(t *testing.T) {
		v, g := setup(t)
		s := v.OnReply(reply(g, false))
		if !equalTasks(s.Requeue, g.Tasks) || s.Acked != nil || s.Release != nil {
			t.Fatalf("settlement %+v", s)
		}
		if s := v.OnReply(reply(g, false)); s.Requeue != nil {
			t.Fatalf("second refusal: settlement %+v, want nothing", s)
		}
		if s := v.OnReply(reply(g, true)); s.Acked != nil || s.Release == nil {
			t.Fatalf("ack after refusal: settlement %+v, want a release only", s)
		}
	})
	t.Run("replies naming another incarnation are not applied", func(t *testing.T) {
		v, g := setup(t)
		for _, r := range []Reply{
			func() Reply { r := reply(g, false); r.VictimInc = 2; return r }(),
			func() Reply { r := reply(g, true); r.VictimInc = 2; return r }(),
			func() Reply { r := reply(g, true); r.ThiefInc = 6; return r }(),
			func() Reply { r := reply(g, false); r.ThiefInc = 6; return r }(),
			func() Reply { r := reply(g, true); r.Victim = "w"; return r }(),
			func() Reply { r := reply(g, true); r.ReqID = 2; return r }(),
		} {
			s := v.OnReply(r)
			if s.Acked != nil || s.Requeue != nil {
				t.Errorf("reply %+v applied: %+v", r, s)
			}
			if (s.Release != nil) != r.Accept {
				t.Errorf("reply %+v: release %v, want one exactly for acks", r, s.Release)
			}
		}
		if v.Stats().Parked != 1 {
			t.Error("the grant is no longer parked")
		}
	})
}

func TestVictimResendsUntilAnswered(t *testing.T) {
	cfg := testConfig()
	v := newTestVictim(t)
	g1 := *v.OnRequest(t0, request(1, 1), cands(0, 0, 0, 0)).Grant
	u := StealRequest{Thief: "u", ThiefInc: 1, Victim: "v", ReqID: 1, Max: 1, Cap: capA}
	v.OnRequest(t0.Add(10*time.Millisecond), u, cands(0, 0))

	if out := v.Tick(t0.Add(cfg.ResendInterval - 1)); out != nil {
		t.Fatalf("resent %v early", out)
	}
	out := v.Tick(t0.Add(cfg.ResendInterval))
	if len(out) != 1 || out[0].Thief != "t" || !equalTasks(out[0].Tasks, g1.Tasks) {
		t.Fatalf("resent %+v, want t's grant only", out)
	}
	out = v.Tick(t0.Add(2*cfg.ResendInterval + 10*time.Millisecond))
	if len(out) != 2 || out[0].Thief != "t" || out[1].Thief != "u" {
		t.Fatalf("resent %+v, want both, ordered by thief", out)
	}
	out[0].Tasks[0].ID = "mutated"
	v.OnReply(Reply{Thief: "u", ThiefInc: 1, Victim: "v", VictimInc: 3, ReqID: 1, Accept: true})
	out = v.Tick(t0.Add(time.Hour))
	if len(out) != 1 || out[0].Thief != "t" || out[0].Tasks[0].ID != g1.Tasks[0].ID {
		t.Fatalf("resent %+v, want t's unchanged grant only", out)
	}
}

func TestVictimPeerDead(t *testing.T) {
	v := newTestVictim(t)
	g1 := *v.OnRequest(t0, request(1, 1), cands(0, 0, 0, 0)).Grant
	g2 := *v.OnRequest(t0, request(2, 1), cands(0, 0)).Grant
	acked := *v.OnRequest(t0, request(3, 1), cands(0, 0)).Grant
	v.OnReply(Reply{Thief: "t", ThiefInc: 7, Victim: "v", VictimInc: 3, ReqID: 3, Accept: true})

	if got := v.PeerDead("nobody"); got != nil {
		t.Fatalf("PeerDead of a stranger returned %v", got)
	}
	got := v.PeerDead("t")
	want := append(slices.Clone(g1.Tasks), g2.Tasks...)
	if !equalTasks(got, want) {
		t.Fatalf("PeerDead returned %v, want the parked %v (not the acked %v)", got, want, acked.Tasks)
	}
	if v.Stats().Parked != 0 || v.PeerDead("t") != nil {
		t.Fatal("parked grants left after PeerDead")
	}
	if out := v.Tick(t0.Add(time.Hour)); out != nil {
		t.Fatalf("resent %v after PeerDead", out)
	}
	// A late ack from the thief (declared dead by mistake) is only released.
	if s := v.OnReply(Reply{Thief: "t", ThiefInc: 7, Victim: "v", VictimInc: 3, ReqID: 1, Accept: true}); s.Acked != nil || s.Release == nil {
		t.Fatalf("late ack: settlement %+v", s)
	}
	// Request ids are never granted twice, even to a thief declared dead.
	if d := v.OnRequest(t0, request(2, 1), cands(0, 0)); d.Grant != nil || d.Empty != nil {
		t.Fatalf("old request id answered after PeerDead: %+v", d)
	}
	if d := v.OnRequest(t0, request(4, 1), cands(0, 0)); d.Grant == nil {
		t.Fatal("a new request after PeerDead got no grant")
	}
}

func TestVictimThiefRestart(t *testing.T) {
	v := newTestVictim(t)
	g := *v.OnRequest(t0, request(8, 1), cands(0, 0)).Grant
	restarted := request(1, 1)
	restarted.ThiefInc = 8
	d := v.OnRequest(t0, restarted, cands(0, 0))
	if !equalTasks(d.Requeue, g.Tasks) {
		t.Fatalf("requeue %v, want the old incarnation's %v", d.Requeue, g.Tasks)
	}
	if d.Grant == nil || d.Grant.ThiefInc != 8 || d.Grant.ReqID != 1 {
		t.Fatalf("grant %+v, want one for the new incarnation's first request", d.Grant)
	}
	if s := v.OnReply(Reply{Thief: "t", ThiefInc: 7, Victim: "v", VictimInc: 3, ReqID: 8, Accept: false}); s.Requeue != nil {
		t.Fatal("a refusal from the old incarnation requeued again")
	}
	if v.Stats().Parked != 1 {
		t.Fatal("want just the new grant parked")
	}
}

// TestProtocolLostAck walks one steal in which the first acknowledgement and
// the first release are lost.
func TestProtocolLostAck(t *testing.T) {
	cfg := testConfig()
	th := newTestThief(t, cfg)
	v := newTestVictim(t)
	req := mustNext(t, th, t0, idle(), loadA("v", 1, 4, 0))
	d := v.OnRequest(t0, req, cands(0, 0, 0, 0))
	if d.Grant == nil || len(d.Grant.Tasks) != 2 {
		t.Fatalf("decision %+v", d)
	}
	_, tasks := th.OnGrant(t0, *d.Grant) // the ack is lost
	if len(tasks) != 2 {
		t.Fatalf("thief took %v", tasks)
	}
	resent := v.Tick(t0.Add(cfg.ResendInterval))
	if len(resent) != 1 {
		t.Fatalf("resent %v", resent)
	}
	ack, again := th.OnGrant(t0.Add(cfg.ResendInterval), resent[0])
	if !ack.Accept || again != nil {
		t.Fatalf("repeat grant: reply %+v tasks %v", ack, again)
	}
	s := v.OnReply(ack) // the release is lost
	if len(s.Acked) != 2 || s.Release == nil {
		t.Fatalf("settlement %+v", s)
	}
	acks := th.Tick(t0.Add(2 * cfg.ResendInterval))
	if len(acks) != 1 {
		t.Fatalf("thief resent %v, want its ack", acks)
	}
	s = v.OnReply(acks[0])
	if s.Acked != nil || s.Release == nil {
		t.Fatalf("settlement of the resent ack %+v", s)
	}
	th.OnRelease(*s.Release)
	if th.Stats().Unreleased != 0 || v.Stats().Parked != 0 {
		t.Fatalf("left over: thief %+v victim %+v", th.Stats(), v.Stats())
	}
}
