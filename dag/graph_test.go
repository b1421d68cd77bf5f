package dag

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// mustBuild builds specs or fails the test.
func mustBuild(tb testing.TB, specs []Spec, isExternal func(string) bool) *Graph {
	tb.Helper()
	g, err := Build(specs, isExternal, Limits{})
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return g
}

// op is one call in a scripted scenario and what it must return.
type op struct {
	do    string // "start", "complete", "external", "cancel-pending"
	task  string // a task name for "complete", an external ref for "external"
	o     Outcome
	ready []string // Step.Ready, or the tasks CancelPending cancelled
	uf    []string // Step.UpstreamFailed
}

func start(ready ...string) op { return op{do: "start", ready: ready} }
func complete(task string, o Outcome, ready, uf []string) op {
	return op{do: "complete", task: task, o: o, ready: ready, uf: uf}
}
func external(ref string, o Outcome, ready, uf []string) op {
	return op{do: "external", task: ref, o: o, ready: ready, uf: uf}
}
func names(n ...string) []string { return n }

func TestGraph_scenarios(t *testing.T) {
	diamond := []Spec{
		{Name: "a"},
		{Name: "b", Deps: []string{"a"}},
		{Name: "c", Deps: []string{"a"}},
		{Name: "d", Deps: []string{"b", "c"}},
	}
	tests := []struct {
		name  string
		specs []Spec
		ext   []string
		ops   []op
		want  map[string]Outcome // final outcome per task; missing: not Done
	}{
		{
			name:  "diamond",
			specs: diamond,
			ops: []op{
				start("a"),
				complete("a", Succeeded, names("b", "c"), nil),
				complete("c", Succeeded, nil, nil),
				complete("b", Succeeded, names("d"), nil),
				complete("d", Succeeded, nil, nil),
			},
			want: map[string]Outcome{"a": Succeeded, "b": Succeeded, "c": Succeeded, "d": Succeeded},
		},
		{
			name:  "diamond with a failed side",
			specs: diamond,
			ops: []op{
				start("a"),
				complete("a", Succeeded, names("b", "c"), nil),
				complete("b", Failed, nil, names("d")),
				complete("c", Succeeded, nil, nil),
			},
			want: map[string]Outcome{"a": Succeeded, "b": Failed, "c": Succeeded, "d": UpstreamFailed},
		},
		{
			name:  "transitive upstream_failed",
			specs: chain(5),
			ops: []op{
				start("t0"),
				complete("t0", Succeeded, names("t1"), nil),
				complete("t1", Failed, nil, names("t2", "t3", "t4")),
			},
			want: map[string]Outcome{"t0": Succeeded, "t1": Failed, "t2": UpstreamFailed, "t3": UpstreamFailed, "t4": UpstreamFailed},
		},
		{
			name: "fails while other deps still run",
			specs: []Spec{
				{Name: "slow"},
				{Name: "fast"},
				{Name: "join", Deps: []string{"slow", "fast"}},
				{Name: "after", Deps: []string{"join"}},
			},
			ops: []op{
				start("slow", "fast"),
				complete("fast", Failed, nil, names("join", "after")),
				complete("slow", Succeeded, nil, nil),
			},
			want: map[string]Outcome{"slow": Succeeded, "fast": Failed, "join": UpstreamFailed, "after": UpstreamFailed},
		},
		{
			name:  "cancelled run propagates like a failure",
			specs: chain(3),
			ops: []op{
				start("t0"),
				complete("t0", Cancelled, nil, names("t1", "t2")),
			},
			want: map[string]Outcome{"t0": Cancelled, "t1": UpstreamFailed, "t2": UpstreamFailed},
		},
		{
			name: "all_done after a failed dep",
			specs: []Spec{
				{Name: "a"},
				{Name: "b"},
				{Name: "cleanup", Deps: []string{"a", "b"}, Trigger: AllDone},
			},
			ops: []op{
				start("a", "b"),
				complete("a", Failed, nil, nil),
				complete("b", Succeeded, names("cleanup"), nil),
				complete("cleanup", Succeeded, nil, nil),
			},
			want: map[string]Outcome{"a": Failed, "b": Succeeded, "cleanup": Succeeded},
		},
		{
			name: "all_done after an upstream_failed dep",
			specs: []Spec{
				{Name: "a"},
				{Name: "b", Deps: []string{"a"}},
				{Name: "c", Deps: []string{"b"}},
				{Name: "cleanup", Deps: []string{"c"}, Trigger: AllDone},
				{Name: "report", Deps: []string{"cleanup"}},
			},
			ops: []op{
				start("a"),
				complete("a", Failed, names("cleanup"), names("b", "c")),
				complete("cleanup", Succeeded, names("report"), nil),
				complete("report", Succeeded, nil, nil),
			},
			want: map[string]Outcome{"a": Failed, "b": UpstreamFailed, "c": UpstreamFailed, "cleanup": Succeeded, "report": Succeeded},
		},
		{
			name: "all_done waits for every dep",
			specs: []Spec{
				{Name: "a"},
				{Name: "b"},
				{Name: "cleanup", Deps: []string{"a", "b"}, Trigger: AllDone},
			},
			ops: []op{
				start("a", "b"),
				complete("a", Succeeded, nil, nil),
				complete("b", Cancelled, names("cleanup"), nil),
			},
			want: map[string]Outcome{"a": Succeeded, "b": Cancelled},
		},
		{
			name:  "cancel a pending task",
			specs: diamond,
			ops: []op{
				start("a"),
				complete("b", Cancelled, nil, names("d")),
				complete("a", Succeeded, names("c"), nil),
				complete("c", Succeeded, nil, nil),
			},
			want: map[string]Outcome{"a": Succeeded, "b": Cancelled, "c": Succeeded, "d": UpstreamFailed},
		},
		{
			name:  "cancel pending tasks one by one, root last",
			specs: diamond,
			ops: []op{
				start("a"),
				complete("d", Cancelled, nil, nil),
				complete("c", Cancelled, nil, nil),
				complete("b", Cancelled, nil, nil),
				complete("a", Cancelled, nil, nil),
			},
			want: map[string]Outcome{"a": Cancelled, "b": Cancelled, "c": Cancelled, "d": Cancelled},
		},
		{
			name: "cancel pending releases nothing",
			specs: []Spec{
				{Name: "a"},
				{Name: "b", Deps: []string{"a"}},
				{Name: "cleanup", Deps: []string{"b"}, Trigger: AllDone},
			},
			ops: []op{
				start("a"),
				{do: "cancel-pending", ready: names("b", "cleanup")},
				complete("a", Cancelled, nil, nil),
			},
			want: map[string]Outcome{"a": Cancelled, "b": Cancelled, "cleanup": Cancelled},
		},
		{
			name: "external deps stay pending until reported",
			specs: []Spec{
				{Name: "a", Deps: []string{"job-1"}},
				{Name: "b", Deps: []string{"a", "job-2"}},
				{Name: "c"},
			},
			ext: []string{"job-1", "job-2"},
			ops: []op{
				start("c"),
				complete("c", Succeeded, nil, nil),
				external("job-2", Succeeded, nil, nil),
				external("job-1", Succeeded, names("a"), nil),
				complete("a", Succeeded, names("b"), nil),
				complete("b", Succeeded, nil, nil),
			},
			want: map[string]Outcome{"a": Succeeded, "b": Succeeded, "c": Succeeded},
		},
		{
			name: "failed external",
			specs: []Spec{
				{Name: "a", Deps: []string{"job-1"}},
				{Name: "b", Deps: []string{"a"}},
				{Name: "cleanup", Deps: []string{"job-1"}, Trigger: AllDone},
			},
			ext: []string{"job-1"},
			ops: []op{
				start(),
				external("job-1", UpstreamFailed, names("cleanup"), names("a", "b")),
				complete("cleanup", Failed, nil, nil),
			},
			want: map[string]Outcome{"a": UpstreamFailed, "b": UpstreamFailed, "cleanup": Failed},
		},
		{
			name: "external reported before start",
			specs: []Spec{
				{Name: "a", Deps: []string{"job-1"}},
				{Name: "b"},
			},
			ext: []string{"job-1"},
			ops: []op{
				external("job-1", Succeeded, names("a"), nil),
				start("b"),
				complete("a", Succeeded, nil, nil),
				complete("b", Succeeded, nil, nil),
			},
			want: map[string]Outcome{"a": Succeeded, "b": Succeeded},
		},
		{
			name:  "misuse is a no-op",
			specs: diamond,
			ext:   []string{"job-1"},
			ops: []op{
				complete("a", Succeeded, nil, nil), // before Start: not Ready
				start("a"),
				start(),                            // second Start
				complete("b", Succeeded, nil, nil), // Pending
				complete("b", Failed, nil, nil),    // Pending
				complete("a", UpstreamFailed, nil, nil),
				complete("a", 0, nil, nil),
				complete("a", Outcome(42), nil, nil),
				external("job-1", Succeeded, nil, nil), // not a dep of the graph
				external("a", Succeeded, nil, nil),     // a name, not an external
				complete("a", Succeeded, names("b", "c"), nil),
				complete("a", Succeeded, nil, nil), // twice
				complete("a", Failed, nil, nil),    // late, different outcome
				complete("a", Cancelled, nil, nil),
				complete("b", Succeeded, nil, nil),
				complete("c", Failed, nil, names("d")),
				complete("d", Cancelled, nil, nil), // already upstream_failed
			},
			want: map[string]Outcome{"a": Succeeded, "b": Succeeded, "c": Failed, "d": UpstreamFailed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := mustBuild(t, tt.specs, externals(tt.ext...))
			label := func(idx []int) []string {
				var out []string
				for _, i := range idx {
					out = append(out, tt.specs[i].Name)
				}
				return out
			}
			for k, op := range tt.ops {
				var s Step
				switch op.do {
				case "start":
					s = g.Start()
				case "complete":
					i, ok := g.Index(op.task)
					if !ok {
						t.Fatalf("op %d: no task %q", k, op.task)
					}
					s = g.Complete(i, op.o)
				case "external":
					s = g.CompleteExternal(op.task, op.o)
				case "cancel-pending":
					s = Step{Ready: g.CancelPending()}
				}
				if got := label(s.Ready); !slices.Equal(got, op.ready) {
					t.Errorf("op %d %s %s %v: ready = %q, want %q", k, op.do, op.task, op.o, got, op.ready)
				}
				if got := label(s.UpstreamFailed); !slices.Equal(got, op.uf) {
					t.Errorf("op %d %s %s %v: upstream_failed = %q, want %q", k, op.do, op.task, op.o, got, op.uf)
				}
			}
			allDone := true
			var want Counts
			for i, sp := range tt.specs {
				st, o := g.State(i)
				wo, done := tt.want[sp.Name]
				if !done {
					allDone = false
					if st == Done {
						t.Errorf("task %s: state %v/%v, want not done", sp.Name, st, o)
					}
					if st == Pending {
						want.Pending++
					} else {
						want.Ready++
					}
					continue
				}
				if st != Done || o != wo {
					t.Errorf("task %s: state %v/%v, want done/%v", sp.Name, st, o, wo)
				}
				switch wo {
				case Succeeded:
					want.Succeeded++
				case Failed:
					want.Failed++
				case Cancelled:
					want.Cancelled++
				case UpstreamFailed:
					want.UpstreamFailed++
				}
			}
			if got := g.Counts(); got != want {
				t.Errorf("Counts() = %+v, want %+v", got, want)
			}
			if g.Done() != allDone {
				t.Errorf("Done() = %v, want %v", g.Done(), allDone)
			}
		})
	}
}

