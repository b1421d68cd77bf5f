package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Run is one attempt of a task, for a Pool to run.
type Run struct {
	// ID and Attempt name the attempt; Epoch is the task's fence, which Stop and Done
	// carry so that a run is never taken for a later one of the same task.
	ID      string
	Attempt int
	Epoch   uint64
	// Type picks the handler, looked up in the registry when the run starts.
	Type string
	// Payload and Deps are the handler's input. Start copies them: the caller may
	// reuse them, and the handler may change its copy.
	Payload json.RawMessage
	Deps    map[string]json.RawMessage
}

// Done is how a run ended.
type Done struct {
	ID      string
	Attempt int
	Epoch   uint64
	// Result is the handler's result as JSON within Config.MaxResultBytes; nil when it
	// returned none or the result could not be kept. A failed run may have one too (an
	// exec that exited non-zero, or was killed, has its output).
	Result json.RawMessage
	// Err is "" when the run succeeded, else the error as users see it: the handler's
	// error; "panic: <value>" for a handler that panicked; for a run that was stopped,
	// the cause ("timeout: the run exceeded 5s", "cancelled", "node: shutting down"),
	// followed by the handler's own error when that adds something ("timeout: the run
	// exceeded 5s: upload: broken pipe"); "result too large: …" for a result over the
	// cap.
	Err string
	// Stopped means the run was cut short because the node is stopping (its cause is
	// ErrStopped): it did not fail through the task's fault.
	Stopped bool
	// Elapsed is how long the handler ran; 0 when it never started.
	Elapsed time.Duration
}

// Pool is a fixed set of worker goroutines that run handler attempts. Its methods are
// safe for concurrent use and never block on a run.
type Pool struct {
	cfg     Config
	log     *slog.Logger
	base    context.Context // parent of every run's context; StopAll cancels it
	stopAll context.CancelCauseFunc
	exited  chan struct{} // closed once the pool is closed and every worker has exited

	// runsLock guards the fields below; idle workers wait on ready.
	runsLock sync.Mutex
	ready    sync.Cond
	queue    []*job          // accepted by Start, not yet taken by a worker
	runs     map[runKey]*job // accepted and not ended: queued or executing
	closed   bool
	workers  int // worker goroutines started and not yet exited
}

type runKey struct {
	id    string
	epoch uint64
}

