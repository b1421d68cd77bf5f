package testcluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/invariant"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

// recorder records every run of the "work" and "gate" handlers, on every node, in
// an invariant.Recorder, and holds the gates.
//
//	"work" {"ms": N}      sleeps N ms (or until its run is cancelled)
//	"gate" {"gate": "a"}  blocks until gate "a" is opened (or its run is cancelled)
//
// Both return {"node": name} when they end without being cancelled.
type recorder struct {
	*invariant.Recorder

	gateLock sync.Mutex // guards gates
	gates    map[string]chan struct{}
	seen     chan struct{} // signalled on every start and end
}

func newRecorder() *recorder {
	return &recorder{
		Recorder: invariant.NewRecorder(time.Now),
		gates:    map[string]chan struct{}{},
		seen:     make(chan struct{}, 1),
	}
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
			end := r.start(in, name)
			t := time.NewTimer(time.Duration(p.MS * float64(time.Millisecond)))
			defer t.Stop()
			select {
			case <-t.C:
				return end(map[string]string{"node": name}, nil)
			case <-ctx.Done():
				return end(nil, context.Cause(ctx))
			}
		},
		"gate": func(ctx context.Context, in *node.Input) (any, error) {
			var p struct{ Gate string }
			if err := in.Decode(&p); err != nil {
				return nil, err
			}
			end := r.start(in, name)
			select {
			case <-r.gate(p.Gate):
				return end(map[string]string{"node": name}, nil)
			case <-ctx.Done():
				return end(nil, context.Cause(ctx))
			}
		},
	}
}

// start records the start of a run on node name, and returns the function that
// records its end and returns what the handler returns.
func (r *recorder) start(in *node.Input, name string) func(result any, err error) (any, error) {
	end := r.Start(in.ID, in.Attempt, name)
	r.signal()
	return func(result any, err error) (any, error) {
		end(result, err)
		r.signal()
		return result, err
	}
}

func (r *recorder) signal() {
	select {
	case r.seen <- struct{}{}:
	default:
	}
}

func (r *recorder) gate(name string) chan struct{} {
	r.gateLock.Lock()
	defer r.gateLock.Unlock()
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
	r.gateLock.Lock()
	defer r.gateLock.Unlock()
	select {
	case <-g:
	default:
		close(g)
	}
}

// of returns the runs of task id.
func (r *recorder) of(id string) []invariant.Run {
	var out []invariant.Run
	for _, ru := range r.Runs() {
		if ru.ID == id {
			out = append(out, ru)
		}
	}
	return out
}

// waitRun waits until a run matching f has started, and returns it.
func (r *recorder) waitRun(t testing.TB, timeout time.Duration, what string, f func(invariant.Run) bool) invariant.Run {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		for _, ru := range r.Runs() {
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
	for _, ru := range r.Runs() {
		b.WriteString("\n  ")
		b.WriteString(ru.String())
	}
	return b.String()
}

// checkInvariants checks package invariant's invariants for tasks ids, whose records
// recs are (in order, as await returned them), against every run rec saw: every
// acknowledged task ends in exactly one terminal state (opts.Want when set) with the
// result of one of its runs, none is lost, and a task runs more than once only if a
// node it ran on died (opts.Died) or across a partition (opts.Partitioned). It asks
// every live node for every record again (a sample of them for big runs) and feeds
// the answers in as observations: every node must answer the outcome of the record,
// and none may answer a task non-terminal again. It fails t with at most 20
// violations and returns the report.
func checkInvariants(t testing.TB, c *testcluster.Cluster, rec *recorder, ids []string, recs []client.Task, opts invariant.Options) invariant.Report {
	t.Helper()
	if len(recs) != len(ids) {
		t.Fatalf("%d records for %d tasks", len(recs), len(ids))
	}
	for i, r := range recs {
		if r.ID != ids[i] {
			t.Errorf("record %d is of task %q, want %q", i, r.ID, ids[i])
		}
	}
	// The records await returned had come back by now.
	settled := time.Now()
	var obs []invariant.Observation
	for _, r := range recs {
		obs = append(obs, invariant.Observed("testcluster.Await", r, settled, settled))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	failed := 0
	for k := range c.Len() {
		if !c.Alive(k) {
			continue
		}
		for i, id := range ids {
			if i%7 != k%7 && len(ids) > 50 {
				continue // a sample is enough for big runs
			}
			asked := time.Now()
			got, err := c.Client(k).Get(ctx, id)
			if err != nil {
				if failed++; failed <= 20 {
					t.Errorf("node %d: GET %s: %v", k, id, err)
				}
				continue
			}
			obs = append(obs, invariant.Observed(c.Node(k).Name(), got, asked, time.Now()))
		}
	}
	h := invariant.History{Acked: ids, Runs: rec.Runs(), Final: recs, Observations: obs}
	rep := invariant.Check(h, opts)
	rep.Assert(t, 20)
	return rep
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
