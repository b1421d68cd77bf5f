package invariant_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/invariant"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// good is a history every invariant holds on: task a ran once, b ran once and is
// observed running then succeeded, c failed once and succeeded on its retry.
func good() (invariant.History, invariant.Options) {
	h := invariant.History{
		Acked: []string{"a", "b", "c"},
		Runs: []invariant.Run{
			{ID: "a", Attempt: 1, Node: "n1", Start: at(0), End: at(10), Result: json.RawMessage(`{"v":1}`)},
			{ID: "b", Attempt: 1, Node: "n2", Start: at(0), End: at(20), Result: json.RawMessage(`"b"`)},
			{ID: "c", Attempt: 1, Node: "n1", Start: at(0), End: at(5), Err: errors.New("boom")},
			{ID: "c", Attempt: 2, Node: "n2", Start: at(30), End: at(40)},
		},
		Final: []api.Task{
			{ID: "a", State: api.Succeeded, Attempt: 1, Node: "n1", Result: json.RawMessage(`{"v":1}`)},
			{ID: "b", State: api.Succeeded, Attempt: 1, Node: "n2", Result: json.RawMessage(`"b"`)},
			{ID: "c", State: api.Succeeded, Attempt: 2, Node: "n2", Spec: api.Spec{Retries: 1}},
		},
		Observations: []invariant.Observation{
			{ID: "b", By: "n1", Asked: at(1), Answered: at(2), State: api.Running, Attempt: 1, Node: "n2"},
			// Asked before the terminal answer came back: a concurrent read, not a change.
			{ID: "b", By: "n3", Asked: at(20), Answered: at(30), State: api.Running, Attempt: 1, Node: "n2"},
			{ID: "b", By: "n2", Asked: at(21), Answered: at(22), State: api.Succeeded, Attempt: 1, Node: "n2", Result: json.RawMessage(`"b"`)},
			{ID: "b", By: "n3", Asked: at(50), Answered: at(51), State: api.Succeeded, Attempt: 1, Node: "n2", Result: json.RawMessage(` "b" `)},
		},
	}
	return h, invariant.Options{Want: api.Succeeded}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		change func(h *invariant.History, o *invariant.Options)
		want   []invariant.Rule // the rules violated, in order; none for a good history
		task   string           // the task the violations name
	}{
		{name: "good", change: func(*invariant.History, *invariant.Options) {}},
		{name: "any state wanted", change: func(h *invariant.History, o *invariant.Options) {
			h.Final[2] = api.Task{ID: "c", State: api.Failed, Attempt: 1, Node: "n1", Error: "boom"}
			h.Runs = h.Runs[:3]
			o.Want = ""
		}},
		{name: "lost: no record", task: "b", want: []invariant.Rule{invariant.Lost}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final = slices.Delete(h.Final, 1, 2)
		}},
		{name: "lost: not terminal at the end", task: "a", want: []invariant.Rule{invariant.Lost}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final[0].State = api.Running
			h.Final[0].Result = nil
		}},
		{name: "lost: an acknowledged task never ran", task: "d", want: []invariant.Rule{invariant.Lost}, change: func(h *invariant.History, o *invariant.Options) {
			h.Acked = append(h.Acked, "d")
			h.Final = append(h.Final, api.Task{ID: "d", State: api.Queued})
		}},
		{name: "wrong terminal state", task: "c", want: []invariant.Rule{invariant.WrongState}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final[2] = api.Task{ID: "c", State: api.Failed, Attempt: 1, Node: "n1", Error: "boom"}
			h.Runs = h.Runs[:3]
		}},
		{name: "two final records", task: "a", want: []invariant.Rule{invariant.Disagree}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final = append(h.Final, api.Task{ID: "a", State: api.Failed, Attempt: 1, Node: "n1"})
		}},
		{name: "the same final record twice", change: func(h *invariant.History, o *invariant.Options) {
			h.Final = append(h.Final, h.Final[0])
		}},
		{name: "two outcomes seen by clients", task: "b", want: []invariant.Rule{invariant.Disagree}, change: func(h *invariant.History, o *invariant.Options) {
			h.Observations = append(h.Observations, invariant.Observation{
				ID: "b", By: "n1", Asked: at(60), Answered: at(61), State: api.Failed, Attempt: 1, Node: "n2"})
		}},
		{name: "a node answers another attempt", task: "b", want: []invariant.Rule{invariant.Disagree}, change: func(h *invariant.History, o *invariant.Options) {
			h.Observations[3].Attempt = 2
		}},
		{name: "a node answers another result", task: "b", want: []invariant.Rule{invariant.Disagree}, change: func(h *invariant.History, o *invariant.Options) {
			h.Observations[3].Result = json.RawMessage(`"c"`)
		}},
		{name: "a client saw a terminal outcome the final record lost", task: "b", want: []invariant.Rule{invariant.Lost, invariant.Disagree}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final[1].State = api.Running
		}},
		{name: "two outcomes seen, no final record", task: "e", want: []invariant.Rule{invariant.Disagree}, change: func(h *invariant.History, o *invariant.Options) {
			h.Observations = append(h.Observations,
				invariant.Observation{ID: "e", By: "n1", Asked: at(1), Answered: at(2), State: api.Succeeded, Attempt: 1, Node: "n1"},
				invariant.Observation{ID: "e", By: "n2", Asked: at(3), Answered: at(4), State: api.Cancelled, Attempt: 1, Node: "n1"})
		}},
		{name: "terminal then running", task: "b", want: []invariant.Rule{invariant.Reverted}, change: func(h *invariant.History, o *invariant.Options) {
			h.Observations = append(h.Observations, invariant.Observation{
				ID: "b", By: "n1", Asked: at(23), Answered: at(24), State: api.Running, Attempt: 1, Node: "n2"})
		}},
		{name: "success with no run", task: "a", want: []invariant.Rule{invariant.NoRun}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs = h.Runs[1:]
		}},
		{name: "success on another node than its run", task: "a", want: []invariant.Rule{invariant.NoRun}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final[0].Node = "n3"
		}},
		{name: "success in another attempt than its run", task: "a", want: []invariant.Rule{invariant.NoRun}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final[0].Attempt = 2
		}},
		{name: "success of a run that failed", task: "a", want: []invariant.Rule{invariant.NoRun}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs[0].Err = errors.New("boom")
		}},
		{name: "success of a run that never ended", task: "a", want: []invariant.Rule{invariant.NoRun}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs[0].End = time.Time{}
		}},
		{name: "a result its run did not return", task: "a", want: []invariant.Rule{invariant.WrongResult}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final[0].Result = json.RawMessage(`{"v":2}`)
		}},
		{name: "no result where its run returned one", task: "a", want: []invariant.Rule{invariant.WrongResult}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final[0].Result = nil
		}},
		{name: "the same result spelled differently", change: func(h *invariant.History, o *invariant.Options) {
			h.Final[0].Result = json.RawMessage(`{ "v": 1 }`)
		}},
		{name: "null is no result", change: func(h *invariant.History, o *invariant.Options) {
			h.Final[2].Result = json.RawMessage(`null`)
		}},
		{name: "the expected result", change: func(h *invariant.History, o *invariant.Options) {
			o.Result = func(id string) (json.RawMessage, bool) { return json.RawMessage(fmt.Sprintf("%q", id)), id == "b" }
		}},
		{name: "a result other than expected", task: "a", want: []invariant.Rule{invariant.WrongResult}, change: func(h *invariant.History, o *invariant.Options) {
			o.Result = func(id string) (json.RawMessage, bool) { return json.RawMessage(`{"v":3}`), id == "a" }
		}},
		{name: "a duplicate on a live node", task: "a", want: []invariant.Rule{invariant.Duplicate}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs = append(h.Runs, invariant.Run{ID: "a", Attempt: 2, Node: "n2", Start: at(50), End: at(60)})
		}},
		{name: "an overlapping run on a live node", task: "a", want: []invariant.Rule{invariant.Duplicate}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs = append(h.Runs, invariant.Run{ID: "a", Attempt: 1, Node: "n2", Start: at(5), End: at(8)})
		}},
		{name: "a duplicate on the same node", task: "a", want: []invariant.Rule{invariant.Duplicate}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs = append(h.Runs, invariant.Run{ID: "a", Attempt: 2, Node: "n1", Start: at(50), End: at(60)})
		}},
		{name: "a duplicate of a task never acknowledged", task: "x", want: []invariant.Rule{invariant.Duplicate}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs = append(h.Runs,
				invariant.Run{ID: "x", Attempt: 1, Node: "n1", Start: at(0), End: at(1)},
				invariant.Run{ID: "x", Attempt: 1, Node: "n2", Start: at(0), End: at(1)})
		}},
		{name: "a duplicate on a node that died", change: func(h *invariant.History, o *invariant.Options) {
			h.Runs = append(h.Runs, invariant.Run{ID: "a", Attempt: 1, Node: "n3", Start: at(1)})
			o.Died = []string{"n3"}
		}},
		{name: "two duplicates, one on a node that died", task: "a", want: []invariant.Rule{invariant.Duplicate}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs = append(h.Runs,
				invariant.Run{ID: "a", Attempt: 1, Node: "n3", Start: at(1)},
				invariant.Run{ID: "a", Attempt: 2, Node: "n2", Start: at(50), End: at(60)})
			o.Died = []string{"n3"}
		}},
		{name: "duplicates across a partition", change: func(h *invariant.History, o *invariant.Options) {
			h.Runs = append(h.Runs, invariant.Run{ID: "a", Attempt: 2, Node: "n2", Start: at(5), End: at(60)})
			o.Partitioned = true
		}},
		{name: "a retry beyond the task's retries", task: "c", want: []invariant.Rule{invariant.Duplicate}, change: func(h *invariant.History, o *invariant.Options) {
			h.Final[2].Retries = 0
		}},
		{name: "a retry that starts before the failed run ends", task: "c", want: []invariant.Rule{invariant.Duplicate}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs[3].Start = at(4)
		}},
		{name: "a retry of a run that succeeded", task: "c", want: []invariant.Rule{invariant.Duplicate}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs[2].Err = nil
		}},
		{name: "a retry with the same attempt", task: "c", want: []invariant.Rule{invariant.Duplicate, invariant.NoRun}, change: func(h *invariant.History, o *invariant.Options) {
			h.Runs[3].Attempt = 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, o := good()
			tt.change(&h, &o)
			rep := invariant.Check(h, o)
			var got []invariant.Rule
			for _, v := range rep.Violations {
				got = append(got, v.Rule)
				if v.Task != tt.task {
					t.Errorf("violation of task %q, want %q: %s", v.Task, tt.task, v.Text)
				}
				if !strings.Contains(v.Text, "task "+tt.task+" ") {
					t.Errorf("the violation does not name task %s: %s", tt.task, v.Text)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("violated %v, want %v: %v", got, want, rep.Violations)
			}
			if err := rep.Err(); (err == nil) != (len(tt.want) == 0) || (err != nil && !errors.Is(err, invariant.ErrViolated)) {
				t.Errorf("Err() = %v with %d violations", err, len(rep.Violations))
			}
		})
	}
}

