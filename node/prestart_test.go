package node

import (
	"context"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Node.Submit (and Cancel, CancelGraph, Drain) before Start are answered: the
// caller owns the engine until the loop runs (they once waited for it forever).
func TestSubmitBeforeStart(t *testing.T) {
	cfg := LocalConfig()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Kill()
	mustHandle(t, n, "w", func(context.Context, *Input) (any, error) { return nil, nil })
	done := make(chan error, 1)
	go func() { _, err := n.Submit([]api.Spec{{Type: "w"}}); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Submit before Start: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Submit before Start still blocked after 2s (Drain before Start blocks the same way)")
	}
}
