package api

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// State is where a task is in its life.
type State string

// The task states. Pending, Queued and Running are live; the others are terminal.
const (
	Pending        State = "pending"         // waiting for its deps
	Queued         State = "queued"          // ready, waiting for a slot (or a retry backoff)
	Running        State = "running"         // a handler runs it
	Succeeded      State = "succeeded"       // the handler returned a result
	Failed         State = "failed"          // the handler failed past its retries, or it was lost
	Cancelled      State = "cancelled"       // cancelled by a user
	UpstreamFailed State = "upstream_failed" // a dep did not succeed, so it never ran
)

// Terminal reports whether s is a final state.
func (s State) Terminal() bool {
	switch s {
	case Succeeded, Failed, Cancelled, UpstreamFailed:
		return true
	}
	return false
}

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	switch s {
	case Pending, Queued, Running, Succeeded, Failed, Cancelled, UpstreamFailed:
		return true
	}
	return false
}

// States lists every state in life order.
var States = []State{Pending, Queued, Running, Succeeded, Failed, Cancelled, UpstreamFailed}

// Trigger rules for a task inside a graph.
const (
	TriggerAllSuccess = "all_success" // run when every dep succeeded (the default)
	TriggerAllDone    = "all_done"    // run once every dep is terminal, whatever the outcome
)

// Spec is what a user submits: one task.
type Spec struct {
	// Type names the handler: noop, echo, sleep, exec, or a registered one.
	Type string `json:"type"`
	// Payload is the handler's input, any JSON value.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Name is optional; inside a batch it is the local name that Deps refer to.
	Name string `json:"name,omitempty"`
	// Priority: higher runs first.
	Priority int `json:"priority,omitempty"`
	// Deadline: among equal priorities the earliest deadline runs first.
	Deadline *time.Time `json:"deadline,omitempty"`
	// Timeout cancels a run that lasts longer.
	Timeout Duration `json:"timeout,omitempty"`
	// Retries is how often an application failure is retried, with exponential backoff.
	Retries int `json:"retries,omitempty"`
	// Requires lists node tags and resources the executing node must have.
	Requires *Requires `json:"requires,omitempty"`
	// Deps are ids of earlier tasks or names inside the same batch.
	Deps []string `json:"deps,omitempty"`
	// Trigger is the graph rule: all_success (default) or all_done.
	Trigger string `json:"trigger,omitempty"`
	// IdempotencyKey makes a second submission with the same key return the first task.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Requires is what a task needs from the node that runs it.
type Requires struct {
	// Tags the node must carry, exactly as the node declares them ("gpu", "zone=eu").
	Tags []string `json:"tags,omitempty"`
	// Resources the task holds while it runs ("cpu": 2, "mem_mb": 512, "gpu": 1).
	Resources map[string]int64 `json:"resources,omitempty"`
}

// Empty reports whether r asks for nothing.
func (r *Requires) Empty() bool {
	return r == nil || (len(r.Tags) == 0 && len(r.Resources) == 0)
}

// Task is a task's record: its spec and everything that happened to it.
type Task struct {
	ID    string `json:"id"`
	Graph string `json:"graph,omitempty"`
	Spec
	State State `json:"state"`
	// Attempt counts runs started (1 for the first run).
	Attempt int `json:"attempt"`
	// NodeLosses counts runs lost with their node.
	NodeLosses int `json:"node_losses,omitempty"`
	// Epoch fences reports from executors: it grows whenever the task moves.
	Epoch uint64 `json:"epoch"`
	// Owner is the node that accepted the task and holds this record.
	Owner string `json:"owner"`
	// Node is where the task runs or ran.
	Node       string     `json:"node,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	QueuedAt   *time.Time `json:"queued_at,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// RetryAt is when a failed attempt is retried.
	RetryAt *time.Time `json:"retry_at,omitempty"`
	// Waiting says why a queued task is not running, when it is not obvious.
	Waiting string          `json:"waiting,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as a Go duration string
// ("1.5s", "2m"). A bare JSON number is taken as seconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		s, err := strconv.Unquote(string(b))
		if err != nil {
			return &DurationError{Value: string(b)}
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return &DurationError{Value: s}
		}
		*d = Duration(v)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return &DurationError{Value: string(b)}
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// DurationError is a duration that does not parse.
type DurationError struct{ Value string }

func (e *DurationError) Error() string {
	return fmt.Sprintf("%q is not a duration (use a Go duration such as \"30s\", \"1m30s\" or \"250ms\")", e.Value)
}
