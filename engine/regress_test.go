package engine

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
	"github.com/starlingsched/starling/steal"
)

// Regression tests for the bugs issue 7 lists, each as the engine decides them.

// stealOne makes e (a thief) take task x from victim at epoch 1 and start it. It
// returns the run order.
func stealOne(t *testing.T, e *Engine, now time.Time, victim string, spec api.Spec, deps map[string]json.RawMessage) Run {
	t.Helper()
	step(e, now, MemberUp{Name: "v-" + victim, State: "alive", Alive: true, Meta: Meta{ID: victim, RPC: victim + ":1", Types: []string{spec.Type}}})
	rd := step(e, now, Receive{From: victim, Msg: &Message{Load: &Load{Ver: 1, Queued: 1, Backlog: []steal.Backlog{{Class: steal.Class{Type: spec.Type}, Count: 1}}}}})
	req := request(t, rd)
	if req == nil {
		t.Fatal("the idle thief did not ask")
	}
	g := steal.Grant{Victim: steal.NodeID(victim), VictimInc: 1, Thief: req.Thief, ThiefInc: req.ThiefInc, ReqID: req.ReqID,
		Tasks: []steal.GrantedTask{{ID: "x", Epoch: 1}}}
	rd = step(e, now, Receive{From: victim, Msg: &Message{Grant: &GrantMsg{Grant: g, Tasks: []GrantedRun{{ID: "x", Spec: spec, Deps: deps}}}}})
	if len(rd.Start) != 1 {
		t.Fatalf("the stolen task did not start: %+v", rd.Start)
	}
	return rd.Start[0]
}

// reports lists the reports in rd's messages.
func reports(rd Ready) []Report {
	var out []Report
	for _, m := range rd.Messages {
		out = append(out, m.Msg.Reports...)
	}
	return out
}

