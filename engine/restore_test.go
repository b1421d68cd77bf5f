package engine

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

// disk keeps the latest version of every record a Ready handed out, as a store would.
type disk map[string]*record.Record

func (d disk) keep(rd Ready) Ready {
	for _, r := range rd.Records {
		d[r.ID] = r
	}
	for _, id := range rd.Expired {
		delete(d, id)
	}
	return rd
}

func (d disk) records() []*record.Record {
	out := make([]*record.Record, 0, len(d))
	for _, r := range d {
		out = append(out, r)
	}
	return out
}

// A node killed with tasks queued, running, retrying and in a graph gets every one of
// them back from its records: the same ids, the queue in its order, the running one
// again (a node loss, the next attempt), the retry at its deadline, the graph going
// on, the idempotency key known, and no id handed out twice.
func TestRestoreAfterKill(t *testing.T) {
	d := disk{}
	cfg := testConfig()
	cfg.Slots = 1
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	st := func(now time.Time, in Input) Ready { return d.keep(step(e, now, in)) }
	run := st(t0, Submit{Req: 1, Specs: []api.Spec{{Type: "work", IdempotencyKey: "k1"}}}).Start[0] // runs
	rd := st(t0, Submit{Req: 2, Batch: true, Specs: []api.Spec{
		{Type: "work", Name: "a", Retries: 2},
		{Type: "work", Name: "b", Deps: []string{"a"}},
		{Type: "work", Priority: 5},
		{Type: "work"},
	}})
	a, b, hi, lo := rd.Replies[0].IDs[0], rd.Replies[0].IDs[1], rd.Replies[0].IDs[2], rd.Replies[0].IDs[3]
	// The first run ends; the priority-5 task runs and fails once: a retry waits.
	next := st(t0, RunDone{ID: run.ID, Epoch: run.Epoch, Attempt: 1, Result: json.RawMessage(`"one"`)}).Start[0]
	if next.ID != hi {
		t.Fatalf("started %s, want the priority task %s", next.ID, hi)
	}
	st(t0, RunDone{ID: hi, Epoch: next.Epoch, Attempt: 1, Err: "boom"}) // no retries: failed; a starts
	// Now a runs (queued first among the rest); the node dies while it runs.
	if d[a].State != api.Running {
		t.Fatalf("a is %s, want running", d[a].State)
	}

	e2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Restore(t0.Add(time.Second), d.records(), 0); err != nil {
		t.Fatal(err)
	}
	rd = d.keep(step(e2, t0.Add(time.Second), Tick{}))
	if len(rd.Records) != 1 || rd.Records[0].ID != a {
		t.Fatalf("the first Ready after Restore changed %d records, want only a's", len(rd.Records))
	}
	if d[run.ID].State != api.Succeeded || string(d[run.ID].Result) != `"one"` || d[hi].State != api.Failed {
		t.Fatalf("finished records changed: %s %s, %s", d[run.ID].State, d[run.ID].Result, d[hi].State)
	}
	// a was running here: it runs again as attempt 2, with a node loss.
	if len(rd.Start) != 1 || rd.Start[0].ID != a || rd.Start[0].Attempt != 2 || d[a].NodeLosses != 1 {
		t.Fatalf("after the restart: starts %+v, a %+v; want a again as attempt 2 with a node loss", rd.Start, d[a])
	}
	if d[b].State != api.Pending || d[lo].State != api.Queued {
		t.Fatalf("b %s, lo %s; want pending and queued", d[b].State, d[lo].State)
	}
	// The graph goes on: a's success releases b with a's result.
	rd = d.keep(step(e2, t0.Add(2*time.Second), RunDone{ID: a, Epoch: rd.Start[0].Epoch, Attempt: 2, Result: json.RawMessage(`7`)}))
	if len(rd.Start) == 0 || rd.Start[0].ID != b || string(rd.Start[0].Deps["a"]) != "7" {
		t.Fatalf("after a: starts %+v; want b with a's result", rd.Start)
	}
	// The idempotency key is known; new ids are new.
	rd = d.keep(step(e2, t0.Add(2*time.Second), Submit{Req: 9, Batch: true, Specs: []api.Spec{{Type: "work", IdempotencyKey: "k1"}, {Type: "work"}}}))
	if got := rd.Replies[0].IDs; got[0] != run.ID || d[got[1]] == nil || d[got[1]].Seq <= d[lo].Seq {
		t.Fatalf("after the restart: ids %v; want %s for the key and a fresh id", got, run.ID)
	}
}

