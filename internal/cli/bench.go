package cli

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"runtime/pprof"
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
	fs.StringVar(&o.DataDir, "data-dir", "", "make the in-process nodes durable, with their records in this directory (node N of a cluster in DIR/node-N)")
	fs.BoolVar(&o.Durable, "durable", false, "make the in-process nodes durable, in a temporary directory removed after the run")
	withoutEnv(fs, "data-dir")
	var cpuProfile, memProfile string
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof reads it)")
	fs.StringVar(&memProfile, "memprofile", "", "write an allocation profile of the run to this file")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.Workload == "" {
		return usageErr("--workload is required: one of %s", strings.Join(bench.Workloads, ", "))
	}
	o.Summary = e.stderr
	if memProfile != "" {
		runtime.MemProfileRate = 64 << 10
	}
	r, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if memProfile != "" {
		f, err := os.Create(memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(append(b, '\n'))
	return err
}
