package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

func qtask(seq uint64, prio int, deadline *time.Time) *entry {
	return (&entry{rec: &record.Record{ID: fmt.Sprint(seq), Seq: seq, Spec: &api.Spec{Priority: prio, Deadline: deadline}}, heapIdx: -1}).keyed()
}

func TestBefore(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	early, late := &t0, new(t0.Add(time.Hour))
	sameAsEarly := new(t0.In(time.FixedZone("x", 3600))) // the same instant in another zone
	tests := []struct {
		name string
		a, b *entry
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
					tt.a.rec.Seq, tt.a.rec.Spec.Priority, tt.b.rec.Seq, tt.b.rec.Spec.Priority, got, tt.want)
			}
		})
	}
}

// drain pops the queue in run order, with every class fitting.
func drain(q *queue) []*entry {
	var out []*entry
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
		var all []*entry
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
		var kept []*entry
		for _, tk := range all {
			if rng.IntN(5) == 0 {
				if !q.remove(tk) {
					t.Fatalf("seed %d: remove(%s) found nothing", seed, tk.rec.ID)
				}
				if q.remove(tk) {
					t.Fatalf("seed %d: a second remove(%s) found it again", seed, tk.rec.ID)
				}
				continue
			}
			kept = append(kept, tk)
		}
		if q.len != len(kept) {
			t.Fatalf("seed %d: queue len %d, want %d", seed, q.len, len(kept))
		}
		want := slices.Clone(kept)
		slices.SortFunc(want, func(a, b *entry) int {
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

func ids(ts []*entry) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.rec.ID
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
	for _, tk := range []*entry{hi, hi2, lo} {
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
		t.Fatalf("only an unfit task left, next = %s, want none", got.rec.ID)
	}
}