// An executor that suspects the owner one-sidedly (a flap) keeps its run: the run's
// result reaches the owner once it is back, and the owner books no node loss. Before,
// the executor cancelled the run and sent a "lost" report that cost a node loss on
// every flap: three flaps failed a task "node lost" though no node died.
func TestOneSidedSuspicionCostsNoNodeLoss(t *testing.T) {
	e, err := New(clusterTestConfig("thief000"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	const owner = "owner000"
	run := stealOne(t, e, t0, owner, api.Spec{Type: "block"}, nil)
	meta := Meta{ID: owner, RPC: owner + ":1", Types: []string{"block"}}
	for flap := range 3 {
		now := t0.Add(time.Duration(flap) * 100 * time.Millisecond)
		rd := step(e, now, MemberGone{Name: "v-" + owner, State: "dead", Meta: meta})
		if len(rd.Stop) != 0 {
			t.Fatalf("flap %d: the executor stopped a healthy run of a suspected owner: %+v", flap, rd.Stop)
		}
		for _, r := range reports(rd) {
			if r.Lost {
				t.Fatalf("flap %d: a lost report for a run that goes on: %+v", flap, r)
			}
		}
		step(e, now.Add(10*time.Millisecond), MemberUp{Name: "v-" + owner, State: "alive", Alive: true, Meta: meta})
	}
	rd := step(e, t0.Add(time.Second), RunDone{ID: run.ID, Epoch: run.Epoch, Attempt: run.Attempt, Result: json.RawMessage(`7`)})
	var final *Report
	for _, r := range reports(rd) {
		if r.State != api.Running {
			final = &r
		}
	}
	if final == nil || final.State != api.Succeeded || final.Lost || string(final.Result) != "7" {
		t.Fatalf("the run's report to its owner: %+v; want succeeded with its result", final)
	}
}

// A dead owner that does not come back within OwnerGrace: its runs here are stopped
// and handed back (no node loss if it ever returns).
func TestDeadOwnerRunsStopAfterGrace(t *testing.T) {
	e, err := New(clusterTestConfig("thief000"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	const owner = "owner000"
	run := stealOne(t, e, t0, owner, api.Spec{Type: "block"}, nil)
	step(e, t0, MemberGone{Name: "v-" + owner, State: "dead", Meta: Meta{ID: owner}})
	rd := step(e, t0.Add(3*time.Second), Tick{})
	if len(rd.Stop) != 1 || rd.Stop[0].ID != run.ID || rd.Stop[0].Reason != StopCancelled {
		t.Fatalf("past OwnerGrace: stops %+v; want the dead owner's run stopped", rd.Stop)
	}
	if e.cluster.outbox[run.ID] == nil || !e.cluster.outbox[run.ID].report.Returned {
		t.Fatalf("the stopped run is not handed back: outbox %+v", e.cluster.outbox[run.ID])
	}
}

// An owner declared dead is unreachable, not lost, until its death is confirmed.
func TestRouteWaitsForConfirmation(t *testing.T) {
	t0 := time.Unix(1000, 0)
	v := &ClusterView{Peers: []PeerView{
		{ID: "a", Name: "a"},
		{ID: "b", Name: "b", Gone: true, GoneAt: t0, State: "dead"},
		{ID: "c", Name: "c", Gone: true, GoneAt: t0, State: "left", Final: true},
	}}
	for _, tt := range []struct {
		owner string
		at    time.Duration
		want  RouteKind
	}{
		{"a", 0, RouteForward},
		{"b", time.Second, RouteUnreachable},
		{"b", 3 * time.Second, RouteOwnerLost},
		{"c", 0, RouteOwnerLost},
		{"z", 0, RouteUnknown},
	} {
		if got, _ := v.Route(tt.owner, t0.Add(tt.at), 2*time.Second); got != tt.want {
			t.Errorf("Route(%s, +%s) = %d, want %d", tt.owner, tt.at, got, tt.want)
		}
	}
}

// The load is published when it changes, not on every tick.
func TestLoadPublishedOnlyWhenChanged(t *testing.T) {
	e, err := New(clusterTestConfig("node0000"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	if rd := step(e, t0, Tick{}); rd.Load == nil {
		t.Fatal("no first load report")
	}
	for i := 1; i <= 5; i++ {
		if rd := step(e, t0.Add(time.Duration(i)*100*time.Millisecond), Tick{}); rd.Load != nil {
			t.Fatalf("tick %d: load re-published unchanged: %+v", i, rd.Load)
		}
	}
	rd := step(e, t0.Add(time.Second), Submit{Req: 1, Specs: []api.Spec{{Type: "elsewhere"}}})
	if rd.Load == nil || rd.Load.Queued != 1 || rd.Load.Ver != 2 {
		t.Fatalf("after a submission: load %+v; want queued 1, version 2", rd.Load)
	}
}

// A load report over gossip's size keeps its counts and the highest-priority classes.
func TestEncodeLoadTrims(t *testing.T) {
	l := &Load{Queued: 100, Running: 1, Free: 1}
	for i := range 40 {
		l.Backlog = append(l.Backlog, steal.Backlog{Class: steal.Class{Type: "type-" + strings.Repeat("x", 20), Tags: []string{"zone=eu-west-" + string(rune('a'+i%26))}},
			Count: 2, TopPriority: 40 - i})
	}
	b, trimmed, err := EncodeLoad(l, 512)
	if err != nil || !trimmed || len(b) > 512 {
		t.Fatalf("EncodeLoad: %d bytes, trimmed %v, %v", len(b), trimmed, err)
	}
	var got Load
	if err := msgpack.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Queued != 100 || len(got.Backlog) == 0 || got.Backlog[0].TopPriority != 40 {
		t.Fatalf("trimmed load: queued %d, %d classes, top %+v", got.Queued, len(got.Backlog), got.Backlog)
	}
}

// A member that restarts under the same name replaces its old self at once; peers
// gone past ReportKeep are forgotten; stale loads are dropped.
func TestPeersDoNotAccumulate(t *testing.T) {
	e, err := New(clusterTestConfig("node0000"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	step(e, t0, MemberUp{Name: "b", State: "alive", Alive: true, Meta: Meta{ID: "bbbbbbb1", RPC: "b:1"}})
	step(e, t0, Receive{From: "bbbbbbb1", Msg: &Message{Load: &Load{Ver: 1, Queued: 3}}})
	rd := step(e, t0.Add(time.Second), MemberUp{Name: "b", State: "alive", Alive: true, Meta: Meta{ID: "bbbbbbb2", RPC: "b:2"}})
	if rd.Cluster == nil || len(rd.Cluster.Peers) != 1 || rd.Cluster.Peers[0].ID != "bbbbbbb2" {
		t.Fatalf("after a restart under the same name: %+v; want the new member only", rd.Cluster)
	}
	step(e, t0.Add(time.Second), Receive{From: "bbbbbbb2", Msg: &Message{Load: &Load{Ver: 1, Queued: 3}}})
	step(e, t0.Add(3*time.Second), Tick{})
	if p := e.cluster.peers["bbbbbbb2"]; p == nil || p.load != nil {
		t.Fatalf("a load older than LoadTTL is still believed: %+v", p)
	}
	step(e, t0.Add(4*time.Second), MemberGone{Name: "b", State: "left", Left: true})
	step(e, t0.Add(2*time.Minute), Tick{})
	if len(e.cluster.peers) != 0 {
		t.Fatalf("a member gone past ReportKeep is remembered: %d peers", len(e.cluster.peers))
	}
}

// A grant carries at most MaxGrantBytes of dep results: a task whose deps' results
// are larger stays with its owner.
func TestGrantCarriesBoundedDeps(t *testing.T) {
	cfg := clusterTestConfig("victim00")
	cfg.Slots = 1
	cfg.Cluster.MaxGrantBytes = 1000
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	step(e, t0, MemberUp{Name: "t", State: "alive", Alive: true, Meta: Meta{ID: "thief000", RPC: "t:1", Types: []string{"block"}}})
	x := step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "block"}}}).Start[0]
	rd := step(e, t0, Submit{Req: 2, Batch: true, Specs: []api.Spec{{Type: "block", Name: "a"}, {Type: "block", Name: "b", Deps: []string{"a"}}}})
	b := rd.Replies[0].IDs[1]
	a := step(e, t0, RunDone{ID: x.ID, Epoch: x.Epoch, Attempt: 1}).Start[0]
	step(e, t0, Submit{Req: 3, Specs: []api.Spec{{Type: "block", Priority: 10}}}) // takes the slot before b
	big := json.RawMessage(`"` + strings.Repeat("x", 2000) + `"`)
	step(e, t0, RunDone{ID: a.ID, Epoch: a.Epoch, Attempt: 1, Result: big})
	if e.tasks[b].heapIdx < 0 || len(e.tasks[b].rec.Deps[`a`]) != len(big) {
		t.Fatalf("b is not queued with a's result: %+v", e.tasks[b].rec)
	}
	req := steal.StealRequest{Thief: "thief000", ThiefInc: 1, ReqID: 1, Max: 4, Cap: steal.Capability{Types: map[string]bool{"block": true}}}
	rd = step(e, t0, Receive{From: "thief000", Msg: &Message{Req: &req}})
	for _, m := range rd.Messages {
		if m.Msg.Grant != nil {
			t.Fatalf("granted a task whose deps carry %d bytes over a 1000-byte cap: %+v", len(big), m.Msg.Grant.Grant)
		}
	}
	if e.tasks[b].heapIdx < 0 {
		t.Fatal("b left the queue")
	}
}

// The load report's backlog priority is that of the tasks peers may steal, never of
// a foreign (stolen, unstealable) one at the head of the class.
func TestBacklogPriorityIsOwned(t *testing.T) {
	cfg := clusterTestConfig("node0000")
	cfg.Slots = 1
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "block"}}})              // takes the slot
	step(e, t0, Submit{Req: 2, Specs: []api.Spec{{Type: "block", Priority: 1}}}) // queued, stealable
	f := (&entry{rec: &record.Record{ID: "x", Spec: &api.Spec{Type: "block", Priority: 9}, State: api.Queued}, foreign: true, owner: "o", heapIdx: -1}).keyed()
	f.class = e.classFor("block", needs{})
	e.q.push(f)
	l := e.cluster.currentLoad()
	if len(l.Backlog) != 1 || l.Backlog[0].Count != 1 || l.Backlog[0].TopPriority != 1 {
		t.Fatalf("backlog %+v; want one stealable task of priority 1", l.Backlog)
	}
}
