package invariant

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Check checks the invariants of DESIGN.md §8 on history h:
//
//   - every acknowledged task has a record, and the record is terminal (none lost),
//     in state o.Want when that is set;
//   - a task has one outcome: its final records, and every terminal answer a client
//     got, show the same state, attempt, node and result; and no client got a
//     non-terminal answer asked for after a terminal answer came back;
//   - a succeeded task succeeded on a node and attempt where one of its runs finished
//     without an error, with the result that run returned (and o.Result's, if set);
//   - a task ran more than once only if one of its runs was on a node in o.Died, or
//     across a partition (o.Partitioned); a run that follows a failed run of the task
//     with a higher attempt, within the task's Retries, is a retry, not a duplicate.
//
// Check is pure: it reads no clock and does no I/O, and the same history gives the
// same report.
func Check(h History, o Options) Report {
	c := checker{
		opts:     o,
		rep:      Report{Outcomes: map[api.State]int{}, Runs: len(h.Runs), Observations: len(h.Observations)},
		acked:    map[string]bool{},
		finals:   map[string][]api.Task{},
		runs:     map[string][]Run{},
		observed: map[string][]Observation{},
	}
	var ids []string // acknowledged first, in order, then the others by id
	for _, id := range h.Acked {
		if !c.acked[id] {
			c.acked[id] = true
			ids = append(ids, id)
		}
	}
	c.rep.Tasks = len(ids)
	var others []string
	other := func(id string) {
		if !c.acked[id] && len(c.finals[id]) == 0 && len(c.runs[id]) == 0 && len(c.observed[id]) == 0 {
			others = append(others, id)
		}
	}
	for _, t := range h.Final {
		other(t.ID)
		c.finals[t.ID] = append(c.finals[t.ID], t)
	}
	for _, r := range h.Runs {
		other(r.ID)
		c.runs[r.ID] = append(c.runs[r.ID], r)
	}
	for _, ob := range h.Observations {
		other(ob.ID)
		c.observed[ob.ID] = append(c.observed[ob.ID], ob)
	}
	slices.Sort(others)
	for _, id := range append(ids, others...) {
		c.task(id)
	}
	return c.rep
}

type checker struct {
	opts     Options
	rep      Report
	acked    map[string]bool
	finals   map[string][]api.Task
	runs     map[string][]Run
	observed map[string][]Observation
}

func (c *checker) violate(id string, rule Rule, format string, args ...any) {
	c.rep.Violations = append(c.rep.Violations, Violation{Task: id, Rule: rule, Text: fmt.Sprintf(format, args...)})
}

// task checks everything about task id.
func (c *checker) task(id string) {
	runs := c.runs[id]
	slices.SortFunc(runs, compareRuns)
	finals := c.finals[id]
	var final *api.Task
	if len(finals) > 0 {
		final = &finals[0]
		for _, f := range finals[1:] {
			if !outcomeOf(f).same(outcomeOf(*final)) {
				c.violate(id, Disagree, "task %s has two final records: %s and %s", id, outcomeOf(*final), outcomeOf(f))
			}
		}
	}
	if c.acked[id] {
		c.outcome(id, final)
	}
	if final != nil && final.State == api.Succeeded {
		c.success(id, *final, runs)
	}
	c.duplicates(id, final, runs)
	c.observations(id, final, c.observed[id])
}

// outcome checks that acknowledged task id reached a terminal record, the one wanted.
func (c *checker) outcome(id string, final *api.Task) {
	switch {
	case final == nil:
		c.rep.Lost++
		c.violate(id, Lost, "task %s was acknowledged but has no record: lost", id)
	case !final.State.Terminal():
		c.rep.Lost++
		c.violate(id, Lost, "task %s is %s at the end, not terminal (attempt %d on %q): lost", id, final.State, final.Attempt, final.Node)
	default:
		c.rep.Outcomes[final.State]++
		if c.opts.Want != "" && final.State != c.opts.Want {
			c.violate(id, WrongState, "task %s ended %s (error %q), want %s", id, final.State, final.Error, c.opts.Want)
		}
	}
}

// success checks that succeeded task id is the outcome of one of its runs, with the
// right result.
func (c *checker) success(id string, final api.Task, runs []Run) {
	var match []Run
	for _, r := range runs {
		if r.Node == final.Node && r.Attempt == final.Attempt && r.OK() {
			match = append(match, r)
		}
	}
	if len(match) == 0 {
		c.violate(id, NoRun, "task %s succeeded on %q in attempt %d, but no run of it finished there without an error; its runs: %v",
			id, final.Node, final.Attempt, runs)
		return
	}
	if !slices.ContainsFunc(match, func(r Run) bool { return sameJSON(r.Result, final.Result) }) {
		c.violate(id, WrongResult, "task %s succeeded with result %s, but its run on %q in attempt %d returned %s",
			id, show(final.Result), final.Node, final.Attempt, show(match[0].Result))
	}
	if c.opts.Result != nil {
		if want, ok := c.opts.Result(id); ok && !sameJSON(final.Result, want) {
			c.violate(id, WrongResult, "task %s succeeded with result %s, want %s", id, show(final.Result), show(want))
		}
	}
}

