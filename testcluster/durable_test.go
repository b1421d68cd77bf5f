package testcluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/invariant"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

// durableWork is what TestDurable_* leave on node 0 before it goes: every kind of
// unfinished task an owner can hold.
type durableWork struct {
	ids   []string // every acknowledged task, the graph's included
	graph string
}

// startDurable starts a durable cluster of three two-slot nodes with the recorder's
// handlers, "flaky", which fails its first attempt, and "pinned", a gate that is
// "own" on node 0 and "stolen" on the others. Retries wait about a second, long
// enough to be pending when node 0 goes.
func startDurable(t *testing.T, rec *recorder) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, testcluster.Options{Nodes: 3, Slots: 2, Durable: true,
		NodeHandlers: func(i int, name string) map[string]node.Handler {
			hs := rec.handlers(i, name)
			hs["flaky"] = func(_ context.Context, in *node.Input) (any, error) {
				end := rec.start(in, name)
				if in.Attempt == 1 {
					return end(nil, errors.New("the first attempt fails"))
				}
				return end(map[string]string{"node": name}, nil)
			}
			gate := "stolen"
			if i == 0 {
				gate = "own"
			}
			hs["pinned"] = func(ctx context.Context, in *node.Input) (any, error) {
				end := rec.start(in, name)
				select {
				case <-rec.gate(gate):
					return end(map[string]string{"node": name}, nil)
				case <-ctx.Done():
					return end(nil, context.Cause(ctx))
				}
			}
			return hs
		},
		Configure: func(_ int, cfg *node.Config) {
			cfg.RetryBase = time.Second
			cfg.RetryMax = 2 * time.Second
		},
	})
}

// fillOwner gives node 0 a graph with a task done, one running (held by gate
// "graph") and some pending; a task whose first attempt failed, its retry pending;
// "pinned" tasks running on node 0 and, stolen, on node 1; and a queued backlog.
// It returns once node 0 is in that state.
func fillOwner(t *testing.T, c *testcluster.Cluster, rec *recorder) durableWork {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var w durableWork
	a, b, d := workSpec(5), gateSpec("graph"), workSpec(5)
	a.Name, b.Name, d.Name = "a", "b", "d"
	b.Deps, d.Deps = []string{"a"}, []string{"b"}
	e := workSpec(5)
	e.Name, e.Deps = "e", []string{"b", "d"}
	s, err := c.Client(0).SubmitBatch(ctx, []client.Spec{a, b, d, e})
	if err != nil {
		t.Fatalf("submit the graph: %v", err)
	}
	w.graph = s.Graph
	w.ids = append(w.ids, s.IDs...)
	waitState(t, c, 0, s.Names["b"], client.Running, 10*time.Second)

	flaky := submit(t, c, 0, client.Spec{Type: "flaky", Retries: 2})[0]
	w.ids = append(w.ids, flaky)
	rec.waitRun(t, 10*time.Second, "of the flaky task", func(r invariant.Run) bool { return r.ID == flaky && !r.End.IsZero() })

	// Five slots left in the cluster: nine pinned tasks fill them and queue the rest,
	// behind which the work waits.
	holds := submit(t, c, 0, append(repeat(client.Spec{Type: "pinned"}, 9), works(10, 5)...)...)
	w.ids = append(w.ids, holds...)
	waitFor(t, 10*time.Second, "node 0 runs gates, node 1 runs stolen ones, the rest waits", func() error {
		on := map[string]int{}
		for _, r := range rec.Runs() {
			if r.End.IsZero() {
				on[r.Node]++
			}
		}
		if on["node-0"] < 1 || on["node-1"] < 1 {
			return fmt.Errorf("running per node: %v", on)
		}
		l, err := c.Client(0).List(ctx, client.ListOptions{States: []client.State{client.Queued}, Limit: 100})
		if err != nil {
			return err
		}
		if len(l.Tasks) < 2 {
			return fmt.Errorf("%d tasks queued", len(l.Tasks))
		}
		return nil
	})
	// The retry is still pending; the graph has a task done and some pending.
	if r, err := c.Client(0).Get(ctx, flaky); err != nil || r.State.Terminal() || r.Attempt != 1 {
		t.Fatalf("the flaky task: %s attempt %d (%v); want its retry pending", r.State, r.Attempt, err)
	}
	g, err := c.Client(0).Graph(ctx, w.graph)
	if err != nil {
		t.Fatal(err)
	}
	if g.Counts[client.Succeeded] != 1 || g.Counts[client.Pending] != 2 {
		t.Fatalf("graph %s: %v; want a done, b running, d and e pending", g.State, g.Counts)
	}
	return w
}