// job is a run the pool accepted: its own copy of the Run, and its context.
type job struct {
	run    Run
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// NewPool validates cfg and starts cfg.Slots workers. It fails if cfg.Go refuses one.
func NewPool(cfg Config) (*Pool, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:    cfg,
		log:    cfg.Logger,
		exited: make(chan struct{}),
		runs:   make(map[runKey]*job),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.ready.L = &p.runsLock
	p.base, p.stopAll = context.WithCancelCause(context.Background())
	for range cfg.Slots {
		if !p.startWorker() {
			p.Close()
			p.stopAll(ErrStopped)
			return nil, errors.New("runner: cannot start the workers: Config.Go refused")
		}
	}
	return p, nil
}

// Start queues r to run on the next free worker. It never blocks. The caller keeps
// at most Slots runs outstanding (started, their Done not yet delivered), so that each
// starts at once; more wait in a queue, in order.
//
// Every run Start accepts ends with exactly one call of Config.Done, even one stopped
// before it started (its handler is then never called). Start ignores a run after
// Close, and a run whose ID and Epoch name one that is outstanding (it is logged).
func (p *Pool) Start(r Run) {
	// The copies are the handler's: nothing it does to them reaches the caller.
	r.Payload = slices.Clone(r.Payload)
	r.Deps = cloneDeps(r.Deps)
	k := runKey{r.ID, r.Epoch}
	p.runsLock.Lock()
	defer p.runsLock.Unlock()
	if p.closed {
		return
	}
	if _, dup := p.runs[k]; dup {
		p.log.Error("run started twice; the second is ignored", slog.String("task", r.ID),
			slog.Uint64("epoch", r.Epoch), slog.Int("attempt", r.Attempt))
		return
	}
	// Each run's context stands alone (StopAll cancels them one by one): deriving
	// them from one parent would register and unregister every run with it.
	ctx, cancel := context.WithCancelCause(context.Background())
	if err := context.Cause(p.base); err != nil {
		cancel(err) // StopAll came first
	}
	j := &job{
		run:    r,
		ctx:    runContext{ctx, runInfo{id: r.ID, attempt: r.Attempt}},
		cancel: cancel,
	}
	p.runs[k] = j
	p.queue = append(p.queue, j)
	p.ready.Signal()
}

func cloneDeps(deps map[string]json.RawMessage) map[string]json.RawMessage {
	if deps == nil {
		return nil
	}
	out := make(map[string]json.RawMessage, len(deps))
	for name, res := range deps {
		out[name] = slices.Clone(res)
	}
	return out
}

// Stop cancels the context of the run named by id and epoch with cause: a
// TimeoutError, ErrCancelled or ErrStopped (nil means ErrCancelled). Its Done follows
// when the handler returns, its error reading as the cause. A run stopped before it
// started never reaches its handler. Stop is a no-op for a run that is not
// outstanding, or has ended already: its Done may still be on its way, saying how it
// actually ended.
func (p *Pool) Stop(id string, epoch uint64, cause error) {
	if cause == nil {
		cause = ErrCancelled
	}
	p.runsLock.Lock()
	j := p.runs[runKey{id, epoch}]
	p.runsLock.Unlock()
	if j != nil {
		j.cancel(cause) // the first cause stays
	}
}

// StopAll cancels every run with cause (nil means ErrStopped), and every run started
// after it: it is for shutdown. Only its first call counts.
func (p *Pool) StopAll(cause error) {
	if cause == nil {
		cause = ErrStopped
	}
	p.runsLock.Lock()
	defer p.runsLock.Unlock()
	if p.base.Err() != nil {
		return // only the first call counts
	}
	p.stopAll(cause)
	for _, j := range p.runs {
		j.cancel(cause)
	}
}

// Running returns how many runs are outstanding: accepted by Start and not yet ended,
// queued ones included. A run stops counting just before its Done is called.
func (p *Pool) Running() int {
	p.runsLock.Lock()
	defer p.runsLock.Unlock()
	return len(p.runs)
}

// Close stops the pool taking runs: Start ignores what comes after. The workers finish
// the runs accepted before, then exit. Close does not cancel runs (StopAll does) and
// does not wait (Wait does). It is idempotent.
func (p *Pool) Close() {
	p.runsLock.Lock()
	defer p.runsLock.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.ready.Broadcast()
	if p.workers == 0 {
		close(p.exited)
	}
}

// Wait waits until the pool is closed and every worker has exited, or ctx ends. With
// Config.Go the caller's ledger waits for the workers too; Wait works either way.
func (p *Pool) Wait(ctx context.Context) error {
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("runner: workers still running: %w", context.Cause(ctx))
	}
}

// startWorker starts one worker, through Config.Go when set.
func (p *Pool) startWorker() bool {
	p.runsLock.Lock()
	p.workers++
	p.runsLock.Unlock()
	if p.cfg.Go == nil {
		go p.work()
		return true
	}
	if p.cfg.Go(p.work) {
		return true
	}
	p.workerExited()
	return false
}

func (p *Pool) workerExited() {
	p.runsLock.Lock()
	defer p.runsLock.Unlock()
	p.workers--
	if p.workers == 0 && p.closed {
		close(p.exited)
	}
}

// work runs queued runs one at a time until the pool is closed and nothing is queued.
func (p *Pool) work() {
	defer p.workerExited()
	for {
		j := p.next()
		if j == nil {
			return
		}
		p.runOne(j)
	}
}

// next takes the oldest queued run, waiting for one; nil once the pool is closed and
// the queue empty.
func (p *Pool) next() *job {
	p.runsLock.Lock()
	defer p.runsLock.Unlock()
	for len(p.queue) == 0 && !p.closed {
		p.ready.Wait()
	}
	if len(p.queue) == 0 {
		return nil
	}
	j := p.queue[0]
	p.queue[0] = nil
	p.queue = p.queue[1:]
	return j
}

// ended forgets j: from now on Stop does not reach it.
func (p *Pool) ended(j *job) {
	k := runKey{j.run.ID, j.run.Epoch}
	p.runsLock.Lock()
	defer p.runsLock.Unlock()
	if p.runs[k] == j {
		delete(p.runs, k)
	}
}
