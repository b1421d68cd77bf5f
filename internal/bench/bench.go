package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

// Options choose a workload and where it runs.
type Options struct {
	Workload string
	// Addr of a running node; empty starts in-process nodes.
	Addr  string
	Token string
	// Nodes, when above 0, starts an in-process cluster of that many nodes (the
	// workload submits to the first). 0 starts one node on its own.
	Nodes int
	// Slots per in-process node (default: the workload's).
	Slots int
	// Tasks overrides the workload's task count; Batch its batch size; Clients its
	// concurrent clients.
	Tasks   int
	Batch   int
	Clients int
	// DataDir makes the in-process nodes durable, with their records in this
	// directory (a cluster's node i in DataDir/node-i); Durable does the same in a
	// temporary directory removed after the run. Without either they keep everything
	// in memory. The result's "durable" says which the node under test was.
	DataDir string
	Durable bool
	// Summary receives a human-readable summary.
	Summary io.Writer
}

// Result is one workload's figures, printed as one JSON object.
type Result map[string]any

// Workloads names the workloads Run knows.
var Workloads = []string{"roundtrip", "throughput", "imbalance", "chain", "fanin", "recovery"}

// Run runs one workload and returns its figures.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Summary == nil {
		o.Summary = io.Discard
	}
	var run func(context.Context, *client.Client, Options) (Result, []client.Task, error)
	switch o.Workload {
	case "roundtrip":
		run = roundtrip
	case "throughput":
		run = throughput
	case "imbalance":
		run = imbalance
		if o.Nodes == 0 && o.Addr == "" {
			o.Nodes = 8
		}
		o.Slots = or(o.Slots, 1)
	case "chain":
		run = chain
		if o.Nodes == 0 && o.Addr == "" {
			o.Nodes = 4
		}
	case "recovery":
		r, err := recovery(ctx, o)
		if err != nil {
			return nil, err
		}
		r["workload"] = o.Workload
		r["go_max_procs"] = runtime.GOMAXPROCS(0)
		return r, nil
	case "fanin":
		run = fanin
		if o.Addr != "" {
			return nil, fmt.Errorf("bench: fanin runs in-process only: it registers its leaf handler on the nodes it starts")
		}
		o.Nodes = or(o.Nodes, 4)
		o.Slots = or(o.Slots, 1)
	default:
		return nil, fmt.Errorf("bench: unknown workload %q (one of %v)", o.Workload, Workloads)
	}
	if (o.Workload == "chain" || o.Workload == "fanin") && o.Tasks == 1 {
		// One task has no deps: no graph to wait for.
		return nil, fmt.Errorf("bench: %s needs at least 2 tasks, to make a graph", o.Workload)
	}
	if o.Addr != "" && (o.Durable || o.DataDir != "") {
		return nil, fmt.Errorf("bench: --data-dir and --durable apply to the nodes bench starts; a node at --addr keeps its own storage (its --data-dir)")
	}
	cl, stop, err := target(o)
	if err != nil {
		return nil, err
	}
	defer stop()
	r, recs, err := run(ctx, cl, o)
	if err != nil {
		return nil, err
	}
	durable := o.Durable || o.DataDir != ""
	if o.Addr != "" {
		c, err := cl.Cluster(ctx)
		if err != nil {
			return nil, err
		}
		for _, m := range c.Members {
			durable = durable || (m.Self && m.Storage == "disk")
		}
	}
	r["durable"] = durable
	if o.Nodes > 0 {
		perNode := map[string]int{}
		for _, t := range recs {
			perNode[t.Node]++
		}
		r["per_node"] = perNode
		r["nodes"] = o.Nodes
	}
	r["workload"] = o.Workload
	r["go_max_procs"] = runtime.GOMAXPROCS(0)
	return r, nil
}

// target returns a client for the node under test, starting one when Addr is empty.
func target(o Options) (*client.Client, func(), error) {
	if o.Addr != "" {
		cl, err := client.New(o.Addr, client.WithToken(o.Token))
		return cl, func() {}, err
	}
	tune := func(cfg *node.Config) {
		cfg.MaxQueue = 10_000_000
		cfg.Retain = 10 * time.Minute
		if o.Slots > 0 {
			cfg.Slots = o.Slots
		}
	}
	dir, removeDir := o.DataDir, func() {}
	if o.Durable && dir == "" {
		tmp, err := os.MkdirTemp("", "starling-bench-")
		if err != nil {
			return nil, nil, fmt.Errorf("bench: %w", err)
		}
		dir, removeDir = tmp, func() { os.RemoveAll(tmp) }
	}
	if o.Nodes > 0 {
		c, err := testcluster.New(testcluster.Options{Nodes: o.Nodes, Slots: or(o.Slots, runtime.NumCPU()),
			Handlers:  map[string]node.Handler{"bench.leaf": leaf},
			Configure: func(_ int, cfg *node.Config) { tune(cfg) },
			DataDir:   dir})
		if err != nil {
			removeDir()
			return nil, nil, err
		}
		return c.Client(0), func() { c.Close(); removeDir() }, nil
	}
	cfg := node.LocalConfig()
	tune(&cfg)
	cfg.DataDir = dir
	n, err := node.New(cfg)
	if err != nil {
		removeDir()
		return nil, nil, err
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
		removeDir()
	}
	if err := n.Start(); err != nil {
		stop()
		return nil, nil, err
	}
	cl, err := client.New(n.HTTPAddr())
	if err != nil {
		stop()
		return nil, nil, err
	}
	return cl, stop, nil
}

