package invariant_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/invariant"
)

// fakeClock is a simulated clock: every reading is a millisecond after the last.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func TestRecorder_runs(t *testing.T) {
	clock := &fakeClock{now: t0}
	rec := invariant.NewRecorder(clock.Now)
	endA := rec.Start("a", 1, "n1") // at(1)
	endB := rec.Start("b", 1, "n2") // at(2)
	endA(map[string]int{"v": 1}, nil)
	endA(nil, errors.New("a second end changes nothing"))
	endB(nil, errors.New("boom"))
	rec.Start("c", 2, "n3")("not JSON-able", nil)
	rec.Start("d", 1, "n1")(json.RawMessage(`[1, 2]`), nil)
	rec.Start("e", 1, "n1")(math.Inf(1), nil)
	rec.Start("f", 1, "n2") // still running

	runs := rec.Runs()
	want := []invariant.Run{
		{ID: "a", Attempt: 1, Node: "n1", Start: at(1), End: at(3), Result: json.RawMessage(`{"v":1}`)},
		{ID: "b", Attempt: 1, Node: "n2", Start: at(2), End: at(4), Err: errors.New("boom")},
		{ID: "c", Attempt: 2, Node: "n3", Start: at(5), End: at(6), Result: json.RawMessage(`"not JSON-able"`)},
		{ID: "d", Attempt: 1, Node: "n1", Start: at(7), End: at(8), Result: json.RawMessage(`[1, 2]`)},
		{ID: "e", Attempt: 1, Node: "n1", Start: at(9), End: at(10), Err: errors.New("the handler's result is not JSON-able: json: unsupported value: +Inf")},
		{ID: "f", Attempt: 1, Node: "n2", Start: at(11)},
	}
	if len(runs) != len(want) {
		t.Fatalf("%d runs, want %d: %v", len(runs), len(want), runs)
	}
	for i, r := range runs {
		w := want[i]
		if r.ID != w.ID || r.Attempt != w.Attempt || r.Node != w.Node || !r.Start.Equal(w.Start) || !r.End.Equal(w.End) ||
			fmt.Sprint(r.Err) != fmt.Sprint(w.Err) || string(r.Result) != string(w.Result) {
			t.Errorf("run %d:\n got %+v\nwant %+v", i, r, w)
		}
	}
	if got := fmt.Sprint(runs[0], ", ", runs[1], ", ", runs[5]); got != "a attempt 1 on n1 (ok), b attempt 1 on n2 (failed: boom), f attempt 1 on n2 (running)" {
		t.Errorf("runs print as %q", got)
	}
}

func TestRecorder_concurrent(t *testing.T) {
	rec := invariant.NewRecorder(nil) // time.Now
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprint("t", i)
			end := rec.Start(id, 1, "n1")
			asked := rec.Now()
			rec.Observe(invariant.Observed("n2", api.Task{ID: id, State: api.Running, Attempt: 1, Node: "n1"}, asked, rec.Now()))
			end(i, nil)
			asked = rec.Now()
			rec.Observe(invariant.Observed("n2", api.Task{ID: id, State: api.Succeeded, Attempt: 1, Node: "n1", Result: json.RawMessage(fmt.Sprint(i))}, asked, rec.Now()))
		})
	}
	wg.Wait()
	acked := make([]string, n)
	final := make([]api.Task, n)
	for i := range n {
		acked[i] = fmt.Sprint("t", i)
		final[i] = api.Task{ID: acked[i], State: api.Succeeded, Attempt: 1, Node: "n1", Result: json.RawMessage(fmt.Sprint(i))}
	}
	rep := invariant.Check(rec.History(acked, final), invariant.Options{Want: api.Succeeded})
	if !rep.OK() || rep.Tasks != n || rep.Runs != n || rep.Observations != 2*n || rep.Outcomes[api.Succeeded] != n {
		t.Errorf("report %s: %v", rep, rep.Violations)
	}
}