func TestGraph_misuseOutOfRange(t *testing.T) {
	g := mustBuild(t, []Spec{{Name: "a"}, {Name: "b", Deps: []string{"a"}}}, nil)
	g.Start()
	before := g.Counts()
	for _, i := range []int{-1, 2, 1 << 40} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if s := g.Complete(i, Succeeded); s.Ready != nil || s.UpstreamFailed != nil {
				t.Errorf("Complete(%d) = %+v, want empty", i, s)
			}
			if s := g.Complete(i, Cancelled); s.Ready != nil || s.UpstreamFailed != nil {
				t.Errorf("Complete(%d, Cancelled) = %+v, want empty", i, s)
			}
			if st, o := g.State(i); st != Pending || o != 0 {
				t.Errorf("State(%d) = %v, %v, want pending and no outcome", i, st, o)
			}
			if g.Deps(i) != nil || g.Dependents(i) != nil || g.Trigger(i) != "" {
				t.Errorf("Deps/Dependents/Trigger(%d) not empty", i)
			}
		})
	}
	if got := g.Counts(); got != before {
		t.Errorf("Counts() changed to %+v from %+v", got, before)
	}
}

func TestGraph_accessorsReturnCopies(t *testing.T) {
	g := mustBuild(t, []Spec{{Name: "a", Deps: []string{"x"}}, {Name: "b", Deps: []string{"a"}}}, externals("x"))
	g.Deps(1)[0] = Dep{Index: 7, Ref: "zzz"}
	g.Dependents(0)[0] = 9
	g.Externals()[0] = "zzz"
	if got, want := g.Deps(1), []Dep{{Index: 0, Ref: "a"}}; !slices.Equal(got, want) {
		t.Errorf("Deps(1) = %v, want %v", got, want)
	}
	if got := g.Dependents(0); !slices.Equal(got, []int{1}) {
		t.Errorf("Dependents(0) = %v, want [1]", got)
	}
	if got := g.Externals(); !slices.Equal(got, []string{"x"}) {
		t.Errorf("Externals() = %q, want [x]", got)
	}
}

