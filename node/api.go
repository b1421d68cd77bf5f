package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/internal/api"
)

// The public HTTP API, v1. Every answer is JSON; every error is
// {"error": {"code", "message", "field"}} with the status that fits.

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/tasks", n.methods(map[string]http.HandlerFunc{
		http.MethodPost: n.handleSubmit,
		http.MethodGet:  n.handleList,
	}))
	mux.HandleFunc("/v1/tasks/{id}", n.methods(map[string]http.HandlerFunc{
		http.MethodGet:    n.handleGet,
		http.MethodDelete: n.handleCancel,
	}))
	mux.HandleFunc("/v1/graphs/{id}", n.methods(map[string]http.HandlerFunc{
		http.MethodGet:    n.handleGraph,
		http.MethodDelete: n.handleCancelGraph,
	}))
	mux.HandleFunc("/v1/node/drain", n.methods(map[string]http.HandlerFunc{http.MethodPost: n.handleDrain}))
	mux.HandleFunc("/v1/events", n.methods(map[string]http.HandlerFunc{http.MethodGet: n.handleEvents}))
	mux.HandleFunc("/v1/cluster", n.methods(map[string]http.HandlerFunc{http.MethodGet: n.handleCluster}))
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", n.handleHealth)
	mux.HandleFunc("/readyz", n.handleReady)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound,
			Message: fmt.Sprintf("no such endpoint: %s %s (see the README for the API)", r.Method, r.URL.Path)})
	})
	return n.authenticate(mux)
}

// methods dispatches on the request method, answering 405 in JSON otherwise.
func (n *Node) methods(byMethod map[string]http.HandlerFunc) http.HandlerFunc {
	allowed := make([]string, 0, len(byMethod))
	for m := range byMethod {
		allowed = append(allowed, m)
	}
	allow := strings.Join(allowed, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		if h := byMethod[r.Method]; h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Allow", allow)
		writeError(w, &api.Error{Status: http.StatusMethodNotAllowed, Code: api.CodeMethodNotAllowed,
			Message: fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)})
	}
}

