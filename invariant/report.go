package invariant

import (
	"errors"
	"fmt"
	"strings"

	"github.com/starlingsched/starling/internal/api"
)

// ErrViolated is wrapped by Report.Err when an invariant does not hold.
var ErrViolated = errors.New("invariant: violated")

// Rule names the invariant a violation breaks.
type Rule string

// The rules Check applies.
const (
	// Lost: an acknowledged task has no record, or its record is not terminal.
	Lost Rule = "lost"
	// WrongState: a task ended in a terminal state other than Options.Want.
	WrongState Rule = "state"
	// Disagree: two answers about a task (final records, or a client's observation
	// and the final record) show different terminal outcomes.
	Disagree Rule = "disagree"
	// Reverted: a client saw a task non-terminal after a client had seen it terminal.
	Reverted Rule = "reverted"
	// NoRun: a task succeeded on a node and attempt where no run of it finished
	// without an error.
	NoRun Rule = "no-run"
	// WrongResult: a succeeded task's result is not what its run returned, or not
	// what Options.Result expects.
	WrongResult Rule = "result"
	// Duplicate: a task ran more than once on nodes that stayed up, outside a
	// partition and beyond its retries.
	Duplicate Rule = "duplicate"
)

// Violation is one way a history breaks an invariant.
type Violation struct {
	// Task is the id of the task it is about.
	Task string
	Rule Rule
	// Text is a sentence that names the task and says what is wrong.
	Text string
}

func (v Violation) String() string { return v.Text }

// Report is what Check found.
type Report struct {
	// Violations, task by task: acknowledged tasks in the order of History.Acked,
	// then the others by id.
	Violations []Violation

	// Tasks counts the distinct acknowledged tasks.
	Tasks int
	// Lost counts the acknowledged tasks with no terminal record.
	Lost int
	// Outcomes counts the acknowledged tasks by terminal state.
	Outcomes map[api.State]int
	// Runs counts every run in the history, of any task.
	Runs int
	// Retries counts runs that followed a failed run of their task within its
	// Retries budget.
	Retries int
	// Duplicates counts the runs beyond the first of their task that are not retries
	// (allowed or not).
	Duplicates int
	// Overlaps counts the runs that started while another run of their task was
	// still going (or never ended).
	Overlaps int
	// Observations counts the observations checked.
	Observations int
}

// OK reports whether every invariant held.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Err returns nil when every invariant held, and otherwise an error wrapping
// ErrViolated that lists the first ten violations.
func (r Report) Err() error {
	if r.OK() {
		return nil
	}
	const shown = 10
	var b strings.Builder
	for i, v := range r.Violations {
		if i == shown {
			fmt.Fprintf(&b, "; and %d more", len(r.Violations)-shown)
			break
		}
		b.WriteString("; ")
		b.WriteString(v.Text)
	}
	return fmt.Errorf("%w: %d violations in %d tasks%s", ErrViolated, len(r.Violations), r.Tasks, b.String())
}

// String summarizes the counts on one line.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d tasks:", r.Tasks)
	for _, s := range api.States {
		if n := r.Outcomes[s]; n > 0 {
			fmt.Fprintf(&b, " %d %s,", n, s)
		}
	}
	fmt.Fprintf(&b, " %d lost; %d runs, %d retries, %d duplicates, %d overlapping; %d observations; %d violations",
		r.Lost, r.Runs, r.Retries, r.Duplicates, r.Overlaps, r.Observations, len(r.Violations))
	return b.String()
}
