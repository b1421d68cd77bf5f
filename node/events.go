package node

import (
	"sync"

	"github.com/starlingsched/starling/internal/api"
)

// hub fans state-change events out to subscribers (GET /v1/events). Publishing never
// blocks: a subscriber that falls a whole buffer behind is dropped and told so.
type hub struct {
	mu     sync.Mutex
	seq    uint64
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch     chan api.Event
	lagged bool // dropped for falling behind
}

const subscriberBuffer = 4096

func newHub() *hub { return &hub{subs: make(map[*subscriber]struct{})} }

func (h *hub) publish(e api.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	if len(h.subs) == 0 {
		return
	}
	e.Seq = h.seq
	for s := range h.subs {
		select {
		case s.ch <- e:
		default:
			s.lagged = true
			delete(h.subs, s)
			close(s.ch)
		}
	}
}

// subscribe returns a subscriber, or nil once the hub is closed.
func (h *hub) subscribe() *subscriber {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	s := &subscriber{ch: make(chan api.Event, subscriberBuffer)}
	h.subs[s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// isLagged reports whether s was dropped for falling behind.
func (h *hub) isLagged(s *subscriber) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return s.lagged
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.ch)
	}
}
