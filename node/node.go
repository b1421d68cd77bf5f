package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/runner"
	"github.com/starlingsched/starling/store"
)

// Node is a running Starling node: an engine (package engine) owned by one event
// loop, the runner's worker slots, the peer plane and the HTTP API. Create one with
// New, register handlers with Handle, then Start it; Shutdown stops it.
type Node struct {
	cfg Config
	id  string // random per start; the owner part of task ids
	inc uint64
	log *slog.Logger

	reg  *runner.Registry
	exec *runner.Exec
	pool *runner.Pool

	// store persists the records (store.Mem without a data directory); the loop
	// appends to it. storeErr is set once it failed; seqSaved is the sequence it
	// last recorded. recovered is how many records the start loaded, in recoveredIn.
	store       store.Store
	storeErr    atomic.Pointer[error]
	killed      atomic.Bool
	seqSaved    uint64
	recovered   int
	recoveredIn time.Duration

	// eng belongs to the loop goroutine; nothing else touches it after Start.
	eng   *engine.Engine
	inbox chan engine.Input
	// Run ends gather here rather than in the inbox: workers never wait for the
	// loop, and one wake-up of the loop takes every end that came meanwhile.
	doneMu   sync.Mutex
	dones    []engine.RunDone
	doneWake chan struct{}
	// calls are the requests waiting for the engine's Reply, by request number.
	callMu sync.Mutex
	calls  map[uint64]chan engine.Reply
	reqSeq atomic.Uint64

	view    *view
	events  *hub
	metrics *metrics

	// cluster is nil for a node on its own.
	cluster   *clusterIO
	forwarder *http.Client

	ln  net.Listener
	srv *http.Server

	// handleMu orders handler registrations after Start: the type sets they send to
	// the loop and announce by gossip arrive in the order they were taken. It also
	// guards cluster.gossip while Start sets it.
	handleMu sync.Mutex

	// The goroutine ledger: every goroutine the node starts goes through goFunc,
	// which refuses once the node is closing; Shutdown and Kill wait for them.
	gmu     sync.Mutex
	gwg     sync.WaitGroup
	closing bool
	started bool

	stopCtx  context.Context    // ends when Shutdown or Kill begins: long polls and forwards return
	stopNow  context.CancelFunc //
	quit     chan struct{}      // closed to end the event loop
	loopDone chan struct{}      // closed when the loop has returned
	drained  chan struct{}      // closed when a drain finished: the node stops itself
	// draining: a drain began (readiness says so at once). drainLate: the drain's
	// time ran out; running tasks get a moment, no more.
	draining  atomic.Bool
	drainLate atomic.Bool
	done      chan struct{} // closed when the node has stopped
	shutOnce  sync.Once
	shutErr   error
}

