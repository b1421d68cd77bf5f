package cli

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/starlingsched/starling/internal/bench"
)

func runBench(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bench", "bench --workload NAME [flags]")
	var o bench.Options
	fs.StringVar(&o.Workload, "workload", "", "the workload: "+strings.Join(bench.Workloads, ", "))
	fs.StringVar(&o.Addr, "addr", "", "benchmark a running node (default: start one in this process)")
	fs.StringVar(&o.Token, "token", "", "the API token of --addr (env STARLING_TOKEN)")
	fs.IntVar(&o.Nodes, "nodes", 0, "start an in-process cluster of N nodes and submit to the first (imbalance: default 8)")
	fs.IntVar(&o.Slots, "slots", 0, "slots per in-process node (default: CPUs; imbalance: 1)")
	fs.IntVar(&o.Tasks, "tasks", 0, "tasks to run (default: the workload's)")
	fs.IntVar(&o.Batch, "batch", 0, "tasks a request, for throughput (default 1000)")
	fs.IntVar(&o.Clients, "clients", 0, "concurrent clients, for throughput (default 4, or 8 with --batch 1)")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if o.Workload == "" {
		return usageErr("--workload is required: one of %s", strings.Join(bench.Workloads, ", "))
	}
	o.Summary = e.stderr
	r, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(append(b, '\n'))
	return err
}
