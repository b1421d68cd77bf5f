package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// Node is a running Starling node: a scheduler, its worker slots, its handlers and its
// HTTP API. Create one with New, register handlers with Handle, then Start it;
// Shutdown stops it.
type Node struct {
	cfg  Config
	id   string // random per start; the owner part of task ids
	log  *slog.Logger
	exec *execRunner

	// mu guards everything below it.
	mu         sync.Mutex
	handlers   map[string]Handler
	validators map[string]func([]byte) error
	seq        uint64
	store      recordStore
	graphs     map[string]*graphRun
	watchers   map[string][]*graphRun // graphs waiting on a task outside them, by task id
	q          *queue
	res        *resources
	busy       int // slots in use
	live       int // tasks not terminal
	counts     map[api.State]int
	stopping   bool
	draining   bool
	rng        *rand.Rand

	events  *hub
	metrics *metrics

	// cluster is nil for a node on its own. Its maps are guarded by mu.
	cluster   *cluster
	forwarder *http.Client

	ln       net.Listener
	srv      *http.Server
	runCtx   context.Context // parent of every handler run
	stopRuns context.CancelCauseFunc
	stopped  chan struct{} // closed when Shutdown begins: long polls return
	done     chan struct{} // closed when the node has stopped
	wg       sync.WaitGroup
	started  bool
	shutOnce sync.Once
	shutErr  error
}

// ErrStopped is the cause given to handler runs cancelled by Shutdown.
var ErrStopped = errors.New("node: shutting down")

// New validates cfg, binds the HTTP listener and returns a node ready to Start.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("node: listen on %s: %w", cfg.HTTPAddr, err)
	}
	if cfg.Name == "" {
		// Name the node after the port it actually got.
		cfg.HTTPAddr = ln.Addr().String()
	}
	cfg.fill()
	n := &Node{
		cfg:        cfg,
		id:         newNodeID(),
		log:        cfg.Logger,
		handlers:   builtins(),
		validators: map[string]func([]byte) error{"sleep": validateSleep},
		store:      newMemStore(),
		graphs:     make(map[string]*graphRun),
		watchers:   make(map[string][]*graphRun),
		q:          newQueue(),
		res:        newResources(cfg.Tags, cfg.Resources),
		counts:     make(map[api.State]int),
		rng:        rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		events:     newHub(),
		ln:         ln,
		stopped:    make(chan struct{}),
		done:       make(chan struct{}),
	}
	n.log = n.log.With(slog.String("node", cfg.Name))
	if cfg.AllowExec {
		n.exec, err = newExecRunner(cfg.ExecAllow, cfg.ExecOutputBytes)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("node: %w", err)
		}
		n.handlers["exec"] = n.exec.run
		n.validators["exec"] = func(p []byte) error { _, err := n.exec.check(p); return err }
	}
	if cfg.Cluster != nil {
		cc := *cfg.Cluster
		cc.fill()
		if err := cc.Steal.Validate(); err != nil {
			ln.Close()
			return nil, fmt.Errorf("node: %w", err)
		}
		n.cluster = &cluster{
			cfg: cc, inc: uint64(time.Now().UnixNano()),
			peers: map[string]*peer{}, names: map[string]string{}, foreign: map[string]*task{},
			outbox: map[string]*outgoing{}, wake: make(chan struct{}, 1), loadWake: make(chan struct{}, 1),
			reports: map[string][]report{}, reportWake: make(chan struct{}, 1), cancels: map[string]*pendingCancel{}, onPeer: map[string]map[*task]struct{}{}, done: make(chan struct{}),
		}
		n.cluster.thief, err = steal.NewThief(steal.NodeID(n.id), n.cluster.inc, cc.Steal, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
		if err == nil {
			n.cluster.victim, err = steal.NewVictim(steal.NodeID(n.id), n.cluster.inc, cc.Steal)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("node: %w", err)
		}
		n.cluster.capability = n.capabilityLocked()
		n.forwarder = newForwarder()
	}
	n.runCtx, n.stopRuns = context.WithCancelCause(context.Background())
	n.metrics = newMetrics(n)
	n.srv = &http.Server{
		Handler:           n.routes(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	return n, nil
}

// Handle registers h for tasks of type typ. Types are 1–128 characters of letters,
// digits and _ . : / -, starting with a letter or digit. A type can be registered once.
func (n *Node) Handle(typ string, h Handler) error {
	if !typeName.MatchString(typ) {
		return fmt.Errorf("node: bad task type %q: use 1-128 letters, digits, _ . : / -", typ)
	}
	if h == nil {
		return errors.New("node: nil handler")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.handlers[typ]; ok {
		return fmt.Errorf("%w: %q", ErrHandlerExists, typ)
	}
	handlers := maps.Clone(n.handlers) // copy on write: see registry
	handlers[typ] = h
	n.handlers = handlers
	for _, c := range n.q.classes {
		c.unfit = n.unfitLocked(c.typ, c.needs)
	}
	if c := n.cluster; c != nil {
		c.capability = n.capabilityLocked()
		if c.gossip != nil && !n.stopping {
			md := n.metaLocked(c.wire.Addr())
			n.goFunc(func() {
				if b, err := msgpack.Marshal(md); err == nil {
					c.gossip.UpdateMeta(b)
				}
			})
		}
	}
	n.dispatchLocked()
	return nil
}

// Start serves the API and starts the background work. It returns at once.
func (n *Node) Start() error {
	n.mu.Lock()
	if n.started || n.stopping {
		n.mu.Unlock()
		return errors.New("node: Start called twice or after Shutdown")
	}
	n.started = true
	n.mu.Unlock()
	if n.cluster != nil {
		if err := n.startCluster(); err != nil {
			n.mu.Lock()
			n.stopping = true
			n.mu.Unlock()
			n.ln.Close()
			return err
		}
	}
	n.goFunc(func() {
		if err := n.srv.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", slog.Any("err", err))
		}
	})
	n.goFunc(n.janitor)
	n.log.Info("node started", slog.String("http", n.HTTPAddr()), slog.String("id", n.id),
		slog.Int("slots", n.cfg.Slots), slog.Any("tags", n.cfg.Tags))
	return nil
}

// Run starts the node and blocks until ctx is done, then shuts it down, giving running
// tasks up to grace to finish.
func (n *Node) Run(ctx context.Context, grace time.Duration) error {
	if err := n.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return n.Shutdown(sctx)
}

// Shutdown stops the node: it refuses new work, ends long polls, lets running tasks
// finish until ctx is done and then cancels them, and waits for every goroutine it
// started. Tasks still queued are lost with the node (in a cluster, their owner
// answers for them). It is idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() {
		n.beginStop(true)
		if err := n.srv.Shutdown(ctx); err != nil {
			n.srv.Close()
		}
		n.waitIdle(ctx)
		n.stopRuns(ErrStopped)
		if n.cluster != nil {
			n.flushReports(ctx)
			n.stopCluster(ctx, true)
		}
		n.endStop()
		close(n.done)
		n.log.Info("node stopped")
		if ctx.Err() != nil {
			n.shutErr = fmt.Errorf("node: shutdown: running tasks cancelled: %w", ctx.Err())
		}
	})
	return n.shutErr
}

