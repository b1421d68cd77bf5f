package engine

import (
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// A cancelled graph that waited on a still-running task outside it leaves no watcher
// behind once retention drops it.
func TestCancelledGraphLeavesNoWatcher(t *testing.T) {
	cfg := testConfig()
	cfg.Retain = 20 * time.Millisecond
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	rd := step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "work"}}})
	r := rd.Replies[0].IDs[0]
	for i := range 50 {
		rd = step(e, t0, Submit{Req: uint64(2 + i), Batch: true, Specs: []api.Spec{{Name: "a", Type: "noop", Deps: []string{r}}, {Name: "b", Type: "noop"}}})
		if rd.Replies[0].Err != nil {
			t.Fatal(rd.Replies[0].Err)
		}
		if rd = step(e, t0, CancelGraph{Req: 1000, ID: rd.Replies[0].Graph}); rd.Replies[0].Err != nil {
			t.Fatal(rd.Replies[0].Err)
		}
	}
	step(e, t0.Add(time.Second), Tick{})
	if len(e.graphs) != 0 || len(e.watchers[r]) != 0 {
		t.Fatalf("after retention: %d graphs, %d watchers of %s", len(e.graphs), len(e.watchers[r]), r)
	}
}
