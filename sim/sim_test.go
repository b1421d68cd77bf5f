package sim

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

var (
	flagSeeds   = flag.Int("sim.seeds", 0, "run this many seeds, from -sim.first (0: 300; 100 with -short, 40 with -race)")
	flagSeed    = flag.Uint64("sim.seed", 0, "run only this seed")
	flagTrace   = flag.Bool("sim.trace", false, "print every event of the run (with -sim.seed)")
	flagFirst   = flag.Uint64("sim.first", 1, "the first seed of -sim.seeds")
	flagScale   = flag.Bool("sim.scale", false, "run TestScale at full size: 100 nodes, 100,000 tasks")
	flagDurable = flag.String("sim.durable", "drawn", "which nodes are durable in TestSim: drawn (from each seed), none, all or some")
)

// TestSim runs many seeds of the whole cluster and checks each; a failing seed says
// how to replay it.
func TestSim(t *testing.T) {
	var seeds []uint64
	if *flagSeed != 0 {
		seeds = []uint64{*flagSeed}
	} else {
		n := *flagSeeds
		if n <= 0 {
			switch {
			case raceEnabled:
				n = 40
			case testing.Short():
				n = 100
			default:
				n = 300
			}
		}
		for i := range uint64(n) {
			seeds = append(seeds, *flagFirst+i)
		}
	}
	durable, err := ParseDurability(*flagDurable)
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		res   Result
		err   error
		trace string
	}
	out := make([]outcome, len(seeds))
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(seeds) {
					return
				}
				cfg := Config{Seed: seeds[i], Durable: durable}
				var tr strings.Builder
				if *flagTrace {
					cfg.Trace = &tr
				}
				out[i].res, out[i].err = Run(cfg)
				out[i].trace = tr.String()
			}
		})
	}
	wg.Wait()

	var (
		total   total
		failed  int
		failing []string
	)
	for i, o := range out {
		if o.trace != "" {
			os.Stdout.WriteString(o.trace)
		}
		if o.err != nil {
			failed++
			if len(failing) < 100 {
				failing = append(failing, fmt.Sprint(seeds[i]))
			}
			if failed <= 5 {
				t.Errorf("seed %d: %v\n\treplay: go test ./sim -run 'TestSim$' -sim.seed=%d%s -sim.trace -v", seeds[i], o.err, seeds[i], durableFlag(durable))
			}
			continue
		}
		total.add(o.res)
	}
	if failed > 5 {
		t.Errorf("%d more seeds failed", failed-5)
	}
	if failed > 1 {
		t.Errorf("failing seeds: %s", strings.Join(failing, " "))
	}
	t.Logf("%d seeds in %v, %d failed", len(seeds), time.Since(start).Round(time.Millisecond), failed)
	t.Log(total.String())
	if len(seeds) >= 100 && failed == 0 {
		total.vacuity(t, len(seeds), durable)
	}
}

// durableFlag is the -sim.durable flag that replays a run with d.
func durableFlag(d Durability) string {
	if d == DurableDrawn {
		return ""
	}
	return " -sim.durable=" + d.String()
}

// total adds up the results of many seeds.
type total struct {
	runs                                 int
	tasks, ownerLost, stolenDone, losses int
	nodeLost                             int
	outcomes                             map[api.State]int
	steals, stolen                       uint64
	retries, duplicates, overlaps, obs   int
	faults                               Faults
	durable                              DurableStats
	durableRuns                          int
	net                                  Network
	clients                              Clients
	events, steps                        int
	simulated                            time.Duration
}