func TestCheck_counts(t *testing.T) {
	h, o := good()
	h.Acked = append(h.Acked, "a", "lost", "cancelled") // a twice: one task
	h.Final = append(h.Final, api.Task{ID: "cancelled", State: api.Cancelled})
	h.Runs = append(h.Runs,
		invariant.Run{ID: "a", Attempt: 2, Node: "n3", Start: at(5)},  // overlaps a's first run
		invariant.Run{ID: "b", Attempt: 2, Node: "n3", Start: at(25)}, // after b's run
	)
	o.Want = ""
	o.Died = []string{"n3"}
	rep := invariant.Check(h, o)
	if len(rep.Violations) != 1 || rep.Violations[0].Rule != invariant.Lost || rep.Violations[0].Task != "lost" {
		t.Errorf("violations %v, want task lost lost", rep.Violations)
	}
	got := rep
	got.Violations = nil
	want := invariant.Report{
		Tasks: 5, Lost: 1, Runs: 6, Retries: 1, Duplicates: 2, Overlaps: 1, Observations: 4,
		Outcomes: map[api.State]int{api.Succeeded: 3, api.Cancelled: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("counts:\n got %s\nwant %s", got, want)
	}
}

func TestCheck_deterministic(t *testing.T) {
	h, o := good()
	h.Acked = append(h.Acked, "d", "e", "f")
	for _, id := range []string{"x", "y", "z", "w"} {
		h.Runs = append(h.Runs,
			invariant.Run{ID: id, Attempt: 1, Node: "n1", Start: at(0)},
			invariant.Run{ID: id, Attempt: 1, Node: "n2", Start: at(0)})
	}
	first := invariant.Check(h, o)
	if len(first.Violations) != 7 {
		t.Fatalf("%d violations, want 7: %v", len(first.Violations), first.Violations)
	}
	var order []string
	for _, v := range first.Violations {
		order = append(order, v.Task)
	}
	if want := []string{"d", "e", "f", "w", "x", "y", "z"}; !slices.Equal(order, want) {
		t.Errorf("violations in task order %v, want %v", order, want)
	}
	for range 20 {
		slices.Reverse(h.Runs)
		slices.Reverse(h.Observations)
		if again := invariant.Check(h, o); !reflect.DeepEqual(again, first) {
			t.Fatalf("another order of the same runs gave another report:\n%v\n%v", again.Violations, first.Violations)
		}
	}
}

func TestReport_Err(t *testing.T) {
	h, o := good()
	for i := range 12 {
		h.Acked = append(h.Acked, fmt.Sprintf("lost-%d", i))
	}
	err := invariant.Check(h, o).Err()
	if !errors.Is(err, invariant.ErrViolated) {
		t.Fatalf("Err() = %v, want ErrViolated", err)
	}
	for _, want := range []string{"12 violations in 15 tasks", "task lost-0 ", "task lost-9 ", "and 2 more"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %q, does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "lost-10") {
		t.Errorf("Err() = %q lists more than ten violations", err)
	}
}

// fakeTB records what Assert does with a test.
type fakeTB struct{ errors, logs []string }

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Logf(format string, args ...any) {
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

var _ invariant.TB = testing.TB(nil)

func TestReport_Assert(t *testing.T) {
	tests := []struct {
		name       string
		lost       int
		limit      int
		wantErrors int
		wantLast   string
	}{
		{name: "good", lost: 0, limit: 3, wantErrors: 0},
		{name: "under the limit", lost: 2, limit: 3, wantErrors: 2, wantLast: "task lost-1 "},
		{name: "at the limit", lost: 3, limit: 3, wantErrors: 3, wantLast: "task lost-2 "},
		{name: "over the limit", lost: 5, limit: 3, wantErrors: 4, wantLast: "and 2 more violations"},
		{name: "no limit", lost: 5, limit: 0, wantErrors: 5, wantLast: "task lost-4 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, o := good()
			for i := range tt.lost {
				h.Acked = append(h.Acked, fmt.Sprintf("lost-%d", i))
			}
			var f fakeTB
			ok := invariant.Check(h, o).Assert(&f, tt.limit)
			if ok != (tt.lost == 0) || len(f.errors) != tt.wantErrors {
				t.Fatalf("Assert = %v with errors %q", ok, f.errors)
			}
			if tt.wantErrors > 0 && !strings.Contains(f.errors[len(f.errors)-1], tt.wantLast) {
				t.Errorf("last error %q, want %q", f.errors[len(f.errors)-1], tt.wantLast)
			}
			if len(f.logs) != 1 || !strings.Contains(f.logs[0], fmt.Sprintf("%d tasks", 3+tt.lost)) {
				t.Errorf("logs %q, want the counts", f.logs)
			}
		})
	}
}
