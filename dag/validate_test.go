package dag

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// externals returns an isExternal func that knows exactly the given ids.
func externals(ids ...string) func(string) bool {
	return func(ref string) bool { return slices.Contains(ids, ref) }
}

// chain returns n specs t0 <- t1 <- ... where each task depends on the one
// before it.
func chain(n int) []Spec {
	specs := make([]Spec, n)
	for i := range specs {
		specs[i].Name = fmt.Sprintf("t%d", i)
		if i > 0 {
			specs[i].Deps = []string{specs[i-1].Name}
		}
	}
	return specs
}

func TestBuild_errors(t *testing.T) {
	tests := []struct {
		name      string
		specs     []Spec
		ext       func(string) bool
		lim       Limits
		kind      error
		msg       string
		index     int
		field     string
		wantCycle []string
	}{
		{
			name:  "empty batch",
			specs: nil,
			kind:  ErrEmpty, index: -1, field: "tasks",
			msg: "tasks: empty batch",
		},
		{
			name:  "too many tasks",
			specs: []Spec{{}, {}, {}},
			lim:   Limits{MaxTasks: 2},
			kind:  ErrTooMany, index: -1, field: "tasks",
			msg: "tasks: batch of 3 tasks exceeds the limit of 2",
		},
		{
			name:  "bad trigger",
			specs: []Spec{{Name: "a"}, {Name: "b", Deps: []string{"a"}, Trigger: "one_success"}},
			kind:  ErrBadTrigger, index: 1, field: "trigger",
			msg: `tasks[1].trigger: unknown trigger "one_success" (want "all_success" or "all_done")`,
		},
		{
			name:  "duplicate name",
			specs: []Spec{{Name: "a"}, {Name: "b"}, {Name: "a"}},
			kind:  ErrDuplicateName, index: 2, field: "name",
			msg: `tasks[2].name: duplicate name "a" (also tasks[0])`,
		},
		{
			name:  "self dep",
			specs: []Spec{{Name: "a"}, {Name: "b", Deps: []string{"a", "b"}}},
			kind:  ErrSelfDep, index: 1, field: "deps",
			msg: `tasks[1].deps: task "b" depends on itself`,
		},
		{
			name:  "unknown dep without externals",
			specs: []Spec{{Name: "a"}, {Name: "b"}, {}, {Deps: []string{"a", "foo"}}},
			kind:  ErrUnknownDep, index: 3, field: "deps",
			msg: `tasks[3].deps: unknown dep "foo"`,
		},
		{
			name:  "unknown dep not among externals",
			specs: []Spec{{Name: "a", Deps: []string{"t-1", "t-2"}}},
			ext:   externals("t-1"),
			kind:  ErrUnknownDep, index: 0, field: "deps",
			msg: `tasks[0].deps: unknown dep "t-2"`,
		},
		{
			name:  "empty dep",
			specs: []Spec{{Name: "a"}, {Deps: []string{""}}},
			ext:   externals(""),
			kind:  ErrUnknownDep, index: 1, field: "deps",
			msg: `tasks[1].deps: empty dep`,
		},
		{
			name:  "duplicate dep by name",
			specs: []Spec{{Name: "a"}, {Name: "b"}, {Deps: []string{"a", "b", "a"}}},
			kind:  ErrDuplicateDep, index: 2, field: "deps",
			msg: `tasks[2].deps: duplicate dep "a"`,
		},
		{
			name:  "duplicate external dep",
			specs: []Spec{{Name: "a", Deps: []string{"t-1"}}, {Deps: []string{"t-1", "a", "t-1"}}},
			ext:   externals("t-1"),
			kind:  ErrDuplicateDep, index: 1, field: "deps",
			msg: `tasks[1].deps: duplicate dep "t-1"`,
		},
		{
			name: "cycle of three",
			specs: []Spec{
				{Name: "a", Deps: []string{"c"}},
				{Name: "b", Deps: []string{"a"}},
				{Name: "c", Deps: []string{"b"}},
			},
			kind: ErrCycle, index: 0, field: "deps",
			msg:       "tasks[0].deps: cycle: a -> c -> b -> a",
			wantCycle: []string{"a", "c", "b"},
		},
		{
			name: "cycle behind a valid part and a tail",
			specs: []Spec{
				{Name: "root"},
				{Name: "tail", Deps: []string{"root", "p"}},
				{Name: "p", Deps: []string{"root", "q"}},
				{Name: "q", Deps: []string{"p"}},
				{Name: "ok", Deps: []string{"root"}},
			},
			kind: ErrCycle, index: 2, field: "deps",
			msg:       "tasks[2].deps: cycle: p -> q -> p",
			wantCycle: []string{"p", "q"},
		},
		{
			name: "cycle reported from its lowest index",
			specs: []Spec{
				{Name: "x", Deps: []string{"z"}},
				{Name: "y", Deps: []string{"x"}},
				{Name: "z", Deps: []string{"y"}},
				{Name: "w", Deps: []string{"z"}},
			},
			kind: ErrCycle, index: 0, field: "deps",
			msg:       "tasks[0].deps: cycle: x -> z -> y -> x",
			wantCycle: []string{"x", "z", "y"},
		},
		{
			name:  "too deep",
			specs: chain(5),
			lim:   Limits{MaxDepth: 4},
			kind:  ErrTooDeep, index: 4, field: "deps",
			msg: "tasks[4].deps: dependency chain of 5 tasks exceeds the limit of 4",
		},
		{
			name:  "per-task fault wins over a cycle",
			specs: []Spec{{Name: "a", Deps: []string{"b"}}, {Name: "b", Deps: []string{"a"}}, {Deps: []string{"nope"}}},
			kind:  ErrUnknownDep, index: 2, field: "deps",
			msg: `tasks[2].deps: unknown dep "nope"`,
		},
		{
			name: "cycle wins over depth",
			specs: append(chain(4), Spec{Name: "c1", Deps: []string{"c2"}},
				Spec{Name: "c2", Deps: []string{"c1"}}),
			lim:  Limits{MaxDepth: 2},
			kind: ErrCycle, index: 4, field: "deps",
			msg:       "tasks[4].deps: cycle: c1 -> c2 -> c1",
			wantCycle: []string{"c1", "c2"},
		},
		{
			name: "faults reported in index order",
			specs: []Spec{
				{Name: "a", Deps: []string{"missing"}},
				{Name: "a", Trigger: "bogus"},
			},
			kind: ErrUnknownDep, index: 0, field: "deps",
			msg: `tasks[0].deps: unknown dep "missing"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := Build(tt.specs, tt.ext, tt.lim)
			if err == nil {
				t.Fatalf("Build = %v, nil; want error %q", g, tt.msg)
			}
			if g != nil {
				t.Errorf("Build returned a graph with error %v", err)
			}
			if got := err.Error(); got != tt.msg {
				t.Errorf("error = %q, want %q", got, tt.msg)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.kind)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not a *dag.Error", err)
			}
			if e.Index != tt.index || e.Field != tt.field {
				t.Errorf("Index, Field = %d, %q, want %d, %q", e.Index, e.Field, tt.index, tt.field)
			}
			if !slices.Equal(e.Cycle, tt.wantCycle) {
				t.Errorf("Cycle = %q, want %q", e.Cycle, tt.wantCycle)
			}
		})
	}
}

func TestBuild_sentinels(t *testing.T) {
	all := []error{ErrEmpty, ErrTooMany, ErrTooDeep, ErrDuplicateName, ErrSelfDep,
		ErrUnknownDep, ErrCycle, ErrBadTrigger, ErrDuplicateDep}
	for _, err := range all {
		t.Run(err.Error(), func(t *testing.T) {
			msg := err.Error()
			if len(msg) < 6 || msg[:5] != "dag: " {
				t.Errorf("sentinel %q lacks the \"dag: \" prefix", msg)
			}
			for _, other := range all {
				if other != err && errors.Is(err, other) {
					t.Errorf("%v matches %v", err, other)
				}
			}
		})
	}
}

func TestBuild_valid(t *testing.T) {
	t.Run("name wins over external id", func(t *testing.T) {
		g, err := Build([]Spec{{Name: "t-1"}, {Deps: []string{"t-1"}}}, externals("t-1"), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := g.Deps(1), []Dep{{Index: 0, Ref: "t-1"}}; !slices.Equal(got, want) {
			t.Errorf("Deps(1) = %v, want %v", got, want)
		}
		if got := g.Externals(); len(got) != 0 {
			t.Errorf("Externals() = %q, want none", got)
		}
	})

	t.Run("isExternal asked once per distinct ref", func(t *testing.T) {
		calls := map[string]int{}
		isExt := func(ref string) bool { calls[ref]++; return true }
		specs := []Spec{
			{Name: "a", Deps: []string{"x", "y"}},
			{Name: "b", Deps: []string{"y", "a", "x"}},
			{Deps: []string{"x", "b"}},
		}
		g, err := Build(specs, isExt, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"x": 1, "y": 1}; !maps.Equal(calls, want) {
			t.Errorf("isExternal calls = %v, want %v", calls, want)
		}
		if got, want := g.Externals(), []string{"x", "y"}; !slices.Equal(got, want) {
			t.Errorf("Externals() = %q, want %q", got, want)
		}
		if got, want := g.Deps(1), []Dep{{-1, "y"}, {0, "a"}, {-1, "x"}}; !slices.Equal(got, want) {
			t.Errorf("Deps(1) = %v, want %v", got, want)
		}
		if got, want := g.Dependents(0), []int{1}; !slices.Equal(got, want) {
			t.Errorf("Dependents(0) = %v, want %v", got, want)
		}
	})

	t.Run("external deps do not count toward depth", func(t *testing.T) {
		specs := chain(3)
		specs[0].Deps = []string{"ext"}
		if _, err := Build(specs, externals("ext"), Limits{MaxDepth: 3}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("limits at the edge", func(t *testing.T) {
		if _, err := Build(chain(4), nil, Limits{MaxTasks: 4, MaxDepth: 4}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("default limits", func(t *testing.T) {
		if got, want := DefaultLimits(), (Limits{MaxTasks: 100_000, MaxDepth: 100_000}); got != want {
			t.Errorf("DefaultLimits() = %+v, want %+v", got, want)
		}
		_, err := Build(make([]Spec, 100_001), nil, Limits{})
		if !errors.Is(err, ErrTooMany) {
			t.Errorf("Build(100001 tasks) error = %v, want ErrTooMany", err)
		}
	})

	t.Run("triggers normalized", func(t *testing.T) {
		g, err := Build([]Spec{{Name: "a"}, {Deps: []string{"a"}, Trigger: AllDone}, {Trigger: AllSuccess}}, nil, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []Trigger{AllSuccess, AllDone, AllSuccess} {
			if got := g.Trigger(i); got != want {
				t.Errorf("Trigger(%d) = %q, want %q", i, got, want)
			}
		}
		if i, ok := g.Index("a"); !ok || i != 0 {
			t.Errorf(`Index("a") = %d, %v, want 0, true`, i, ok)
		}
		if _, ok := g.Index(""); ok {
			t.Error(`Index("") found an unnamed task`)
		}
	})
}
