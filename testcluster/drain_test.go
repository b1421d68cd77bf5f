package testcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/testcluster"
)

// Draining a node with a backlog: its peers steal the queue, it finishes what it runs,
// every task succeeds before the node stops, and the others see it leave.
func TestDrain_peersTakeTheQueue(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, Slots: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := make([]client.Spec, 30)
	for i := range specs {
		specs[i] = sleepSpec(30)
	}
	ids, err := c.Submit(ctx, 0, specs...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Client(0).Drain(ctx, time.Minute)
	if err != nil || d.Unfinished == 0 {
		t.Fatalf("drain: %+v %v", d, err)
	}
	if _, err := c.Client(0).Submit(ctx, client.Spec{Type: "noop"}); err == nil {
		t.Fatal("a draining node accepted a task")
	}
	select {
	case <-c.Node(0).Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the drained node did not stop")
	}
	// The records stay in the stopped node's memory: every task finished before it
	// stopped.
	var recs []client.Task
	for _, id := range ids {
		r, err := c.Node(0).Get(id)
		if err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
		recs = append(recs, r)
	}
	nodes := map[string]int{}
	for _, r := range recs {
		if r.State != client.Succeeded || r.NodeLosses != 0 {
			t.Fatalf("task %s: %s (%s), node_losses %d", r.ID, r.State, r.Error, r.NodeLosses)
		}
		nodes[r.Node]++
	}
	if nodes["node-1"]+nodes["node-2"] == 0 {
		t.Fatalf("the peers took none of the draining node's queue: %v", nodes)
	}
	waitPeerState(t, c, 1, "node-0", "left", 10*time.Second)
}
