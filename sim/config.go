package sim

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/invariant"
)

// Config says what one run simulates. A Config with only a Seed is a full run drawn
// from that seed: a small cluster of 3 to 7 nodes, in memory or durable, a mixed
// workload (single tasks, batches, graphs with failing members, retries, timeouts,
// panics, cancels) and faults (crashes and restarts, false, one-sided and late
// deaths, partitions, a lossy network, drains). The other fields pin parts of it, for
// a benchmark or a test.
type Config struct {
	// Seed drives every choice of the run: the same Config replays the same run.
	Seed uint64

	// Nodes is the size of the cluster (0: 3 to 7, drawn).
	Nodes int
	// Slots is how many tasks each node runs at once (0: 1 to 3 per node, drawn).
	Slots int
	// Tasks is about how many tasks clients submit (0: 40 to 160, drawn).
	Tasks int
	// Owners is how many nodes clients submit to (0: any node, mostly the first);
	// at most Nodes.
	Owners int
	// RunTime is the run time of a task, give or take a quarter (0: drawn per task,
	// mostly 5ms to 150ms, a tenth under a millisecond, a few up to 3s).
	RunTime time.Duration

	// Plain submits only independent tasks that succeed, in batches of up to 1,000
	// at the start: a workload whose makespan can be held against the ideal.
	Plain bool
	// NoFaults turns off every fault: no crashes, false deaths, partitions, drains,
	// cancels, and a network that delays but never loses or duplicates.
	NoFaults bool

	// LoadInterval is how often nodes publish their load and read their peers'
	// (0: 20ms). Large clusters want it longer.
	LoadInterval time.Duration

	// Durable says which nodes keep their records on a (simulated) disk and
	// restart from it (DurableDrawn: drawn from the seed).
	Durable Durability

	// Trace, when set, receives a line for every event of the run.
	Trace io.Writer
}

// Durability says which nodes of a run are durable: they persist every step's
// records before they say anything of it, as a node with a data directory does, and
// a crashed or stopped one restarts from its disk under the same node id.
type Durability uint8

const (
	// DurableDrawn draws it from the seed: in-memory nodes in about half the
	// runs, durable ones in the others (all of them, or some).
	DurableDrawn Durability = iota
	// DurableNone: every node keeps its records in memory only.
	DurableNone
	// DurableAll: every node is durable.
	DurableAll
	// DurableSome: some nodes are durable, the others not (at least one of each).
	DurableSome
)

// ParseDurability reads "drawn", "none", "all" or "some".
func ParseDurability(s string) (Durability, error) {
	for d, name := range durabilityNames {
		if s == name {
			return Durability(d), nil
		}
	}
	return 0, fmt.Errorf("sim: durability %q: want drawn, none, all or some", s)
}

var durabilityNames = []string{"drawn", "none", "all", "some"}

func (d Durability) String() string {
	if int(d) < len(durabilityNames) {
		return durabilityNames[d]
	}
	return fmt.Sprintf("Durability(%d)", uint8(d))
}

// Result is what a run did.
type Result struct {
	Seed uint64
	// Nodes is the cluster's size; Procs counts node processes started, restarts and
	// rejoins included.
	Nodes, Procs int
	// Slots is the cluster's slots (the sum over its nodes).
	Slots int

	// Report is invariant.Check's report over every acknowledged task, with the
	// simulator's own violations added.
	Report invariant.Report
	// Tasks counts the acknowledged tasks; Outcomes counts them by the state they
	// ended in; OwnerLost counts those that were not finished when their owner
	// crashed or left (their records went with it, as README's limits say).
	Tasks     int
	Outcomes  map[api.State]int
	OwnerLost int

	// Steals counts the grants thieves accepted, Stolen the tasks in them, and
	// StolenDone the tasks that finished on a node other than their owner.
	Steals, Stolen uint64
	StolenDone     int
	// NodeLosses counts node losses booked on tasks; NodeLost the tasks that
	// failed for losing too many nodes.
	NodeLosses, NodeLost int

	Faults  Faults
	Durable DurableStats
	Network Network
	Clients Clients

	// Makespan is the simulated time from the first submission to the last task
	// finished; Ideal is the time the work of every run would take spread
	// perfectly over every slot (total run time / slots).
	Makespan, Ideal time.Duration
	// Simulated is the simulated time the whole run took; Wall the real time.
	Simulated, Wall time.Duration
	// Events counts the events processed; Steps the engine inputs.
	Events, Steps int
}

// Ratio is the makespan against the ideal (1 is perfect).
func (r Result) Ratio() float64 {
	if r.Ideal <= 0 {
		return 0
	}
	return float64(r.Makespan) / float64(r.Ideal)
}

// Faults counts the faults a run injected.
type Faults struct {
	Crashes     int // node processes killed (each restarts: under a new id, or a durable one from its disk)
	FalseDeaths int // live nodes declared dead by every peer for a while
	OneSided    int // live nodes declared dead by some peers only
	Flaps       int // live nodes declared dead and back by some peers, again and again
	Late        int // crashes some peer noticed only seconds later
	Partitions  int // two-way partitions
	OneWay      int // one-way partitions
	Stops       int // graceful shutdowns without a drain (each restarts under a new id)
	Drains      int // drains asked (the node leaves once drained)
	DrainLate   int // drains that timed out
}