func or(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// roundtrip: sequential submit-and-wait of noop tasks.
func roundtrip(ctx context.Context, cl *client.Client, o Options) (Result, []client.Task, error) {
	n := or(o.Tasks, 1000)
	spec := client.Spec{Type: "noop"}
	// Warm the connection and the code paths.
	for range 50 {
		if _, err := cl.SubmitAndWait(ctx, spec, 10*time.Second); err != nil {
			return nil, nil, err
		}
	}
	lat := make([]time.Duration, n)
	recs := make([]client.Task, n)
	for i := range n {
		start := time.Now()
		t, err := cl.SubmitAndWait(ctx, spec, 10*time.Second)
		lat[i] = time.Since(start)
		if err != nil {
			return nil, nil, err
		}
		if t.State != client.Succeeded {
			return nil, nil, fmt.Errorf("bench: task %s ended %s", t.ID, t.State)
		}
		recs[i] = t
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	r := Result{
		"tasks":   n,
		"p50_ms":  ms(lat[n/2]),
		"p99_ms":  ms(lat[n*99/100]),
		"mean_ms": ms(sum / time.Duration(n)),
		"max_ms":  ms(lat[n-1]),
	}
	fmt.Fprintf(o.Summary, "roundtrip: %d sequential submit-and-wait of noop: p50 %.3f ms, p99 %.3f ms, mean %.3f ms\n",
		n, r["p50_ms"], r["p99_ms"], r["mean_ms"])
	return r, recs, nil
}

// throughput: noop tasks in batches (or one a request from concurrent clients), every
// result awaited.
func throughput(ctx context.Context, cl *client.Client, o Options) (Result, []client.Task, error) {
	total := or(o.Tasks, 20_000)
	batch := or(o.Batch, 1000)
	clients := or(o.Clients, 4)
	if batch == 1 {
		clients = or(o.Clients, 8)
	}
	var next atomic.Int64
	var succeeded atomic.Int64
	var recMu sync.Mutex
	var recs []client.Task
	keep := func(ts ...client.Task) {
		recMu.Lock()
		recs = append(recs, ts...)
		recMu.Unlock()
	}
	errc := make(chan error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			specs := make([]client.Spec, batch)
			for i := range specs {
				specs[i] = client.Spec{Type: "noop"}
			}
			for {
				from := int(next.Add(int64(batch))) - batch
				if from >= total {
					return
				}
				k := min(batch, total-from)
				if batch == 1 {
					t, err := cl.SubmitAndWait(ctx, specs[0], time.Minute)
					if err != nil {
						errc <- err
						return
					}
					if t.State == client.Succeeded {
						succeeded.Add(1)
					}
					keep(t)
					continue
				}
				s, err := cl.SubmitBatchAndWait(ctx, specs[:k], time.Minute)
				if err != nil {
					errc <- err
					return
				}
				for _, t := range s.Tasks {
					if t.State == client.Succeeded {
						succeeded.Add(1)
					}
				}
				keep(s.Tasks...)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return nil, nil, err
	}
	if got := succeeded.Load(); got != int64(total) {
		return nil, nil, fmt.Errorf("bench: %d of %d tasks succeeded", got, total)
	}
	r := Result{
		"tasks":       total,
		"batch":       batch,
		"clients":     clients,
		"tasks_per_s": float64(total) / elapsed.Seconds(),
		"elapsed_s":   elapsed.Seconds(),
	}
	fmt.Fprintf(o.Summary, "throughput: %d noop tasks, batch %d, %d clients: %.0f tasks/s (%.2f s)\n",
		total, batch, clients, r["tasks_per_s"], elapsed.Seconds())
	return r, recs, nil
}

// imbalance: every task submitted to one node of a cluster of one-slot nodes; how close
// does stealing get to perfect balance?
func imbalance(ctx context.Context, cl *client.Client, o Options) (Result, []client.Task, error) {
	total := or(o.Tasks, 2000)
	const taskMS = 20
	specs := make([]client.Spec, total)
	for i := range specs {
		specs[i] = client.Spec{Type: "sleep", Payload: json.RawMessage(fmt.Sprintf(`{"ms": %d}`, taskMS))}
	}
	c, err := cl.Cluster(ctx)
	if err != nil {
		return nil, nil, err
	}
	slots := 0
	for _, m := range c.Members {
		if m.State == "alive" {
			slots += m.Slots
		}
	}
	start := time.Now()
	s, err := cl.SubmitBatchAndWait(ctx, specs, 10*time.Minute)
	if err != nil {
		return nil, nil, err
	}
	var last time.Time
	var run time.Duration
	for _, t := range s.Tasks {
		if t.State != client.Succeeded {
			return nil, nil, fmt.Errorf("bench: task %s ended %s: %s", t.ID, t.State, t.Error)
		}
		if t.FinishedAt.After(last) {
			last = *t.FinishedAt
		}
		if t.StartedAt != nil {
			run += t.FinishedAt.Sub(*t.StartedAt)
		}
	}
	makespan := last.Sub(start).Seconds()
	ideal := float64(total) * taskMS / 1000 / float64(slots)
	r := Result{
		"tasks":      total,
		"slots":      slots,
		"makespan_s": makespan,
		"ideal_s":    ideal,
		"ratio":      makespan / ideal,
		// How long a run really took, as its owner saw it: the sleep's own overshoot
		// on a busy machine plus the report's trip back from a thief.
		"mean_run_ms": run.Seconds() * 1000 / float64(total),
		// The makespan against the work as measured rather than nominal: what the
		// spreading itself costs, timer overshoot aside.
		"measured_ratio": makespan / (run.Seconds() / float64(slots)),
	}
	fmt.Fprintf(o.Summary, "imbalance: %d sleep %dms tasks to one node of %d slots: makespan %.2f s, ideal %.2f s, ratio %.3f (%.3f against the measured run times)\n",
		total, taskMS, slots, makespan, ideal, makespan/ideal, r["measured_ratio"])
	return r, s.Tasks, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