// duplicates counts the runs of task id, in start order, and checks that it ran more
// than once only where that is allowed.
func (c *checker) duplicates(id string, final *api.Task, runs []Run) {
	budget := 0
	if final != nil {
		budget = final.Retries
	}
	var kept []Run // the runs that are not retries
	for i, r := range runs {
		if i > 0 {
			prev := runs[i-1]
			if budget > 0 && prev.Ended() && prev.Err != nil && !prev.End.After(r.Start) && r.Attempt > prev.Attempt {
				budget--
				c.rep.Retries++
				continue
			}
		}
		kept = append(kept, r)
	}
	for i, r := range runs {
		if slices.ContainsFunc(runs[:i], func(p Run) bool { return !p.Ended() || p.End.After(r.Start) }) {
			c.rep.Overlaps++
		}
	}
	if len(kept) < 2 {
		return
	}
	c.rep.Duplicates += len(kept) - 1
	onLive := 0
	for _, r := range kept {
		if !slices.Contains(c.opts.Died, r.Node) {
			onLive++
		}
	}
	if onLive > 1 && !c.opts.Partitioned {
		c.violate(id, Duplicate, "task %s ran %d times beyond its retries, %d of them on nodes that stayed up (died: %v): %v",
			id, len(kept), onLive, c.opts.Died, runs)
	}
}

// observations checks what clients saw of task id against its final record and
// against each other: one terminal outcome, never left once seen.
func (c *checker) observations(id string, final *api.Task, obs []Observation) {
	if len(obs) == 0 {
		return
	}
	slices.SortFunc(obs, compareObservations)
	// The reference outcome: the final record, or else the first terminal answer.
	var ref outcome
	refBy := ""
	if final != nil {
		ref, refBy = outcomeOf(*final), "its final record is"
	}
	var first *Observation // the first terminal answer to come back
	for i, ob := range obs {
		if ob.State.Terminal() {
			first = &obs[i]
			break
		}
	}
	if first != nil && final == nil {
		ref, refBy = first.outcome(), first.By+" had answered"
	}
	var differ, reverted []Observation
	for _, ob := range obs {
		switch {
		case ob.State.Terminal():
			if !ob.outcome().same(ref) {
				differ = append(differ, ob)
			}
		case first != nil && ob.Asked.After(first.Answered):
			reverted = append(reverted, ob)
		}
	}
	if len(differ) > 0 {
		ob := differ[0]
		c.violate(id, Disagree, "%s answered that task %s is %s at %s, but %s %s%s",
			ob.By, id, ob.outcome(), stamp(ob.Answered), refBy, ref, more(len(differ)-1))
	}
	if len(reverted) > 0 {
		ob := reverted[0]
		c.violate(id, Reverted, "%s answered that task %s is %s when asked at %s, after %s had answered %s at %s%s",
			ob.By, id, ob.outcome(), stamp(ob.Asked), first.By, first.outcome(), stamp(first.Answered), more(len(reverted)-1))
	}
}

// compareRuns orders runs by start, and runs that start together by everything else,
// so that the order of History.Runs does not change the report.
func compareRuns(a, b Run) int {
	return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.Attempt, b.Attempt), cmp.Compare(a.Node, b.Node),
		a.End.Compare(b.End), cmp.Compare(errText(a.Err), errText(b.Err)), bytes.Compare(a.Result, b.Result))
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// compareObservations orders observations by when their answers came back, and
// those that came back together by everything else.
func compareObservations(a, b Observation) int {
	return cmp.Or(a.Answered.Compare(b.Answered), a.Asked.Compare(b.Asked), cmp.Compare(a.By, b.By),
		cmp.Compare(a.State, b.State), cmp.Compare(a.Attempt, b.Attempt), cmp.Compare(a.Node, b.Node),
		bytes.Compare(a.Result, b.Result))
}

// outcome is what two answers about a task must agree on once it is terminal.
type outcome struct {
	state   api.State
	attempt int
	node    string
	result  json.RawMessage
}

func outcomeOf(t api.Task) outcome {
	return outcome{state: t.State, attempt: t.Attempt, node: t.Node, result: t.Result}
}

func (ob Observation) outcome() outcome {
	return outcome{state: ob.State, attempt: ob.Attempt, node: ob.Node, result: ob.Result}
}

func (a outcome) same(b outcome) bool {
	return a.state == b.state && a.attempt == b.attempt && a.node == b.node && sameJSON(a.result, b.result)
}

func (a outcome) String() string {
	s := fmt.Sprintf("%s (attempt %d on %q", a.state, a.attempt, a.node)
	if len(a.result) > 0 {
		s += ", result " + show(a.result)
	}
	return s + ")"
}

// sameJSON reports whether a and b are the same JSON value; empty is null.
func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	va, errA := decode(a)
	vb, errB := decode(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func decode(m json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(m)) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(m))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

// show renders a result for a message.
func show(m json.RawMessage) string {
	const limit = 200
	switch {
	case len(m) == 0:
		return "null"
	case len(m) > limit:
		return string(m[:limit]) + "…"
	}
	return string(m)
}

func stamp(t time.Time) string { return t.Format("15:04:05.000000") }

func more(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (and %d more answers like it)", n)
}