// DurableStats counts what durable nodes did.
type DurableStats struct {
	Nodes int // durable members
	// Restarts counts processes started from a disk that held a node already;
	// LiveRestarts those whose disk held unfinished tasks, Restored the unfinished
	// tasks they loaded.
	Restarts, LiveRestarts, Restored int
	// Landed and Torn count the crashes in a batch's fsync: the batch kept, and
	// lost.
	Landed, Torn int
	// LongDown counts crashed durable nodes down for longer than peers wait to
	// confirm a death.
	LongDown int
	// Tasks counts the acknowledged tasks durable nodes owned; Recovered those of
	// them unfinished when their owner crashed or stopped, which finished after
	// it restarted.
	Tasks, Recovered int
}

// Total is the number of faults injected.
func (f Faults) Total() int {
	return f.Crashes + f.FalseDeaths + f.OneSided + f.Flaps + f.Partitions + f.OneWay + f.Stops + f.Drains
}

// Network counts what the simulated network did with peer messages.
type Network struct {
	Sent, Delivered, Dropped, Duplicated, Blocked int
}

// Clients counts what the simulated clients did and saw.
type Clients struct {
	Submissions, Refused  int
	Cancels, GraphCancels int
	Reads                 int
	// Answered reads, by kind: from the owner (directly or forwarded), 503
	// owner_unreachable, a terminal "owner lost", 404.
	Owner, Unreachable, OwnerLost, NotFound int
}

// ErrVacuous is returned by Run for a run that did no real work: no task finished,
// nothing was stolen, or no fault was injected when faults were on.
var ErrVacuous = errors.New("sim: the run did no real work")

// The simulator's own rules, beyond invariant's. Their violations are added to
// Result.Report.
const (
	// RuleNodeLoss: a task booked more node losses than its owner saw deaths (or
	// stops) of the nodes it was placed on.
	RuleNodeLoss invariant.Rule = "node-loss"
	// RuleOwnerLost: a node answered "owner lost" while the owner was running, or
	// for a task of a durable owner (it comes back with its tasks).
	RuleOwnerLost invariant.Rule = "owner-lost"
	// RuleFailure: a task failed with an error none of its runs ended with, that
	// is not a node loss.
	RuleFailure invariant.Rule = "failure"
	// RuleCancel: a task was cancelled that no client cancelled.
	RuleCancel invariant.Rule = "cancel"
	// RuleGraph: a graph task ran before its deps allowed it, or was failed
	// upstream with no failed dep.
	RuleGraph invariant.Rule = "graph"
	// RuleEpoch: a task was started twice with the same epoch.
	RuleEpoch invariant.Rule = "epoch"
	// RuleView: an owner's read view changed a terminal record, went back a
	// version, or changed a record after handing it out; or an owner did not know
	// a task it acknowledged.
	RuleView invariant.Rule = "view"
	// RuleDisk: the records a node's writes describe differ from its read view; or
	// a durable node's disk differs from its read view, lost a record it had
	// published, or changed a finished one across a restart; or could not be
	// written or read back.
	RuleDisk invariant.Rule = "disk"
	// RuleLeftover: after the calm at the end, a node still holds grants, stolen
	// tasks, runs or reports, or its view of the cluster is not the cluster.
	RuleLeftover invariant.Rule = "leftover"
	// RuleClient: an answer to a client that the engine must not give (a
	// submission refused for a valid spec, an idempotency key answered with
	// another task).
	RuleClient invariant.Rule = "client"
	// RuleLoad: a node published a load report that had not changed.
	RuleLoad invariant.Rule = "load"
	// RuleGrant: a steal grant carried more dep results than the cap allows.
	RuleGrant invariant.Rule = "grant"
	// RuleProgress: the run did not settle by its horizon.
	RuleProgress invariant.Rule = "progress"
)

func (c *Config) validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Nodes", int64(c.Nodes)}, {"Slots", int64(c.Slots)}, {"Tasks", int64(c.Tasks)}, {"Owners", int64(c.Owners)},
		{"RunTime", int64(c.RunTime)}, {"LoadInterval", int64(c.LoadInterval)},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", f.name, f.v))
		}
	}
	if c.Nodes == 1 {
		errs = append(errs, errors.New("a cluster of one node steals nothing: Nodes must be at least 2 (0 draws it)"))
	}
	if c.Durable > DurableSome {
		errs = append(errs, fmt.Errorf("unknown Durable %d", c.Durable))
	}
	if c.Owners > c.Nodes && c.Nodes > 0 {
		errs = append(errs, fmt.Errorf("more owners (%d) than nodes (%d)", c.Owners, c.Nodes))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sim: %w", errors.Join(errs...))
	}
	return nil
}
