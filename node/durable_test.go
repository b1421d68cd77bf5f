package node

import (
	"context"
	"strings"
	"testing"

	"github.com/starlingsched/starling/internal/api"
)

// startDurable starts a node on dir; the caller stops it.
func startDurable(t *testing.T, dir string, handlers map[string]Handler) *Node {
	t.Helper()
	cfg := LocalConfig()
	cfg.Slots = 1
	cfg.DataDir = dir
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New on %s: %v", dir, err)
	}
	for typ, h := range handlers {
		mustHandle(t, n, typ, h)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	return n
}

// A node killed (no Shutdown) with tasks queued, running and retrying gets them all
// back when it starts again on its data directory: the same node id, the same task
// ids, the finished results, and every unfinished task finishes.
func TestDurable_killAndRestart(t *testing.T) {
	dir := t.TempDir()
	block := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-block:
		default:
			close(block)
		}
	})
	blocking := map[string]Handler{"hold": func(ctx context.Context, in *Input) (any, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	}}
	n := startDurable(t, dir, blocking)
	id := n.ID()
	done := waitTerminal(t, n, submit(t, n, `{"type":"echo","payload":"kept"}`).ID)
	running := submit(t, n, `{"type":"hold"}`).ID
	waitState(t, n, running, api.Running)
	var queued []string
	for range 5 {
		queued = append(queued, submit(t, n, `{"type":"echo","payload":"later"}`).ID)
	}
	g := do(t, n, "POST", "/v1/tasks", `{"tasks":[{"name":"a","type":"echo","payload":1},{"name":"b","type":"sum","deps":["a"]}]}`)
	var sub api.Submitted
	g.decode(t, &sub)
	n.Kill()

	n2 := startDurable(t, dir, map[string]Handler{"hold": func(context.Context, *Input) (any, error) { return "again", nil }})
	t.Cleanup(func() { n2.Shutdown(context.Background()) })
	if n2.ID() != id {
		t.Fatalf("restarted as %s, want the same node id %s", n2.ID(), id)
	}
	if r := getTask(t, n2, done.ID); r.State != api.Succeeded || compactJSON(t, r.Result) != `"kept"` {
		t.Fatalf("a finished task after the restart: %s %s", r.State, r.Result)
	}
	r := waitTerminal(t, n2, running)
	if r.State != api.Succeeded || r.Attempt != 2 || r.NodeLosses != 1 {
		t.Fatalf("the task that ran when the node died: %s attempt %d losses %d %q; want succeeded as attempt 2 with a node loss", r.State, r.Attempt, r.NodeLosses, r.Error)
	}
	for _, q := range queued {
		if r := waitTerminal(t, n2, q); r.State != api.Succeeded {
			t.Fatalf("queued task %s: %s %q", q, r.State, r.Error)
		}
	}
	gr := waitGraph(t, n2, sub.Graph)
	if gr.State != api.Succeeded {
		t.Fatalf("graph after the restart: %+v", gr)
	}
	// New ids are new.
	fresh := submit(t, n2, `{"type":"noop"}`).ID
	for _, old := range append(queued, running, done.ID) {
		if fresh == old {
			t.Fatalf("id %s handed out twice", fresh)
		}
	}
}

// Two processes on one directory: the second refuses to start, saying why.
func TestDurable_directoryInUse(t *testing.T) {
	dir := t.TempDir()
	n := startDurable(t, dir, nil)
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	cfg := LocalConfig()
	cfg.DataDir = dir
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second node on %s: %v; want refused, in use", dir, err)
	}
}

// The node says where it keeps its records.
func TestDurable_saysWhereRecordsLive(t *testing.T) {
	n := newTestNode(t, nil)
	if s := n.Members().Members[0].Storage; s != "memory" {
		t.Fatalf("storage %q, want memory", s)
	}
	d := startDurable(t, t.TempDir(), nil)
	defer d.Shutdown(context.Background())
	if s := d.Members().Members[0].Storage; s != "disk" {
		t.Fatalf("storage %q, want disk", s)
	}
}