// authenticate requires the bearer token, when one is set, everywhere but the health
// checks. The comparison is of SHA-256 digests in constant time.
func (n *Node) authenticate(next http.Handler) http.Handler {
	if n.cfg.Token == "" {
		return next
	}
	want := sha256.Sum256([]byte(n.cfg.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		// The scheme is case-insensitive (RFC 9110 §11.1): "bearer" is "Bearer".
		scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		ok = ok && strings.EqualFold(scheme, "Bearer")
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !ok || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="starling"`)
			msg := "this node requires a token: send Authorization: Bearer TOKEN (starling --token or STARLING_TOKEN)"
			if ok {
				msg = "the token is wrong"
			}
			writeError(w, &api.Error{Status: http.StatusUnauthorized, Code: api.CodeUnauthorized, Message: msg})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, fmt.Errorf("encode answer: %w", err))
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, err error) {
	var e *api.Error
	if !errors.As(err, &e) {
		e = &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: err.Error()}
	}
	switch e.Status {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "2")
	}
	writeJSON(w, e.Status, api.ErrorBody{Error: *e})
}

// parseWait reads ?wait= (a Go duration or seconds), capped at MaxWait.
func (n *Node) parseWait(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("wait")
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return 0, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Field: "wait",
				Message: fmt.Sprintf("wait: %q is not a duration (use 30s, 2m, or a number of seconds)", s)}
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 {
		return 0, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Field: "wait", Message: "wait: must not be negative"}
	}
	return min(d, n.cfg.MaxWait), nil
}

// longPoll prepares a request to wait d: the write deadline moves past it.
func longPoll(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d + 30*time.Second))
	}
}

func apiUnavailable(msg string) *api.Error {
	return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeDraining, Message: msg}
}

// Submit validates specs and accepts them as one submission: all of them or, with an
// error, none. It returns the new task ids in order. A spec with an idempotency key
// already seen returns the earlier task's id instead of a new task.
func (n *Node) Submit(specs []api.Spec) ([]string, error) {
	r, err := n.submit(context.Background(), specs, len(specs) > 1)
	return r.IDs, err
}

// submit validates specs against this node's handlers and hands them to the engine. A
// batch's errors name the spec at fault by its index ("tasks[0].timeout"), even in a
// batch of one.
func (n *Node) submit(ctx context.Context, specs []api.Spec, batch bool) (engine.Reply, error) {
	if len(specs) > n.cfg.MaxBatch {
		return engine.Reply{}, &api.Error{Status: http.StatusRequestEntityTooLarge, Code: api.CodeTooLarge,
			Message: fmt.Sprintf("%d tasks in one submission; the limit is %d", len(specs), n.cfg.MaxBatch)}
	}
	if n.storeErr.Load() != nil {
		return engine.Reply{}, n.errStorage()
	}
	for i := range specs {
		if err := n.validate(&specs[i]); err != nil {
			if batch {
				prefixField(err, fmt.Sprintf("tasks[%d]", i))
			}
			return engine.Reply{}, err
		}
	}
	return n.call(ctx, func(req uint64) engine.Input { return engine.Submit{Req: req, Specs: specs, Batch: batch} })
}

// records renders the published records of ids.
func (n *Node) records(ids []string) []api.Task {
	out := make([]api.Task, len(ids))
	for i, id := range ids {
		if r := n.view.task(id); r != nil {
			out[i] = n.render(r)
		} else {
			out[i] = api.Task{ID: id, Error: "expired"}
		}
	}
	return out
}

func (n *Node) handleSubmit(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, &api.Error{Status: http.StatusRequestEntityTooLarge, Code: api.CodeTooLarge,
				Message: fmt.Sprintf("the body is over the %d-byte limit (--max-body); split the submission", n.cfg.MaxBodyBytes)})
			return
		}
		writeError(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Message: "cannot read the body: " + err.Error()})
		return
	}
	wait, err := n.parseWait(r)
	if err != nil {
		writeError(w, err)
		return
	}
	specs, batch, err := decodeSubmission(body)
	if err != nil {
		writeError(w, err)
		return
	}
	rep, err := n.submit(r.Context(), specs, batch)
	if err != nil {
		writeError(w, err)
		return
	}
	longPoll(w, wait)
	n.view.await(r.Context(), rep.IDs, wait, n.stopCtx.Done())
	if !batch {
		rec := n.records(rep.IDs)[0]
		status := http.StatusAccepted
		if rec.State.Terminal() {
			status = http.StatusOK
		}
		writeJSON(w, status, rec)
		return
	}
	out := api.Submitted{IDs: rep.IDs, Graph: rep.Graph, Names: rep.Names}
	if wait > 0 {
		out.Tasks = n.records(rep.IDs)
	}
	writeJSON(w, http.StatusAccepted, out)
}

func (n *Node) handleGraph(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, err := n.parseWait(r)
	if err != nil {
		writeError(w, err)
		return
	}
	withTasks := r.URL.Query().Get("tasks") != "false"
	if n.view.graph(id) == nil {
		if !n.forward(w, r, id) {
			writeError(w, engine.GraphNotFound(id))
		}
		return
	}
	longPoll(w, wait)
	n.view.await(r.Context(), []string{id}, wait, n.stopCtx.Done())
	g, err := n.Graph(id, withTasks)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// CancelGraph cancels every task of a graph that has not finished. Clean-up tasks
// (all_done) that had not started are cancelled too.
func (n *Node) CancelGraph(id string) (api.Graph, error) {
	_, err := n.call(context.Background(), func(req uint64) engine.Input { return engine.CancelGraph{Req: req, ID: id} })
	var e *api.Error
	if err != nil && (!errors.As(err, &e) || e.Status != http.StatusConflict) {
		return api.Graph{}, err
	}
	g, gerr := n.Graph(id, true)
	if gerr != nil {
		return api.Graph{}, gerr
	}
	return g, err
}

func (n *Node) handleCancelGraph(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	g, err := n.CancelGraph(id)
	var e *api.Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound && n.forward(w, r, id) {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, err := n.parseWait(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if n.view.task(id) == nil {
		if !n.forward(w, r, id) {
			writeError(w, engine.NotFound(id))
		}
		return
	}
	longPoll(w, wait)
	n.view.await(r.Context(), []string{id}, wait, n.stopCtx.Done())
	rec, err := n.Get(id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// Cancel cancels a task that has not finished: a queued one never runs, a running one
// has its context cancelled (an exec run is killed). It returns the record.
func (n *Node) Cancel(id string) (api.Task, error) {
	rep, err := n.call(context.Background(), func(req uint64) engine.Input { return engine.Cancel{Req: req, ID: id} })
	if rep.Rec != nil {
		return n.render(rep.Rec), err
	}
	return api.Task{}, err
}

func (n *Node) handleCancel(w http.ResponseWriter, r *http.Request) {
	rec, err := n.Cancel(r.PathValue("id"))
	var e *api.Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound && n.forward(w, r, r.PathValue("id")) {
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (n *Node) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	states, err := parseStates(q.Get("state"))
	if err != nil {
		writeError(w, err)
		return
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 {
			writeError(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Field: "limit",
				Message: fmt.Sprintf("limit: %q is not a positive integer", s)})
			return
		}
	}
	list, err := n.List(ListOptions{States: states, Type: q.Get("type"), Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (n *Node) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	filterTask, filterType, filterGraph := q.Get("task"), q.Get("type"), q.Get("graph")
	sub := n.events.subscribe()
	if sub == nil {
		writeError(w, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeDraining, Message: "the node is shutting down"})
		return
	}
	defer n.events.unsubscribe(sub)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": starling %s events\n\n", n.cfg.Name)
	_ = rc.Flush()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-heartbeat.C:
			fmt.Fprint(w, ": heartbeat\n\n")
		case e, ok := <-sub.ch:
			if !ok {
				if n.events.isLagged(sub) {
					fmt.Fprint(w, "event: lagged\ndata: {\"error\":\"this stream fell too far behind and was closed; reconnect\"}\n\n")
				}
				_ = rc.Flush()
				return
			}
			if (filterTask != "" && e.Task != filterTask) || (filterType != "" && e.Type != filterType) ||
				(filterGraph != "" && e.Graph != filterGraph) {
				continue
			}
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.State, b)
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (n *Node) handleCluster(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Members())
}

// Members is the cluster as this node sees it: itself first, then its peers by name,
// the ones that are gone included while this node remembers them.
func (n *Node) Members() api.Cluster {
	n.view.mu.RLock()
	st, cv := n.view.stats, n.view.cluster
	n.view.mu.RUnlock()
	self := api.Member{
		Name: n.cfg.Name, ID: n.id, State: "alive", HTTP: n.HTTPAddr(), Version: n.cfg.Version,
		Slots: n.cfg.Slots, Tags: n.cfg.Tags, Resources: n.cfg.Resources, Self: true, Storage: n.storageName(),
		Load: &api.Load{Queued: st.Queued, ByPriority: st.Bands, Running: min(st.Busy, st.Slots), Free: max(st.Slots-st.Busy, 0), FreeRes: st.FreeRes},
	}
	if c := n.cluster; c != nil && c.gossip != nil {
		self.Gossip, self.RPC = c.gossip.LocalAddr(), c.wire.Addr()
	}
	out := api.Cluster{Self: n.cfg.Name, Members: []api.Member{self}}
	now := time.Now()
	for _, p := range cv.Peers {
		m := api.Member{
			Name: p.Name, ID: p.ID, State: p.State, HTTP: p.Meta.HTTP, RPC: p.Meta.RPC, Version: p.Meta.Ver,
			Slots: p.Meta.Slots, Tags: p.Meta.Tags, Resources: p.Meta.Res,
		}
		if l := p.Load; l != nil && !p.Gone {
			m.Load = &api.Load{Queued: l.Queued, ByPriority: l.Bands, Running: l.Running, Free: l.Free, FreeRes: l.FreeRes,
				AgeMS: now.Sub(p.LoadSeen).Milliseconds()}
		}
		out.Members = append(out.Members, m)
	}
	return out
}

func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", Node: n.cfg.Name})
}

func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	stopping, draining := n.stopCtx.Err() != nil, n.draining.Load()
	if stopping || draining {
		reason := "shutting down"
		if !stopping {
			reason = "draining"
		}
		writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "unavailable", Node: n.cfg.Name, Reason: reason})
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ready", Node: n.cfg.Name})
}
