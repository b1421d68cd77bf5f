package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Handlers registered concurrently after Start all end up runnable: the type sets
// they send to the loop arrive in order (once, a stale smaller set could arrive last
// and the engine forgot a registered type: its tasks waited forever, "no node can
// run it yet").
func TestConcurrentHandleAfterStart(t *testing.T) {
	n := newTestNode(t, nil)
	const k = 64
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mustHandle(t, n, fmt.Sprintf("t%d", i), func(context.Context, *Input) (any, error) { return "ok", nil })
		}()
	}
	wg.Wait()
	ids := make([]string, k)
	for i := range k {
		ids[i] = submit(t, n, fmt.Sprintf(`{"type":"t%d"}`, i)).ID
	}
	time.Sleep(300 * time.Millisecond)
	var stuck []string
	for i, id := range ids {
		rec, err := n.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.State.Terminal() {
			stuck = append(stuck, fmt.Sprintf("t%d: %s %q", i, rec.State, rec.Waiting))
		}
	}
	if len(stuck) > 0 {
		t.Fatalf("%d of %d registered types never run:\n%s", len(stuck), k, strings.Join(stuck, "\n"))
	}
}
