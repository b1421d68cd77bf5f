package testcluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

// slowSum sleeps a little so that a graph's tasks spread over the cluster, then sums
// like the built-in sum.
func slowSum(ms int) node.Handler {
	return func(ctx context.Context, in *node.Input) (any, error) {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var p struct {
			Values []int `json:"values"`
		}
		if err := in.Decode(&p); err != nil {
			return nil, err
		}
		total := 0
		for _, v := range p.Values {
			total += v
		}
		for name, r := range in.Deps {
			var v int
			if err := json.Unmarshal(r, &v); err != nil {
				return nil, fmt.Errorf("dep %s: %s is not an integer", name, r)
			}
			total += v
		}
		return total, nil
	}
}

// mapReduce builds a graph: maps sum chunks of 1..n, reducers sum groups of maps, a
// root sums the reducers.
func mapReduce(n, chunk, group int) (specs []client.Spec, want int) {
	var maps []string
	for lo := 1; lo <= n; lo += chunk {
		var values []int
		for v := lo; v < lo+chunk && v <= n; v++ {
			values = append(values, v)
			want += v
		}
		p, _ := json.Marshal(map[string][]int{"values": values})
		name := fmt.Sprintf("map-%d", lo)
		specs = append(specs, client.Spec{Type: "slowsum", Name: name, Payload: p})
		maps = append(maps, name)
	}
	var reducers []string
	for i := 0; i < len(maps); i += group {
		name := fmt.Sprintf("reduce-%d", i/group)
		specs = append(specs, client.Spec{Type: "slowsum", Name: name, Deps: maps[i:min(i+group, len(maps))]})
		reducers = append(reducers, name)
	}
	specs = append(specs, client.Spec{Type: "sum", Name: "root", Deps: reducers})
	return specs, want
}

func awaitGraph(t *testing.T, c *testcluster.Cluster, i int, id string) client.Graph {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := c.Client(i).WaitGraph(ctx, id, 0, true)
	if err != nil {
		t.Fatalf("graph %s: %v", id, err)
	}
	return g
}

func graphTask(t *testing.T, g client.Graph, name string) client.Task {
	t.Helper()
	for _, r := range g.Tasks {
		if r.ID == g.Names[name] {
			return r
		}
	}
	t.Fatalf("no task %q in graph %s", name, g.ID)
	return client.Task{}
}

func TestGraph_mapReduceAcrossFiveNodes(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 5, Slots: 1,
		Handlers: map[string]node.Handler{"slowsum": slowSum(15)}})
	specs, want := mapReduce(1000, 20, 5) // 50 maps, 10 reducers, a root
	s, err := c.Client(0).SubmitBatch(context.Background(), specs)
	if err != nil {
		t.Fatal(err)
	}
	// Ask a node that does not own the graph: it answers through the owner.
	g := awaitGraph(t, c, 3, s.Graph)
	if g.State != client.Succeeded {
		t.Fatalf("graph %s: %v", g.State, g.Counts)
	}
	if got := string(graphTask(t, g, "root").Result); got != fmt.Sprint(want) {
		t.Fatalf("root = %s, want %d", got, want)
	}
	nodes := map[string]int{}
	for _, r := range g.Tasks {
		nodes[r.Node]++
	}
	if len(nodes) < 3 {
		t.Fatalf("the graph's tasks ran on %d nodes (%v); stealing should spread them", len(nodes), nodes)
	}
	t.Logf("tasks per node: %v", nodes)
}

func TestGraph_nodeKilledMidGraph(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 4, Slots: 1,
		Handlers: map[string]node.Handler{"slowsum": slowSum(40)}})
	specs, want := mapReduce(600, 20, 5) // 30 maps of 40ms over 4 one-slot nodes
	s, err := c.Client(0).SubmitBatch(context.Background(), specs)
	if err != nil {
		t.Fatal(err)
	}
	// Kill a thief while it runs graph tasks.
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, err := c.Client(0).Graph(context.Background(), s.Graph)
		if err != nil {
			t.Fatal(err)
		}
		running := false
		for _, r := range g.Tasks {
			if r.Node == "node-2" && r.State == client.Running {
				running = true
			}
		}
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node-2 never ran a task of the graph")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Kill(2)
	killed := time.Now()
	g := awaitGraph(t, c, 0, s.Graph)
	if g.State != client.Succeeded {
		t.Fatalf("graph %s: %v", g.State, g.Counts)
	}
	if got := string(graphTask(t, g, "root").Result); got != fmt.Sprint(want) {
		t.Fatalf("root = %s, want %d", got, want)
	}
	lost := 0
	for _, r := range g.Tasks {
		lost += r.NodeLosses
		// A task may have finished on node-2 before it died; none may end there after.
		if r.Node == "node-2" && (r.FinishedAt == nil || r.FinishedAt.After(killed)) {
			t.Fatalf("task %s ended on the killed node after its death", r.Name)
		}
	}
	if lost == 0 {
		t.Fatal("no task records a node loss, yet node-2 was killed while running one")
	}
}