// inboxSize bounds the inputs waiting for the loop; producers block beyond it.
const inboxSize = 4096

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
		cfg:      cfg,
		id:       newNodeID(),
		inc:      uint64(time.Now().UnixNano()),
		reg:      runner.NewRegistry(),
		inbox:    make(chan engine.Input, inboxSize),
		doneWake: make(chan struct{}, 1),
		calls:    map[uint64]chan engine.Reply{},
		view:     newView(),
		events:   newHub(),
		ln:       ln,
		quit:     make(chan struct{}),
		loopDone: make(chan struct{}),
		drained:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	n.stopCtx, n.stopNow = context.WithCancel(context.Background())
	n.log = cfg.Logger.With(slog.String("node", cfg.Name))
	fail := func(err error) (*Node, error) {
		ln.Close()
		return nil, err
	}
	if cfg.AllowExec {
		if n.exec, err = runner.NewExec(cfg.ExecAllow, cfg.ExecOutputBytes); err != nil {
			return fail(fmt.Errorf("node: %w", err))
		}
		if err := n.reg.Register("exec", n.exec.Run); err != nil {
			return fail(err)
		}
		n.reg.SetValidator("exec", n.exec.Check)
	}
	recs, st, err := n.openStore()
	if err != nil {
		return fail(err)
	}
	fail = func(err error) (*Node, error) {
		ln.Close()
		n.store.Close()
		return nil, err
	}
	ecfg := engine.Config{
		ID: n.id, Name: cfg.Name, Inc: n.inc, Slots: cfg.Slots, Tags: cfg.Tags, Resources: cfg.Resources,
		Types: n.reg.Types(), MaxQueue: cfg.MaxQueue, MaxBatch: cfg.MaxBatch, MaxGraphDepth: cfg.MaxGraphDepth,
		Retain: cfg.Retain, MaxRecords: cfg.MaxRecords, RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax,
		Seed: [2]uint64{rand.Uint64(), rand.Uint64()}, Logger: n.log, Durable: cfg.DataDir != "",
	}
	if cfg.Cluster != nil {
		cc := *cfg.Cluster
		cc.fill()
		n.cluster = &clusterIO{cfg: cc}
		ecfg.Cluster = cc.engineConfig()
		n.forwarder = newForwarder()
	}
	if n.eng, err = engine.New(ecfg); err != nil {
		return fail(fmt.Errorf("node: %w", err))
	}
	restoreStart := time.Now()
	if err := n.eng.Restore(restoreStart, recs, st.Seq); err != nil {
		return fail(fmt.Errorf("node: %w", err))
	}
	n.seqSaved = st.Seq
	n.view.load(recs)
	if n.cfg.DataDir != "" {
		n.recoveredIn += time.Since(restoreStart) // loading, restoring and publishing
	}
	n.pool, err = runner.NewPool(runner.Config{
		Slots: cfg.Slots, MaxResultBytes: cfg.MaxResultBytes, Registry: n.reg, Logger: n.log,
		Go:   n.goFunc,
		Done: n.runDone,
	})
	if err != nil {
		return fail(fmt.Errorf("node: %w", err))
	}
	n.view.stats = n.eng.Stats()
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
// digits and _ . : / -, starting with a letter or digit. A type can be registered
// once. A handler registered after Start is announced to the peers.
func (n *Node) Handle(typ string, h Handler) error {
	if err := n.reg.Register(typ, h); err != nil {
		if errors.Is(err, runner.ErrHandlerExists) {
			return fmt.Errorf("%w: %q", ErrHandlerExists, typ)
		}
		return err
	}
	n.handleMu.Lock()
	defer n.handleMu.Unlock()
	types := n.reg.Types()
	n.gmu.Lock()
	if !n.started {
		n.gmu.Unlock()
		return nil // Start tells the engine the types
	}
	n.gmu.Unlock()
	if !n.send(engine.SetTypes{Types: types}) {
		return errors.New("node: stopped")
	}
	if c := n.cluster; c != nil && c.gossip != nil {
		if err := c.updateMeta(n, types); err != nil {
			return fmt.Errorf("node: announce the new handler: %w", err)
		}
	}
	return nil
}

// Start serves the API and starts the event loop and the peer plane. It returns at
// once.
func (n *Node) Start() error {
	n.gmu.Lock()
	if n.started || n.closing {
		n.gmu.Unlock()
		return errors.New("node: Start called twice or after Shutdown")
	}
	n.started = true
	n.gmu.Unlock()
	// The loop first: the peer plane's callbacks feed it. Its first step carries out
	// what restoring the records decided.
	n.goFunc(n.loop)
	n.handleMu.Lock()
	n.send(engine.SetTypes{Types: n.reg.Types()}) // the handlers registered before Start
	n.handleMu.Unlock()
	if n.cluster != nil {
		if err := n.startCluster(); err != nil {
			n.Kill()
			return err
		}
	}
	n.goFunc(func() {
		if err := n.srv.Serve(n.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", slog.Any("err", err))
		}
	})
	// Not in the ledger: it calls Shutdown, which waits for the ledger.
	go n.stopWhenDrained()
	storage := slog.String("storage", "memory: records are lost when the node stops (--data-dir keeps them)")
	if n.cfg.DataDir != "" {
		storage = slog.String("storage", n.cfg.DataDir)
	}
	n.log.Info("node started", slog.String("http", n.HTTPAddr()), slog.String("id", n.id),
		slog.Int("slots", n.cfg.Slots), slog.Any("tags", n.cfg.Tags), storage,
		slog.Int("recovered", n.recovered), slog.Duration("recovery", n.recoveredIn))
	return nil
}

