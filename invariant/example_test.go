package invariant_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/invariant"
)

func ExampleCheck() {
	h := invariant.History{
		Acked: []string{"t-1", "t-2"},
		Runs: []invariant.Run{
			{ID: "t-1", Attempt: 1, Node: "n1", Start: at(0), End: at(10), Result: json.RawMessage(`42`)},
			// t-2 ran on n2, which was killed under it, then again on n1.
			{ID: "t-2", Attempt: 1, Node: "n2", Start: at(0)},
			{ID: "t-2", Attempt: 2, Node: "n1", Start: at(20), End: at(30), Result: json.RawMessage(`7`)},
		},
		Final: []api.Task{
			{ID: "t-1", State: api.Succeeded, Attempt: 1, Node: "n1", Result: json.RawMessage(`41`)},
			{ID: "t-2", State: api.Succeeded, Attempt: 2, Node: "n1", Result: json.RawMessage(`7`)},
		},
	}
	rep := invariant.Check(h, invariant.Options{Want: api.Succeeded, Died: []string{"n2"}})
	fmt.Println(rep)
	for _, v := range rep.Violations {
		fmt.Println(v.Rule, "-", v)
	}
	fmt.Println(errors.Is(rep.Err(), invariant.ErrViolated))
	// Output:
	// 2 tasks: 2 succeeded, 0 lost; 3 runs, 0 retries, 1 duplicates, 1 overlapping; 0 observations; 1 violations
	// result - task t-1 succeeded with result 41, but its run on "n1" in attempt 1 returned 42
	// true
}