func TestGraph_wide(t *testing.T) {
	const width = 10_000
	specs := []Spec{{Name: "root"}}
	sink := Spec{Name: "sink"}
	for i := range width {
		name := fmt.Sprintf("m%d", i)
		specs = append(specs, Spec{Name: name, Deps: []string{"root"}})
		sink.Deps = append(sink.Deps, name)
	}
	specs = append(specs, sink)
	sinkIdx := len(specs) - 1

	t.Run("all succeed", func(t *testing.T) {
		g := mustBuild(t, specs, nil)
		if s := g.Start(); !slices.Equal(s.Ready, []int{0}) {
			t.Fatalf("Start().Ready = %v, want [0]", s.Ready)
		}
		s := g.Complete(0, Succeeded)
		if len(s.Ready) != width || s.Ready[0] != 1 || s.Ready[width-1] != width {
			t.Fatalf("root released %d tasks, want the %d middle ones in order", len(s.Ready), width)
		}
		for _, i := range s.Ready[:width-1] {
			if s := g.Complete(i, Succeeded); len(s.Ready) != 0 {
				t.Fatalf("Complete(%d) released %v before every dep succeeded", i, s.Ready)
			}
		}
		if s := g.Complete(width, Succeeded); !slices.Equal(s.Ready, []int{sinkIdx}) {
			t.Fatalf("last middle task released %v, want [%d]", s.Ready, sinkIdx)
		}
		g.Complete(sinkIdx, Succeeded)
		if !g.Done() || g.Counts().Succeeded != len(specs) {
			t.Errorf("Done() = %v, Counts() = %+v", g.Done(), g.Counts())
		}
	})

	t.Run("one middle task fails", func(t *testing.T) {
		g := mustBuild(t, specs, nil)
		g.Start()
		g.Complete(0, Succeeded)
		if s := g.Complete(width/2, Failed); !slices.Equal(s.UpstreamFailed, []int{sinkIdx}) {
			t.Fatalf("UpstreamFailed = %v, want [%d]", s.UpstreamFailed, sinkIdx)
		}
		for i := 1; i <= width; i++ {
			g.Complete(i, Succeeded)
		}
		want := Counts{Succeeded: width, Failed: 1, UpstreamFailed: 1}
		if got := g.Counts(); !g.Done() || got != want {
			t.Errorf("Counts() = %+v, want %+v", got, want)
		}
	})

	t.Run("root fails", func(t *testing.T) {
		g := mustBuild(t, specs, nil)
		g.Start()
		s := g.Complete(0, Failed)
		if len(s.UpstreamFailed) != width+1 || len(s.Ready) != 0 {
			t.Fatalf("UpstreamFailed has %d tasks, want %d", len(s.UpstreamFailed), width+1)
		}
		if !g.Done() {
			t.Error("Done() = false after the root failed")
		}
	})
}

