package engine

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// grantTo has thief ask the owner e for work and acknowledge the grant; it returns
// the granted epoch of the one task the owner has queued.
func grantTo(t *testing.T, e *Engine, now time.Time, thief string, reqID uint64) uint64 {
	t.Helper()
	req := steal.StealRequest{Thief: steal.NodeID(thief), ThiefInc: 1, Victim: steal.NodeID(e.ID()), ReqID: reqID, Max: 1,
		Cap: steal.Capability{Types: map[string]bool{"block": true}, Tags: map[string]bool{"gpu": true}}}
	rd := step(e, now, Receive{From: thief, Msg: &Message{Req: &req}})
	var g *GrantMsg
	for _, m := range rd.Messages {
		if m.To == thief && m.Msg.Grant != nil {
			g = m.Msg.Grant
		}
	}
	if g == nil || len(g.Grant.Tasks) != 1 {
		t.Fatalf("%s asked and got no grant of the task: %+v", thief, rd.Messages)
	}
	r := steal.Reply{Thief: g.Grant.Thief, ThiefInc: g.Grant.ThiefInc, Victim: g.Grant.Victim, VictimInc: g.Grant.VictimInc,
		ReqID: g.Grant.ReqID, Accept: true}
	step(e, now, Receive{From: thief, Msg: &Message{Reply: &r}})
	return g.Grant.Tasks[0].Epoch
}

// A thief taken for dead keeps running its copy of a task; when the owner grants it
// the task again, the copy carries on under the new epoch (TestRegrantWhileAnOldCopyRuns)
// and its result is the task's. The record must name the run that produced it: its
// node and its attempt, not the attempt of a run the owner fenced off meanwhile on
// another node. Found by the simulation, seed 402 (go test ./sim -run 'TestSim$'
// -sim.seed=402): "task succeeded on node-00 in attempt 2, but no run of it finished
// there without an error; its runs: attempt 1 on node-00 (ok), attempt 2 on node-02 (ok)".
func TestCarriedOnCopyRecordsItsOwnAttempt(t *testing.T) {
	e, err := New(clusterTestConfig("owner000"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	metaA := Meta{ID: "thiefaaa", RPC: "a:1", Types: []string{"block"}, Tags: []string{"gpu"}}
	metaB := Meta{ID: "thiefbbb", RPC: "b:1", Types: []string{"block"}, Tags: []string{"gpu"}}
	step(e, t0, MemberUp{Name: "a", State: "alive", Alive: true, Meta: metaA})
	step(e, t0, MemberUp{Name: "b", State: "alive", Alive: true, Meta: metaB})
	// A task only the thieves can run (the owner has no gpu).
	rd := step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "block", Requires: &api.Requires{Tags: []string{"gpu"}}}}})
	id := rd.Replies[0].IDs[0]
	report := func(from string, epoch uint64, attempt int, state api.State, node string) {
		step(e, t0, Receive{From: from, Msg: &Message{Reports: []Report{{ID: id, Epoch: epoch, Attempt: attempt, State: state,
			Node: node, At: t0, Result: json.RawMessage(`"done"`)}}}})
	}

	// a runs it as attempt 1, is taken for dead, and b runs it as attempt 2.
	ea := grantTo(t, e, t0, "thiefaaa", 1)
	report("thiefaaa", ea, 1, api.Running, "a")
	step(e, t0, MemberGone{Name: "a", State: "dead", Meta: metaA})
	eb := grantTo(t, e, t0, "thiefbbb", 1)
	report("thiefbbb", eb, 2, api.Running, "b")
	// b is taken for dead too; a is back, and is granted the task again while its
	// attempt 1 still runs: that copy carries on under the new epoch and succeeds.
	step(e, t0, MemberGone{Name: "b", State: "dead", Meta: metaB})
	step(e, t0, MemberUp{Name: "a", State: "alive", Alive: true, Meta: metaA})
	ea2 := grantTo(t, e, t0, "thiefaaa", 2)
	report("thiefaaa", ea2, 1, api.Running, "a")
	report("thiefaaa", ea2, 1, api.Succeeded, "a")

	rec := e.tasks[id].rec
	if rec.State != api.Succeeded || rec.Node != "a" || rec.Attempt != 1 {
		t.Fatalf("the task is %s in attempt %d on %q; want succeeded in attempt 1 on \"a\", the run that succeeded", rec.State, rec.Attempt, rec.Node)
	}
}
