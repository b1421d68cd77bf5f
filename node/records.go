package node

import (
	"sort"
	"time"
)

// recordStore holds the records of the tasks a node owns: by id, by idempotency key, in
// submission order, and the finished ones in finish order for retention. Node.mu guards
// it; its methods never block.
//
// memStore, in memory, is the only store today: a node that dies takes its records with
// it (its peers answer "owner lost"). A replicated store — each record also copied to
// k successors chosen by rendezvous hashing over the live members, which adopt it when
// the owner dies — plugs in here.
type recordStore interface {
	// add stores a new task.
	add(t *task)
	// get returns the stored task with id, or nil.
	get(id string) *task
	// withKey returns the stored task submitted with an idempotency key, or nil.
	withKey(key string) *task
	// finish notes that t reached a terminal state: its retention starts.
	finish(t *task)
	// expire drops finished records older than retain, and the oldest finished ones
	// while more than max are kept, calling drop for each.
	expire(now time.Time, retain time.Duration, max int, drop func(*task))
	// retained counts the finished records kept.
	retained() int
	// each calls f for every stored task, in no order, until f returns false.
	each(f func(*task) bool)
	// newest calls f for the stored tasks submitted before seq, newest first, until f
	// returns false.
	newest(before uint64, f func(*task) bool)
}

// memStore is the in-memory recordStore.
type memStore struct {
	tasks     map[string]*task
	idem      map[string]*task
	order     []*task // every stored task in submission order (seq ascending)
	orderDead int     // expired entries still in order
	finished  []*task // finished tasks in finish order
	finHead   int     // finished[:finHead] are dropped already
}

var _ recordStore = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{tasks: make(map[string]*task), idem: make(map[string]*task)}
}

func (s *memStore) add(t *task) {
	s.tasks[t.id] = t
	s.order = append(s.order, t)
	if k := t.spec.IdempotencyKey; k != "" {
		s.idem[k] = t
	}
}

func (s *memStore) get(id string) *task { return s.tasks[id] }

func (s *memStore) withKey(key string) *task { return s.idem[key] }

func (s *memStore) finish(t *task) { s.finished = append(s.finished, t) }

func (s *memStore) retained() int { return len(s.finished) - s.finHead }

func (s *memStore) expire(now time.Time, retain time.Duration, max int, drop func(*task)) {
	cutoff := now.Add(-retain)
	i := s.finHead
	for ; i < len(s.finished); i++ {
		t := s.finished[i]
		if len(s.finished)-i <= max && t.finished.After(cutoff) {
			break
		}
		s.finished[i] = nil
		t.expired = true
		delete(s.tasks, t.id)
		if k := t.spec.IdempotencyKey; k != "" && s.idem[k] == t {
			delete(s.idem, k)
		}
		s.orderDead++
		drop(t)
	}
	s.finHead = i
	if s.finHead > 1024 && s.finHead > len(s.finished)/2 {
		s.finished = append([]*task(nil), s.finished[s.finHead:]...)
		s.finHead = 0
	}
	if s.orderDead > 1024 && s.orderDead > len(s.order)/2 {
		kept := make([]*task, 0, len(s.order)-s.orderDead)
		for _, t := range s.order {
			if !t.expired {
				kept = append(kept, t)
			}
		}
		s.order, s.orderDead = kept, 0
	}
}

func (s *memStore) each(f func(*task) bool) {
	for _, t := range s.tasks {
		if !f(t) {
			return
		}
	}
}

func (s *memStore) newest(before uint64, f func(*task) bool) {
	i := sort.Search(len(s.order), func(i int) bool { return s.order[i].seq >= before }) - 1
	for ; i >= 0; i-- {
		if t := s.order[i]; !t.expired && !f(t) {
			return
		}
	}
}
