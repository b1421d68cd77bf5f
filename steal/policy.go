package steal

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"time"
)

// Class describes what a group of tasks needs from the node that runs them.
type Class struct {
	// Type is the handler name.
	Type string
	// Tags are the node tags the tasks require, such as "gpu" or "zone=eu".
	// They are compared as whole strings.
	Tags []string
	// Resources are the amounts the tasks require, such as "cpu": 2 or
	// "mem_mb": 512. Amounts of zero or less require nothing.
	Resources map[string]int64
}

// Capability describes what a node can run.
type Capability struct {
	// Types are the handler names the node has.
	Types map[string]bool
	// Tags are the node's tags, as whole strings ("gpu", "zone=eu").
	Tags map[string]bool
	// Resources are the node's total capacity of each resource.
	Resources map[string]int64
}

// CanServe reports whether a node with capability c can run tasks of class k:
// it has the handler, carries every required tag, and has at least the required
// total capacity of every resource. It looks at capacity, not at what is free
// right now: a task that fits the node waits for its resources there.
func (c Capability) CanServe(k Class) bool {
	if !c.Types[k.Type] {
		return false
	}
	for _, t := range k.Tags {
		if !c.Tags[t] {
			return false
		}
	}
	for r, need := range k.Resources {
		if need > 0 && c.Resources[r] < need {
			return false
		}
	}
	return true
}

// Backlog is the part of a node's ready queue that holds tasks of one class.
type Backlog struct {
	Class Class
	// Count is how many queued tasks of the class a thief may steal.
	Count int
	// TopPriority is the highest priority among them.
	TopPriority int
}

// PeerLoad is a peer's load as gossip last reported it. It is a hint: a thief
// uses it to pick a victim, never for correctness.
type PeerLoad struct {
	ID NodeID
	// Version grows with every report the peer sends. A thief that got an
	// empty answer from the peer skips it until the version changes (or
	// Config.BackoffMax has passed), so that a stale report does not draw it
	// back again and again.
	Version uint64
	// Backlog lists the peer's stealable queued tasks by class.
	Backlog []Backlog
}

// Servable sums the part of the backlog that capability c can serve: how many
// tasks, and the highest priority among them. ok is false when there is none.
func (p PeerLoad) Servable(c Capability) (count, top int, ok bool) {
	for _, b := range p.Backlog {
		if b.Count <= 0 || !c.CanServe(b.Class) {
			continue
		}
		if !ok || b.TopPriority > top {
			top = b.TopPriority
		}
		count += b.Count
		ok = true
	}
	return count, top, ok
}

// Candidate is a queued task a victim may give away.
type Candidate struct {
	ID       string
	Epoch    uint64
	Priority int
	Class    Class
	// Spec is carried into the grant as GrantedTask.Spec.
	Spec []byte
}

// Choose picks the tasks a victim gives for req, as indexes into candidates in
// the order they should be granted. Candidates come in the victim's queue order
// (priority high first, then deadline, then submission). Choose keeps those the
// thief can serve, orders them by priority, high first (stable, so queue order
// breaks ties), and takes half of them rounded up, at most req.Max.
func Choose(req StealRequest, candidates []Candidate) []int {
	var servable []int
	for i, c := range candidates {
		if req.Cap.CanServe(c.Class) {
			servable = append(servable, i)
		}
	}
	n := min((len(servable)+1)/2, req.Max)
	if n <= 0 {
		return nil
	}
	slices.SortStableFunc(servable, func(a, b int) int {
		return cmp.Compare(candidates[b].Priority, candidates[a].Priority)
	})
	return slices.Clip(servable[:n])
}

// eligible is a peer a thief may ask, with what it could serve there.
type eligible struct {
	load  PeerLoad
	count int
	top   int
}

// pickVictim chooses whom a thief with capability c asks, among peers with a
// backlog it can serve (skip says which to leave out). The rule:
//
//  1. Keep the peers whose servable top priority is the highest of all, so
//     that the most urgent work in the cluster is stolen first.
//  2. Among those, power of two choices: draw two distinct peers uniformly at
//     random and take the one with the larger servable backlog; on a tie, the
//     first drawn. With a single peer left, take it.
//
// It returns false when no peer qualifies.
func pickVictim(rng *rand.Rand, c Capability, self NodeID, peers []PeerLoad, skip func(PeerLoad) bool) (eligible, bool) {
	var best []eligible
	for _, p := range peers {
		if p.ID == self || skip(p) {
			continue
		}
		count, top, ok := p.Servable(c)
		if !ok {
			continue
		}
		e := eligible{load: p, count: count, top: top}
		switch {
		case len(best) == 0 || top > best[0].top:
			best = append(best[:0], e)
		case top == best[0].top:
			best = append(best, e)
		}
	}
	switch len(best) {
	case 0:
		return eligible{}, false
	case 1:
		return best[0], true
	}
	i := rng.IntN(len(best))
	j := rng.IntN(len(best) - 1)
	if j >= i {
		j++
	}
	if best[j].count > best[i].count {
		return best[j], true
	}
	return best[i], true
}

// backoff returns the pause after failures empty answers or timeouts in a row
// (failures >= 1): base doubled per further failure up to max, then jittered
// down by up to a fraction jitter of itself.
func backoff(rng *rand.Rand, cfg Config, failures int) time.Duration {
	d := cfg.BackoffBase
	for i := 1; i < failures && d < cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, cfg.BackoffMax)
	return d - time.Duration(cfg.Jitter*rng.Float64()*float64(d))
}
