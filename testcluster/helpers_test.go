package testcluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

// run is one run of a task as a handler saw it.
type run struct {
	ID      string
	Attempt int
	Node    string
	Start   time.Time
	End     time.Time // zero while it runs
	Err     error
}

// recorder counts every run of the "work" and "gate" handlers, on every node.
//
//	"work" {"ms": N}      sleeps N ms (or until its run is cancelled)
//	"gate" {"gate": "a"}  blocks until gate "a" is opened (or its run is cancelled)
type recorder struct {
	mu    sync.Mutex
	runs  []*run
	gates map[string]chan struct{}
	seen  chan struct{} // signalled on every start and end
}

func newRecorder() *recorder {
	return &recorder{gates: map[string]chan struct{}{}, seen: make(chan struct{}, 1)}
}

// handlers are the recorder's handlers for node name; use them as
// testcluster.Options.NodeHandlers.
func (r *recorder) handlers(_ int, name string) map[string]node.Handler {
	return map[string]node.Handler{
		"work": func(ctx context.Context, in *node.Input) (any, error) {
			var p struct{ MS float64 }
			if err := in.Decode(&p); err != nil {
				return nil, err
			}
			ru := r.start(in, name)
			t := time.NewTimer(time.Duration(p.MS * float64(time.Millisecond)))
			defer t.Stop()
			select {
			case <-t.C:
				r.end(ru, nil)
				return map[string]string{"node": name}, nil
			case <-ctx.Done():
				r.end(ru, context.Cause(ctx))
				return nil, context.Cause(ctx)
			}
		},
		"gate": func(ctx context.Context, in *node.Input) (any, error) {
			var p struct{ Gate string }
			if err := in.Decode(&p); err != nil {
				return nil, err
			}
			ru := r.start(in, name)
			select {
			case <-r.gate(p.Gate):
				r.end(ru, nil)
				return map[string]string{"node": name}, nil
			case <-ctx.Done():
				r.end(ru, context.Cause(ctx))
				return nil, context.Cause(ctx)
			}
		},
	}
}

func (r *recorder) start(in *node.Input, name string) *run {
	ru := &run{ID: in.ID, Attempt: in.Attempt, Node: name, Start: time.Now()}
	r.mu.Lock()
	r.runs = append(r.runs, ru)
	r.mu.Unlock()
	r.signal()
	return ru
}

func (r *recorder) end(ru *run, err error) {
	r.mu.Lock()
	ru.End, ru.Err = time.Now(), err
	r.mu.Unlock()
	r.signal()
}

func (r *recorder) signal() {
	select {
	case r.seen <- struct{}{}:
	default:
	}
}

func (r *recorder) gate(name string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.gates[name]
	if g == nil {
		g = make(chan struct{})
		r.gates[name] = g
	}
	return g
}

// open opens a gate: its runs return, and later ones do not block.
func (r *recorder) open(name string) {
	g := r.gate(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-g:
	default:
		close(g)
	}
}

// snapshot copies the runs so far, in start order.
func (r *recorder) snapshot() []run {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]run, len(r.runs))
	for i, ru := range r.runs {
		out[i] = *ru
	}
	return out
}

// of returns the runs of task id.
func (r *recorder) of(id string) []run {
	var out []run
	for _, ru := range r.snapshot() {
		if ru.ID == id {
			out = append(out, ru)
		}
	}
	return out
}

// waitRun waits until a run matching f has started, and returns it.
func (r *recorder) waitRun(t testing.TB, timeout time.Duration, what string, f func(run) bool) run {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		for _, ru := range r.snapshot() {
			if f(ru) {
				return ru
			}
		}
		select {
		case <-r.seen:
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			t.Fatalf("no run %s within %s; runs: %s", what, timeout, r)
		}
	}
}

func (r *recorder) String() string {
	var b strings.Builder
	for _, ru := range r.snapshot() {
		fmt.Fprintf(&b, "\n  %s attempt %d on %s", ru.ID, ru.Attempt, ru.Node)
		if ru.End.IsZero() {
			b.WriteString(" (running)")
		} else if ru.Err != nil {
			fmt.Fprintf(&b, " (ended: %v)", ru.Err)
		}
	}
	return b.String()
}

// invariants says what checkInvariants expects.
type invariants struct {
	// want is the terminal state every task must end in ("" accepts any).
	want client.State
	// died names the nodes killed or stopped during the test: only a task that ran on
	// one of them may have run more than once.
	died []string
	// partitioned allows duplicate runs anywhere (a task may run twice across a
	// partition); they are still counted and logged.
	partitioned bool
}

