// Package node is a running Starling node: it accepts tasks over HTTP, keeps their
// records, orders its ready queue, runs tasks in its worker slots with the registered
// handlers, and answers for every task it owns.
//
// A program that embeds a node registers its own handlers and starts it:
//
//	cfg := node.DefaultConfig()
//	cfg.Logger = slog.Default()
//	n, err := node.New(cfg)
//	if err != nil {
//		return err
//	}
//	n.Handle("resize", func(ctx context.Context, in *node.Input) (any, error) {
//		var p struct{ URL string `json:"url"` }
//		if err := in.Decode(&p); err != nil {
//			return nil, err
//		}
//		return resize(ctx, p.URL) // ctx ends on cancel, timeout or shutdown
//	})
//	return n.Run(ctx, 30*time.Second) // serves until ctx ends, then shuts down
//
// Every node has the built-in handlers noop, echo and sleep, and exec when
// Config.AllowExec is set.
//
// # Scheduling
//
// The ready queue runs the highest priority first, then the earliest deadline, then in
// submission order. A task runs only where its required tags are present and its
// required resources are free; a task no node can run stays queued, its record saying
// why. A failed attempt is retried while the task has retries left, after an
// exponential backoff with jitter. A timeout or a cancel cancels the handler's context.
//
// # Cluster
//
// With Config.Cluster set (DefaultClusterConfig, FastClusterConfig), the node joins a
// cluster: gossip membership (package gossip) with its static facts in the member
// metadata and its load as a gossiped report, peer RPC (internal/wire) for stealing
// and reports, and the work-stealing state machines of package steal. The node that
// accepts a task owns its record; a thief that steals it runs it and reports back with
// the task's epoch (cluster.go, peer.go, remote.go). Any node answers for any task by
// forwarding to its owner (route.go). Drain takes a node out of service without losing
// work (drain.go). Graphs (graph.go) are driven by package dag.
//
// # Concurrency
//
// Node.mu guards the scheduler state, the record store and the cluster bookkeeping;
// handlers run outside it on worker goroutines that Shutdown waits for. Peer messages
// are handled on the peer connections' reader goroutines and gossip events on gossip's
// event goroutine, each under Node.mu; nothing blocks on the network while holding it
// (sends only queue).
package node
