package steal

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig is returned, wrapped, by Config.Validate, NewThief and
// NewVictim for a configuration or argument they cannot work with.
var ErrInvalidConfig = errors.New("steal: invalid config")

// Config holds the numbers of the stealing policy. Thieves and victims of one
// cluster should use the same values.
type Config struct {
	// Buffer is how many tasks a thief asks for beyond its free slots, so that
	// a slot that frees up finds work without another round trip. Default 2.
	Buffer int

	// Timeout is how long a thief waits for an answer to a request before it
	// gives the request up (and refuses any grant that still comes for it).
	// Default 2s.
	Timeout time.Duration

	// ResendInterval is how often a victim resends a grant that has no answer
	// yet, and how often a thief resends an acknowledgement that the victim has
	// not released yet. Default 500ms.
	ResendInterval time.Duration

	// BackoffBase is the pause after the first empty answer (or timeout) in a
	// row; it doubles with every further one, up to BackoffMax. A successful
	// steal resets it. Default 50ms.
	BackoffBase time.Duration

	// BackoffMax caps the backoff. Default 2s.
	BackoffMax time.Duration

	// Jitter is the fraction of a backoff that is random: a backoff d becomes a
	// pause drawn uniformly from [d*(1-Jitter), d]. 0 disables jitter, 1 is
	// full jitter. Default 0.5.
	Jitter float64
}

// DefaultConfig returns the configuration for a cluster on a LAN.
func DefaultConfig() Config {
	return Config{
		Buffer:         2,
		Timeout:        2 * time.Second,
		ResendInterval: 500 * time.Millisecond,
		BackoffBase:    50 * time.Millisecond,
		BackoffMax:     2 * time.Second,
		Jitter:         0.5,
	}
}

// LocalConfig returns a configuration with fast timers for nodes on one
// machine: loopback clusters and tests.
func LocalConfig() Config {
	return Config{
		Buffer:         2,
		Timeout:        250 * time.Millisecond,
		ResendInterval: 50 * time.Millisecond,
		BackoffBase:    5 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
		Jitter:         0.5,
	}
}

// Validate reports the first field of c that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Buffer < 0:
		return fmt.Errorf("%w: buffer %d is negative", ErrInvalidConfig, c.Buffer)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: timeout %v must be positive", ErrInvalidConfig, c.Timeout)
	case c.ResendInterval <= 0:
		return fmt.Errorf("%w: resend interval %v must be positive", ErrInvalidConfig, c.ResendInterval)
	case c.BackoffBase <= 0:
		return fmt.Errorf("%w: backoff base %v must be positive", ErrInvalidConfig, c.BackoffBase)
	case c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("%w: backoff max %v is below backoff base %v", ErrInvalidConfig, c.BackoffMax, c.BackoffBase)
	case !(c.Jitter >= 0 && c.Jitter <= 1): // also rejects NaN
		return fmt.Errorf("%w: jitter %v is outside [0, 1]", ErrInvalidConfig, c.Jitter)
	}
	return nil
}
