package testcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

// A peer's load report that does not change is repeated by gossip with the same bytes
// while the engine forgets loads older than LoadTTL: the repetitions must keep it
// believed. Here node 0 holds a task only node 1 can run, node 1 stays busy longer
// than LoadTTL, and once it is free it still steals the task (once, it never did).
func TestLoad_unchangedBacklogStaysKnown(t *testing.T) {
	release := make(chan struct{})
	c := testcluster.Start(t, testcluster.Options{Nodes: 2, Slots: 1,
		NodeHandlers: func(i int, _ string) map[string]node.Handler {
			hs := map[string]node.Handler{
				"hold": func(ctx context.Context, _ *node.Input) (any, error) {
					select {
					case <-release:
					case <-ctx.Done():
					}
					return "held", nil
				},
			}
			if i == 1 {
				hs["only1"] = func(context.Context, *node.Input) (any, error) { return "ran", nil }
			}
			return hs
		}})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	// Node 1 is busy.
	holdID := submit(t, c, 1, client.Spec{Type: "hold"})[0]
	time.Sleep(200 * time.Millisecond)
	// Node 0 holds a task only node 1 can run: its load (backlog only1: 1) goes out.
	id := submit(t, c, 0, client.Spec{Type: "only1"})[0]
	// Node 1 stays busy past the load TTL (1s on the fast profile); node 0's load does
	// not change meanwhile.
	time.Sleep(2500 * time.Millisecond)
	close(release)
	await(t, c, []string{holdID}, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Await(ctx, []string{id}); err != nil {
		t.Fatalf("node 1 is idle and can run %s, queued on node 0, but never steals it: %v", id, err)
	}
}
