package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingsched/starling/internal/api"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newTestNode starts a node on a free loopback port with LocalConfig, changed by
// mutate when not nil, and shuts it down when the test ends.
func newTestNode(t testing.TB, mutate func(*Config)) *Node {
	t.Helper()
	cfg := LocalConfig()
	cfg.Slots = 4
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return n
}

// mustHandle registers h for typ on n.
func mustHandle(t testing.TB, n *Node, typ string, h Handler) {
	t.Helper()
	if err := n.Handle(typ, h); err != nil {
		t.Fatalf("Handle(%q): %v", typ, err)
	}
}

// waitFor polls cond until it holds or d passes, then fails the test with what.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// httpClient keeps no idle connections, so nothing outlives a test (goleak).
var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

// response is an HTTP answer as a user sees it.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to n's API. hdr holds header name/value pairs.
func do(t testing.TB, n *Node, method, path, body string, hdr ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, n.URL()+path, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// decode unmarshals an answer's body into v.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d %q is not the JSON expected: %v", r.status, r.body, err)
	}
}

// apiErr reads an error answer, failing the test unless it has the given status.
func (r response) apiErr(t testing.TB, status int) api.Error {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	var e api.ErrorBody
	r.decode(t, &e)
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error answer without code or message: %s", r.body)
	}
	return e.Error
}

// submit posts one spec and returns the accepted record (202, or 200 when finished).
func submit(t testing.TB, n *Node, spec string) api.Task {
	t.Helper()
	r := do(t, n, http.MethodPost, "/v1/tasks", spec)
	if r.status != http.StatusAccepted && r.status != http.StatusOK {
		t.Fatalf("submit %s: status %d: %s", spec, r.status, r.body)
	}
	var rec api.Task
	r.decode(t, &rec)
	if rec.ID == "" {
		t.Fatalf("submit %s: no id in %s", spec, r.body)
	}
	return rec
}

// getTask fetches a record over HTTP.
func getTask(t testing.TB, n *Node, id string) api.Task {
	t.Helper()
	r := do(t, n, http.MethodGet, "/v1/tasks/"+id, "")
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", id, r.status, r.body)
	}
	var rec api.Task
	r.decode(t, &rec)
	return rec
}

// waitTerminal long-polls a task until it is terminal.
func waitTerminal(t testing.TB, n *Node, id string) api.Task {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do(t, n, http.MethodGet, "/v1/tasks/"+id+"?wait=5s", "")
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", id, r.status, r.body)
		}
		var rec api.Task
		r.decode(t, &rec)
		if rec.State.Terminal() {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after 10s", id, rec.State)
		}
	}
}

// waitState polls a task's record until it is in state s.
func waitState(t testing.TB, n *Node, id string, s api.State) api.Task {
	t.Helper()
	var rec api.Task
	waitFor(t, 10*time.Second, "task "+id+" to be "+string(s), func() bool {
		var err error
		rec, err = n.Get(id)
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		return rec.State == s
	})
	return rec
}

// gate is a handler that blocks until released (or its context ends), recording the
// tasks it started.
type gate struct {
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	started []string
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) handler(ctx context.Context, in *Input) (any, error) {
	g.mu.Lock()
	g.started = append(g.started, in.ID)
	g.mu.Unlock()
	select {
	case <-g.release:
		return "released", nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.started)
}

// blockSlots registers a gate as type "block" and fills every slot of n with it,
// returning once all those tasks run. The gate opens when the test ends at the latest.
func blockSlots(t testing.TB, n *Node, slots int) (*gate, []string) {
	t.Helper()
	g := newGate()
	mustHandle(t, n, "block", g.handler)
	t.Cleanup(g.open)
	var ids []string
	for range slots {
		ids = append(ids, submit(t, n, `{"type":"block"}`).ID)
	}
	for _, id := range ids {
		waitState(t, n, id, api.Running)
	}
	// Running in the record means the run was ordered; wait for the handlers too.
	waitFor(t, 5*time.Second, "the block handlers to start", func() bool { return g.count() >= slots })
	return g, ids
}

// recorder is a handler that notes the order in which tasks start.
type recorder struct {
	mu    sync.Mutex
	order []string // payload strings, in start order
}

func (r *recorder) handler(_ context.Context, in *Input) (any, error) {
	var s string
	if err := in.Decode(&s); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.order = append(r.order, s)
	r.mu.Unlock()
	return s, nil
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// compactJSON canonicalises JSON for comparison.
func compactJSON(t testing.TB, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("not JSON: %q: %v", b, err)
	}
	return buf.String()
}

var errBoom = errors.New("boom")

// fileExists is for polling on files a child process writes.
func fileExists(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && len(bytes.TrimSpace(b)) > 0
}
