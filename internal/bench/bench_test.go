package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runWorkload runs o and returns its result as the command line prints it (one JSON
// object) decoded again, and the summary.
func runWorkload(t *testing.T, o Options) (map[string]any, string) {
	t.Helper()
	var summary bytes.Buffer
	o.Summary = &summary
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run(%+v): %v", o, err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatalf("the result does not encode as JSON: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out["workload"] != o.Workload {
		t.Fatalf("workload = %v, want %s", out["workload"], o.Workload)
	}
	if p, _ := out["go_max_procs"].(float64); p < 1 {
		t.Fatalf("go_max_procs = %v", out["go_max_procs"])
	}
	if !strings.HasPrefix(summary.String(), o.Workload+": ") {
		t.Fatalf("summary %q does not start with the workload", summary.String())
	}
	return out, summary.String()
}

// positive asserts that each key holds a number above 0.
func positive(t *testing.T, r map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		v, ok := r[k].(float64)
		if !ok || !(v > 0) {
			t.Fatalf("%s = %v, want a number above 0 (result %v)", k, r[k], r)
		}
	}
}

// equal asserts that key holds the number want.
func equal(t *testing.T, r map[string]any, key string, want float64) {
	t.Helper()
	if v, ok := r[key].(float64); !ok || v != want {
		t.Fatalf("%s = %v, want %v (result %v)", key, r[key], want, r)
	}
}

// perNode asserts that per_node counts every task, on at least minNodes nodes.
func perNode(t *testing.T, r map[string]any, tasks, minNodes int) {
	t.Helper()
	pn, ok := r["per_node"].(map[string]any)
	if !ok {
		t.Fatalf("per_node = %v, want a map of node to tasks", r["per_node"])
	}
	sum := 0
	for name, v := range pn {
		n, _ := v.(float64)
		if name == "" || n <= 0 {
			t.Fatalf("per_node %v: a node without a name or tasks", pn)
		}
		sum += int(n)
	}
	if sum != tasks || len(pn) < minNodes {
		t.Fatalf("per_node %v: %d tasks on %d nodes, want %d on at least %d", pn, sum, len(pn), tasks, minNodes)
	}
}

func TestRoundtrip(t *testing.T) {
	r, _ := runWorkload(t, Options{Workload: "roundtrip", Tasks: 20})
	equal(t, r, "tasks", 20)
	positive(t, r, "p50_ms", "p99_ms", "mean_ms", "max_ms")
	if r["p50_ms"].(float64) > r["p99_ms"].(float64) || r["p99_ms"].(float64) > r["max_ms"].(float64) {
		t.Fatalf("p50 %v, p99 %v, max %v: not in order", r["p50_ms"], r["p99_ms"], r["max_ms"])
	}
	if _, ok := r["per_node"]; ok {
		t.Fatalf("per_node reported for a single node")
	}
}

func TestThroughput(t *testing.T) {
	t.Run("batches", func(t *testing.T) {
		r, _ := runWorkload(t, Options{Workload: "throughput", Tasks: 500, Batch: 100})
		equal(t, r, "tasks", 500)
		equal(t, r, "batch", 100)
		equal(t, r, "clients", 4)
		positive(t, r, "tasks_per_s", "elapsed_s")
	})
	t.Run("one a request", func(t *testing.T) {
		if testing.Short() {
			t.Skip("500 requests: not in -short")
		}
		r, _ := runWorkload(t, Options{Workload: "throughput", Tasks: 500, Batch: 1})
		equal(t, r, "tasks", 500)
		equal(t, r, "batch", 1)
		equal(t, r, "clients", 8)
		positive(t, r, "tasks_per_s", "elapsed_s")
	})
	t.Run("a batch larger than the tasks", func(t *testing.T) {
		r, _ := runWorkload(t, Options{Workload: "throughput", Tasks: 30, Batch: 100, Clients: 2})
		equal(t, r, "tasks", 30)
		equal(t, r, "clients", 2)
		positive(t, r, "tasks_per_s")
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("a cluster: not in -short")
		}
		r, _ := runWorkload(t, Options{Workload: "throughput", Tasks: 200, Batch: 50, Nodes: 2})
		equal(t, r, "nodes", 2)
		perNode(t, r, 200, 1)
	})
}

// Durable nodes run the same workloads and say so; --data-dir keeps the records, and
// --durable's temporary directory goes after the run.
func TestDurable(t *testing.T) {
	t.Run("in memory", func(t *testing.T) {
		r, _ := runWorkload(t, Options{Workload: "roundtrip", Tasks: 5})
		if r["durable"] != false {
			t.Fatalf("durable = %v for an in-memory node", r["durable"])
		}
	})
	t.Run("roundtrip --data-dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bench")
		r, _ := runWorkload(t, Options{Workload: "roundtrip", Tasks: 20, DataDir: dir})
		if r["durable"] != true {
			t.Fatalf("durable = %v, want true", r["durable"])
		}
		equal(t, r, "tasks", 20)
		positive(t, r, "p50_ms", "p99_ms", "mean_ms", "max_ms")
		segs, err := filepath.Glob(filepath.Join(dir, "*.log"))
		if err != nil || len(segs) == 0 {
			t.Fatalf("no log segment in %s after the run (%v)", dir, err)
		}
	})
	t.Run("throughput --durable", func(t *testing.T) {
		tmp := t.TempDir()
		t.Setenv("TMPDIR", tmp)
		r, _ := runWorkload(t, Options{Workload: "throughput", Tasks: 500, Batch: 100, Durable: true})
		if r["durable"] != true {
			t.Fatalf("durable = %v, want true", r["durable"])
		}
		equal(t, r, "tasks", 500)
		positive(t, r, "tasks_per_s", "elapsed_s")
		if left, err := os.ReadDir(tmp); err != nil || len(left) > 0 {
			t.Fatalf("the temporary data directory outlived the run: %v %v", left, err)
		}
	})
	t.Run("cluster --durable", func(t *testing.T) {
		if testing.Short() {
			t.Skip("a cluster: not in -short")
		}
		r, _ := runWorkload(t, Options{Workload: "throughput", Tasks: 200, Batch: 50, Nodes: 2, Durable: true})
		if r["durable"] != true {
			t.Fatalf("durable = %v, want true", r["durable"])
		}
		perNode(t, r, 200, 1)
	})
}

