package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/starlingsched/starling/steal"
)

// Config configures an Engine. The node fills it from its own configuration; every
// field is required unless it says otherwise.
type Config struct {
	// ID is the node's id (the owner part of the task ids it hands out), Name its
	// name, Inc its incarnation (grows with every start).
	ID   string
	Name string
	Inc  uint64

	// Slots is how many tasks run here at once.
	Slots int
	// Tags and Resources are what the node offers tasks (Resources are capacities).
	Tags      []string
	Resources map[string]int64
	// Types are the task types this node has handlers for (SetTypes changes them).
	Types []string

	MaxQueue      int
	MaxBatch      int
	MaxGraphDepth int
	// Retain and MaxRecords bound the finished records kept.
	Retain     time.Duration
	MaxRecords int
	// RetryBase and RetryMax shape the backoff between attempts.
	RetryBase time.Duration
	RetryMax  time.Duration

	// Durable says the node's records outlive it (a data directory): a run stopped
	// because the node stops is queued again, to run after the restart, rather than
	// failed.
	Durable bool

	// Seed seeds the engine's only source of randomness (retry jitter, the thief's
	// choices). The same seed and the same inputs give the same outputs.
	Seed [2]uint64

	// Cluster, when set, makes the engine a cluster member. nil: alone.
	Cluster *ClusterConfig

	// Logger receives the engine's notes on peers (joined, gone, back). Default:
	// discard. Logging is the engine's only side effect, and it changes nothing.
	Logger *slog.Logger
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// ClusterConfig holds the timers and budgets of a cluster member.
type ClusterConfig struct {
	Steal steal.Config
	// NodeLosses is how many node losses a task survives (0: the first loss fails it).
	NodeLosses int
	// StealInterval is how often an idle node looks for work and resends what is
	// unanswered.
	StealInterval time.Duration
	// LoadInterval is how often the load report is published when it changed.
	LoadInterval time.Duration
	// LoadTTL is how long a peer's load report is believed.
	LoadTTL time.Duration
	// ReportResend is how often an unacknowledged report or cancel is resent.
	ReportResend time.Duration
	// ReportKeep is how long reports for a gone owner are kept in case it comes back
	// (gossip's reconnect window).
	ReportKeep time.Duration
	// MaxGrantBytes bounds the dep results one grant carries; a task whose deps
	// alone are larger runs on its owner.
	MaxGrantBytes int
	// OwnerGrace is how long the runs of an owner declared dead go on here (it may
	// only be cut off from this node) before they are stopped and handed back.
	OwnerGrace time.Duration
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ID == "" {
		bad("ID is empty")
	}
	if c.Slots < 1 {
		bad("Slots must be at least 1, got %d", c.Slots)
	}
	for _, p := range []struct {
		name string
		v    int64
	}{
		{"MaxQueue", int64(c.MaxQueue)}, {"MaxBatch", int64(c.MaxBatch)}, {"MaxGraphDepth", int64(c.MaxGraphDepth)},
		{"Retain", int64(c.Retain)}, {"MaxRecords", int64(c.MaxRecords)},
		{"RetryBase", int64(c.RetryBase)}, {"RetryMax", int64(c.RetryMax)},
	} {
		if p.v <= 0 {
			bad("%s must be positive, got %d", p.name, p.v)
		}
	}
	if cc := c.Cluster; cc != nil {
		if err := cc.Steal.Validate(); err != nil {
			errs = append(errs, err)
		}
		if cc.NodeLosses < 0 {
			bad("NodeLosses must not be negative, got %d", cc.NodeLosses)
		}
		for _, p := range []struct {
			name string
			v    time.Duration
		}{
			{"StealInterval", cc.StealInterval}, {"LoadInterval", cc.LoadInterval}, {"LoadTTL", cc.LoadTTL},
			{"ReportResend", cc.ReportResend}, {"ReportKeep", cc.ReportKeep}, {"OwnerGrace", cc.OwnerGrace},
		} {
			if p.v <= 0 {
				bad("Cluster.%s must be positive, got %s", p.name, p.v)
			}
		}
		if cc.MaxGrantBytes <= 0 {
			bad("Cluster.MaxGrantBytes must be positive, got %d", cc.MaxGrantBytes)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("engine: %w", errors.Join(errs...))
	}
	return nil
}
