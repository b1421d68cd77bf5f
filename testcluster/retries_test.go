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
