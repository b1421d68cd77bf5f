package engine

import (
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

func clusterTestConfig(id string) Config {
	c := testConfig()
	c.ID, c.Name = id, "node-"+id
	c.Types = []string{"block"}
	c.Cluster = &ClusterConfig{
		Steal: steal.LocalConfig(), NodeLosses: 3, StealInterval: 20 * time.Millisecond, LoadInterval: 20 * time.Millisecond,
		LoadTTL: time.Second, ReportResend: 200 * time.Millisecond, ReportKeep: time.Minute, MaxGrantBytes: 1 << 20,
		OwnerGrace: 2 * time.Second,
	}
	return c
}

// request returns the steal request among rd's messages.
func request(t *testing.T, rd Ready) *steal.StealRequest {
	t.Helper()
	for _, m := range rd.Messages {
		if m.Msg.Req != nil {
			return m.Msg.Req
		}
	}
	return nil
}

// A thief that still holds an old-epoch copy of a task accepts a new grant of it (its
// owner took it for dead and back): the copy carries on under the new epoch, so the
// run the owner now waits for is the one that reports.
func TestRegrantWhileAnOldCopyRuns(t *testing.T) {
	e, err := New(clusterTestConfig("thief000"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	const victim = "victim00"
	step(e, t0, MemberUp{Name: "v", State: "alive", Alive: true, Meta: Meta{ID: victim, RPC: "v:1", Types: []string{"block"}}})
	backlog := &Load{Ver: 1, Queued: 4, Backlog: []steal.Backlog{{Class: steal.Class{Type: "block"}, Count: 4}}}
	rd := step(e, t0, Receive{From: victim, Msg: &Message{Load: backlog}})
	req := request(t, rd)
	if req == nil {
		t.Fatalf("an idle thief that hears of a backlog asks for it; messages %+v", rd.Messages)
	}
	grant := func(req *steal.StealRequest, epoch uint64) Ready {
		g := steal.Grant{Victim: victim, VictimInc: 1, Thief: req.Thief, ThiefInc: req.ThiefInc, ReqID: req.ReqID,
			Tasks: []steal.GrantedTask{{ID: "x", Epoch: epoch}}}
		return step(e, t0, Receive{From: victim, Msg: &Message{Grant: &GrantMsg{Grant: g, Tasks: []GrantedRun{{ID: "x", Spec: api.Spec{Type: "block"}}}}}})
	}
	rd = grant(req, 1)
	if len(rd.Start) != 1 || rd.Start[0].Epoch != 1 {
		t.Fatalf("the granted task did not start: %+v", rd.Start)
	}
	// A slot is still free: the thief asks again (after its backoff).
	backlog.Ver = 2
	rd = step(e, t0.Add(time.Second), Receive{From: victim, Msg: &Message{Load: backlog}})
	req = request(t, rd)
	if req == nil {
		rd = step(e, t0.Add(2*time.Second), Tick{})
		if req = request(t, rd); req == nil {
			t.Fatal("no second request")
		}
	}
	// The owner declared this node dead by mistake, re-queued x at epoch 2 and grants
	// it again at 3.
	grant(req, 3)
	if got := e.cluster.foreign["x"].rec.Epoch; got != 3 {
		t.Fatalf("the second grant (epoch 3) was acknowledged but the thief holds epoch %d: the epoch-3 run never reports", got)
	}
}