// stopWhenDrained shuts the node down once a drain has finished.
func (n *Node) stopWhenDrained() {
	select {
	case <-n.drained:
	case <-n.stopCtx.Done():
		return
	}
	grace := 30 * time.Second
	if n.drainLate.Load() {
		grace = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	n.Shutdown(ctx)
}

// Run starts the node and blocks until ctx is done or a drain has stopped the node,
// then shuts it down, giving running tasks up to grace to finish.
func (n *Node) Run(ctx context.Context, grace time.Duration) error {
	if err := n.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-n.done:
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return n.Shutdown(sctx)
}

// goFunc runs f on a goroutine that Shutdown waits for. It refuses (false) once the
// node is closing.
func (n *Node) goFunc(f func()) bool {
	n.gmu.Lock()
	defer n.gmu.Unlock()
	if n.closing {
		return false
	}
	n.gwg.Add(1)
	go func() {
		defer n.gwg.Done()
		f()
	}()
	return true
}

// send gives the loop an input; false once the loop has stopped.
func (n *Node) send(in engine.Input) bool {
	select {
	case n.inbox <- in:
		return true
	case <-n.quit:
		return false
	}
}

// errStopping answers a request that arrives while the node stops.
var errStopping = apiUnavailable("the node is shutting down; retry against another node")

// call sends a request to the loop and waits for the engine's Reply.
func (n *Node) call(ctx context.Context, mk func(req uint64) engine.Input) (engine.Reply, error) {
	req := n.reqSeq.Add(1)
	ch := make(chan engine.Reply, 1)
	n.callMu.Lock()
	n.calls[req] = ch
	n.callMu.Unlock()
	defer func() {
		n.callMu.Lock()
		delete(n.calls, req)
		n.callMu.Unlock()
	}()
	n.gmu.Lock()
	switch {
	case n.closing:
		n.gmu.Unlock()
		return engine.Reply{}, errStopping
	case !n.started:
		// The loop does not run yet: whoever holds gmu owns the engine.
		n.eng.Step(time.Now(), mk(req))
		rd := n.eng.Ready()
		n.apply(&rd)
		n.eng.Advance()
		n.gmu.Unlock()
		r := <-ch
		return r, r.Err
	}
	n.gmu.Unlock()
	if !n.send(mk(req)) {
		return engine.Reply{}, errStopping
	}
	select {
	case r := <-ch:
		return r, r.Err
	case <-n.quit:
		return engine.Reply{}, errStopping
	case <-ctx.Done():
		return engine.Reply{}, ctx.Err()
	}
}

// runDone feeds the end of a run back to the loop (on the runner's worker).
func (n *Node) runDone(d runner.Done) {
	n.metrics.runSeconds.Observe(d.Elapsed.Seconds())
	n.doneMu.Lock()
	n.dones = append(n.dones, engine.RunDone{ID: d.ID, Epoch: d.Epoch, Attempt: d.Attempt, Result: d.Result, Err: d.Err, Stopped: d.Stopped, Elapsed: d.Elapsed})
	first := len(n.dones) == 1
	n.doneMu.Unlock()
	if first {
		select {
		case n.doneWake <- struct{}{}:
		default:
		}
	}
}

// takeDones steps the engine with the run ends gathered so far.
func (n *Node) takeDones() {
	n.doneMu.Lock()
	ds := n.dones
	n.dones = nil
	n.doneMu.Unlock()
	for _, d := range ds {
		n.eng.Step(time.Now(), d)
	}
}

// loop is the event loop: the one goroutine that owns the engine. It takes inputs
// (as many as are waiting, so one Ready serves a burst), steps the engine, and
// carries out what it decided.
func (n *Node) loop() {
	defer close(n.loopDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var wake time.Time
	for {
		select {
		case in := <-n.inbox:
			n.eng.Step(time.Now(), in)
		more:
			for range 255 {
				select {
				case in := <-n.inbox:
					n.eng.Step(time.Now(), in)
				default:
					break more
				}
			}
		case <-n.doneWake:
			n.takeDones()
		case <-timer.C:
			wake = time.Time{}
			n.eng.Step(time.Now(), engine.Tick{})
		case <-n.quit:
			return
		}
		n.takeDones()
		rd := n.eng.Ready()
		n.apply(&rd)
		n.eng.Advance()
		if !rd.Wake.Equal(wake) {
			wake = rd.Wake
			if wake.IsZero() {
				timer.Stop()
			} else {
				timer.Reset(time.Until(wake))
			}
		}
	}
}

// apply carries out a Ready in the order the engine requires: persist, send, start
// and stop runs, answer and publish.
func (n *Node) apply(rd *engine.Ready) {
	// 1. What the step changed is durable before anything below says so.
	durable := n.persist(rd)
	// 2. Messages: acknowledgements and grants only once durable (peers resend).
	if c := n.cluster; c != nil && durable {
		c.carryOut(n, rd)
	}
	// 3. Runs.
	for _, s := range rd.Stop {
		n.pool.Stop(s.ID, s.Epoch, stopCause(s))
	}
	for _, r := range rd.Start {
		n.pool.Start(runner.Run{ID: r.ID, Attempt: r.Attempt, Epoch: r.Epoch, Type: r.Type, Payload: r.Payload, Deps: r.Deps})
	}
	// 4. Replies and events; 5. the read view.
	n.view.publish(rd, n.eng.Stats())
	for _, e := range rd.Events {
		n.events.publish(e)
	}
	if len(rd.Replies) > 0 {
		n.callMu.Lock()
		for _, r := range rd.Replies {
			if !durable && r.Err == nil {
				r = engine.Reply{Req: r.Req, Err: n.errStorage()}
			}
			if ch := n.calls[r.Req]; ch != nil {
				ch <- r
			}
		}
		n.callMu.Unlock()
	}
	if rd.Drained {
		if rd.DrainTimedOut {
			n.drainLate.Store(true)
			n.log.Warn("drain timed out; stopping with tasks unfinished", slog.Int("unfinished", n.view.stats.Live))
		}
		select {
		case <-n.drained:
		default:
			close(n.drained)
		}
	}
}

func stopCause(s engine.StopRun) error {
	switch s.Reason {
	case engine.StopTimeout:
		return runner.TimeoutError{D: s.Timeout}
	case engine.StopShutdown:
		return runner.ErrStopped
	}
	return runner.ErrCancelled
}

// Shutdown stops the node: it refuses new work, ends long polls, lets running tasks
// finish until ctx is done and then cancels them, and waits for every goroutine it
// started — or for ctx, whichever comes first. Tasks still queued are lost with the
// node (in a cluster, their owner answers for them). It is idempotent.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() {
		// Once the engine answers, it starts nothing more: what runs now is all
		// there is to wait for.
		n.call(ctx, func(req uint64) engine.Input { return engine.Stop{Req: req, Graceful: true} })
		n.stopNow()
		n.events.close()
		if err := n.srv.Shutdown(ctx); err != nil {
			n.srv.Close()
		}
		n.waitIdle(ctx)
		n.pool.StopAll(ErrStopped)
		// Runs that honour their context end now: give their ends a moment to be
		// recorded (failed: shutting down; reports to owners), even past ctx.
		tail, cancel := afterCtx(ctx, stopTail)
		defer cancel()
		n.waitIdle(tail)
		if n.cluster != nil {
			n.flushReports(tail)
		}
		n.finish(tail, true)
		n.log.Info("node stopped")
		if ctx.Err() != nil {
			n.shutErr = fmt.Errorf("node: shutdown: running tasks cancelled: %w", ctx.Err())
		}
	})
	<-n.done
	return n.shutErr
}

