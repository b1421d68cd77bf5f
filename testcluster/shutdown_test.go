package testcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/testcluster"
)

// A long poll that node 1 forwards to a task's owner ends when node 1 stops: it
// does not hold node 1's shutdown for the whole grace period.
func TestShutdown_endsForwardedLongPolls(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 2, Slots: 1})
	defer rec.open("g")
	gate := submit(t, c, 0, gateSpec("g"))[0]
	waitState(t, c, 1, gate, client.Running, 5*time.Second)
	polled := make(chan error, 1)
	go func() {
		_, err := c.Client(1).Wait(context.Background(), gate, time.Minute)
		polled <- err
	}()
	time.Sleep(100 * time.Millisecond) // the poll is forwarded to node 0 and waits there
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Node(1).Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("node 1 took %s to shut down while it forwarded a long poll", took)
	}
	select {
	case <-polled:
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarded long poll did not end with the node")
	}
}
