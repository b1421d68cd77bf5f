package node

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

func qtask(seq uint64, prio int, deadline *time.Time) *task {
	return &task{id: fmt.Sprint(seq), seq: seq, spec: api.Spec{Priority: prio, Deadline: deadline}, heapIdx: -1}
}

func TestBefore(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	early, late := &t0, new(t0.Add(time.Hour))
	sameAsEarly := new(t0.In(time.FixedZone("x", 3600))) // the same instant in another zone
	tests := []struct {
		name string
		a, b *task
		want bool // a runs before b
	}{
		{"higher priority first", qtask(2, 5, nil), qtask(1, 0, nil), true},
		{"lower priority later", qtask(1, 0, nil), qtask(2, 5, nil), false},
		{"priority beats deadline", qtask(2, 1, nil), qtask(1, 0, early), true},
		{"negative priority after default", qtask(1, -1, nil), qtask(2, 0, nil), false},
		{"earlier deadline first", qtask(2, 0, early), qtask(1, 0, late), true},
		{"later deadline after", qtask(1, 0, late), qtask(2, 0, early), false},
		{"a deadline before none", qtask(2, 0, late), qtask(1, 0, nil), true},
		{"none after a deadline", qtask(1, 0, nil), qtask(2, 0, late), false},
		{"equal deadlines: FIFO", qtask(1, 0, early), qtask(2, 0, sameAsEarly), true},
		{"equal deadlines: FIFO, reversed", qtask(2, 0, sameAsEarly), qtask(1, 0, early), false},
		{"no deadlines: FIFO", qtask(1, 0, nil), qtask(2, 0, nil), true},
		{"no deadlines: FIFO, reversed", qtask(2, 0, nil), qtask(1, 0, nil), false},
		{"not before itself", qtask(1, 0, nil), qtask(1, 0, nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := before(tt.a, tt.b); got != tt.want {
				t.Errorf("before(seq %d prio %d, seq %d prio %d) = %v, want %v",
					tt.a.seq, tt.a.spec.Priority, tt.b.seq, tt.b.spec.Priority, got, tt.want)
			}
		})
	}
}

// drain pops the queue in run order, with every class fitting.
func drain(q *queue) []*task {
	var out []*task
	for {
		t := q.next(func(*class) bool { return true })
		if t == nil {
			return out
		}
		if !q.remove(t) {
			panic("next returned a task that remove does not find")
		}
		out = append(out, t)
	}
}

// TestQueueOrderProperty pushes random tasks over several classes in random order and
// removes some; the queue must hand out the rest in exactly the order of before.
func TestQueueOrderProperty(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		q := newQueue()
		classes := []*class{{key: ""}, {key: "t:gpu;"}, {key: "r:cpu=2;"}}
		for _, c := range classes {
			q.classes[c.key] = c
		}
		var all []*task
		for i := range 1 + rng.IntN(60) {
			var dl *time.Time
			if rng.IntN(2) == 0 {
				dl = new(base.Add(time.Duration(rng.IntN(4)) * time.Minute))
			}
			tk := qtask(uint64(i+1), rng.IntN(3)-1, dl)
			tk.class = classes[rng.IntN(len(classes))]
			all = append(all, tk)
		}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		for _, tk := range all {
			q.push(tk)
		}
		var kept []*task
		for _, tk := range all {
			if rng.IntN(5) == 0 {
				if !q.remove(tk) {
					t.Fatalf("seed %d: remove(%s) found nothing", seed, tk.id)
				}
				if q.remove(tk) {
					t.Fatalf("seed %d: a second remove(%s) found it again", seed, tk.id)
				}
				continue
			}
			kept = append(kept, tk)
		}
		if q.len != len(kept) {
			t.Fatalf("seed %d: queue len %d, want %d", seed, q.len, len(kept))
		}
		want := slices.Clone(kept)
		slices.SortFunc(want, func(a, b *task) int {
			if before(a, b) {
				return -1
			}
			return 1
		})
		got := drain(q)
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: order %v, want %v", seed, ids(got), ids(want))
		}
		if q.len != 0 || len(q.active) != 0 {
			t.Fatalf("seed %d: drained queue has len %d and %d active classes", seed, q.len, len(q.active))
		}
	}
}

func ids(ts []*task) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.id
	}
	return out
}

// TestQueueSkipsClassesThatDoNotFit: a class that cannot run now (busy resources) or
// ever (unfit) does not hold back another class's lower-priority task.
func TestQueueSkipsClassesThatDoNotFit(t *testing.T) {
	q := newQueue()
	gpu := &class{key: "r:gpu=1;"}
	never := &class{key: "t:tpu;", unfit: "no tpu"}
	plain := &class{key: ""}
	hi := qtask(1, 10, nil)
	hi.class = gpu
	hi2 := qtask(2, 9, nil)
	hi2.class = never
	lo := qtask(3, 0, nil)
	lo.class = plain
	for _, tk := range []*task{hi, hi2, lo} {
		q.push(tk)
	}
	gpuFree := false
	fits := func(c *class) bool { return c != gpu || gpuFree }
	if got := q.next(fits); got != lo {
		t.Fatalf("with the gpu busy, next = %v, want the plain task", got)
	}
	gpuFree = true
	if got := q.next(fits); got != hi {
		t.Fatalf("with the gpu free, next = %v, want the gpu task", got)
	}
	q.remove(hi)
	q.remove(lo)
	if got := q.next(fits); got != nil {
		t.Fatalf("only an unfit task left, next = %s, want none", got.id)
	}
}

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
