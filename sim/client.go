package sim

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/invariant"
)

// The simulated clients talk to nodes as HTTP clients do: they submit to a node,
// and read and cancel through any node, which answers from its read view or routes
// the request as node/route.go does (engine.ClusterView.Route): forward to the owner,
// 503 owner_unreachable while the owner may come back, "failed: owner lost" once it
// is gone for good.

// hop is the latency of one HTTP hop between nodes.
func (s *sim) hop() time.Duration { return s.between(200*time.Microsecond, 3*time.Millisecond) }

// upProcs lists the processes that take requests, by member.
func (s *sim) upProcs() []*proc {
	var out []*proc
	for _, m := range s.members {
		if m.proc.up() {
			out = append(out, m.proc)
		}
	}
	return out
}

// anyUp returns a random process that takes requests (nil: none).
func (s *sim) anyUp() *proc {
	ps := s.upProcs()
	if len(ps) == 0 {
		return nil
	}
	return ps[s.rng.IntN(len(ps))]
}

// submission is one POST /v1/tasks a client makes.
type submission struct {
	specs []api.Spec
	batch bool
	// to is the member it goes to first (-1: any).
	to int
	// extDep: a graph that also depends on a task its node owns, by id.
	extDep bool
	key    string
	tries  int
}

func cloneSpecs(specs []api.Spec) []api.Spec {
	out := make([]api.Spec, len(specs))
	for i, sp := range specs {
		sp.Payload = slices.Clone(sp.Payload)
		sp.Deps = slices.Clone(sp.Deps)
		out[i] = sp
	}
	return out
}

// submit sends sub to its member, or to another when that one is down or refuses;
// a client whose node dies before it answers tries another.
func (s *sim) submit(sub *submission) {
	sub.tries++
	if sub.tries > 50 {
		s.tracef("client: gave up a submission of %d tasks", len(sub.specs))
		return
	}
	p := (*proc)(nil)
	if sub.to >= 0 && sub.tries == 1 {
		p = s.members[sub.to].proc
	}
	if !p.up() {
		p = s.anyUp()
	}
	if p == nil {
		s.after(100*time.Millisecond, func() { s.submit(sub) })
		return
	}
	specs := cloneSpecs(sub.specs)
	if sub.extDep {
		if ext := s.work.sumOf(s, p); ext != "" {
			i := len(specs) - 1
			specs[i].Deps = append(specs[i].Deps, ext)
		}
	}
	s.res.Clients.Submissions++
	answered := false
	if s.tracing() {
		s.tracef("client: submit %d tasks to %s", len(specs), p)
	}
	p.call(func(req uint64) engine.Input {
		return engine.Submit{Req: req, Specs: cloneSpecs(specs), Batch: sub.batch}
	}, func(r engine.Reply) {
		answered = true
		if r.Err != nil {
			var ae *api.Error
			if errors.As(r.Err, &ae) && (ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests) {
				s.res.Clients.Refused++
				s.after(50*time.Millisecond, func() { s.submit(sub) })
				return
			}
			s.book.violate("", RuleClient, "%s refused a valid submission of %d tasks: %v", p, len(specs), r.Err)
			return
		}
		if len(r.IDs) != len(specs) {
			s.book.violate("", RuleClient, "%s answered a submission of %d tasks with %d ids", p, len(specs), len(r.IDs))
			return
		}
		s.book.ack(s, p, r.IDs, specs, r.Graph, r.Names)
		s.work.acked(p, r.IDs, specs)
		if r.Graph != "" {
			s.work.graphs = append(s.work.graphs, r.Graph)
		}
		if sub.key != "" {
			s.resubmit(p, specs[0], r.IDs[0])
		}
	})
	s.after(2*time.Second, func() {
		if !answered {
			s.submit(sub)
		}
	})
}

// resubmit sends a spec with an idempotency key to its node again: the answer must
// be the first task.
func (s *sim) resubmit(p *proc, spec api.Spec, first string) {
	s.after(s.between(10*time.Millisecond, 2*time.Second), func() {
		if p.m.durable {
			p = s.procs[p.id] // the key lives on its disk
		}
		if !p.up() {
			return // the key lived on that process only
		}
		p.call(func(req uint64) engine.Input {
			return engine.Submit{Req: req, Specs: cloneSpecs([]api.Spec{spec})}
		}, func(r engine.Reply) {
			if r.Err == nil && (len(r.IDs) != 1 || r.IDs[0] != first) {
				s.book.violate(first, RuleClient, "%s answered a second submission with idempotency key %q with %v, not %s",
					p, spec.IdempotencyKey, r.IDs, first)
			}
		})
	})
}

// read is a client's GET of task id through node n.
func (s *sim) read(id string, n *proc) {
	s.res.Clients.Reads++
	asked := s.now
	if rec := n.view[id]; rec != nil {
		s.res.Clients.Owner++
		s.book.observe(invariant.Observed(n.m.name, rec.Task(n.m.name), asked, asked), obsInfo{})
		return
	}
	owner, _ := engine.OwnerOf(id)
	if owner == n.id {
		s.book.violate(id, RuleView, "%s does not know task %s, which it acknowledged", n, id)
		return
	}
	s.route(n, id, owner, asked, func(o *proc) {
		rec := o.view[id]
		if rec == nil {
			s.book.violate(id, RuleView, "%s does not know task %s, which it acknowledged (asked through %s)", o, id, n)
			return
		}
		t := rec.Task(o.m.name)
		by := n.m.name + " via " + o.m.name
		s.after(s.hop(), func() {
			s.res.Clients.Owner++
			s.book.observe(invariant.Observed(by, t, asked, s.now), obsInfo{})
		})
	})
}

