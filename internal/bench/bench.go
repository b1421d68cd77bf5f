package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
)

// Options choose a workload and where it runs.
type Options struct {
	Workload string
	// Addr of a running node; empty starts an in-process node.
	Addr  string
	Token string
	// Tasks overrides the workload's task count; Batch its batch size; Clients its
	// concurrent clients.
	Tasks   int
	Batch   int
	Clients int
	// Summary receives a human-readable summary.
	Summary io.Writer
}

// Result is one workload's figures, printed as one JSON object.
type Result map[string]any

// Workloads names the workloads Run knows.
var Workloads = []string{"roundtrip", "throughput"}

// Run runs one workload and returns its figures.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Summary == nil {
		o.Summary = io.Discard
	}
	cl, stop, err := target(o)
	if err != nil {
		return nil, err
	}
	defer stop()
	var r Result
	switch o.Workload {
	case "roundtrip":
		r, err = roundtrip(ctx, cl, o)
	case "throughput":
		r, err = throughput(ctx, cl, o)
	default:
		return nil, fmt.Errorf("bench: unknown workload %q (one of %v)", o.Workload, Workloads)
	}
	if err != nil {
		return nil, err
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
	cfg := node.LocalConfig()
	cfg.MaxQueue = 10_000_000
	cfg.Retain = 10 * time.Minute
	n, err := node.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	if err := n.Start(); err != nil {
		return nil, nil, err
	}
	cl, err := client.New(n.HTTPAddr())
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	}
	return cl, stop, err
}

func or(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// roundtrip: sequential submit-and-wait of noop tasks.
func roundtrip(ctx context.Context, cl *client.Client, o Options) (Result, error) {
	n := or(o.Tasks, 1000)
	spec := client.Spec{Type: "noop"}
	// Warm the connection and the code paths.
	for range 50 {
		if _, err := cl.SubmitAndWait(ctx, spec, 10*time.Second); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		t, err := cl.SubmitAndWait(ctx, spec, 10*time.Second)
		lat[i] = time.Since(start)
		if err != nil {
			return nil, err
		}
		if t.State != client.Succeeded {
			return nil, fmt.Errorf("bench: task %s ended %s", t.ID, t.State)
		}
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
	return r, nil
}

// throughput: noop tasks in batches (or one a request from concurrent clients), every
// result awaited.
func throughput(ctx context.Context, cl *client.Client, o Options) (Result, error) {
	total := or(o.Tasks, 20_000)
	batch := or(o.Batch, 1000)
	clients := or(o.Clients, 4)
	if batch == 1 {
		clients = or(o.Clients, 8)
	}
	var next atomic.Int64
	var succeeded atomic.Int64
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
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	if got := succeeded.Load(); got != int64(total) {
		return nil, fmt.Errorf("bench: %d of %d tasks succeeded", got, total)
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
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
