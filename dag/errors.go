package dag

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Build returns them wrapped in an *Error; test for them
// with errors.Is.
var (
	// ErrEmpty means the batch has no tasks.
	ErrEmpty = errors.New("dag: empty batch")
	// ErrTooMany means the batch has more tasks than Limits.MaxTasks.
	ErrTooMany = errors.New("dag: too many tasks")
	// ErrTooDeep means the longest dependency chain has more tasks than
	// Limits.MaxDepth.
	ErrTooDeep = errors.New("dag: dependency chain too deep")
	// ErrDuplicateName means two tasks of the batch carry the same name.
	ErrDuplicateName = errors.New("dag: duplicate name")
	// ErrSelfDep means a task lists itself among its deps.
	ErrSelfDep = errors.New("dag: task depends on itself")
	// ErrUnknownDep means a dep names neither a task of the batch nor an
	// external task.
	ErrUnknownDep = errors.New("dag: unknown dep")
	// ErrCycle means the deps of the batch form a cycle.
	ErrCycle = errors.New("dag: cycle")
	// ErrBadTrigger means a task's trigger is not one of the known triggers.
	ErrBadTrigger = errors.New("dag: unknown trigger")
	// ErrDuplicateDep means a task lists the same dep more than once.
	ErrDuplicateDep = errors.New("dag: duplicate dep")
)

// Error is the error Build returns for an invalid batch. It names the task and
// the field that is wrong, so a caller can report it to the user as is
// (for example as an HTTP 400 naming the field).
type Error struct {
	// Index is the task's position in the batch, or -1 when the error is
	// about the batch as a whole (ErrEmpty, ErrTooMany).
	Index int
	// Field is the spec field at fault: "name", "deps" or "trigger"; or
	// "tasks" when Index is -1.
	Field string
	// Kind is one of the sentinel errors above; Unwrap returns it.
	Kind error
	// Msg says what is wrong, in lowercase, without the location.
	Msg string
	// Cycle, for ErrCycle only, lists the tasks on the cycle, each once, as
	// their names (or "tasks[i]" for an unnamed task): each task depends on
	// the next, and the last depends on the first. It starts at the cycle's
	// task with the lowest index, which is also Index.
	Cycle []string
}

// Error returns the location and the message, e.g.
// `tasks[3].deps: unknown dep "foo"` or `tasks: empty batch`.
func (e *Error) Error() string {
	if e.Index < 0 {
		return e.Field + ": " + e.Msg
	}
	return fmt.Sprintf("tasks[%d].%s: %s", e.Index, e.Field, e.Msg)
}

// Unwrap returns the sentinel error the Error is a case of.
func (e *Error) Unwrap() error { return e.Kind }

// taskLabel names task i for messages: its name, or tasks[i] when unnamed.
func taskLabel(specs []Spec, i int) string {
	if specs[i].Name != "" {
		return specs[i].Name
	}
	return fmt.Sprintf("tasks[%d]", i)
}

// cycleShown is how many tasks of a long cycle the message names at each end.
const cycleShown = 8

// cycleMsg renders a cycle as "cycle: a -> b -> c -> a". A long cycle is
// shortened in the middle, e.g. "cycle: t0 -> ... (99984 more) -> t1 -> t0";
// Error.Cycle still holds all of it.
func cycleMsg(cycle []string) string {
	var b strings.Builder
	b.WriteString("cycle: ")
	for k, name := range cycle {
		if len(cycle) > 2*cycleShown && k == cycleShown {
			fmt.Fprintf(&b, "... (%d more) -> ", len(cycle)-2*cycleShown)
		}
		if len(cycle) > 2*cycleShown && k >= cycleShown && k < len(cycle)-cycleShown {
			continue
		}
		b.WriteString(name)
		b.WriteString(" -> ")
	}
	b.WriteString(cycle[0])
	return b.String()
}