func repeat(s client.Spec, n int) []client.Spec {
	out := make([]client.Spec, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// checkBack checks that every task of w ended once, succeeded, readable from every
// node, and that the graph finished.
func checkBack(t *testing.T, c *testcluster.Cluster, rec *recorder, w durableWork) {
	t.Helper()
	recs := await(t, c, w.ids, 30*time.Second)
	rep := checkInvariants(t, c, rec, w.ids, recs, invariant.Options{Want: client.Succeeded, Died: []string{"node-0"}})
	for k := range c.Len() {
		g := awaitGraph(t, c, k, w.graph)
		if g.State != client.Succeeded || g.Counts[client.Succeeded] != 4 {
			t.Errorf("node %d on the graph: %s %v; want succeeded, all four tasks", k, g.State, g.Counts)
		}
	}
	perNode := map[string]int{}
	for _, r := range recs {
		perNode[r.Node]++
	}
	t.Logf("tasks per node: %v; runs %d, duplicates %d", perNode, rep.Runs, rep.Duplicates)
}

// An owner killed (no Shutdown) with tasks queued, running, retrying, stolen and in a
// graph comes back on its data directory as the same node, and every task it
// acknowledged ends once, with the right result, readable from every node.
func TestDurable_killOwnerAndRestart(t *testing.T) {
	rec := newRecorder()
	c := startDurable(t, rec)
	defer rec.open("own")
	defer rec.open("stolen")
	defer rec.open("graph")
	id := c.Node(0).ID()
	dir := c.DataDir(0)
	if dir == "" {
		t.Fatal("a durable node has no data directory")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("node 0's data directory: %v", err)
	}
	w := fillOwner(t, c, rec)

	var stolen []string // node 0's tasks running on node 1 when node 0 dies
	for _, r := range rec.Runs() {
		if r.Node == "node-1" && r.End.IsZero() {
			stolen = append(stolen, r.ID)
		}
	}
	c.Kill(0)
	// What node 1 runs for node 0 ends while node 0 is down: its reports wait for it.
	rec.open("stolen")
	if err := c.Restart(0); err != nil {
		t.Fatalf("restart node 0: %v", err)
	}
	if got := c.Node(0).ID(); got != id {
		t.Fatalf("node 0 came back as %s, want its id %s", got, id)
	}
	if err := c.WaitConverged(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The graph's gate opens only now: its run outlived its owner's restart (unless it
	// ran on node 0 and died with it).
	rec.open("graph")
	rec.open("own")
	checkBack(t, c, rec, w)
	// A run on a peer outlives its owner's crash: the owner takes its report (one
	// could be taken back if node 0 died before it heard node 1 confirm the grant).
	kept := 0
	for _, id := range stolen {
		r, err := c.Client(0).Get(context.Background(), id)
		if err == nil && r.Node == "node-1" && r.Attempt == 1 && r.NodeLosses == 0 {
			kept++
		}
	}
	// Keeping those runs is an efficiency, not a promise: the restored owner gives up
	// on a run its executor has not confirmed within the owner grace, and running a
	// task again after its owner's crash is allowed (the invariants above hold either
	// way). So this is reported, not required.
	t.Logf("%d of the %d tasks node 1 ran for node 0 when it died kept their run there", kept, len(stolen))

	// The restarted node hands out new ids, and works as before.
	fresh := submit(t, c, 0, workSpec(1))[0]
	for _, old := range w.ids {
		if old == fresh {
			t.Fatalf("id %s handed out twice", fresh)
		}
	}
	if r := await(t, c, []string{fresh}, 10*time.Second)[0]; r.State != client.Succeeded {
		t.Fatalf("a task submitted after the restart: %s %q", r.State, r.Error)
	}
}

// An owner stopped gracefully and started again loses nothing either. Its leave is
// not the end of a durable node: what peers run for it when it leaves (gate "stolen"
// stays closed until it is back) must still reach it.
func TestDurable_stopOwnerAndRestart(t *testing.T) {
	rec := newRecorder()
	c := startDurable(t, rec)
	defer rec.open("own")
	defer rec.open("stolen")
	defer rec.open("graph")
	id := c.Node(0).ID()
	w := fillOwner(t, c, rec)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		c.Stop(0)
	}()
	// Its own runs hold the shutdown until they end; what node 1 runs for it goes
	// on through its leave and its restart.
	rec.open("own")
	rec.open("graph")
	<-stopped
	rec.open("stolen")
	if err := c.Restart(0); err != nil {
		t.Fatalf("restart node 0: %v", err)
	}
	if got := c.Node(0).ID(); got != id {
		t.Fatalf("node 0 came back as %s, want its id %s", got, id)
	}
	if err := c.WaitConverged(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkBack(t, c, rec, w)
}

// Without Durable, Restart starts a new node: a new id, nothing of the old one's.
func TestDurable_offByDefault(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 1})
	if dir := c.DataDir(0); dir != "" {
		t.Fatalf("an in-memory node has data directory %q", dir)
	}
	id := c.Node(0).ID()
	c.Kill(0)
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	if c.Node(0).ID() == id {
		t.Fatalf("an in-memory node restarted with its old id %s", id)
	}
}

// DataDir keeps the nodes' directories after Close: a second cluster on the same
// root gets its nodes and their tasks back. A temporary root goes with Close.
func TestDurable_dataDirOutlivesTheCluster(t *testing.T) {
	root := t.TempDir()
	c, err := testcluster.New(testcluster.Options{Nodes: 2, DataDir: root})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done, err := c.Client(0).SubmitAndWait(ctx, client.Spec{Type: "echo", Payload: []byte(`"kept"`)}, 10*time.Second)
	if err != nil || done.State != client.Succeeded {
		c.Close()
		t.Fatalf("echo: %s %v", done.State, err)
	}
	ids := []string{c.Node(0).ID(), c.Node(1).ID()}
	c.Close()
	for _, name := range []string{"node-0", "node-1"} {
		if _, err := os.Stat(root + "/" + name); err != nil {
			t.Fatalf("after Close: %v", err)
		}
	}

	again := testcluster.Start(t, testcluster.Options{Nodes: 2, DataDir: root})
	for i, id := range ids {
		if got := again.Node(i).ID(); got != id {
			t.Errorf("node %d came back as %s, want %s", i, got, id)
		}
	}
	for k := range 2 {
		got, err := again.Client(k).Get(ctx, done.ID)
		if err != nil || got.State != client.Succeeded || string(got.Result) != `"kept"` {
			t.Errorf("node %d on %s after the second start: %s %s (%v); want succeeded \"kept\"", k, done.ID, got.State, got.Result, err)
		}
	}

	tmp := testcluster.Start(t, testcluster.Options{Nodes: 1, Durable: true})
	dir := tmp.DataDir(0)
	tmp.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a temporary data directory outlived Close: %v", err)
	}
}
