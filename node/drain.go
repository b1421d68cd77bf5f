package node

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/internal/api"
)

// Draining takes a node out of service without losing work: it refuses new
// submissions (503 draining) and stops stealing, gives back stolen tasks it has not
// started, keeps running its own queue while its peers steal from it, and once every
// task it owns has finished (or the drain's timeout passes) it shuts down and leaves the
// cluster. Its records, and so its tasks' results, go with it. The engine decides;
// the node stops itself when Ready says Drained.

// Drain starts draining the node and returns at once, with how many of its tasks are
// unfinished. After timeout the node shuts down whatever is left (0: one hour). Done is
// closed once it has stopped. A second call changes nothing.
func (n *Node) Drain(timeout time.Duration) int {
	if timeout <= 0 {
		timeout = time.Hour
	}
	rep, err := n.call(context.Background(), func(req uint64) engine.Input { return engine.Drain{Req: req, Timeout: timeout} })
	if err != nil {
		return 0
	}
	n.draining.Store(true)
	n.log.Info("draining", slog.Int("unfinished", rep.Unfinished), slog.Duration("timeout", timeout))
	return rep.Unfinished
}

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