func TestRecovery(t *testing.T) {
	dir := t.TempDir()
	r, summary := runWorkload(t, Options{Workload: "recovery", Tasks: 3000, Batch: 500, DataDir: dir})
	equal(t, r, "tasks", 3000)
	positive(t, r, "fill_s", "fill_tasks_per_s", "dir_mb", "start_s", "load_s", "heap_mb")
	// The node's start line counts what it loaded: every task, and no fewer.
	equal(t, r, "recovered", 3000)
	if starts, _ := r["starts_s"].([]any); len(starts) != 3 {
		t.Fatalf("starts_s = %v, want three starts", r["starts_s"])
	}
	if r["durable"] != true || !strings.Contains(summary, "3000 records recovered") {
		t.Fatalf("durable = %v; summary %q", r["durable"], summary)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.log")); len(segs) == 0 {
		t.Fatalf("no log segment in --data-dir %s", dir)
	}
}

func TestImbalance(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster of 3: not in -short")
	}
	r, _ := runWorkload(t, Options{Workload: "imbalance", Tasks: 40, Nodes: 3})
	equal(t, r, "tasks", 40)
	equal(t, r, "slots", 3) // one slot a node by default
	equal(t, r, "nodes", 3)
	positive(t, r, "makespan_s", "ideal_s", "ratio", "mean_run_ms")
	// No timing target: only that the figures agree with each other and with physics
	// (40 × 20 ms on 3 slots cannot finish faster than the ideal).
	if ratio := r["ratio"].(float64); ratio < 0.9 {
		t.Fatalf("ratio %v: faster than perfect balance, the figures are wrong", ratio)
	}
	if got, want := r["ratio"].(float64), r["makespan_s"].(float64)/r["ideal_s"].(float64); got != want {
		t.Fatalf("ratio %v, want makespan_s/ideal_s = %v", got, want)
	}
	if m := r["mean_run_ms"].(float64); m < 19 {
		t.Fatalf("mean_run_ms %v, want at least the 20 ms sleep", m)
	}
	// Every task went to the first node; stealing spread them.
	perNode(t, r, 40, 2)
}

func TestChain(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster: not in -short")
	}
	r, summary := runWorkload(t, Options{Workload: "chain", Tasks: 30, Nodes: 2})
	equal(t, r, "tasks", 30)
	equal(t, r, "nodes", 2)
	positive(t, r, "per_hop_ms", "wall_s")
	if r["result_ok"] != true {
		t.Fatalf("result_ok = %v, want true", r["result_ok"])
	}
	if !strings.Contains(summary, "result ok: true") {
		t.Fatalf("summary %q", summary)
	}
	perNode(t, r, 30, 1)
}

func TestFanin(t *testing.T) {
	if testing.Short() {
		t.Skip("a cluster: not in -short")
	}
	r, _ := runWorkload(t, Options{Workload: "fanin", Tasks: 50, Nodes: 2})
	equal(t, r, "leaves", 50)
	equal(t, r, "tasks", 50+5+1) // 50 leaves, 5 sums of 10, the root
	equal(t, r, "nodes", 2)
	positive(t, r, "wall_s", "ideal_s")
	if r["sum_ok"] != true {
		t.Fatalf("sum_ok = %v, want true", r["sum_ok"])
	}
	perNode(t, r, 56, 1)
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{name: "unknown workload", o: Options{Workload: "warp"}, want: `unknown workload "warp"`},
		{name: "no workload", o: Options{}, want: "unknown workload"},
		{name: "fanin with addr", o: Options{Workload: "fanin", Addr: "127.0.0.1:1"}, want: "fanin runs in-process only"},
		{name: "bad addr", o: Options{Workload: "roundtrip", Addr: "ftp://x"}, want: "scheme"},
		{name: "chain of one", o: Options{Workload: "chain", Tasks: 1}, want: "at least 2"},
		{name: "fanin of one", o: Options{Workload: "fanin", Tasks: 1}, want: "at least 2"},
		{name: "recovery with addr", o: Options{Workload: "recovery", Addr: "127.0.0.1:1"}, want: "in-process node"},
		{name: "durable with addr", o: Options{Workload: "roundtrip", Addr: "127.0.0.1:1", Durable: true}, want: "keeps its own storage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Run(context.Background(), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run(%+v) = %v, %v; want an error containing %q", tt.o, r, err, tt.want)
			}
		})
	}
}
