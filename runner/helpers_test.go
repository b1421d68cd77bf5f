package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness is a Pool whose Dones land in a channel.
type harness struct {
	pool *Pool
	reg  *Registry
	done chan Done
	logs *syncBuffer
}

// newPool starts a pool of 2 slots with a 1 KiB result cap and the built-in
// handlers, changed by mutate when not nil. It closes the pool, stops what still
// runs and waits for the workers when the test ends.
func newPool(t testing.TB, mutate func(*Config)) *harness {
	t.Helper()
	h := &harness{reg: NewRegistry(), done: make(chan Done, 1024), logs: &syncBuffer{}}
	cfg := Config{
		Slots:          2,
		MaxResultBytes: 1 << 10,
		Registry:       h.reg,
		Done:           func(d Done) { h.done <- d },
		Logger:         slog.New(slog.NewTextHandler(h.logs, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	h.pool = p
	t.Cleanup(func() {
		p.Close()
		p.StopAll(ErrStopped)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Wait(ctx); err != nil {
			t.Errorf("Wait: %v", err)
		}
	})
	return h
}

// handle registers fn for typ.
func (h *harness) handle(t testing.TB, typ string, fn Handler) {
	t.Helper()
	if err := h.reg.Register(typ, fn); err != nil {
		t.Fatalf("Register(%q): %v", typ, err)
	}
}

// next returns the next Done, failing the test if none comes within 10 s.
func (h *harness) next(t testing.TB) Done {
	t.Helper()
	select {
	case d := <-h.done:
		return d
	case <-time.After(10 * time.Second):
		t.Fatalf("no Done within 10s; %d runs outstanding", h.pool.Running())
		return Done{}
	}
}

// collect returns the next n Dones by task id, failing the test on a second Done
// for one id.
func (h *harness) collect(t testing.TB, n int) map[string]Done {
	t.Helper()
	got := make(map[string]Done, n)
	for range n {
		d := h.next(t)
		if prev, dup := got[d.ID]; dup {
			t.Fatalf("two Dones for run %s: %+v and %+v", d.ID, prev, d)
		}
		got[d.ID] = d
	}
	return got
}

// noMoreDone fails the test if a Done is waiting.
func (h *harness) noMoreDone(t testing.TB) {
	t.Helper()
	select {
	case d := <-h.done:
		t.Errorf("an unexpected Done: %+v", d)
	default:
	}
}

// blocker is a handler that says when it starts and returns only when its context
// ends, with ctx.Err().
type blocker struct {
	started chan string   // task ids, as their handlers start
	errs    chan error    // ctx.Err() as each handler saw it
	causes  chan error    // context.Cause(ctx) as each handler saw it
	release chan struct{} // closed: the handlers return nil at once
}

func newBlocker() *blocker {
	return &blocker{started: make(chan string, 100), errs: make(chan error, 100),
		causes: make(chan error, 100), release: make(chan struct{})}
}

func (b *blocker) handler(ctx context.Context, in *Input) (any, error) {
	b.started <- in.ID
	select {
	case <-ctx.Done():
		b.errs <- ctx.Err()
		b.causes <- context.Cause(ctx)
		return nil, ctx.Err()
	case <-b.release:
		return nil, nil
	}
}

// waitStarted waits for the handlers of ids to start, in any order.
func (b *blocker) waitStarted(t testing.TB, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		select {
		case id := <-b.started:
			ids = append(ids, id)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d handlers started within 10s, want %d", len(ids), n)
		}
	}
	return ids
}

// waitFor polls cond until it holds or d passes, then fails the test with what.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// compact returns b as compact JSON, or as is when it is not JSON.
func compact(b []byte) string {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return string(b)
	}
	return out.String()
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
