package node

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// gone reports whether the API answers 404 "expired or unknown task" for id.
func gone(t testing.TB, n *Node, id string) bool {
	t.Helper()
	r := do(t, n, http.MethodGet, "/v1/tasks/"+id, "")
	switch r.status {
	case http.StatusOK:
		return false
	case http.StatusNotFound:
		e := r.apiErr(t, http.StatusNotFound)
		if e.Code != api.CodeNotFound || !strings.Contains(e.Message, "expired or unknown task") {
			t.Fatalf("404 for %s: %+v", id, e)
		}
		return true
	}
	t.Fatalf("GET %s: %d %s", id, r.status, r.body)
	return false
}

// TestRetainExpires: a finished record is dropped once Retain has passed; an
// unfinished one is kept however old.
func TestRetainExpires(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Retain = 50 * time.Millisecond; c.Slots = 1 })
	// Submit and wait in one call: the record could expire before a second call.
	r := do(t, n, http.MethodPost, "/v1/tasks?wait=10s", `{"type":"echo","payload":1}`)
	var rec api.Task
	r.decode(t, &rec)
	if r.status != http.StatusOK || rec.State != api.Succeeded {
		t.Fatalf("submit and wait: %d %s", r.status, r.body)
	}
	done := rec.ID
	g, running := blockSlots(t, n, 1)
	queued := submit(t, n, `{"type":"noop"}`).ID
	waitFor(t, 10*time.Second, "the finished record to expire", func() bool { return gone(t, n, done) })
	if _, err := n.Get(done); err == nil {
		t.Error("Get still finds the expired record")
	}
	if r := do(t, n, http.MethodDelete, "/v1/tasks/"+done, ""); r.status != http.StatusNotFound {
		t.Errorf("cancel of an expired task: %d, want 404", r.status)
	}
	var list api.TaskList
	do(t, n, http.MethodGet, "/v1/tasks", "").decode(t, &list)
	for _, tk := range list.Tasks {
		if tk.ID == done {
			t.Error("the expired record is still listed")
		}
	}
	// Older than Retain, but not finished: kept.
	time.Sleep(100 * time.Millisecond)
	for _, id := range []string{running[0], queued} {
		if gone(t, n, id) {
			t.Errorf("unfinished task %s was dropped", id)
		}
	}
	g.open()
	waitFor(t, 10*time.Second, "the newly finished record to expire", func() bool { return gone(t, n, queued) })
}

// TestMaxRecords: past MaxRecords finished records, the oldest finished go first.
func TestMaxRecords(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxRecords = 3 })
	g := newGate()
	mustHandle(t, n, "block", g.handler)
	t.Cleanup(g.open)
	// The first submitted finishes last: it must outlive older-finished records.
	slow := submit(t, n, `{"type":"block"}`).ID
	var ids []string
	for range 4 {
		id := submit(t, n, `{"type":"noop"}`).ID
		waitTerminal(t, n, id)
		ids = append(ids, id)
	}
	if !gone(t, n, ids[0]) {
		t.Errorf("4 finished with MaxRecords 3: the oldest (%s) is still there", ids[0])
	}
	for _, id := range append(ids[1:], slow) {
		if gone(t, n, id) {
			t.Errorf("record %s dropped too early", id)
		}
	}
	g.open()
	waitTerminal(t, n, slow)
	for i, id := range ids {
		if want := i < 2; gone(t, n, id) != want {
			t.Errorf("after the slow task finished, record %d gone = %v, want %v", i, !want, want)
		}
	}
	if gone(t, n, slow) {
		t.Error("the most recently finished record was dropped")
	}
}

// TestIdempotencyKey: a second submission with a key returns the first task; once that
// task's record expires, the key is free again.
func TestIdempotencyKey(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Retain = 50 * time.Millisecond })
	g := newGate()
	mustHandle(t, n, "block", g.handler)
	t.Cleanup(g.open)
	// The keyed task blocks until the checks are done, so it cannot expire meanwhile.
	first := submit(t, n, `{"type":"block","payload":"one","idempotency_key":"k1"}`)
	again := submit(t, n, `{"type":"block","payload":"two","idempotency_key":"k1"}`)
	if again.ID != first.ID || compactJSON(t, again.Payload) != `"one"` {
		t.Fatalf("same key: %s with %s, then %s with %s; want the first task both times", first.ID, first.Payload, again.ID, again.Payload)
	}
	other := submit(t, n, `{"type":"echo","payload":"three","idempotency_key":"k2"}`)
	if other.ID == first.ID {
		t.Fatal("another key got the same id")
	}
	r := do(t, n, http.MethodPost, "/v1/tasks", `{"tasks":[{"type":"noop","idempotency_key":"k1"},{"type":"noop","idempotency_key":"k3"},{"type":"noop","idempotency_key":"k3"}]}`)
	var sub api.Submitted
	r.decode(t, &sub)
	if len(sub.IDs) != 3 || sub.IDs[0] != first.ID || sub.IDs[1] != sub.IDs[2] || sub.IDs[1] == first.ID {
		t.Fatalf("a batch reusing k1 and repeating k3: %s", r.body)
	}
	if g.count() != 1 {
		t.Errorf("the keyed task started %d times, want once", g.count())
	}
	g.open()
	waitFor(t, 10*time.Second, "the keyed record to finish and expire", func() bool { return gone(t, n, first.ID) })
	fresh := submit(t, n, `{"type":"echo","payload":"four","idempotency_key":"k1"}`)
	if fresh.ID == first.ID {
		t.Errorf("after expiry the key still returns the expired task %s", first.ID)
	}
	if compactJSON(t, fresh.Payload) != `"four"` {
		t.Errorf("the new task has payload %s", fresh.Payload)
	}
}
