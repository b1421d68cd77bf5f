package testcluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sleepSpec(ms int) client.Spec {
	p, _ := json.Marshal(map[string]int{"ms": ms})
	return client.Spec{Type: "sleep", Payload: p}
}

func TestCluster_spreadsWork(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, Slots: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := make([]client.Spec, 60)
	for i := range specs {
		specs[i] = sleepSpec(20)
	}
	ids, err := c.Submit(ctx, 0, specs...)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := c.Await(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for _, r := range recs {
		if r.State != client.Succeeded {
			t.Fatalf("task %s: %s %s", r.ID, r.State, r.Error)
		}
		perNode[r.Node]++
	}
	t.Logf("per node: %v", perNode)
	if len(perNode) != 3 {
		t.Fatalf("tasks ran on %d nodes, want all 3: %v", len(perNode), perNode)
	}
}

func TestCluster_convergesAndListsMembers(t *testing.T) {
	const nodes = 5
	c := testcluster.Start(t, testcluster.Options{Nodes: nodes, Slots: 1, Configure: func(i int, cfg *node.Config) {
		cfg.Tags = []string{fmt.Sprintf("zone=z%d", i)}
	}})
	names := map[string]int{}
	for i := range nodes {
		names[c.Node(i).Name()] = i
	}
	// Every node lists every member alive, with its addresses, tags and load (load
	// comes by gossip a moment after the member itself).
	for k := range nodes {
		waitFor(t, 10*time.Second, fmt.Sprintf("node %d lists all members", k), func() error {
			cl, err := c.Client(k).Cluster(context.Background())
			if err != nil {
				return err
			}
			if cl.Self != c.Node(k).Name() {
				return fmt.Errorf("self is %q, want %q", cl.Self, c.Node(k).Name())
			}
			if len(cl.Members) != nodes {
				return fmt.Errorf("%d members, want %d: %+v", len(cl.Members), nodes, cl.Members)
			}
			for _, m := range cl.Members {
				i, ok := names[m.Name]
				switch {
				case !ok:
					return fmt.Errorf("unknown member %q", m.Name)
				case m.State != "alive":
					return fmt.Errorf("%s is %s", m.Name, m.State)
				case m.ID != c.Node(i).ID():
					return fmt.Errorf("%s has id %q, want %q", m.Name, m.ID, c.Node(i).ID())
				case m.HTTP != c.Node(i).HTTPAddr():
					return fmt.Errorf("%s has http %q, want %q", m.Name, m.HTTP, c.Node(i).HTTPAddr())
				case m.RPC == "":
					return fmt.Errorf("%s has no rpc address", m.Name)
				case m.Slots != 1:
					return fmt.Errorf("%s has %d slots, want 1", m.Name, m.Slots)
				case !slices.Equal(m.Tags, []string{fmt.Sprintf("zone=z%d", i)}):
					return fmt.Errorf("%s has tags %v", m.Name, m.Tags)
				case m.Self != (i == k):
					return fmt.Errorf("%s: self is %v", m.Name, m.Self)
				case m.Load == nil:
					return fmt.Errorf("%s has no load yet", m.Name)
				case m.Load.Free != 1 || m.Load.Running != 0:
					return fmt.Errorf("%s: load %+v, want 1 free slot, none running", m.Name, *m.Load)
				}
			}
			return nil
		})
	}
}

func TestCluster_loadTravels(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 2, Slots: 1})
	defer rec.open("busy")
	// Node 1 runs a gate of its own (it cannot be stolen: it starts at once), so
	// node 0 sees it busy through gossip.
	submit(t, c, 1, gateSpec("busy"))
	waitFor(t, 10*time.Second, "node 0 sees node 1 busy", func() error {
		for _, m := range c.Node(0).Members().Members {
			if m.Name == c.Node(1).Name() {
				if m.Load != nil && m.Load.Running == 1 && m.Load.Free == 0 {
					return nil
				}
				return fmt.Errorf("load %+v", m.Load)
			}
		}
		return fmt.Errorf("node 1 not listed")
	})
}

func TestCluster_stealMetrics(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 2, Slots: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := make([]client.Spec, 20)
	for i := range specs {
		specs[i] = sleepSpec(10)
	}
	ids, err := c.Submit(ctx, 0, specs...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Await(ctx, ids); err != nil {
		t.Fatal(err)
	}
	metric := func(i int, name string) string {
		resp, err := http.Get(c.Node(i).URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return v
			}
		}
		t.Fatalf("node %d has no metric %s", i, name)
		return ""
	}
	if v := metric(1, "starling_stolen_tasks_total"); v == "0" {
		t.Fatal("node 1 stole nothing, or the metric does not count it")
	}
	if a, b := metric(0, "starling_granted_tasks_total"), metric(1, "starling_stolen_tasks_total"); a != b {
		t.Fatalf("node 0 granted %s tasks, node 1 stole %s", a, b)
	}
	if v := metric(0, "starling_peers_alive"); v != "1" {
		t.Fatalf("starling_peers_alive = %s, want 1", v)
	}
}