// A retry that waited when the node died waits for its deadline after the restart.
func TestRestoreKeepsRetryDeadlines(t *testing.T) {
	d := disk{}
	e, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	r := d.keep(step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "work", Retries: 3}}})).Start[0]
	d.keep(step(e, t0, RunDone{ID: r.ID, Epoch: r.Epoch, Attempt: 1, Err: "boom"}))
	at := d[r.ID].RetryAt
	if at.IsZero() {
		t.Fatal("no retry scheduled")
	}
	e2, _ := New(testConfig())
	if err := e2.Restore(t0, d.records(), 0); err != nil {
		t.Fatal(err)
	}
	if rd := step(e2, t0, Tick{}); len(rd.Start) != 0 || !rd.Wake.Equal(at) {
		t.Fatalf("after the restart: starts %+v, wake %v; want nothing until %v", rd.Start, rd.Wake, at)
	}
	if rd := step(e2, at, Tick{}); len(rd.Start) != 1 || rd.Start[0].Attempt != 2 {
		t.Fatalf("at the deadline: starts %+v; want attempt 2", rd.Start)
	}
}

// A peer that restarts with its data directory (same id, new incarnation) before
// gossip noticed it died lost what it ran for this node: those tasks run again.
func TestPeerRestartWithSameID(t *testing.T) {
	cfg := clusterTestConfig("owner000")
	cfg.Slots = 1
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	meta := Meta{ID: "peer0000", Inc: 1, RPC: "p:1", Types: []string{"block"}}
	step(e, t0, MemberUp{Name: "p", State: "alive", Alive: true, Meta: meta})
	step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "block"}}}) // takes the slot
	id := step(e, t0, Submit{Req: 2, Specs: []api.Spec{{Type: "block"}}}).Replies[0].IDs[0]
	epoch := grantTo(t, e, t0, "peer0000", 1)
	if got := e.tasks[id].rec; got.Exec != "peer0000" || got.Epoch != epoch {
		t.Fatalf("the task is not placed on the peer: %+v", got)
	}
	meta.Inc = 2
	step(e, t0.Add(time.Second), MemberUp{Name: "p", State: "alive", Alive: true, Meta: meta})
	got := e.tasks[id].rec
	if got.State != api.Queued || got.Exec != "" || got.NodeLosses != 1 || got.Epoch <= epoch {
		t.Fatalf("after the peer restarted: %+v; want queued again with a node loss and a new epoch", got)
	}
	if p := e.cluster.peers["peer0000"]; p == nil || p.gone {
		t.Fatalf("the restarted peer is not a live member: %+v", p)
	}
}

// A durable owner that leaves gracefully comes back with its tasks: what this node
// runs for it goes on, its reports wait for it, and routing says unreachable, not
// lost.
func TestDurableOwnerLeavesAndComesBack(t *testing.T) {
	e, err := New(clusterTestConfig("thief000"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	const owner = "owner000"
	run := stealOne(t, e, t0, owner, api.Spec{Type: "block"}, nil)
	meta := Meta{ID: owner, Inc: 1, RPC: owner + ":1", Types: []string{"block"}, Durable: true}
	step(e, t0, MemberUp{Name: "v-" + owner, State: "alive", Alive: true, Meta: meta})
	rd := step(e, t0.Add(time.Second), MemberGone{Name: "v-" + owner, State: "left", Left: true, Meta: meta})
	if len(rd.Stop) != 0 {
		t.Fatalf("a durable owner's leave stopped its runs here: %+v", rd.Stop)
	}
	if kind, _ := e.cluster.view().Route(owner, t0.Add(time.Hour), time.Second); kind != RouteUnreachable {
		t.Fatalf("route to a durable owner that left: %d, want unreachable", kind)
	}
	rd = step(e, t0.Add(2*time.Second), RunDone{ID: run.ID, Epoch: run.Epoch, Attempt: run.Attempt, Result: json.RawMessage(`1`)})
	meta.Inc = 2
	step(e, t0.Add(2*time.Second), MemberUp{Name: "v-" + owner, State: "alive", Alive: true, Meta: meta})
	rd = step(e, t0.Add(3*time.Second), Tick{})
	var got *Report
	for _, r := range reports(rd) {
		if r.ID == run.ID && r.State == api.Succeeded {
			got = &r
		}
	}
	if got == nil {
		t.Fatalf("the owner came back, but the run's result is not sent to it: %+v", rd.Messages)
	}
}
