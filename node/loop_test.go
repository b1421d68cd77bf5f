package node

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Run returns once a drain has stopped the node (it once waited for its context).
func TestRunReturnsAfterDrain(t *testing.T) {
	cfg := LocalConfig()
	cfg.Slots = 1
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- n.Run(context.Background(), 5*time.Second) }()
	waitFor(t, 5*time.Second, "the node serving", func() bool {
		r, err := httpClient.Get(n.URL() + "/readyz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == http.StatusOK
	})
	n.Drain(time.Minute)
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run after a drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		n.Kill()
		t.Fatal("Run did not return after the drain stopped the node")
	}
}

// Shutdown returns when its context ends even if a handler ignores its own.
func TestShutdownDoesNotWaitForAStuckHandler(t *testing.T) {
	cfg := LocalConfig()
	cfg.Slots = 1
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	mustHandle(t, n, "deaf", func(context.Context, *Input) (any, error) { <-release; return nil, nil })
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	id := submit(t, n, `{"type":"deaf"}`).ID
	waitState(t, n, id, api.Running)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = n.Shutdown(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Shutdown took %s with a handler that ignores its context; its context allowed 200ms", took)
	}
	if err == nil {
		t.Fatal("Shutdown said nothing of the run it could not stop")
	}
}

// Handlers registered while the node runs, concurrently with submissions, become
// runnable, and each registration says whether it worked.
func TestHandleWhileRunning(t *testing.T) {
	n := newTestNode(t, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := n.Handle(fmt.Sprintf("late-%d", i), echoHandler); err != nil {
				t.Errorf("Handle: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			submit(t, n, `{"type":"noop"}`)
		}()
	}
	wg.Wait()
	if err := n.Handle("late-0", echoHandler); err == nil {
		t.Error("a second registration of late-0 was accepted")
	}
	for i := range 8 {
		r := waitTerminal(t, n, submit(t, n, fmt.Sprintf(`{"type":"late-%d","payload":%d}`, i, i)).ID)
		if r.State != api.Succeeded || string(r.Result) != fmt.Sprint(i) {
			t.Errorf("late-%d: %s %s %q", i, r.State, r.Result, r.Error)
		}
	}
}
