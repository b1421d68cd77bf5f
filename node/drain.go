package node

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Draining takes a node out of service without losing work: it refuses new
// submissions (503 draining) and stops stealing, gives back stolen tasks it has not
// started, keeps running its own queue while its peers steal from it, and once every
// task it owns has finished (or the drain's timeout passes) it shuts down and leaves the
// cluster. Its records, and so its tasks' results, go with it.

// Drain starts draining the node and returns at once, with how many of its tasks are
// unfinished. After timeout the node shuts down whatever is left (0: one hour). Done is
// closed once it has stopped. A second call changes nothing.
func (n *Node) Drain(timeout time.Duration) int {
	if timeout <= 0 {
		timeout = time.Hour
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.draining || n.stopping {
		return n.live
	}
	n.draining = true
	if n.cluster != nil && n.started {
		n.returnQueuedLocked(time.Now())
	}
	n.log.Info("draining", slog.Int("unfinished", n.live), slog.Duration("timeout", timeout))
	// Not counted in n.wg: it ends by calling Shutdown, which waits for n.wg.
	go n.drain(time.Now().Add(timeout))
	return n.live
}

func (n *Node) drain(deadline time.Time) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	grace := 30 * time.Second
	for {
		n.mu.Lock()
		idle := n.live == 0 && n.busy == 0 && (n.cluster == nil || len(n.cluster.foreign) == 0)
		live := n.live
		n.mu.Unlock()
		if idle {
			break
		}
		if time.Now().After(deadline) {
			n.log.Warn("drain timed out; stopping with tasks unfinished", slog.Int("unfinished", live))
			grace = time.Second // the drain's time is up: running tasks get a moment, no more
			break
		}
		select {
		case <-n.stopped:
			return // shut down meanwhile
		case <-tick.C:
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	n.Shutdown(ctx)
}

// Done is closed once the node has stopped (Shutdown, Kill, or the end of a drain).
func (n *Node) Done() <-chan struct{} { return n.done }

func (n *Node) handleDrain(w http.ResponseWriter, r *http.Request) {
	timeout := time.Hour
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			writeError(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Field: "timeout",
				Message: "timeout: " + s + " is not a positive duration (10m, 1h)"})
			return
		}
		timeout = d
	}
	unfinished := n.Drain(timeout)
	writeJSON(w, http.StatusAccepted, api.Drain{Status: "draining", Node: n.cfg.Name, Unfinished: unfinished})
}
