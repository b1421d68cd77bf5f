package node

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// A drained node refuses new work, finishes everything it holds, then stops.
func TestDrain_finishesThenStops(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	gate := newGate()
	mustHandle(t, n, "gate", gate.handler)
	running := submit(t, n, `{"type":"gate"}`).ID
	waitState(t, n, running, api.Running)
	queued := submit(t, n, `{"type":"echo","payload":"after"}`).ID

	r := do(t, n, http.MethodPost, "/v1/node/drain?timeout=1m", "")
	var d api.Drain
	r.decode(t, &d)
	if r.status != http.StatusAccepted || d.Status != "draining" || d.Unfinished != 2 {
		t.Fatalf("drain: %d %+v", r.status, d)
	}
	if e := do(t, n, http.MethodPost, "/v1/tasks", `{"type":"noop"}`).apiErr(t, http.StatusServiceUnavailable); e.Code != api.CodeDraining {
		t.Fatalf("a submission while draining: %+v", e)
	}
	if r := do(t, n, http.MethodGet, "/readyz", ""); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "draining") {
		t.Fatalf("/readyz while draining: %d %s", r.status, r.body)
	}
	select {
	case <-n.Done():
		t.Fatal("the node stopped with a task still running")
	case <-time.After(50 * time.Millisecond):
	}
	gate.open()
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the drained node did not stop")
	}
	for _, id := range []string{running, queued} {
		if rec, err := n.Get(id); err != nil || rec.State != api.Succeeded {
			t.Fatalf("task %s after the drain: %+v %v; want it finished before the node stopped", id, rec, err)
		}
	}
	if resp, err := httpClient.Get(n.URL() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("the stopped node still answers: %d", resp.StatusCode)
	}
}

func TestDrain_timeout(t *testing.T) {
	n, err := New(LocalConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	mustHandle(t, n, "gate", newGate().handler)
	submit(t, n, `{"type":"gate"}`)
	if e := do(t, n, http.MethodPost, "/v1/node/drain?timeout=soon", "").apiErr(t, http.StatusBadRequest); e.Field != "timeout" {
		t.Fatalf("bad timeout: %+v", e)
	}
	n.Drain(100 * time.Millisecond)
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the drain did not stop the node at its timeout")
	}
	// The task that was still running when time ran out was cancelled.
	if err := n.Shutdown(t.Context()); err == nil || !strings.Contains(err.Error(), "running tasks cancelled") {
		t.Fatalf("Shutdown after a timed-out drain: %v; want it to say running tasks were cancelled", err)
	}
}