// beginStop refuses new work and ends long polls and event streams; a graceful stop
// also hands stolen tasks that have not started back to their owners.
func (n *Node) beginStop(graceful bool) {
	n.mu.Lock()
	n.stopping = true
	if graceful && n.cluster != nil && n.started {
		// Stolen tasks that have not started go back to their owners now, rather than
		// wait for this node's departure (and cost them a node loss).
		n.returnQueuedLocked(time.Now())
	}
	n.mu.Unlock()
	close(n.stopped)
	n.events.close()
	if !n.started {
		n.ln.Close()
	}
}

// waitIdle waits until no task runs, or ctx ends.
func (n *Node) waitIdle(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n.mu.Lock()
		busy := n.busy
		n.mu.Unlock()
		if busy == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// endStop stops pending retries and waits for every goroutine the node started.
func (n *Node) endStop() {
	n.mu.Lock()
	n.store.each(func(t *task) bool {
		if t.retryTimer != nil {
			t.retryTimer.Stop()
		}
		return true
	})
	n.mu.Unlock()
	n.wg.Wait()
}

// goFunc runs f on a goroutine that Shutdown waits for.
func (n *Node) goFunc(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// ID is the node's random id, the owner part of the task ids it hands out.
func (n *Node) ID() string { return n.id }

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// HTTPAddr is the address the API listens on (host:port).
func (n *Node) HTTPAddr() string { return n.ln.Addr().String() }

// URL is the API's base URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr() }

// Types lists the task types this node can run.
func (n *Node) Types() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.typesLocked()
}

// janitor drops finished records past retention. It looks often enough that a record
// outlives Retain by at most half of it (and never by more than a second).
func (n *Node) janitor() {
	tick := time.NewTicker(min(max(n.cfg.Retain/2, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-n.stopped:
			return
		case now := <-tick.C:
			n.mu.Lock()
			n.expireLocked(now)
			n.mu.Unlock()
		}
	}
}

// Kill stops the node abruptly, as a crash would: no graceful leave, running tasks
// cancelled at once, queued ones dropped. Peers find out through gossip. For tests
// and simulations (testcluster); programs use Shutdown.
func (n *Node) Kill() {
	n.shutOnce.Do(func() {
		n.beginStop(false)
		n.srv.Close()
		n.stopRuns(ErrStopped)
		if n.cluster != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			n.stopCluster(ctx, false)
			cancel()
		}
		n.endStop()
		close(n.done)
		n.log.Info("node killed")
	})
}

// typesLocked lists the task types this node has handlers for.
func (n *Node) typesLocked() []string {
	return slices.Sorted(maps.Keys(n.handlers))
}
