package runner

import (
	"errors"
	"fmt"
	"time"
)

// ErrHandlerExists is returned by Registry.Register for a type that has a handler
// already.
var ErrHandlerExists = errors.New("runner: handler already registered")

// ErrStopped is the cause given to runs cut short because the node shuts down (the
// caller passes it to Pool.StopAll). A run that ends with it is not the task's fault:
// Done.Stopped is set. Users see its text in the task's error, so it names the node.
var ErrStopped = errors.New("node: shutting down")

// ErrCancelled is the cause given to a run stopped because its task was cancelled.
var ErrCancelled = errors.New("cancelled")

// ErrExecNotAllowed marks an exec payload whose program is outside the allowlist
// (Exec.Check); a node answers such a submission 403. Its text sits in the middle of
// a sentence ("program "ls" is not in the exec allowlist"), hence no package prefix.
var ErrExecNotAllowed = errors.New("not in the exec allowlist")

// TimeoutError is the cause of a run stopped because it exceeded its timeout: the
// engine decides the deadline and calls Pool.Stop with it. A handler whose run times
// out sees ctx.Err() == context.DeadlineExceeded, as with context.WithTimeout.
type TimeoutError struct{ D time.Duration }

func (e TimeoutError) Error() string { return fmt.Sprintf("timeout: the run exceeded %s", e.D) }
