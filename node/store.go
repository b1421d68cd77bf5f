package node

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// The record store: every task this node owns, by id and in submission order, with
// retention of finished records by age and count.

func notFound(id string) error {
	return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: fmt.Sprintf("task %s: expired or unknown task", id)}
}

func (n *Node) lookupLocked(id string) (*task, error) {
	t := n.store.get(id)
	if t == nil {
		return nil, notFound(id)
	}
	return t, nil
}

// recordLocked renders t for the API. A queued task that could run here but waits
// for busy resources says which.
func (n *Node) recordLocked(t *task) api.Task {
	r := t.record(n.cfg.Name)
	if t.state == api.Queued && r.Waiting == "" && t.heapIdx >= 0 {
		r.Waiting = n.res.busyFor(t.needs)
	}
	return r
}

// Get returns a task's record.
func (n *Node) Get(id string) (api.Task, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	t, err := n.lookupLocked(id)
	if err != nil {
		return api.Task{}, err
	}
	return n.recordLocked(t), nil
}

// expireLocked drops finished records older than Retain, and the oldest ones while
// more than MaxRecords are kept.
func (n *Node) expireLocked(now time.Time) {
	n.store.expire(now, n.cfg.Retain, n.cfg.MaxRecords, func(t *task) {
		n.counts[t.state]--
		n.forgetGraphTaskLocked(t)
		n.metrics.expired.Inc()
	})
}

// trimLocked drops the oldest finished records past MaxRecords. Operations that finish
// tasks call it when they are done.
func (n *Node) trimLocked() {
	if n.store.retained() > n.cfg.MaxRecords {
		n.expireLocked(time.Now())
	}
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
	n.mu.Lock()
	defer n.mu.Unlock()
	out := api.TaskList{Tasks: []api.Task{}}
	var last uint64
	n.store.newest(before, func(t *task) bool {
		if (o.Type != "" && t.spec.Type != o.Type) || (len(o.States) > 0 && !slices.Contains(o.States, t.state)) {
			return true
		}
		if len(out.Tasks) == o.Limit {
			out.NextCursor = strconv.FormatUint(last, 36)
			return false
		}
		out.Tasks = append(out.Tasks, n.recordLocked(t))
		last = t.seq
		return true
	})
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
