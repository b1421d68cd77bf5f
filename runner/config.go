package runner

import (
	"errors"
	"fmt"
	"log/slog"
)

// Config sets up a Pool. Slots, MaxResultBytes, Registry and Done are required.
type Config struct {
	// Slots is the number of workers: at most Slots runs execute at once.
	Slots int
	// MaxResultBytes bounds a run's result as JSON; a larger result fails the run.
	MaxResultBytes int
	// Registry holds the handlers the runs look up by type, when they start.
	Registry *Registry
	// Done is called on the worker's goroutine when a run ends, once for every run
	// Start accepted, with the pool's lock not held. It may block (it typically sends
	// to an event loop's inbox) and may call the pool's methods, but while it blocks
	// its worker runs nothing else. It must return once the caller shuts down (select
	// on the caller's stop channel too), or the workers never exit.
	Done func(Done)
	// Go starts f on a goroutine the caller accounts for (a goroutine ledger that
	// shutdown waits for), or returns false when it refuses (shutting down). It must
	// not block. nil starts plain goroutines; Pool.Wait waits for them either way.
	Go func(f func()) bool
	// Logger gets a handler's panic at Error, with its stack. nil discards.
	Logger *slog.Logger
}

// validate reports what is wrong with c, every problem at once.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("runner: "+format, args...))
	}
	if c.Slots <= 0 {
		bad("Slots must be positive, got %d", c.Slots)
	}
	if c.MaxResultBytes <= 0 {
		bad("MaxResultBytes must be positive, got %d", c.MaxResultBytes)
	}
	if c.Registry == nil {
		bad("Registry is nil")
	}
	if c.Done == nil {
		bad("Done is nil")
	}
	return errors.Join(errs...)
}
