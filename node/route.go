package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/internal/api"
)

// Any node answers for any task: a request about a task (or graph) owned by another
// node goes to the owner (the id names it). While the owner is unreachable — gossip
// declared it dead, but it may be cut off and come back — the answer is 503
// owner_unreachable, never a terminal state a client could see change; once it left,
// restarted, or stayed dead past ConfirmDead, the task is failed: owner lost.

const forwardedHeader = "X-Starling-Forwarded-By"

// ownerLost answers for a task of an owner that is gone for good.
func ownerLost(w http.ResponseWriter, r *http.Request, id, name, state string) {
	msg := fmt.Sprintf("owner lost: node %s, which held this task, is %s; its record went with it", name, state)
	if r.Method == http.MethodDelete {
		writeError(w, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: "task " + id + " already failed: " + msg})
		return
	}
	writeJSON(w, http.StatusOK, api.Task{ID: id, State: api.Failed, Owner: name, Error: msg})
}

// ownerUnreachable answers for a task whose owner may come back.
func ownerUnreachable(w http.ResponseWriter, id, name, why string) {
	writeError(w, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeOwnerUnreachable,
		Message: fmt.Sprintf("node %s, which owns %s, is unreachable (%s); retry in a moment", name, id, why)})
}

// route decides how to answer for a task of owner (engine.ClusterView.Route).
func (n *Node) route(owner string) (engine.RouteKind, engine.PeerView) {
	n.view.mu.RLock()
	cv := n.view.cluster
	n.view.mu.RUnlock()
	return cv.Route(owner, time.Now(), n.cluster.cfg.ConfirmDead)
}

// forward answers r for a task owned elsewhere. It returns false when the id names no
// node this one knows (the caller answers 404).
func (n *Node) forward(w http.ResponseWriter, r *http.Request, id string) bool {
	owner, ok := OwnerOf(id)
	if !ok || owner == n.id || n.cluster == nil || r.Header.Get(forwardedHeader) != "" {
		return false
	}
	kind, p := n.route(owner)
	switch kind {
	case engine.RouteUnknown:
		return false
	case engine.RouteOwnerLost:
		ownerLost(w, r, id, p.Name, p.State)
		return true
	case engine.RouteUnreachable:
		ownerUnreachable(w, id, p.Name, "declared "+p.State+" by gossip")
		return true
	}
	// The forwarded request ends with the client's, when gossip gives the owner up
	// (a node that stopped answering without closing its connections), or when this
	// node stops.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(n.stopCtx, cancel)()
	defer context.AfterFunc(n.view.lostCtx(owner), cancel)()
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+p.Meta.HTTP+r.URL.RequestURI(), r.Body)
	if err != nil {
		writeError(w, err)
		return true
	}
	req.Header.Set(forwardedHeader, n.id)
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	if wait, _ := n.parseWait(r); wait > 0 {
		longPoll(w, wait)
	}
	resp, err := n.forwarder.Do(req)
	if err != nil {
		switch kind, p2 := n.route(owner); {
		case n.stopCtx.Err() != nil:
			writeError(w, errStopping)
		case kind == engine.RouteOwnerLost:
			ownerLost(w, r, id, p2.Name, p2.State)
		case kind == engine.RouteUnreachable:
			ownerUnreachable(w, id, p2.Name, "declared "+p2.State+" by gossip")
		default:
			ownerUnreachable(w, id, p.Name, err.Error())
		}
		return true
	}
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Retry-After", "WWW-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
	return true
}

// newForwarder is the HTTP client that forwards requests to owners: quick to give up
// on a node that does not accept connections, patient with long polls.
func newForwarder() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}
}