// checkInvariants checks what DESIGN.md §4 promises for tasks ids, whose records recs
// are (in order): every accepted task ends in exactly one terminal state, none is
// lost, and a task runs more than once only if a node it ran on died. It asks every
// live node for every record again, to see that they agree and that the outcome
// does not change, and returns the number of duplicate runs.
func checkInvariants(t testing.TB, c *testcluster.Cluster, rec *recorder, ids []string, recs []client.Task, inv invariants) int {
	t.Helper()
	if len(recs) != len(ids) {
		t.Fatalf("%d records for %d tasks", len(recs), len(ids))
	}
	runs := map[string][]run{}
	for _, ru := range rec.snapshot() {
		runs[ru.ID] = append(runs[ru.ID], ru)
	}
	dups, bad := 0, 0
	fail := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for i, r := range recs {
		id := ids[i]
		if r.ID != id {
			fail("record %d is of task %q, want %q", i, r.ID, id)
			continue
		}
		if !r.State.Terminal() {
			fail("task %s is %s, not terminal (lost?)", id, r.State)
			continue
		}
		if inv.want != "" && r.State != inv.want {
			fail("task %s ended %s (%s), want %s", id, r.State, r.Error, inv.want)
		}
		rs := runs[id]
		if r.State == client.Succeeded {
			// The recorded outcome is one of the runs that happened, and it finished.
			if !slices.ContainsFunc(rs, func(ru run) bool {
				return ru.Node == r.Node && ru.Attempt == r.Attempt && !ru.End.IsZero() && ru.Err == nil
			}) {
				fail("task %s succeeded on %s in attempt %d, but no such run finished: %v", id, r.Node, r.Attempt, rs)
			}
		}
		if len(rs) > 1 {
			dups += len(rs) - 1
			onLive := 0
			for _, ru := range rs {
				if !slices.Contains(inv.died, ru.Node) {
					onLive++
				}
			}
			if onLive > 1 && !inv.partitioned {
				fail("task %s ran %d times, %d of them on nodes that stayed up: %v", id, len(rs), onLive, rs)
			}
		}
	}
	// Exactly one outcome: every live node answers the same terminal state.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for k := range c.Len() {
		if !c.Alive(k) {
			continue
		}
		for i, id := range ids {
			if i%7 != k%7 && len(ids) > 50 {
				continue // a sample is enough for big runs
			}
			got, err := c.Client(k).Get(ctx, id)
			if err != nil {
				fail("node %d: GET %s: %v", k, id, err)
				continue
			}
			if got.State != recs[i].State || got.Attempt != recs[i].Attempt || got.Node != recs[i].Node {
				fail("node %d says task %s is %s (attempt %d on %s); it was %s (attempt %d on %s)",
					k, id, got.State, got.Attempt, got.Node, recs[i].State, recs[i].Attempt, recs[i].Node)
			}
		}
	}
	if dups > 0 {
		t.Logf("%d duplicate runs (allowed: on nodes that died %v, or across a partition: %v)", dups, inv.died, inv.partitioned)
	}
	return dups
}

// workSpec is a "work" task that lasts ms milliseconds.
func workSpec(ms int) client.Spec {
	return client.Spec{Type: "work", Payload: json.RawMessage(fmt.Sprintf(`{"ms": %d}`, ms))}
}

// gateSpec is a "gate" task that runs until gate is opened.
func gateSpec(gate string) client.Spec {
	return client.Spec{Type: "gate", Payload: json.RawMessage(fmt.Sprintf(`{"gate": %q}`, gate))}
}

// works is n work tasks of ms milliseconds.
func works(n, ms int) []client.Spec {
	specs := make([]client.Spec, n)
	for i := range specs {
		specs[i] = workSpec(ms)
	}
	return specs
}

// start starts a cluster with the recorder's handlers on every node.
func start(t testing.TB, rec *recorder, opts testcluster.Options) *testcluster.Cluster {
	t.Helper()
	opts.NodeHandlers = rec.handlers
	return testcluster.Start(t, opts)
}

// submit submits specs to node i, failing the test on error.
func submit(t testing.TB, c *testcluster.Cluster, i int, specs ...client.Spec) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids, err := c.Submit(ctx, i, specs...)
	if err != nil {
		t.Fatalf("submit to node %d: %v", i, err)
	}
	return ids
}

// await waits for the tasks to end, failing the test after timeout.
func await(t testing.TB, c *testcluster.Cluster, ids []string, timeout time.Duration) []client.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	recs, err := c.Await(ctx, ids)
	if err != nil {
		t.Fatalf("await: %v", err)
	}
	return recs
}

// waitFor polls cond until it holds, failing the test with what after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitState waits until node k reports task id in state s, and returns the record.
func waitState(t testing.TB, c *testcluster.Cluster, k int, id string, s client.State, timeout time.Duration) client.Task {
	t.Helper()
	var got client.Task
	waitFor(t, timeout, fmt.Sprintf("task %s %s on node %d", id, s, k), func() error {
		var err error
		got, err = c.Client(k).Get(context.Background(), id)
		if err != nil {
			return err
		}
		if got.State != s {
			return fmt.Errorf("state %s (node %q, waiting %q, error %q)", got.State, got.Node, got.Waiting, got.Error)
		}
		return nil
	})
	return got
}

// waitPeerState waits until node k sees the member named name in state (alive, dead,
// left, restarted…).
func waitPeerState(t testing.TB, c *testcluster.Cluster, k int, name, state string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("node %d sees %s %s", k, name, state), func() error {
		var seen []string
		for _, m := range c.Node(k).Members().Members {
			if m.Name == name {
				if m.State == state {
					return nil
				}
				seen = append(seen, m.State)
			}
		}
		return fmt.Errorf("it sees %s as %v", name, seen)
	})
}

// apiStatus returns the HTTP status of an API error (0 for other errors).
func apiStatus(err error) int {
	var e *client.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
