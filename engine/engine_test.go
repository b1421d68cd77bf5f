package engine

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

func testConfig() Config {
	return Config{
		ID: "abcdefgh", Name: "n1", Inc: 1, Slots: 2, Types: []string{"noop", "work"},
		MaxQueue: 1000, MaxBatch: 1000, MaxGraphDepth: 100, Retain: time.Hour, MaxRecords: 1000,
		RetryBase: 10 * time.Millisecond, RetryMax: time.Second, Seed: [2]uint64{1, 2},
	}
}

func newTest(t *testing.T) *Engine {
	t.Helper()
	e, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// step feeds in and returns the Ready, advanced.
func step(e *Engine, now time.Time, in Input) Ready {
	e.Step(now, in)
	rd := e.Ready()
	e.Advance()
	return rd
}

func TestLifecycle(t *testing.T) {
	e := newTest(t)
	t0 := time.Unix(1000, 0)
	rd := step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "work"}, {Type: "work"}, {Type: "work"}}, Batch: true})
	if len(rd.Replies) != 1 || rd.Replies[0].Err != nil || len(rd.Replies[0].IDs) != 3 {
		t.Fatalf("replies %+v", rd.Replies)
	}
	if len(rd.Start) != 2 {
		t.Fatalf("%d runs started with 2 slots", len(rd.Start))
	}
	kinds := map[record.Kind]int{}
	for _, w := range rd.Writes {
		kinds[w.Kind]++
	}
	if kinds[record.OpCreate] != 3 || kinds[record.OpQueue] != 3 || kinds[record.OpRun] != 2 {
		t.Fatalf("writes %v", kinds)
	}
	if len(rd.Records) != 3 {
		t.Fatalf("%d records published, want 3", len(rd.Records))
	}
	first := rd.Records[0]
	r := rd.Start[0]
	rd = step(e, t0.Add(time.Millisecond), RunDone{ID: r.ID, Epoch: r.Epoch, Attempt: r.Attempt, Result: json.RawMessage(`1`)})
	if len(rd.Start) != 1 {
		t.Fatalf("the freed slot started %d runs", len(rd.Start))
	}
	var done *record.Record
	for _, rec := range rd.Records {
		if rec.ID == r.ID {
			done = rec
		}
	}
	if done == nil || done.State != api.Succeeded || string(done.Result) != "1" {
		t.Fatalf("record after the run: %+v", done)
	}
	if first.State != api.Running {
		t.Fatalf("a record handed out changed afterwards: %s", first.State)
	}
}

func TestRetryIsADeadline(t *testing.T) {
	e := newTest(t)
	t0 := time.Unix(1000, 0)
	rd := step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "work", Retries: 1}}})
	r := rd.Start[0]
	rd = step(e, t0, RunDone{ID: r.ID, Epoch: r.Epoch, Attempt: 1, Err: "boom"})
	if len(rd.Start) != 0 || rd.Wake.IsZero() {
		t.Fatalf("a failed attempt restarted at once (%d) or set no wake (%v)", len(rd.Start), rd.Wake)
	}
	rd = step(e, rd.Wake, Tick{})
	if len(rd.Start) != 1 || rd.Start[0].Attempt != 2 {
		t.Fatalf("the retry did not start at its deadline: %+v", rd.Start)
	}
}

func TestTimeoutStopsTheRun(t *testing.T) {
	e := newTest(t)
	t0 := time.Unix(1000, 0)
	rd := step(e, t0, Submit{Req: 1, Specs: []api.Spec{{Type: "work", Timeout: api.Duration(50 * time.Millisecond)}}})
	if !rd.Wake.Equal(t0.Add(50 * time.Millisecond)) {
		t.Fatalf("wake %v, want the timeout", rd.Wake)
	}
	rd = step(e, rd.Wake, Tick{})
	if len(rd.Stop) != 1 || rd.Stop[0].Reason != StopTimeout {
		t.Fatalf("stops %+v", rd.Stop)
	}
}

func TestAllDoneGetsNullForFailedDep(t *testing.T) {
	e := newTest(t)
	t0 := time.Unix(1000, 0)
	rd := step(e, t0, Submit{Req: 1, Batch: true, Specs: []api.Spec{
		{Type: "work", Name: "a"},
		{Type: "work", Name: "b", Deps: []string{"a"}, Trigger: api.TriggerAllDone},
	}})
	r := rd.Start[0]
	rd = step(e, t0, RunDone{ID: r.ID, Epoch: r.Epoch, Attempt: 1, Err: "boom", Result: json.RawMessage(`{"partial":1}`)})
	if len(rd.Start) != 1 {
		t.Fatalf("the all_done task did not start: %+v", rd.Start)
	}
	if got := string(rd.Start[0].Deps["a"]); got != "null" {
		t.Fatalf("the all_done task got %s for its failed dep; want null", got)
	}
}

func TestDeterministic(t *testing.T) {
	run := func() []string {
		e := newTest(t)
		t0 := time.Unix(1000, 0)
		var out []string
		rd := step(e, t0, Submit{Req: 1, Batch: true, Specs: []api.Spec{{Type: "work", Retries: 3}, {Type: "work", Retries: 3}, {Type: "work", Retries: 3}}})
		for i := 0; i < 20 && (len(rd.Start) > 0 || !rd.Wake.IsZero()); i++ {
			now := t0.Add(time.Duration(i) * time.Millisecond)
			for _, r := range rd.Start {
				out = append(out, r.ID)
				rd = step(e, now, RunDone{ID: r.ID, Epoch: r.Epoch, Attempt: r.Attempt, Err: "x"})
			}
			if !rd.Wake.IsZero() {
				rd = step(e, rd.Wake, Tick{})
				out = append(out, rd.Wake.String())
			}
		}
		return out
	}
	a, b := run(), run()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("runs differ: %v vs %v", a, b)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("step %d differs: %s vs %s", i, a[i], b[i])
		}
	}
}