func (t *total) add(r Result) {
	if t.outcomes == nil {
		t.outcomes = map[api.State]int{}
	}
	t.runs++
	t.tasks += r.Tasks
	t.ownerLost += r.OwnerLost
	t.stolenDone += r.StolenDone
	t.losses += r.NodeLosses
	t.nodeLost += r.NodeLost
	for k, v := range r.Outcomes {
		t.outcomes[k] += v
	}
	t.steals += r.Steals
	t.stolen += r.Stolen
	t.retries += r.Report.Retries
	t.duplicates += r.Report.Duplicates
	t.overlaps += r.Report.Overlaps
	t.obs += r.Report.Observations
	f := &t.faults
	f.Crashes += r.Faults.Crashes
	f.FalseDeaths += r.Faults.FalseDeaths
	f.OneSided += r.Faults.OneSided
	f.Flaps += r.Faults.Flaps
	f.Late += r.Faults.Late
	f.Partitions += r.Faults.Partitions
	f.OneWay += r.Faults.OneWay
	f.Drains += r.Faults.Drains
	f.Stops += r.Faults.Stops
	f.DrainLate += r.Faults.DrainLate
	d := &t.durable
	if r.Durable.Nodes > 0 {
		t.durableRuns++
	}
	d.Nodes += r.Durable.Nodes
	d.Restarts += r.Durable.Restarts
	d.LiveRestarts += r.Durable.LiveRestarts
	d.Restored += r.Durable.Restored
	d.Landed += r.Durable.Landed
	d.Torn += r.Durable.Torn
	d.LongDown += r.Durable.LongDown
	d.Tasks += r.Durable.Tasks
	d.Recovered += r.Durable.Recovered
	n := &t.net
	n.Sent += r.Network.Sent
	n.Delivered += r.Network.Delivered
	n.Dropped += r.Network.Dropped
	n.Duplicated += r.Network.Duplicated
	n.Blocked += r.Network.Blocked
	c := &t.clients
	c.Submissions += r.Clients.Submissions
	c.Refused += r.Clients.Refused
	c.Cancels += r.Clients.Cancels
	c.GraphCancels += r.Clients.GraphCancels
	c.Reads += r.Clients.Reads
	c.Owner += r.Clients.Owner
	c.Unreachable += r.Clients.Unreachable
	c.OwnerLost += r.Clients.OwnerLost
	c.NotFound += r.Clients.NotFound
	t.events += r.Events
	t.steps += r.Steps
	t.simulated += r.Simulated
}

func (t *total) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tasks: %d acknowledged;", t.tasks)
	for _, s := range api.States {
		if n := t.outcomes[s]; n > 0 {
			fmt.Fprintf(&b, " %d %s,", n, s)
		}
	}
	fmt.Fprintf(&b, " %d lost with their owner; %d finished away from their owner; %d node losses, %d tasks failed for them; %d retries, %d duplicate runs, %d overlapping\n",
		t.ownerLost, t.stolenDone, t.losses, t.nodeLost, t.retries, t.duplicates, t.overlaps)
	fmt.Fprintf(&b, "steals: %d grants, %d tasks\n", t.steals, t.stolen)
	f := t.faults
	fmt.Fprintf(&b, "faults: %d crashes (%d noticed late), %d false deaths, %d one-sided, %d flapping, %d partitions, %d one-way, %d graceful stops, %d drains (%d timed out)\n",
		f.Crashes, f.Late, f.FalseDeaths, f.OneSided, f.Flaps, f.Partitions, f.OneWay, f.Stops, f.Drains, f.DrainLate)
	d := t.durable
	fmt.Fprintf(&b, "durable: %d runs with %d durable nodes; %d restarts from disk (%d with unfinished tasks, %d loaded), %d crashes in an fsync (%d batches kept, %d lost), %d down past the confirmation; %d tasks owned, %d finished after their owner died\n",
		t.durableRuns, d.Nodes, d.Restarts, d.LiveRestarts, d.Restored, d.Landed+d.Torn, d.Landed, d.Torn, d.LongDown, d.Tasks, d.Recovered)
	n := t.net
	fmt.Fprintf(&b, "network: %d sent, %d delivered, %d dropped, %d duplicated, %d cut\n", n.Sent, n.Delivered, n.Dropped, n.Duplicated, n.Blocked)
	c := t.clients
	fmt.Fprintf(&b, "clients: %d submissions (%d refused), %d cancels, %d graph cancels; %d reads: %d answered by the owner, %d 503, %d owner lost, %d 404; %d observations checked\n",
		c.Submissions, c.Refused, c.Cancels, c.GraphCancels, c.Reads, c.Owner, c.Unreachable, c.OwnerLost, c.NotFound, t.obs)
	fmt.Fprintf(&b, "%d events, %d engine steps, %v simulated", t.events, t.steps, t.simulated.Round(time.Second))
	return b.String()
}

