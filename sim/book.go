package sim

import (
	"errors"
	"fmt"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/invariant"
)

// book is what the run's observers wrote down: the tasks clients got acknowledged,
// every run as its handler saw it, every answer clients got, and the simulator's
// own violations. check turns it into invariant histories at the end.
type book struct {
	tasks map[string]*task
	acked []string
	// graphs are the acknowledged graphs, by id: their tasks.
	graphs map[string][]string

	runs    []invariant.Run
	runInfo []runInfo
	// unbegun holds, by task, the errors of runs that ended (stopped) before their
	// handler was called: not runs for invariant, but a run's end for the engine.
	unbegun map[string][]string
	// epochs maps each (task, epoch) started to the process that started it.
	epochs map[runKey]string

	obs     []invariant.Observation
	obsInfo []obsInfo

	violations []invariant.Violation
}

// task is an acknowledged task as the client knows it.
type task struct {
	id    string
	owner *proc
	spec  api.Spec
	// deps are the ids of its deps; graph its graph's id.
	deps  []string
	graph string
	acked time.Time
	// cancelled is when a client first asked to cancel it (or its graph).
	cancelled time.Time
}

// runInfo is what the book keeps of a run beyond invariant.Run.
type runInfo struct {
	proc  *proc
	epoch uint64
	err   string
}

// obsInfo is what the book keeps of an answer beyond invariant.Observation.
type obsInfo struct {
	// ownerLost marks a terminal "owner lost" answer, decided at decided by a
	// node that did not hold the record.
	ownerLost bool
	decided   time.Time
}

func (b *book) init() {
	b.tasks = map[string]*task{}
	b.graphs = map[string][]string{}
	b.epochs = map[runKey]string{}
	b.unbegun = map[string][]string{}
}

// violate records a violation of one of the simulator's own rules.
func (b *book) violate(id string, rule invariant.Rule, format string, args ...any) {
	b.violations = append(b.violations, invariant.Violation{Task: id, Rule: rule, Text: fmt.Sprintf(format, args...)})
}

// ack records tasks a client got a 2xx for.
func (b *book) ack(s *sim, owner *proc, ids []string, specs []api.Spec, graph string, names map[string]string) {
	if graph != "" && b.graphs[graph] != nil {
		b.violate("", RuleClient, "%s answered a new graph with id %s, which an earlier graph had", owner, graph)
		return
	}
	for i, id := range ids {
		if t := b.tasks[id]; t != nil {
			if k := specs[i].IdempotencyKey; k == "" || k != t.spec.IdempotencyKey || len(ids) != 1 {
				b.violate(id, RuleClient, "%s answered a submission with task id %s, which it had handed out for another task (a reused id)", owner, id)
			}
			continue // an idempotency key's answer: the first task
		}
		t := &task{id: id, owner: owner, spec: specs[i], graph: graph, acked: s.now}
		for _, d := range specs[i].Deps {
			if did, ok := names[d]; ok {
				d = did
			}
			t.deps = append(t.deps, d)
		}
		b.tasks[id] = t
		b.acked = append(b.acked, id)
		if graph != "" {
			b.graphs[graph] = append(b.graphs[graph], id)
		}
	}
}

// runStarted records a run's start and checks that no (task, epoch) runs twice in
// the cluster: the owner moves a task's epoch with every grant and re-queue.
func (b *book) runStarted(s *sim, p *proc, r engine.Run) int {
	k := runKey{r.ID, r.Epoch}
	if first, ok := b.epochs[k]; ok {
		b.violate(r.ID, RuleEpoch, "task %s started with epoch %d on %s, already started with it on %s", r.ID, r.Epoch, p, first)
	} else {
		b.epochs[k] = p.String()
	}
	b.runs = append(b.runs, invariant.Run{ID: r.ID, Attempt: r.Attempt, Node: p.m.name, Start: s.now})
	b.runInfo = append(b.runInfo, runInfo{proc: p, epoch: r.Epoch})
	return len(b.runs) - 1
}

func (b *book) runEnded(i int, at time.Time, errMsg string, result []byte) {
	r := &b.runs[i]
	r.End, r.Result = at, result
	if errMsg != "" {
		r.Err = errors.New(errMsg)
		b.runInfo[i].err = errMsg
	}
}

// observe records a client's answer about a task.
func (b *book) observe(ob invariant.Observation, info obsInfo) {
	b.obs = append(b.obs, ob)
	b.obsInfo = append(b.obsInfo, info)
}
