package testcluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/invariant"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

func TestStealing_everyNodeRunsOnce(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 4, Slots: 1})
	ids := submit(t, c, 0, works(80, 20)...)
	recs := await(t, c, ids, 30*time.Second)
	checkInvariants(t, c, rec, ids, recs, invariant.Options{Want: client.Succeeded})
	perNode := map[string]int{}
	for _, ru := range rec.Runs() {
		perNode[ru.Node]++
	}
	t.Logf("runs per node: %v", perNode)
	for i := range c.Len() {
		if perNode[c.Node(i).Name()] == 0 {
			t.Errorf("%s ran nothing: %v", c.Node(i).Name(), perNode)
		}
	}
	if n := len(rec.Runs()); n != len(ids) {
		t.Errorf("%d runs for %d tasks with no faults", n, len(ids))
	}
	// The owner answers for every task and names the node that ran it.
	for _, r := range recs {
		if r.Owner != c.Node(0).Name() {
			t.Fatalf("task %s: owner %q, want %q", r.ID, r.Owner, c.Node(0).Name())
		}
	}
}

func TestStealing_priorityHoldsAcrossNodes(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 2, Slots: 1})
	defer rec.open("owner")
	defer rec.open("thief")
	// Both nodes busy: a gate starts at once on the node it is submitted to.
	submit(t, c, 0, gateSpec("owner"))
	submit(t, c, 1, gateSpec("thief"))
	rec.waitRun(t, 5*time.Second, "of both gates", func(ru invariant.Run) bool { return ru.Node == c.Node(1).Name() })
	low := make([]client.Spec, 20)
	for i := range low {
		low[i] = workSpec(10)
	}
	lowIDs := submit(t, c, 0, low...)
	high := workSpec(10)
	high.Priority = 10
	highID := submit(t, c, 0, high)[0]

	// Node 1 frees its slot: it steals from node 0, and the high-priority task,
	// submitted last, must be the first it starts.
	gateStart := time.Now()
	rec.open("thief")
	first := rec.waitRun(t, 10*time.Second, "after the thief's gate", func(ru invariant.Run) bool {
		return ru.Node == c.Node(1).Name() && ru.Start.After(gateStart)
	})
	if first.ID != highID {
		t.Errorf("the idle peer started %s first, want the high-priority task %s; runs: %s", first.ID, highID, rec)
	}
	rec.open("owner")
	recs := await(t, c, append(lowIDs, highID), 30*time.Second)
	checkInvariants(t, c, rec, append(lowIDs, highID), recs, invariant.Options{Want: client.Succeeded})
	// No low-priority task started before the high one, anywhere.
	hs := rec.of(highID)[0].Start
	for _, id := range lowIDs {
		if s := rec.of(id)[0].Start; s.Before(hs) {
			t.Errorf("low-priority task %s started %s before the high one", id, hs.Sub(s))
		}
	}
}

func TestStealing_requiresRoutesToCapableNodes(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 3, Slots: 1, Configure: func(i int, cfg *node.Config) {
		if i == 2 {
			cfg.Tags = []string{"gpu"}
			cfg.Resources = map[string]int64{"gpu": 1}
		}
	}})
	specs := works(8, 20)
	for i := range specs {
		specs[i].Requires = &client.Requires{Tags: []string{"gpu"}}
		if i%2 == 1 {
			specs[i].Requires.Resources = map[string]int64{"gpu": 1}
		}
	}
	ids := submit(t, c, 0, specs...)
	// Plain work at the same time keeps the other nodes looking for work.
	plain := submit(t, c, 0, works(10, 20)...)
	impossible := workSpec(10)
	impossible.Requires = &client.Requires{Tags: []string{"tpu"}}
	stuck := submit(t, c, 0, impossible)[0]

	recs := await(t, c, append(ids, plain...), 30*time.Second)
	checkInvariants(t, c, rec, append(ids, plain...), recs, invariant.Options{Want: client.Succeeded})
	for _, r := range recs[:len(ids)] {
		if r.Node != c.Node(2).Name() {
			t.Errorf("task %s requiring gpu ran on %s, want %s", r.ID, r.Node, c.Node(2).Name())
		}
	}
	for _, id := range ids {
		for _, ru := range rec.of(id) {
			if ru.Node != c.Node(2).Name() {
				t.Errorf("task %s requiring gpu ran on %s", id, ru.Node)
			}
		}
	}
	// The task nobody can run stays queued and says why, on every node.
	for k := range c.Len() {
		got, err := c.Client(k).Get(context.Background(), stuck)
		if err != nil {
			t.Fatalf("node %d: %v", k, err)
		}
		if got.State != client.Queued || !strings.Contains(got.Waiting, "tpu") {
			t.Errorf("node %d: the task requiring tpu is %s, waiting %q; want queued, waiting for a node with tpu", k, got.State, got.Waiting)
		}
	}
	if runs := rec.of(stuck); len(runs) > 0 {
		t.Errorf("the task requiring tpu ran: %v", runs)
	}
}

func TestStealing_handlerOnOneNode(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 3, Slots: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := client.Spec{Type: "special"}
	// Before any node has the handler, no node accepts the type.
	if _, err := c.Client(0).Submit(ctx, spec); apiStatus(err) != 400 {
		t.Fatalf("submitting an unknown type: %v, want a 400", err)
	}
	// Node 2 learns the type while running; gossip tells the others.
	name := c.Node(2).Name()
	if err := c.Node(2).Handle("special", func(_ context.Context, in *node.Input) (any, error) {
		return name, nil
	}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	waitFor(t, 10*time.Second, "node 0 accepts the type only node 2 has", func() error {
		t, err := c.Client(0).Submit(ctx, spec)
		if err == nil {
			ids = append(ids, t.ID)
		}
		return err
	})
	ids = append(ids, submit(t, c, 0, spec, spec, spec, spec, spec)...)
	ids = append(ids, submit(t, c, 1, spec, spec)...)
	recs := await(t, c, ids, 20*time.Second)
	for _, r := range recs {
		if r.State != client.Succeeded || r.Node != name || string(r.Result) != fmt.Sprintf("%q", name) {
			t.Errorf("task %s: %s on %q (result %s, error %q); want succeeded on %s", r.ID, r.State, r.Node, r.Result, r.Error, name)
		}
	}
	// The owner said why the task waited before it was stolen.
	if recs[0].Owner != c.Node(0).Name() {
		t.Errorf("owner %q, want %q", recs[0].Owner, c.Node(0).Name())
	}
}
