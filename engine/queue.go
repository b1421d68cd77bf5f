package engine

import (
	"container/heap"
	"slices"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// The ready queue. Tasks are grouped by requirement class (what they need from a node)
// and each class is a heap in run order: priority high first, then deadline early first
// (no deadline last), then submission order. The next task to run is the best head
// among the classes whose requirements are free right now, so a task waiting for a busy
// GPU never holds back one that needs nothing.

// before reports whether a runs before b.
func before(a, b *entry) bool {
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	ad, bd := a.deadline, b.deadline
	switch {
	case ad != nil && bd != nil && !ad.Equal(*bd):
		return ad.Before(*bd)
	case ad != nil && bd == nil:
		return true
	case ad == nil && bd != nil:
		return false
	}
	return a.seq < b.seq
}

// keyed copies t's place in the run order out of its record, so that heap
// operations compare entries without following pointers.
func (t *entry) keyed() *entry {
	t.prio, t.deadline, t.seq = t.rec.Spec.Priority, t.rec.Spec.Deadline, t.rec.Seq
	return t
}

// class is the tasks that need the same things from a node.
type class struct {
	key   string
	typ   string
	needs needs
	heap  taskHeap
	// foreign counts the tasks in heap that other nodes own (stolen to run here);
	// they are never stolen again.
	foreign int
	// unfit is why this node can never run the class (empty when it can).
	unfit string
}

type taskHeap []*entry

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return before(h[i], h[j]) }
func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *taskHeap) Push(x any) {
	t := x.(*entry)
	t.heapIdx = len(*h)
	*h = append(*h, t)
}
func (h *taskHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.heapIdx = -1
	*h = old[:n-1]
	return t
}

// queue is the ready queue. It belongs to the engine.
type queue struct {
	classes map[string]*class
	// active holds the classes with queued tasks.
	active []*class
	len    int
	// byPriority counts the queued tasks this node owns by priority (the load report's
	// priority bands).
	byPriority map[int]int
	// bandsSnap is the last bandsSnapshot; nil after byPriority changed.
	bandsSnap []api.Band
}

// bandsSnapshot is bands(max), shared until the queue's bands change: callers must
// not change it.
func (q *queue) bandsSnapshot(max int) []api.Band {
	if q.bandsSnap == nil {
		q.bandsSnap = q.bands(max)
	}
	return q.bandsSnap
}

func newQueue() *queue {
	return &queue{classes: make(map[string]*class), byPriority: make(map[int]int)}
}

func (q *queue) push(t *entry) {
	c := t.class
	if c.heap.Len() == 0 {
		q.active = append(q.active, c)
	}
	heap.Push(&c.heap, t)
	q.len++
	if t.foreign {
		c.foreign++
	} else {
		q.byPriority[t.rec.Spec.Priority]++
		q.bandsSnap = nil
	}
}

// pop takes the best task of a class out of the queue.
func (q *queue) pop(c *class) *entry {
	t := heap.Pop(&c.heap).(*entry)
	q.taken(c, t)
	return t
}

func (q *queue) taken(c *class, t *entry) {
	q.len--
	if t.foreign {
		c.foreign--
	} else {
		q.bandsSnap = nil
		if q.byPriority[t.rec.Spec.Priority]--; q.byPriority[t.rec.Spec.Priority] == 0 {
			delete(q.byPriority, t.rec.Spec.Priority)
		}
	}
	if c.heap.Len() == 0 {
		q.deactivate(c)
	}
}

// remove takes a queued task out of the queue.
func (q *queue) remove(t *entry) bool {
	if t.heapIdx < 0 {
		return false
	}
	c := t.class
	heap.Remove(&c.heap, t.heapIdx)
	q.taken(c, t)
	return true
}

func (q *queue) deactivate(c *class) {
	for i, a := range q.active {
		if a == c {
			last := len(q.active) - 1
			q.active[i] = q.active[last]
			q.active[last] = nil
			q.active = q.active[:last]
			return
		}
	}
}

// next returns the best task that fits, without removing it.
func (q *queue) next(fits func(*class) bool) *entry {
	var best *entry
	for _, c := range q.active {
		if c.unfit != "" || !fits(c) {
			continue
		}
		if top := c.heap[0]; best == nil || before(top, best) {
			best = top
		}
	}
	return best
}

// stealClass describes the class to the stealing policy.
func (c *class) stealClass() steal.Class {
	k := steal.Class{Type: c.typ, Tags: c.needs.tags}
	if len(c.needs.res) > 0 {
		k.Resources = make(map[string]int64, len(c.needs.res))
		for _, r := range c.needs.res {
			k.Resources[r.name] = r.n
		}
	}
	return k
}

// sortTasks sorts tasks in run order.
func sortTasks(ts []*entry) {
	slices.SortFunc(ts, func(a, b *entry) int {
		switch {
		case before(a, b):
			return -1
		case before(b, a):
			return 1
		}
		return 0
	})
}

// bands lists the queued tasks this node owns by priority, highest first, at most max
// bands: the rest are counted in the last one.
func (q *queue) bands(max int) []api.Band {
	out := make([]api.Band, 0, len(q.byPriority))
	for p, k := range q.byPriority {
		out = append(out, api.Band{Priority: p, Queued: k})
	}
	slices.SortFunc(out, func(a, b api.Band) int { return b.Priority - a.Priority })
	if len(out) > max {
		for _, b := range out[max:] {
			out[max-1].Queued += b.Queued
		}
		out = out[:max]
	}
	return out
}

// topOwned is the highest priority among the class's queued tasks that this node
// owns (the ones peers may steal); foreign tasks are never offered.
func (c *class) topOwned() int {
	if len(c.heap) > 0 && !c.heap[0].foreign {
		return c.heap[0].rec.Spec.Priority
	}
	top, found := 0, false
	for _, t := range c.heap {
		if !t.foreign && (!found || t.rec.Spec.Priority > top) {
			top, found = t.rec.Spec.Priority, true
		}
	}
	return top
}