// route answers for a task of owner at node n as node/route.go does: to the owner's
// read view (reached calls reach with the owner's process, one hop later), 503, 404,
// or "owner lost".
func (s *sim) route(n *proc, id, owner string, asked time.Time, reach func(o *proc)) {
	kind, pv := routeOf(s, n, owner)
	switch kind {
	case engine.RouteUnknown:
		s.res.Clients.NotFound++
		s.tracef("client: %s answers 404 for %s", n, id)
	case engine.RouteUnreachable:
		s.res.Clients.Unreachable++
		s.tracef("client: %s answers 503 for %s: its owner %s is %s", n, id, pv.Name, pv.State)
	case engine.RouteOwnerLost:
		s.ownerLost(n, id, pv, asked)
	case engine.RouteForward:
		s.after(s.hop(), func() {
			if n.state == procDead {
				return // the client's connection broke
			}
			o := s.procs[pv.Meta.ID]
			if o.up() && !s.net.cut(s.now, n.m, o.m) && !s.net.cut(s.now, o.m, n.m) {
				reach(o)
				return
			}
			// The forward failed: answer as the node does then.
			switch kind, pv := routeOf(s, n, owner); kind {
			case engine.RouteOwnerLost:
				s.ownerLost(n, id, pv, asked)
			default:
				s.res.Clients.Unreachable++
				s.tracef("client: %s answers 503 for %s: forwarding to its owner failed", n, id)
			}
		})
	}
}

func routeOf(s *sim, n *proc, owner string) (engine.RouteKind, engine.PeerView) {
	if n.cluster == nil {
		return engine.RouteUnknown, engine.PeerView{}
	}
	return n.cluster.Route(owner, s.now, s.timers.confirm)
}

// ownerLost is node n's terminal answer for a task whose owner is gone for good.
func (s *sim) ownerLost(n *proc, id string, pv engine.PeerView, asked time.Time) {
	s.res.Clients.OwnerLost++
	s.tracef("client: %s answers failed: owner lost for %s (owner %s is %s)", n, id, pv.Name, pv.State)
	t := api.Task{ID: id, State: api.Failed, Owner: pv.Name,
		Error: fmt.Sprintf("owner lost: node %s, which held this task, is %s; its record went with it", pv.Name, pv.State)}
	s.book.observe(invariant.Observed(n.m.name, t, asked, s.now), obsInfo{ownerLost: true, decided: s.now})
}

// cancel is a client's DELETE of task id through node n. The record the owner
// answers with is an observation too.
func (s *sim) cancel(id string, n *proc) {
	s.res.Clients.Cancels++
	if t := s.book.tasks[id]; t != nil && t.cancelled.IsZero() {
		t.cancelled = s.now
	}
	asked := s.now
	do := func(o *proc, by string) {
		s.tracef("client: cancel %s at %s", id, o)
		o.call(func(req uint64) engine.Input { return engine.Cancel{Req: req, ID: id} }, func(r engine.Reply) {
			if r.Rec != nil {
				s.book.observe(invariant.Observed(by, r.Rec.Task(o.m.name), asked, s.now), obsInfo{})
			}
		})
	}
	owner, _ := engine.OwnerOf(id)
	if owner == n.id {
		do(n, n.m.name)
		return
	}
	s.route(n, id, owner, asked, func(o *proc) { do(o, n.m.name+" via "+o.m.name) })
}

// cancelGraph is a client's DELETE of graph gid through node n.
func (s *sim) cancelGraph(gid string, n *proc) {
	s.res.Clients.GraphCancels++
	for _, id := range s.book.graphs[gid] {
		if t := s.book.tasks[id]; t.cancelled.IsZero() {
			t.cancelled = s.now
		}
	}
	do := func(o *proc) {
		s.tracef("client: cancel graph %s at %s", gid, o)
		o.call(func(req uint64) engine.Input { return engine.CancelGraph{Req: req, ID: gid} }, func(engine.Reply) {})
	}
	owner, _ := engine.OwnerOf(gid)
	if owner == n.id {
		do(n)
		return
	}
	kind, pv := routeOf(s, n, owner)
	if kind != engine.RouteForward {
		return
	}
	s.after(s.hop(), func() {
		if o := s.procs[pv.Meta.ID]; o.up() && !s.net.cut(s.now, n.m, o.m) && !s.net.cut(s.now, o.m, n.m) {
			do(o)
		}
	})
}

// drain asks p to drain: it finishes what it owns and runs, then leaves.
func (s *sim) drain(p *proc) {
	s.res.Faults.Drains++
	s.tracef("%s: DRAIN asked", p)
	timeout := 20 * time.Second
	if s.chance(0.4) {
		timeout = s.between(200*time.Millisecond, 2*time.Second) // it may not finish in time
	}
	p.call(func(req uint64) engine.Input { return engine.Drain{Req: req, Timeout: timeout} }, func(engine.Reply) {})
}
