package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Any node answers for any task: a request about a task (or graph) owned by another
// node goes to the owner (the id names it); one whose owner is gone is failed: owner
// lost.

const forwardedHeader = "X-Starling-Forwarded-By"

// ownerLost answers for a task of a gone owner.
func ownerLost(w http.ResponseWriter, r *http.Request, id, name, state string) {
	msg := fmt.Sprintf("owner lost: node %s, which held this task, is %s; its record went with it", name, state)
	if r.Method == http.MethodDelete {
		writeError(w, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: "task " + id + " already failed: " + msg})
		return
	}
	writeJSON(w, http.StatusOK, api.Task{ID: id, State: api.Failed, Owner: name, Error: msg})
}

// forward answers r for a task owned elsewhere. It returns false when the id names no
// node this one knows (the caller answers 404).
func (n *Node) forward(w http.ResponseWriter, r *http.Request, id string) bool {
	owner, ok := OwnerOf(id)
	if !ok || owner == n.id || n.cluster == nil || r.Header.Get(forwardedHeader) != "" {
		return false
	}
	n.mu.Lock()
	p := n.cluster.peers[owner]
	var (
		gone              bool
		addr, name, state string
		lost              chan struct{}
	)
	if p != nil {
		gone, addr, name, state, lost = p.gone, p.meta.HTTP, p.name, p.state, p.lost
	}
	n.mu.Unlock()
	if p == nil {
		return false
	}
	if gone {
		ownerLost(w, r, id, name, state)
		return true
	}
	// The forwarded request ends with the client's, or when gossip gives the owner up
	// (a node that stopped answering without closing its connections).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+addr+r.URL.RequestURI(), r.Body)
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
		n.mu.Lock()
		gone, state = p.gone, p.state
		n.mu.Unlock()
		if gone {
			ownerLost(w, r, id, name, state)
			return true
		}
		writeError(w, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
			Message: fmt.Sprintf("node %s, which owns %s, does not answer (%v); retry in a moment", name, id, err)})
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
