package node

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

// view is what the event loop last published: the records, graphs, membership and
// counters that GET, list, graph and cluster answers read without asking the loop.
// Records and graph views are immutable; the loop replaces them, never changes them.
type view struct {
	mu      sync.RWMutex
	tasks   map[string]*record.Record
	order   []orderItem // every published task in submission order
	maxSeq  uint64      // the highest sequence in order: a record above it is new
	dead    int         // items of order whose task expired
	graphs  map[string]*engine.GraphView
	cluster *engine.ClusterView
	stats   engine.Stats

	// lost holds, for each peer, a context cancelled when gossip gives it up:
	// requests forwarded to it end then.
	lost map[string]lostPeer

	// Long polls: channels closed when a task or graph is finished (terminal, done).
	wmu     sync.Mutex
	waiters map[string]waitList
}

type lostPeer struct {
	ctx    context.Context
	cancel context.CancelFunc
}

type orderItem struct {
	seq uint64
	id  string
}

func newView() *view {
	return &view{
		tasks:   map[string]*record.Record{},
		graphs:  map[string]*engine.GraphView{},
		cluster: &engine.ClusterView{},
		lost:    map[string]lostPeer{},
		waiters: map[string]waitList{},
	}
}

// load publishes the records a restarted node loaded from its data directory.
func (v *view) load(recs []*record.Record) {
	v.mu.Lock()
	defer v.mu.Unlock()
	sorted := slices.Clone(recs)
	slices.SortFunc(sorted, func(a, b *record.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, r := range sorted {
		v.tasks[r.ID] = r
		v.order = append(v.order, orderItem{r.Seq, r.ID})
		v.maxSeq = max(v.maxSeq, r.Seq)
	}
}

// publish takes in what a Ready changed, then wakes the long polls it finished.
func (v *view) publish(rd *engine.Ready, stats engine.Stats) {
	v.mu.Lock()
	for _, r := range rd.Records {
		if r.Seq > v.maxSeq { // new: sequences grow, and Records lists new ones in order
			v.order = append(v.order, orderItem{r.Seq, r.ID})
			v.maxSeq = r.Seq
		}
		v.tasks[r.ID] = r
	}
	for _, id := range rd.Expired {
		if _, ok := v.tasks[id]; ok {
			delete(v.tasks, id)
			v.dead++
		}
	}
	if v.dead > 1024 && v.dead > len(v.order)/2 {
		kept := make([]orderItem, 0, len(v.order)-v.dead)
		for _, o := range v.order {
			if _, ok := v.tasks[o.id]; ok {
				kept = append(kept, o)
			}
		}
		v.order, v.dead = kept, 0
	}
	for _, g := range rd.Graphs {
		v.graphs[g.ID] = g
	}
	for _, id := range rd.GraphsExpired {
		delete(v.graphs, id)
	}
	if rd.Cluster != nil {
		v.cluster = rd.Cluster
		v.trackLostLocked()
	}
	v.stats = stats
	v.mu.Unlock()

	v.wmu.Lock()
	if len(v.waiters) > 0 {
		for _, r := range rd.Records {
			if r.State.Terminal() {
				v.wakeLocked(r.ID)
			}
		}
		for _, id := range rd.Expired {
			v.wakeLocked(id)
		}
		for _, g := range rd.Graphs {
			if g.Done {
				v.wakeLocked(g.ID)
			}
		}
		for _, id := range rd.GraphsExpired {
			v.wakeLocked(id)
		}
	}
	v.wmu.Unlock()
}

func (v *view) wakeLocked(id string) {
	l, ok := v.waiters[id]
	if !ok {
		return
	}
	l.each(func(w *waiter) {
		if w.left--; w.left == 0 {
			close(w.done)
		}
	})
	delete(v.waiters, id)
}

// waitList is the waiters of one id: nearly always one, kept without a slice.
type waitList struct {
	one  *waiter
	more []*waiter
}

func (l waitList) add(w *waiter) waitList {
	if l.one == nil {
		l.one = w
	} else {
		l.more = append(l.more, w)
	}
	return l
}

func (l waitList) remove(w *waiter) waitList {
	l.more = slices.DeleteFunc(l.more, func(x *waiter) bool { return x == w })
	if l.one == w {
		l.one = nil
		if len(l.more) > 0 {
			l.one, l.more = l.more[0], l.more[1:]
		}
	}
	return l
}

func (l waitList) each(f func(*waiter)) {
	if l.one != nil {
		f(l.one)
	}
	for _, w := range l.more {
		f(w)
	}
}

// trackLostLocked keeps a live context for each live peer and cancels those of the
// peers that are gone.
func (v *view) trackLostLocked() {
	known := make(map[string]bool, len(v.cluster.Peers))
	for _, p := range v.cluster.Peers {
		known[p.ID] = true
		l, ok := v.lost[p.ID]
		switch {
		case p.Gone && ok:
			l.cancel()
		case !p.Gone && (!ok || l.ctx.Err() != nil):
			ctx, cancel := context.WithCancel(context.Background())
			v.lost[p.ID] = lostPeer{ctx, cancel}
		}
	}
	for id, l := range v.lost {
		if !known[id] {
			l.cancel()
			delete(v.lost, id)
		}
	}
}

// lostCtx returns a context that ends when peer id is given up.
func (v *view) lostCtx(id string) context.Context {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if l, ok := v.lost[id]; ok {
		return l.ctx
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// task returns the published record of id.
func (v *view) task(id string) *record.Record {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.tasks[id]
}

// graph returns the published view of graph id.
func (v *view) graph(id string) *engine.GraphView {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.graphs[id]
}

// finished reports whether id (a task or a graph) is over: terminal, done or gone.
func (v *view) finishedLocked(id string) bool {
	if r, ok := v.tasks[id]; ok {
		return r.State.Terminal()
	}
	if g, ok := v.graphs[id]; ok {
		return g.Done
	}
	return true
}

// waiter is one long poll: done is closed once every id it waits for is finished.
type waiter struct {
	ids  []string // the ids it waits for
	left int      // how many of them are not finished yet; guarded by view.wmu
	done chan struct{}
}

// watch returns a waiter for ids, or nil when they are all finished already.
func (v *view) watch(ids []string) *waiter {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	w := &waiter{done: make(chan struct{})}
	v.mu.RLock()
	for _, id := range ids {
		if !v.finishedLocked(id) {
			w.ids = append(w.ids, id)
		}
	}
	v.mu.RUnlock()
	if len(w.ids) == 0 {
		return nil
	}
	for _, id := range w.ids {
		v.waiters[id] = v.waiters[id].add(w)
	}
	w.left = len(w.ids)
	return w
}

// unwatch drops a waiter that gave up.
func (v *view) unwatch(w *waiter) {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	for _, id := range w.ids {
		if l := v.waiters[id].remove(w); l.one == nil {
			delete(v.waiters, id)
		} else {
			v.waiters[id] = l
		}
	}
}

// await waits until every id is finished, d passes, ctx ends or stop is closed.
func (v *view) await(ctx context.Context, ids []string, d time.Duration, stop <-chan struct{}) {
	if d <= 0 {
		return
	}
	w := v.watch(ids)
	if w == nil {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-w.done:
		return
	case <-timer.C:
	case <-ctx.Done():
	case <-stop:
	}
	v.unwatch(w)
}

// render is a record as the API shows it: a queued task that could run here but
// waits for busy resources says which.
func (n *Node) render(r *record.Record) api.Task {
	t := r.Task(n.cfg.Name)
	if t.State == api.Queued && t.Waiting == "" && t.RetryAt == nil {
		t.Waiting = n.busyFor(r.Spec.Requires)
	}
	return t
}

// busyFor names the resources a task that fits this node waits for.
func (n *Node) busyFor(req *api.Requires) string {
	if req.Empty() {
		return ""
	}
	n.view.mu.RLock()
	free := n.view.stats.FreeRes
	n.view.mu.RUnlock()
	var busy []string
	for _, k := range sortedKeys(req.Resources) {
		if need := req.Resources[k]; need > 0 && free[k] < need {
			busy = append(busy, fmt.Sprintf("%s (needs %d, %d free)", k, need, free[k]))
		}
	}
	if len(busy) == 0 {
		return ""
	}
	return "waiting for resources: " + strings.Join(busy, ", ")
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Get returns a task's record.
func (n *Node) Get(id string) (api.Task, error) {
	r := n.view.task(id)
	if r == nil {
		return api.Task{}, engine.NotFound(id)
	}
	return n.render(r), nil
}

// ListOptions filter a listing.
type ListOptions struct {
	States []api.State // any of these; all when empty
	Type   string      // only this type; all when empty
	Limit  int         // at most this many (default 100, at most 1000)
	Cursor string      // from a previous page's NextCursor
}

// List returns the node's tasks, newest first, a page at a time.
func (n *Node) List(o ListOptions) (api.TaskList, error) {
	if o.Limit <= 0 {
		o.Limit = 100
	}
	o.Limit = min(o.Limit, 1000)
	before := uint64(1<<64 - 1)
	if o.Cursor != "" {
		c, err := strconv.ParseUint(o.Cursor, 36, 64)
		if err != nil {
			return api.TaskList{}, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Field: "cursor",
				Message: fmt.Sprintf("cursor %q is not one this node handed out", o.Cursor)}
		}
		before = c
	}
	v := n.view
	var recs []*record.Record
	next := ""
	v.mu.RLock()
	i := sort.Search(len(v.order), func(i int) bool { return v.order[i].seq >= before }) - 1
	var last uint64
	for ; i >= 0; i-- {
		r := v.tasks[v.order[i].id]
		if r == nil || (o.Type != "" && r.Spec.Type != o.Type) || (len(o.States) > 0 && !slices.Contains(o.States, r.State)) {
			continue
		}
		if len(recs) == o.Limit {
			next = strconv.FormatUint(last, 36)
			break
		}
		recs = append(recs, r)
		last = r.Seq
	}
	v.mu.RUnlock()
	out := api.TaskList{Tasks: make([]api.Task, len(recs)), NextCursor: next}
	for i, r := range recs {
		out.Tasks[i] = n.render(r)
	}
	return out, nil
}

// parseStates reads a comma-separated state filter.
func parseStates(s string) ([]api.State, error) {
	if s == "" {
		return nil, nil
	}
	var out []api.State
	for _, part := range strings.Split(s, ",") {
		st := api.State(strings.TrimSpace(part))
		if !st.Valid() {
			return nil, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Field: "state",
				Message: fmt.Sprintf("unknown state %q (one of pending, queued, running, succeeded, failed, cancelled, upstream_failed)", st)}
		}
		out = append(out, st)
	}
	return out, nil
}

// Graph returns a graph's aggregate record, with its tasks when withTasks is set.
func (n *Node) Graph(id string, withTasks bool) (api.Graph, error) {
	g := n.view.graph(id)
	if g == nil {
		return api.Graph{}, engine.GraphNotFound(id)
	}
	return n.graphRecord(g, withTasks), nil
}

func (n *Node) graphRecord(g *engine.GraphView, withTasks bool) api.Graph {
	out := api.Graph{ID: g.ID, Counts: map[api.State]int{}, Names: g.Names, CreatedAt: g.Created}
	recs := make([]*record.Record, len(g.Tasks))
	n.view.mu.RLock()
	for i, id := range g.Tasks {
		recs[i] = n.view.tasks[id]
	}
	n.view.mu.RUnlock()
	for _, r := range recs {
		if r == nil {
			continue // dropped by retention: the graph goes with its last task
		}
		out.Counts[r.State]++
		if withTasks {
			out.Tasks = append(out.Tasks, n.render(r))
		}
	}
	out.State = graphState(out.Counts, len(g.Tasks))
	return out
}

// graphState sums a graph's tasks up: running while any task is queued or running,
// pending while all that is left waits for deps, else succeeded when every task did,
// failed when any failed, cancelled otherwise.
func graphState(c map[api.State]int, total int) api.State {
	switch {
	case c[api.Queued]+c[api.Running] > 0:
		return api.Running
	case c[api.Pending] > 0:
		return api.Pending
	case c[api.Succeeded] == total:
		return api.Succeeded
	case c[api.Failed]+c[api.UpstreamFailed] > 0 && c[api.Cancelled] == 0:
		return api.Failed
	case c[api.Failed] > 0:
		return api.Failed
	}
	return api.Cancelled
}
