package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
)

// Join contacts the given members (host:port) and merges state with every
// one that answers, returning how many did. It fails only if none did. ctx
// bounds the wait; an abandoned attempt still finishes in the background
// (bounded by memberlist's TCP timeout) and Shutdown waits for it.
func (c *Cluster) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, ErrNoSeeds
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	addrs = append([]string(nil), addrs...)
	if !c.goFunc(func() {
		n, err := c.ml.Join(addrs)
		done <- result{n, err}
	}) {
		return 0, ErrShutdown
	}
	select {
	case r := <-done:
		if r.err != nil {
			return r.n, fmt.Errorf("gossip: join: %w", r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("gossip: join: %w", ctx.Err())
	case <-c.stop:
		return 0, ErrShutdown
	}
}

// joinSeeds joins Config.Join in the background, retrying with exponential
// backoff and jitter until one seed answers, Leave or Shutdown.
func (c *Cluster) joinSeeds() {
	backoff := c.cfg.JoinBackoffMin
	for attempt := 1; !c.left.Load(); attempt++ {
		n, err := c.ml.Join(c.cfg.Join)
		if err == nil {
			c.logger.Info("joined cluster", slog.Int("seeds_contacted", n), slog.Int("attempts", attempt))
			return
		}
		// Equal jitter: wait in [backoff/2, backoff].
		wait := backoff/2 + rand.N(backoff/2+1)
		c.logger.Warn("join failed, retrying", slog.Any("seeds", c.cfg.Join),
			slog.Int("attempt", attempt), slog.Duration("retry_in", wait), slog.Any("error", err))
		if !c.sleep(wait) {
			return
		}
		backoff = min(backoff*2, c.cfg.JoinBackoffMax)
	}
}
