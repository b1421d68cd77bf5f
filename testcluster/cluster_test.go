package testcluster_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingsched/starling/client"
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
