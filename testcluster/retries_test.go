package testcluster_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

// A run lost with its node counts against the node-loss budget, not against retries: a
// task with one retry whose first run dies with its node still gets its retry after an
// application failure.
func TestFaults_nodeLossDoesNotUseRetries(t *testing.T) {
	var mu sync.Mutex
	runs := map[string][]string{} // task id -> nodes, in run order
	started := make(chan string, 8)
	flaky := func(name string) node.Handler {
		return func(ctx context.Context, in *node.Input) (any, error) {
			mu.Lock()
			runs[in.ID] = append(runs[in.ID], name)
			k := len(runs[in.ID])
			mu.Unlock()
			started <- name
			switch k {
			case 1: // the first run: long enough for its node to be killed under it
				<-ctx.Done()
				return nil, ctx.Err()
			case 2: // the second: an application failure
				return nil, errors.New("flaky")
			}
			return "ok", nil
		}
	}
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, Slots: 1,
		NodeHandlers: func(_ int, name string) map[string]node.Handler {
			return map[string]node.Handler{"flaky": flaky(name), "hold": func(ctx context.Context, _ *node.Input) (any, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Keep node 0's only slot busy so that the flaky task is stolen.
	hold, err := c.Submit(ctx, 0, client.Spec{Type: "hold"})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := c.Submit(ctx, 0, client.Spec{Type: "flaky", Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	first := <-started
	if first == "node-0" {
		t.Fatalf("the flaky task ran on its owner; the test wants it stolen")
	}
	victim := 1
	if first == "node-2" {
		victim = 2
	}
	c.Kill(victim)
	recs, err := c.Await(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	r := recs[0]
	if r.State != client.Succeeded || r.NodeLosses != 1 {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("task %s with node_losses %d (%s); runs on %v; want succeeded after one node loss and one retried failure",
			r.State, r.NodeLosses, r.Error, runs[r.ID])
	}
	if _, err := c.Client(0).Cancel(ctx, hold[0]); err != nil {
		t.Fatal(err)
	}
}

// A thief that stops gracefully hands back the stolen tasks it has not started, and
// finishes the one it runs: no task loses a node (with no node loss allowed at all).
func TestFaults_gracefulThiefReturnsWhatItHolds(t *testing.T) {
	var mu sync.Mutex
	ranOn := map[string][]string{}
	work := func(name string) node.Handler {
		return func(ctx context.Context, in *node.Input) (any, error) {
			mu.Lock()
			ranOn[in.ID] = append(ranOn[in.ID], name)
			mu.Unlock()
			select {
			case <-time.After(300 * time.Millisecond):
				return name, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	c := testcluster.Start(t, testcluster.Options{Nodes: 2, Slots: 1,
		Configure: func(_ int, cfg *node.Config) { cfg.Cluster.NodeLosses = -1 },
		NodeHandlers: func(_ int, name string) map[string]node.Handler {
			return map[string]node.Handler{"work": work(name)}
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := make([]client.Spec, 6)
	for i := range specs {
		specs[i] = client.Spec{Type: "work"}
	}
	ids, err := c.Submit(ctx, 0, specs...)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until node-1 runs one and holds more it has not started.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := c.Client(0).List(ctx, client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		running, held := 0, 0
		for _, r := range l.Tasks {
			if r.Node == "node-1" && r.State == client.Running {
				running++
			}
			if r.Node == "node-1" && r.State == client.Queued {
				held++
			}
		}
		if running == 1 && held > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-1 never ran one task while holding more: %+v", l.Tasks)
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.Stop(1)
	recs, err := c.Await(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range recs {
		if r.State != client.Succeeded || r.NodeLosses != 0 || len(ranOn[r.ID]) != 1 {
			t.Fatalf("task %s: %s (%s) node_losses %d, ran on %v; want succeeded once, no node lost",
				r.ID, r.State, r.Error, r.NodeLosses, ranOn[r.ID])
		}
	}
}