// vacuity fails the test when, over many seeds, a path the simulation is there to
// exercise never ran.
func (t *total) vacuity(tb testing.TB, seeds int, durable Durability) {
	tb.Helper()
	type count struct {
		what string
		n    int
	}
	var checks []count
	if durable != DurableNone {
		checks = append(checks, []count{
			{"durable restarts with unfinished tasks", t.durable.LiveRestarts},
			{"tasks finished after their durable owner died", t.durable.Recovered},
			{"crashes in an fsync that kept the batch", t.durable.Landed},
			{"crashes in an fsync that lost the batch", t.durable.Torn},
			{"durable nodes down past the confirmation", t.durable.LongDown},
		}...)
	}
	if durable != DurableAll {
		checks = append(checks, count{"tasks lost with their owner", t.ownerLost},
			count{"reads answered owner lost", t.clients.OwnerLost})
	}
	for _, c := range append(checks, []count{
		{"tasks succeeded", t.outcomes[api.Succeeded]},
		{"tasks failed", t.outcomes[api.Failed]},
		{"tasks cancelled", t.outcomes[api.Cancelled]},
		{"graph tasks failed upstream", t.outcomes[api.UpstreamFailed]},
		{"tasks finished away from their owner", t.stolenDone},
		{"node losses", t.losses},
		{"retries", t.retries},
		{"duplicate runs", t.duplicates},
		{"crashes", t.faults.Crashes},
		{"late deaths", t.faults.Late},
		{"false deaths", t.faults.FalseDeaths},
		{"one-sided deaths", t.faults.OneSided},
		{"flapping nodes", t.faults.Flaps},
		{"tasks failed: node lost", t.nodeLost},
		{"partitions", t.faults.Partitions},
		{"one-way partitions", t.faults.OneWay},
		{"graceful stops", t.faults.Stops},
		{"drains", t.faults.Drains},
		{"drains that timed out", t.faults.DrainLate},
		{"messages dropped", t.net.Dropped},
		{"messages duplicated", t.net.Duplicated},
		{"messages cut by partitions", t.net.Blocked},
		{"cancels", t.clients.Cancels},
		{"graph cancels", t.clients.GraphCancels},
		{"submissions refused", t.clients.Refused},
		{"reads answered by owners", t.clients.Owner},
		{"reads answered 503", t.clients.Unreachable},
	}...) {
		if c.n == 0 {
			tb.Errorf("no %s in %d seeds: the simulation no longer exercises it", c.what, seeds)
		}
	}
}

// TestDeterminism runs seeds twice: the same seed gives the same run, event for
// event.
func TestDeterminism(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		var a, b bytes.Buffer
		ra, errA := Run(Config{Seed: seed, Trace: &a})
		rb, errB := Run(Config{Seed: seed, Trace: &b})
		if (errA == nil) != (errB == nil) || a.String() != b.String() || ra.Events != rb.Events {
			t.Errorf("seed %d ran differently twice: %d and %d events, %d and %d trace bytes, errors %v and %v",
				seed, ra.Events, rb.Events, a.Len(), b.Len(), errA, errB)
			continue
		}
		if a.Len() == 0 {
			t.Errorf("seed %d: empty trace", seed)
		}
	}
}

// A run with a Config that cannot be simulated fails with an error, not a panic.
func TestConfigValidated(t *testing.T) {
	for _, cfg := range []Config{{Nodes: 1}, {Nodes: -1}, {Nodes: 3, Owners: 4}, {RunTime: -time.Second}} {
		if _, err := Run(cfg); err == nil {
			t.Errorf("Run(%+v) = nil error", cfg)
		}
	}
}

// TestScale runs a large plain workload without faults and reports how close to
// the ideal the cluster spreads it. In the normal suite it is a 20-node cluster
// with 10,000 tasks (10 nodes, 2,000 tasks under -race); with -sim.scale, or when
// -run names it, 100 nodes and 100,000 tasks. -short skips it.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cfg := Config{Seed: 1, Nodes: 20, Slots: 4, Tasks: 10_000, Owners: 4, RunTime: 100 * time.Millisecond,
		Plain: true, NoFaults: true, LoadInterval: 100 * time.Millisecond}
	switch {
	case *flagScale || strings.Contains(flag.Lookup("test.run").Value.String(), "Scale"):
		cfg.Nodes, cfg.Tasks, cfg.Owners = 100, 100_000, 10
	case raceEnabled:
		cfg.Nodes, cfg.Tasks, cfg.Owners = 10, 2_000, 2
	}
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes (%d durable) × %d slots, %d tasks: wall %v; simulated makespan %v against ideal %v (ratio %.3f); %d steals moved %d tasks, %d finished away from their owner; %d events, %d engine steps",
		res.Nodes, res.Durable.Nodes, cfg.Slots, res.Tasks, res.Wall.Round(time.Millisecond), res.Makespan.Round(time.Millisecond),
		res.Ideal.Round(time.Millisecond), res.Ratio(), res.Steals, res.Stolen, res.StolenDone, res.Events, res.Steps)
	if res.Outcomes[api.Succeeded] != cfg.Tasks {
		t.Errorf("%d of %d tasks succeeded", res.Outcomes[api.Succeeded], cfg.Tasks)
	}
}

// ErrVacuous is what a run that does no work returns.
func TestVacuousRunFails(t *testing.T) {
	_, err := Run(Config{Seed: 1, Nodes: 2, Slots: 1, Tasks: 1, Owners: 1, Plain: true, NoFaults: true})
	if !errors.Is(err, ErrVacuous) {
		t.Fatalf("a run of one task on two nodes: error %v, want ErrVacuous (nothing to steal)", err)
	}
}
