package engine

import (
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// A task is handed to the runner only when a slot is free: were it to wait in the
// runner's queue, its timeout would tick while it waits, and it would fail "the run
// exceeded" a timeout it never ran for. The simulation found that (seed 81) when the
// engine handed short runs to the runner ahead of free slots.
func TestTimeoutTaskDoesNotRunAhead(t *testing.T) {
	cfg := testConfig()
	cfg.Slots = 1
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	// Runs here are short: the engine hands runs to the runner ahead of free slots.
	rd := step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "work"}}})
	r := rd.Start[0]
	step(e, t0, RunDone{ID: r.ID, Epoch: r.Epoch, Attempt: r.Attempt, Elapsed: 100 * time.Microsecond})
	rd = step(e, t0, Submit{Req: 2, Specs: []api.Spec{{Type: "work"}}})
	if len(rd.Start) != 1 {
		t.Fatalf("the free slot started %d runs", len(rd.Start))
	}
	rd = step(e, t0, Submit{Req: 3, Specs: []api.Spec{{Type: "work", Timeout: api.Duration(time.Millisecond)}}})
	for _, s := range rd.Start {
		if s.Timeout > 0 {
			t.Fatalf("a task with a timeout was handed to the runner while the only slot is busy: %+v", s)
		}
	}
	rd = step(e, t0.Add(2*time.Millisecond), Tick{})
	if len(rd.Stop) > 0 {
		t.Fatalf("a run that never had a slot was stopped for its timeout: %+v", rd.Stop)
	}
}