func TestGraph_longChain(t *testing.T) {
	const n = 100_000
	specs := chain(n)

	t.Run("run to completion", func(t *testing.T) {
		g := mustBuild(t, specs, nil)
		s := g.Start()
		for k := range n {
			if !slices.Equal(s.Ready, []int{k}) {
				t.Fatalf("step %d: Ready = %v, want [%d]", k, s.Ready, k)
			}
			s = g.Complete(k, Succeeded)
		}
		if len(s.Ready) != 0 || !g.Done() || g.Counts().Succeeded != n {
			t.Errorf("after the chain: last step %+v, Done() = %v, Counts() = %+v", s, g.Done(), g.Counts())
		}
	})

	t.Run("head fails", func(t *testing.T) {
		g := mustBuild(t, specs, nil)
		g.Start()
		s := g.Complete(0, Failed)
		if len(s.UpstreamFailed) != n-1 || !g.Done() {
			t.Errorf("UpstreamFailed has %d tasks, Done() = %v; want %d, true", len(s.UpstreamFailed), g.Done(), n-1)
		}
	})

	t.Run("cycle closing the chain", func(t *testing.T) {
		specs := chain(n)
		specs[0].Deps = []string{specs[n-1].Name}
		_, err := Build(specs, nil, Limits{})
		e, ok := err.(*Error)
		if !ok || e.Kind != ErrCycle || len(e.Cycle) != n || e.Cycle[0] != "t0" || e.Cycle[1] != specs[n-1].Name {
			t.Fatalf("Build error = %.80v, want a cycle of %d tasks starting t0 -> t%d", err, n, n-1)
		}
		want := "tasks[0].deps: cycle: t0 -> t99999 -> t99998 -> t99997 -> t99996 -> t99995 -> t99994 -> t99993" +
			" -> ... (99984 more) -> t8 -> t7 -> t6 -> t5 -> t4 -> t3 -> t2 -> t1 -> t0"
		if got := err.Error(); got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	})
}

