package engine

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/steal"
)

// maxBands bounds the priority bands a load report carries.
const maxBands = 8

// currentLoad is this node's load now (Ver not set).
func (c *cluster) currentLoad() Load {
	e := c.e
	l := Load{Queued: e.q.len, Bands: e.q.bands(maxBands), Running: min(e.busy, e.cfg.Slots), Free: max(e.cfg.Slots-e.busy, 0)}
	if len(e.res.free) > 0 {
		l.FreeRes = maps.Clone(e.res.free)
	}
	for _, cl := range e.q.active {
		if owned := cl.heap.Len() - cl.foreign; owned > 0 {
			l.Backlog = append(l.Backlog, steal.Backlog{Class: cl.stealClass(), Count: owned, TopPriority: cl.topOwned()})
		}
	}
	slices.SortFunc(l.Backlog, func(a, b steal.Backlog) int {
		if a.TopPriority != b.TopPriority {
			return cmp.Compare(b.TopPriority, a.TopPriority)
		}
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Compare(classKey(a.Class), classKey(b.Class))
	})
	return l
}

func classKey(k steal.Class) string {
	s := k.Type
	for _, t := range k.Tags {
		s += "|" + t
	}
	for _, r := range slices.Sorted(maps.Keys(k.Resources)) {
		s += "|" + r
	}
	return s
}

// loadTick publishes this node's load when it changed since the last report, and
// forgets peers' reports older than LoadTTL.
func (c *cluster) loadTick(now time.Time) {
	c.nextLoad = now.Add(c.cfg.LoadInterval)
	c.publishLoad(false)
	for _, p := range c.peers {
		if p.load != nil && now.Sub(p.loadSeen) > c.cfg.LoadTTL {
			p.load = nil // stale: the thief must not chase it
			c.viewDirty = true
		}
	}
}

// publishLoad sets Ready.Load when the load changed; push also sends it to every
// live peer at once (work just arrived in an empty queue: idle thieves start now
// rather than when gossip gets there).
func (c *cluster) publishLoad(push bool) {
	l := c.currentLoad()
	if c.loadSet && loadEqual(&l, &c.load) {
		return
	}
	l.Ver = c.load.Ver + 1
	c.load, c.loadSet = l, true
	c.e.rd.Load = &c.load
	if push {
		for _, id := range slices.Sorted(maps.Keys(c.peers)) {
			if !c.peers[id].gone {
				lc := l
				c.send(id, &Message{Load: &lc})
			}
		}
	}
}

func loadEqual(a, b *Load) bool {
	return a.Queued == b.Queued && a.Running == b.Running && a.Free == b.Free &&
		slices.Equal(a.Bands, b.Bands) && maps.Equal(a.FreeRes, b.FreeRes) &&
		slices.EqualFunc(a.Backlog, b.Backlog, func(x, y steal.Backlog) bool {
			return x.Count == y.Count && x.TopPriority == y.TopPriority && x.Class.Type == y.Class.Type &&
				slices.Equal(x.Class.Tags, y.Class.Tags) && maps.Equal(x.Class.Resources, y.Class.Resources)
		})
}

// EncodeLoad encodes l in at most max bytes for gossip. A report too large keeps its
// counts and drops what matters least first: the lowest-priority backlog classes,
// then the priority bands, then the free resources. trimmed says whether it did.
func EncodeLoad(l *Load, max int) (b []byte, trimmed bool, err error) {
	c := *l
	for {
		b, err = msgpack.Marshal(&c)
		if err != nil || len(b) <= max {
			return b, trimmed, err
		}
		trimmed = true
		switch {
		case len(c.Backlog) > 1:
			c.Backlog = c.Backlog[:len(c.Backlog)/2]
		case len(c.Bands) > 0:
			c.Bands = nil
		case len(c.FreeRes) > 0:
			c.FreeRes = nil
		case len(c.Backlog) > 0:
			c.Backlog = nil
		default:
			return b, trimmed, err
		}
	}
}
