package gossip

import (
	"log/slog"
	"sync"
)

// Events receives membership changes about other members (never about the
// local one).
//
// Contract: methods are called from one dedicated goroutine, one at a time,
// in the order this member observed the changes. They may call any Cluster
// method, but should return quickly: events queue up behind a slow handler
// (the queue is unbounded and memberlist itself is never blocked by it).
// Once Shutdown has returned nil, no further calls are made; events still
// queued then are dropped.
type Events interface {
	// MemberJoin: a member became alive (new, or back after failing or
	// leaving).
	MemberJoin(Member)
	// MemberUpdate: an alive member changed its Meta.
	MemberUpdate(Member)
	// MemberLeave: a member left gracefully (State is StateLeft). If its
	// leave announcement arrived after its death was detected, this
	// follows a MemberFailed for the same member.
	MemberLeave(Member)
	// MemberFailed: a member was declared dead (State is StateDead).
	MemberFailed(Member)
}

// EventFuncs adapts functions to Events; nil fields ignore their event.
type EventFuncs struct {
	Join, Update, Leave, Failed func(Member)
}

var _ Events = EventFuncs{}

// MemberJoin calls f.Join.
func (f EventFuncs) MemberJoin(m Member) { call(f.Join, m) }

// MemberUpdate calls f.Update.
func (f EventFuncs) MemberUpdate(m Member) { call(f.Update, m) }

// MemberLeave calls f.Leave.
func (f EventFuncs) MemberLeave(m Member) { call(f.Leave, m) }

// MemberFailed calls f.Failed.
func (f EventFuncs) MemberFailed(m Member) { call(f.Failed, m) }

func call(fn func(Member), m Member) {
	if fn != nil {
		fn(m)
	}
}

type eventKind uint8

const (
	eventJoin eventKind = iota
	eventUpdate
	eventLeave
	eventFailed
)

type event struct {
	kind   eventKind
	member Member
}

// queueWarnDepth is the backlog at which the queue warns about a slow
// Events handler (once per crossing).
const queueWarnDepth = 4096

// eventQueue decouples memberlist's EventDelegate, which runs under
// memberlist's node lock and must not block, from the user's Events. push
// never blocks; run delivers on its own goroutine.
type eventQueue struct {
	mu      sync.Mutex // guards pending, warned
	pending []event
	warned  bool
	signal  chan struct{} // capacity 1: "pending is non-empty"
	logger  *slog.Logger
}

func newEventQueue(logger *slog.Logger) *eventQueue {
	return &eventQueue{signal: make(chan struct{}, 1), logger: logger}
}

func (q *eventQueue) push(e event) {
	q.mu.Lock()
	q.pending = append(q.pending, e)
	warn := len(q.pending) >= queueWarnDepth && !q.warned
	if warn {
		q.warned = true
	} else if len(q.pending) < queueWarnDepth/2 {
		q.warned = false
	}
	q.mu.Unlock()
	if warn {
		q.logger.Warn("membership events are piling up: the Events handler is slow",
			slog.Int("pending", queueWarnDepth))
	}
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// run delivers queued events to h until stop is closed.
func (q *eventQueue) run(stop <-chan struct{}, h Events) {
	for {
		select {
		case <-stop:
			return
		case <-q.signal:
		}
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		for _, e := range batch {
			select {
			case <-stop:
				return
			default:
			}
			switch e.kind {
			case eventJoin:
				h.MemberJoin(e.member)
			case eventUpdate:
				h.MemberUpdate(e.member)
			case eventLeave:
				h.MemberLeave(e.member)
			case eventFailed:
				h.MemberFailed(e.member)
			}
		}
	}
}
