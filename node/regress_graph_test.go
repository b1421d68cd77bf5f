package node

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

func waitDone(t *testing.T, n *Node, id string) api.Task {
	t.Helper()
	var rec api.Task
	waitFor(t, 10*time.Second, id+" terminal", func() bool {
		r, err := n.Get(id)
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		rec = r
		return r.State.Terminal()
	})
	return rec
}

// Retention dropping an external dep while the graph is being built must not pull it
// from under the graph code (it once panicked under n.mu).
func TestGraph_externalDepExpiresDuringSubmit(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxRecords = 2 })
	mustHandle(t, n, "fail", func(ctx context.Context, in *Input) (any, error) { return nil, errors.New("boom") })
	ids, err := n.Submit([]api.Spec{{Type: "echo", Payload: json.RawMessage(`"y"`)}})
	if err != nil {
		t.Fatal(err)
	}
	y := ids[0]
	waitDone(t, n, y)
	ids, _ = n.Submit([]api.Spec{{Type: "fail"}})
	x := ids[0]
	waitDone(t, n, x)
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("submit panicked: %v", p)
		}
	}()
	ids, err = n.Submit([]api.Spec{{Name: "a", Type: "noop", Deps: []string{x, y}}})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if a := waitDone(t, n, ids[0]); a.State != api.UpstreamFailed {
		t.Fatalf("a: %s; want upstream_failed (its dep failed)", a.State)
	}
}

// A dep outside the graph keeps its result for the graph after retention drops its
// record (it once arrived as null).
func TestGraph_externalResultOutlivesRetention(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxRecords = 3; c.Slots = 4 })
	release := make(chan struct{})
	mustHandle(t, n, "gate", func(ctx context.Context, in *Input) (any, error) { <-release; return "gate", nil })
	got := make(chan map[string]json.RawMessage, 1)
	mustHandle(t, n, "see", func(ctx context.Context, in *Input) (any, error) { got <- in.Deps; return nil, nil })
	ids, _ := n.Submit([]api.Spec{{Type: "echo", Payload: json.RawMessage(`"precious"`)}})
	y := ids[0]
	waitDone(t, n, y)
	_, err := n.Submit([]api.Spec{{Name: "g", Type: "gate"}, {Name: "b", Type: "see", Deps: []string{"g", y}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		ids, _ := n.Submit([]api.Spec{{Type: "noop"}})
		waitDone(t, n, ids[0])
	}
	if _, err := n.Get(y); err == nil {
		t.Fatal("y not expired yet")
	}
	close(release)
	d := <-got
	t.Logf("deps seen by b: %s=%s", y, d[y])
	if string(d[y]) != `"precious"` {
		t.Errorf("b got %s for its external dep, want \"precious\"", d[y])
	}
}