// randomBatch is a seeded random DAG with the truth the test checks against.
type randomBatch struct {
	specs   []Spec
	deps    [][]int    // in-batch deps per task, as indexes
	extDeps [][]string // external deps per task
	ext     []string   // every external ref used
}

func newRandomBatch(r *rand.Rand) randomBatch {
	n := 1 + r.IntN(40)
	// Tasks are generated in topological rank order and placed at
	// perm[rank] in the batch, so deps point both ways in the batch.
	perm := r.Perm(n)
	b := randomBatch{specs: make([]Spec, n), deps: make([][]int, n), extDeps: make([][]string, n)}
	hasDependents := make([]bool, n)
	pool := []string{"ext-0", "ext-1", "ext-2"}
	used := map[string]bool{}
	for rank := range n {
		i := perm[rank]
		sp := &b.specs[i]
		sp.Name = fmt.Sprintf("t%d", i)
		switch r.IntN(5) {
		case 0:
			sp.Trigger = AllDone
		case 1, 2:
			sp.Trigger = AllSuccess
		}
		if rank > 0 {
			for _, dr := range r.Perm(rank)[:r.IntN(min(rank, 4)+1)] {
				d := perm[dr]
				b.deps[i] = append(b.deps[i], d)
				hasDependents[d] = true
			}
		}
		if r.IntN(6) == 0 {
			ref := pool[r.IntN(len(pool))]
			b.extDeps[i] = append(b.extDeps[i], ref)
			if !used[ref] {
				used[ref] = true
				b.ext = append(b.ext, ref)
			}
		}
		for _, d := range b.deps[i] {
			sp.Deps = append(sp.Deps, fmt.Sprintf("t%d", d))
		}
		sp.Deps = append(sp.Deps, b.extDeps[i]...)
		r.Shuffle(len(sp.Deps), func(x, y int) { sp.Deps[x], sp.Deps[y] = sp.Deps[y], sp.Deps[x] })
	}
	// Some tasks nobody refers to go unnamed.
	for i := range b.specs {
		if !hasDependents[i] && r.IntN(3) == 0 {
			b.specs[i].Name = ""
		}
	}
	return b
}

