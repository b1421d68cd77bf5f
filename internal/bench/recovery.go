package bench

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
)

// recovery: fill a durable node with finished records through its API (noop tasks,
// 256 slots unless --slots), stop it, and time its start on the directory, three
// times: how long a restart takes with that many records retained.
func recovery(ctx context.Context, o Options) (Result, error) {
	if o.Addr != "" || o.Nodes > 0 {
		return nil, fmt.Errorf("bench: recovery runs one in-process node: it restarts the node it fills")
	}
	total := or(o.Tasks, 1_000_000)
	batch := or(o.Batch, 10_000)
	clients := or(o.Clients, 4)
	dir := o.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "starling-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	config := func(log *slog.Logger) node.Config {
		cfg := node.LocalConfig()
		cfg.DataDir = dir
		cfg.MaxQueue = 10_000_000
		cfg.MaxRecords = max(cfg.MaxRecords, total+total/10)
		cfg.Retain = 30 * 24 * time.Hour
		// A durable node starts a run once the step that queued it is synced: noop
		// tasks need many slots for one fsync to serve many of them.
		cfg.Slots = or(o.Slots, 256)
		if log != nil {
			cfg.Logger = log
		}
		return cfg
	}

	n, err := node.New(config(nil))
	if err != nil {
		return nil, err
	}
	if err := n.Start(); err != nil {
		return nil, err
	}
	cl, err := client.New(n.HTTPAddr())
	if err != nil {
		stopNode(n)
		return nil, err
	}
	start := time.Now()
	first, last, err := fill(ctx, cl, total, batch, clients)
	filled := time.Since(start)
	stopNode(n)
	if err != nil {
		return nil, err
	}
	size, err := dirSize(dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Summary, "recovery: %d noop tasks through the API in %.1f s (%.0f tasks/s); the directory holds %.1f MB\n",
		total, filled.Seconds(), float64(total)/filled.Seconds(), float64(size)/(1<<20))

	// Start the node on its directory again, three times.
	var starts, loads []float64
	var recovered int64
	var heap uint64
	for range 3 {
		var seen started
		t0 := time.Now()
		n, err := node.New(config(slog.New(&seen)))
		if err == nil {
			err = n.Start()
		}
		took := time.Since(t0)
		if err != nil {
			return nil, err
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = max(heap, ms.HeapInuse)
		err = checkKept(ctx, n, first, last)
		stopNode(n)
		if err != nil {
			return nil, err
		}
		starts = append(starts, took.Seconds())
		loads = append(loads, seen.recovery.Load().Seconds())
		recovered = seen.recovered.Load()
		fmt.Fprintf(o.Summary, "recovery: the node started again in %.3f s (its start line: %d records recovered, loaded in %.3f s)\n",
			took.Seconds(), recovered, loads[len(loads)-1])
	}
	if recovered < int64(total) {
		return nil, fmt.Errorf("bench: the node recovered %d records, want at least %d", recovered, total)
	}
	return Result{
		"tasks":            total,
		"batch":            batch,
		"fill_s":           filled.Seconds(),
		"fill_tasks_per_s": float64(total) / filled.Seconds(),
		"dir_mb":           float64(size) / (1 << 20),
		"recovered":        recovered,
		"start_s":          median(starts),
		"starts_s":         starts,
		"load_s":           median(loads),
		"heap_mb":          float64(heap) / (1 << 20),
		"durable":          true,
	}, nil
}

// fill runs total noop tasks on the node behind cl, in batches from concurrent
// clients, and returns the first and last ids.
func fill(ctx context.Context, cl *client.Client, total, batch, clients int) (first, last string, err error) {
	var next atomic.Int64
	var mu sync.Mutex
	var firsts []string
	errc := make(chan error, clients)
	var wg sync.WaitGroup
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
				s, err := cl.SubmitBatchAndWait(ctx, specs[:k], 5*time.Minute)
				if err != nil {
					errc <- err
					return
				}
				for _, t := range s.Tasks {
					if t.State != client.Succeeded {
						errc <- fmt.Errorf("bench: task %s ended %s", t.ID, t.State)
						return
					}
				}
				mu.Lock()
				firsts = append(firsts, s.IDs[0], s.IDs[len(s.IDs)-1])
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return "", "", err
	}
	return firsts[0], firsts[len(firsts)-1], nil
}

// checkKept asks the restarted node for two of the tasks it ran before.
func checkKept(ctx context.Context, n *node.Node, ids ...string) error {
	cl, err := client.New(n.HTTPAddr())
	if err != nil {
		return err
	}
	for _, id := range ids {
		t, err := cl.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("bench: task %s after the restart: %w", id, err)
		}
		if t.State != client.Succeeded {
			return fmt.Errorf("bench: task %s after the restart: %s, want succeeded", id, t.State)
		}
	}
	return nil
}

func stopNode(n *node.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n.Shutdown(ctx)
}

func dirSize(dir string) (int64, error) {
	var size int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			size += info.Size()
		}
		return err
	})
	return size, err
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// started is a slog.Handler that keeps what the node's "node started" line says
// about its recovery and drops everything else.
type started struct {
	recovered atomic.Int64
	recovery  atomicDuration
}

type atomicDuration struct{ atomic.Int64 }

func (d *atomicDuration) Load() time.Duration   { return time.Duration(d.Int64.Load()) }
func (d *atomicDuration) Store(v time.Duration) { d.Int64.Store(int64(v)) }

func (s *started) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (s *started) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "node started" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		switch v := a.Value; {
		case a.Key == "recovered" && v.Kind() == slog.KindInt64:
			s.recovered.Store(v.Int64())
		case a.Key == "recovery" && v.Kind() == slog.KindDuration:
			s.recovery.Store(v.Duration())
		}
		return true
	})
	return nil
}

func (s *started) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s *started) WithGroup(string) slog.Handler      { return s }
