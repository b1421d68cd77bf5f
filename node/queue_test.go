package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// TestQueueOrderEndToEnd: on a one-slot node, tasks submitted while the slot is busy
// start by priority, then deadline (none last), then submission order.
func TestQueueOrderEndToEnd(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	rec := &recorder{}
	mustHandle(t, n, "rec", rec.handler)
	g, _ := blockSlots(t, n, 1)

	soon := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	later := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)
	specs := []string{
		`{"type":"rec","payload":"low-1"}`,
		`{"type":"rec","payload":"deadline-later","deadline":"` + later + `"}`,
		`{"type":"rec","payload":"low-2"}`,
		`{"type":"rec","payload":"high","priority":5}`,
		`{"type":"rec","payload":"deadline-soon","deadline":"` + soon + `"}`,
		`{"type":"rec","payload":"low-neg","priority":-1}`,
		`{"type":"rec","payload":"high-later","priority":5}`,
	}
	var tids []string
	for _, s := range specs {
		rec := submit(t, n, s)
		if rec.State != api.Queued {
			t.Fatalf("with the slot busy, %s is %s, want queued", s, rec.State)
		}
		tids = append(tids, rec.ID)
	}
	g.open()
	for _, id := range tids {
		if r := waitTerminal(t, n, id); r.State != api.Succeeded {
			t.Fatalf("task %s: %s %s", id, r.State, r.Error)
		}
	}
	want := []string{"high", "high-later", "deadline-soon", "deadline-later", "low-1", "low-2", "low-neg"}
	if got := rec.seen(); !slices.Equal(got, want) {
		t.Fatalf("start order %v, want %v", got, want)
	}
	// The records agree: started_at grows in the same order.
	byName := map[string]time.Time{}
	for _, id := range tids {
		r := getTask(t, n, id)
		var name string
		if err := json.Unmarshal(r.Payload, &name); err != nil || r.StartedAt == nil {
			t.Fatalf("record %s: payload %s, started_at %v", id, r.Payload, r.StartedAt)
		}
		byName[name] = *r.StartedAt
	}
	for i := 1; i < len(want); i++ {
		if byName[want[i]].Before(byName[want[i-1]]) {
			t.Errorf("%s started at %v, before %s at %v", want[i], byName[want[i]], want[i-1], byName[want[i-1]])
		}
	}
}

// The load report's priority bands: queued tasks this node owns by priority, highest
// first, the lowest bands folded into the last one.
func TestQueue_priorityBands(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	gate, _ := blockSlots(t, n, 1)
	defer gate.open()
	for _, p := range []int{5, 5, 1, 9, 8, 7, 6, 4, 3, 2} {
		submit(t, n, fmt.Sprintf(`{"type":"noop","priority":%d}`, p))
	}
	var c api.Cluster
	do(t, n, http.MethodGet, "/v1/cluster", "").decode(t, &c)
	got := c.Members[0].Load.ByPriority
	want := []api.Band{{Priority: 9, Queued: 1}, {Priority: 8, Queued: 1}, {Priority: 7, Queued: 1}, {Priority: 6, Queued: 1}, {Priority: 5, Queued: 2}, {Priority: 4, Queued: 1}, {Priority: 3, Queued: 1}, {Priority: 2, Queued: 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("queued_by_priority = %v, want %v (priority 1 folded into the last band)", got, want)
	}
}