// TestGraph_randomOrders drives seeded random DAGs with random completion
// orders and outcomes, and checks after every call that the graph did
// exactly what its semantics say, neither late nor early.
func TestGraph_randomOrders(t *testing.T) {
	for seed := range uint64(1000) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0x5eed))
			b := newRandomBatch(r)
			g := mustBuild(t, b.specs, externals(b.ext...))
			n := len(b.specs)
			if g.Len() != n {
				t.Fatalf("Len() = %d, want %d", g.Len(), n)
			}
			for i := range n {
				if got := len(g.Deps(i)); got != len(b.deps[i])+len(b.extDeps[i]) {
					t.Fatalf("Deps(%d) has %d deps, want %d", i, got, len(b.deps[i])+len(b.extDeps[i]))
				}
			}

			// The test's own model of the graph.
			released := make([]bool, n)
			outcome := make([]Outcome, n)
			extOutcome := map[string]Outcome{}
			var running []int // released, not yet terminal

			depOutcomes := func(i int) []Outcome {
				var out []Outcome
				for _, d := range b.deps[i] {
					out = append(out, outcome[d])
				}
				for _, ref := range b.extDeps[i] {
					out = append(out, extOutcome[ref])
				}
				return out
			}
			trigger := func(i int) Trigger {
				if b.specs[i].Trigger == AllDone {
					return AllDone
				}
				return AllSuccess
			}
			// should says what the semantics demand of a pending task now:
			// "ready", "upstream_failed" or "" (keep waiting).
			should := func(i int) string {
				all, allSucceeded := true, true
				for _, o := range depOutcomes(i) {
					if o == 0 {
						all = false
					} else if o != Succeeded {
						if trigger(i) == AllSuccess {
							return "upstream_failed"
						}
						allSucceeded = false
					}
				}
				switch {
				case !all:
					return ""
				case trigger(i) == AllDone || allSucceeded:
					return "ready"
				}
				return ""
			}
			apply := func(what string, s Step) {
				t.Helper()
				// Record the step's ends first: a step lists a task and the
				// tasks it made upstream_failed in index order, not cause
				// first.
				for _, i := range s.UpstreamFailed {
					if released[i] || outcome[i] != 0 {
						t.Fatalf("%s: task %d upstream_failed after release or end", what, i)
					}
					outcome[i] = UpstreamFailed
				}
				for _, i := range s.Ready {
					if released[i] || outcome[i] != 0 {
						t.Fatalf("%s: task %d released again (released %v, outcome %v)", what, i, released[i], outcome[i])
					}
					if got := should(i); got != "ready" {
						t.Fatalf("%s: task %d (%s) released with dep outcomes %v", what, i, trigger(i), depOutcomes(i))
					}
					released[i] = true
					running = append(running, i)
				}
				for _, i := range s.UpstreamFailed {
					if got := should(i); got != "upstream_failed" {
						t.Fatalf("%s: task %d (%s) upstream_failed with dep outcomes %v", what, i, trigger(i), depOutcomes(i))
					}
				}
				// Nothing late: every task the semantics move on has moved,
				// and the graph agrees with the model.
				var want Counts
				for i := range n {
					st, o := g.State(i)
					switch {
					case outcome[i] != 0:
						if st != Done || o != outcome[i] {
							t.Fatalf("%s: task %d is %v/%v, want done/%v", what, i, st, o, outcome[i])
						}
					case released[i]:
						if st != Ready {
							t.Fatalf("%s: task %d is %v, want ready", what, i, st)
						}
						want.Ready++
					default:
						if st != Pending {
							t.Fatalf("%s: task %d is %v, want pending", what, i, st)
						}
						if got := should(i); got != "" {
							t.Fatalf("%s: task %d still pending, should be %s (dep outcomes %v)", what, i, got, depOutcomes(i))
						}
						want.Pending++
					}
					switch outcome[i] {
					case Succeeded:
						want.Succeeded++
					case Failed:
						want.Failed++
					case Cancelled:
						want.Cancelled++
					case UpstreamFailed:
						want.UpstreamFailed++
					}
				}
				if got := g.Counts(); got != want {
					t.Fatalf("%s: Counts() = %+v, want %+v", what, got, want)
				}
			}
			noop := func(what string, s Step) {
				t.Helper()
				if s.Ready != nil || s.UpstreamFailed != nil {
					t.Fatalf("%s: misuse returned %+v, want an empty step", what, s)
				}
				apply(what, s)
			}
			randomOutcome := func() Outcome {
				switch x := r.IntN(10); {
				case x < 7:
					return Succeeded
				case x < 9:
					return Failed
				}
				return Cancelled
			}

			apply("start", g.Start())
			for steps := 0; !g.Done(); steps++ {
				if steps > 10*n+100 {
					t.Fatal("graph never finished")
				}
				var pendingExt []string
				for _, ref := range b.ext {
					if extOutcome[ref] == 0 {
						pendingExt = append(pendingExt, ref)
					}
				}
				switch x := r.IntN(20); {
				case x < 12 && len(running) > 0:
					k := r.IntN(len(running))
					i := running[k]
					running = slices.Delete(running, k, k+1)
					o := randomOutcome()
					outcome[i] = o
					apply(fmt.Sprintf("Complete(%d, %v)", i, o), g.Complete(i, o))
				case x < 15 && len(pendingExt) > 0:
					ref := pendingExt[r.IntN(len(pendingExt))]
					o := Outcome(1 + r.IntN(4))
					extOutcome[ref] = o
					apply(fmt.Sprintf("CompleteExternal(%s, %v)", ref, o), g.CompleteExternal(ref, o))
				case x < 16:
					// Cancel a pending task, as a user cancelling it would.
					if i := r.IntN(n); !released[i] && outcome[i] == 0 {
						outcome[i] = Cancelled
						apply(fmt.Sprintf("Complete(%d, cancelled) while pending", i), g.Complete(i, Cancelled))
					}
				case x < 18:
					// Misuse: a late or repeated report, or a pending task
					// reported as run.
					i := r.IntN(n)
					if outcome[i] != 0 {
						noop(fmt.Sprintf("Complete(%d) when done", i), g.Complete(i, randomOutcome()))
					} else if !released[i] {
						noop(fmt.Sprintf("Complete(%d, succeeded) while pending", i), g.Complete(i, Succeeded))
					}
					for ref, o := range extOutcome {
						noop("CompleteExternal again", g.CompleteExternal(ref, o))
					}
				case x < 19 && r.IntN(10) == 0:
					// Cancel the graph: every pending task at once.
					var want []int
					for i := range n {
						if !released[i] && outcome[i] == 0 {
							want = append(want, i)
							outcome[i] = Cancelled
						}
					}
					if got := g.CancelPending(); !slices.Equal(got, want) {
						t.Fatalf("CancelPending() = %v, want %v", got, want)
					}
					apply("CancelPending", Step{})
				case len(running) == 0 && len(pendingExt) == 0:
					t.Fatalf("stalled: nothing runs, no external pending, yet Done() = false; counts %+v", g.Counts())
				}
			}
			for i := range n {
				if outcome[i] == 0 {
					t.Errorf("Done() = true but task %d has no outcome in the model", i)
				}
			}
		})
	}
}

func BenchmarkBuild(b *testing.B) {
	const n = 100_000
	fanIn := make([]Spec, n)
	for i := range n - 1 {
		fanIn[i].Name = fmt.Sprintf("t%d", i)
		fanIn[n-1].Deps = append(fanIn[n-1].Deps, fanIn[i].Name)
	}
	for _, bb := range []struct {
		name  string
		specs []Spec
	}{{"chain", chain(n)}, {"fan-in", fanIn}} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Build(bb.specs, nil, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
