package node

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// Any node answers for any task: a request about a task owned by another node goes to
// the owner (the id names it); a task whose owner is gone is failed: owner lost.

const forwardedHeader = "X-Starling-Forwarded-By"

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
		gone       bool
		addr, name string
		state      string
	)
	if p != nil {
		gone, addr, name, state = p.gone, p.meta.HTTP, p.name, p.state
	}
	n.mu.Unlock()
	if p == nil {
		return false
	}
	if gone {
		rec := api.Task{ID: id, State: api.Failed, Owner: name,
			Error: fmt.Sprintf("owner lost: node %s, which held this task, is %s; its record went with it", name, state)}
		if r.Method == http.MethodDelete {
			writeError(w, &api.Error{Status: http.StatusConflict, Code: api.CodeConflict, Message: "task " + id + " already failed: " + rec.Error})
			return true
		}
		writeJSON(w, http.StatusOK, rec)
		return true
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.RequestURI(), r.Body)
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
		writeError(w, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
			Message: fmt.Sprintf("node %s, which owns task %s, does not answer (%v); retry in a moment", name, id, err)})
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

func newForwarder() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // long polls
	}}
}