// Kill stops the node abruptly, as a crash would: no graceful leave, running tasks
// cancelled at once, queued ones dropped. Peers find out through gossip. For tests
// and simulations (testcluster); programs use Shutdown.
func (n *Node) Kill() {
	n.shutOnce.Do(func() {
		n.killed.Store(true) // a crash writes nothing more
		n.send(engine.Stop{})
		n.stopNow()
		n.events.close()
		n.srv.Close()
		n.pool.StopAll(ErrStopped)
		ctx, cancel := context.WithTimeout(context.Background(), stopTail)
		defer cancel()
		n.finish(ctx, false)
		n.log.Info("node killed")
	})
	<-n.done
}

// stopTail is how long a stopping node waits, past its deadline, for runs it
// cancelled to end and for its own goroutines to finish.
const stopTail = 500 * time.Millisecond

// afterCtx returns a context that ends d after ctx ends (at the earliest d from now).
func afterCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	tail, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { // on its own goroutine, for at most d
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-tail.Done():
		}
	})
	return tail, func() {
		stop()
		cancel()
	}
}

// finish ends the loop and the peer plane and waits for the ledger's goroutines
// until ctx ends.
func (n *Node) finish(ctx context.Context, leave bool) {
	n.gmu.Lock()
	n.closing = true
	started := n.started
	n.gmu.Unlock()
	if !started {
		n.ln.Close()
	}
	close(n.quit) // the loop ends; producers' sends fail at once from now on
	if n.cluster != nil {
		n.cluster.stop(n, ctx, leave)
	}
	n.pool.Close()
	if started {
		select {
		case <-n.loopDone: // it may be writing a batch
		case <-ctx.Done():
		}
	}
	if err := n.store.Close(); err != nil {
		n.log.Warn("closing the data directory", slog.Any("err", err))
	}
	waited := make(chan struct{})
	go func() { // ends when the ledger is empty; a stuck handler keeps only this one
		n.gwg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		n.log.Warn("stopped before every goroutine ended (a handler ignores its context?)")
	}
	close(n.done)
}

// waitIdle waits until the engine has seen every run end, or ctx ends.
func (n *Node) waitIdle(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n.view.mu.RLock()
		busy := n.view.stats.Busy
		n.view.mu.RUnlock()
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

// flushReports gives the owners of the runs this node finished a moment to
// acknowledge them before the node goes.
func (n *Node) flushReports(ctx context.Context) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n.view.mu.RLock()
		pending := n.view.stats.Outbox
		n.view.mu.RUnlock()
		if pending == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Done is closed once the node has stopped (Shutdown, Kill, or the end of a drain).
func (n *Node) Done() <-chan struct{} { return n.done }

// ID is the node's random id, the owner part of the task ids it hands out.
func (n *Node) ID() string { return n.id }

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// HTTPAddr is the address the API listens on (host:port).
func (n *Node) HTTPAddr() string { return n.ln.Addr().String() }

// URL is the API's base URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr() }

// Recovered says how many records the node loaded from its data directory at New,
// and how long loading them and rebuilding its state took.
func (n *Node) Recovered() (records int, took time.Duration) { return n.recovered, n.recoveredIn }

// Types lists the task types this node can run.
func (n *Node) Types() []string { return n.reg.Types() }
