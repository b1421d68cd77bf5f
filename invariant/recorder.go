package invariant

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Recorder collects the runs and the observations of a harness as they happen, on
// the clock it is given. It is safe for concurrent use: handlers on every node call
// Start and the function it returns, clients call Observe.
type Recorder struct {
	now func() time.Time

	historyLock  sync.Mutex // guards runs and observations
	runs         []Run
	observations []Observation
}

// NewRecorder returns a recorder that reads the time from now: time.Now in a real
// harness, the simulated clock in a simulation. A nil now is time.Now.
func NewRecorder(now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now}
}

// Start records that a run of task id, attempt attempt, began on node, and returns
// the function the handler calls when the run ends, with what it returns. The result
// is encoded as the node encodes it (a json.RawMessage as it is, anything else with
// encoding/json); a result that does not encode ends the run with that error. Calls
// of end after the first change nothing.
func (r *Recorder) Start(id string, attempt int, node string) (end func(result any, err error)) {
	start := r.now()
	r.historyLock.Lock()
	i := len(r.runs)
	r.runs = append(r.runs, Run{ID: id, Attempt: attempt, Node: node, Start: start})
	r.historyLock.Unlock()
	var once sync.Once
	return func(result any, err error) {
		once.Do(func() {
			res, encErr := encode(result)
			if err == nil {
				err = encErr
			}
			at := r.now()
			r.historyLock.Lock()
			defer r.historyLock.Unlock()
			r.runs[i].End, r.runs[i].Err, r.runs[i].Result = at, err, res
		})
	}
}

// encode renders a handler's result as the node does.
func encode(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return append(json.RawMessage(nil), v...), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("the handler's result is not JSON-able: %w", err)
	}
	return b, nil
}

// Observe records an answer a client got. Observed builds one from a record.
func (r *Recorder) Observe(ob Observation) {
	r.historyLock.Lock()
	defer r.historyLock.Unlock()
	r.observations = append(r.observations, ob)
}

// Now is the time on the recorder's clock, for Observation.Asked and Answered.
func (r *Recorder) Now() time.Time { return r.now() }

// Runs returns a copy of the runs so far, in the order Start was called.
func (r *Recorder) Runs() []Run {
	r.historyLock.Lock()
	defer r.historyLock.Unlock()
	return append([]Run(nil), r.runs...)
}

// Observations returns a copy of the observations so far, in the order they were
// recorded.
func (r *Recorder) Observations() []Observation {
	r.historyLock.Lock()
	defer r.historyLock.Unlock()
	return append([]Observation(nil), r.observations...)
}

// History is the recorded runs and observations with the acknowledged ids and the
// final records the harness gathered: the input of Check.
func (r *Recorder) History(acked []string, final []api.Task) History {
	return History{Acked: acked, Runs: r.Runs(), Final: final, Observations: r.Observations()}
}
