package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startNode starts a node on a free loopback port with LocalConfig, changed by mutate
// when not nil, registers a "block" handler whose runs return "released" once release
// is called (or when cancelled), and shuts the node down when the test ends.
func startNode(t testing.TB, mutate func(*node.Config)) (n *node.Node, release func()) {
	t.Helper()
	cfg := node.LocalConfig()
	cfg.Slots = 2
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatalf("node.New: %v", err)
	}
	gate := make(chan struct{})
	release = sync.OnceFunc(func() { close(gate) })
	err = n.Handle("block", func(ctx context.Context, _ *node.Input) (any, error) {
		select {
		case <-gate:
			return "released", nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if err := n.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return n, release
}

func newClient(t testing.TB, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addr, opts...)
	if err != nil {
		t.Fatalf("client.New(%q): %v", addr, err)
	}
	return c
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// apiError asserts that err is a *client.Error with the given status and code.
func apiError(t testing.TB, err error, status int, code string) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T): want a *client.Error", err, err)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error status %d code %q (%v): want %d %q", e.Status, e.Code, e, status, code)
	}
	return e
}

// waitState polls id until it is in state want.
func waitState(t testing.TB, c *client.Client, id string, want client.State) client.Task {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tk, err := c.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if tk.State == want {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s after 10s, want %s", id, tk.State, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestParseAddr(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        string
	}{
		{name: "host and port", in: "10.0.0.5:7070", want: "http://10.0.0.5:7070"},
		{name: "port only", in: ":7071", want: "http://127.0.0.1:7071"},
		{name: "http URL", in: "http://node-1:7070", want: "http://node-1:7070"},
		{name: "https URL with trailing slash", in: "https://starling.example.com/", want: "https://starling.example.com"},
		{name: "URL with path prefix", in: "http://proxy:80/starling/", want: "http://proxy:80/starling"},
		{name: "bad scheme", in: "ftp://node:7070", wantErr: "scheme must be http or https"},
		{name: "empty", in: "", wantErr: "empty address"},
		{name: "no host", in: "http://", wantErr: "no host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := client.ParseAddr(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAddr(%q) = %v, %v; want an error containing %q", tt.in, u, err, tt.wantErr)
				}
				if _, err := client.New(tt.in); err == nil {
					t.Fatalf("New(%q) accepted a bad address", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddr(%q): %v", tt.in, err)
			}
			if got := u.String(); got != tt.want {
				t.Fatalf("ParseAddr(%q) = %s, want %s", tt.in, got, tt.want)
			}
			if got := newClient(t, tt.in).Addr(); got != tt.want {
				t.Fatalf("Addr() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSubmitGetWait(t *testing.T) {
	n, _ := startNode(t, nil)
	c := newClient(t, n.HTTPAddr())
	ctx := testCtx(t)

	t.Run("Submit", func(t *testing.T) {
		tk, err := c.Submit(ctx, client.Spec{Type: "echo", Payload: json.RawMessage(`{"x":1}`), Priority: 3, Name: "e"})
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		if tk.ID == "" || tk.Type != "echo" || tk.Priority != 3 || tk.Name != "e" {
			t.Fatalf("Submit record = %+v", tk)
		}
		done, err := c.Wait(ctx, tk.ID, 0)
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		if done.State != client.Succeeded || string(done.Result) != `{"x":1}` {
			t.Fatalf("Wait: state %s result %s, want succeeded {\"x\":1}", done.State, done.Result)
		}
		got, err := c.Get(ctx, tk.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.ID != tk.ID || got.State != client.Succeeded || got.FinishedAt == nil {
			t.Fatalf("Get = %+v, want the succeeded record", got)
		}
	})

	t.Run("SubmitAndWait", func(t *testing.T) {
		tk, err := c.SubmitAndWait(ctx, client.Spec{Type: "sleep", Payload: json.RawMessage(`{"ms":20}`)}, 10*time.Second)
		if err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		if tk.State != client.Succeeded || string(tk.Result) != `{"slept_ms":20}` {
			t.Fatalf("SubmitAndWait: state %s result %s, want the terminal record", tk.State, tk.Result)
		}
	})

	t.Run("SubmitAndWait failure", func(t *testing.T) {
		tk, err := c.SubmitAndWait(ctx, client.Spec{Type: "sleep", Payload: json.RawMessage(`{"ms":5000}`),
			Timeout: client.Duration(10 * time.Millisecond)}, 10*time.Second)
		if err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		if tk.State != client.Failed || tk.Error == "" {
			t.Fatalf("SubmitAndWait: state %s error %q, want failed with an error", tk.State, tk.Error)
		}
	})

	t.Run("Get unknown", func(t *testing.T) {
		_, err := c.Get(ctx, n.ID()+"-999999")
		apiError(t, err, http.StatusNotFound, "not_found")
	})

	t.Run("invalid spec", func(t *testing.T) {
		_, err := c.Submit(ctx, client.Spec{Type: "echo", Retries: -1})
		e := apiError(t, err, http.StatusBadRequest, "invalid_spec")
		if e.Field != "retries" {
			t.Fatalf("Field = %q, want retries", e.Field)
		}
	})
}

func TestWaitTimeoutReturnsLastRecord(t *testing.T) {
	n, release := startNode(t, nil)
	c := newClient(t, n.HTTPAddr())
	ctx := testCtx(t)
	tk, err := c.Submit(ctx, client.Spec{Type: "block"})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	waitState(t, c, tk.ID, client.Running)
	for _, timeout := range []time.Duration{50 * time.Millisecond, 300 * time.Millisecond} {
		start := time.Now()
		got, err := c.Wait(ctx, tk.ID, timeout)
		if err != nil {
			t.Fatalf("Wait(%v) on a running task: %v, want the last record and no error", timeout, err)
		}
		if got.ID != tk.ID || got.State != client.Running {
			t.Fatalf("Wait(%v) = %s %s, want %s running", timeout, got.ID, got.State, tk.ID)
		}
		if el := time.Since(start); el < timeout || el > timeout+5*time.Second {
			t.Fatalf("Wait(%v) returned after %v", timeout, el)
		}
	}
	// Without a timeout, the caller's context bounds the wait: the last record comes
	// back with the context's error.
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	got, err := c.Wait(dctx, tk.ID, 0)
	if !errors.Is(err, context.DeadlineExceeded) || got.ID != tk.ID || got.State != client.Running {
		t.Fatalf("Wait under a 200ms context = %q %s, %v; want the running record and context.DeadlineExceeded", got.ID, got.State, err)
	}
	release()
	got, err = c.Wait(ctx, tk.ID, 10*time.Second)
	if err != nil || got.State != client.Succeeded || string(got.Result) != `"released"` {
		t.Fatalf("Wait after release = %s %s, %v; want succeeded \"released\"", got.State, got.Result, err)
	}
}

func TestCancel(t *testing.T) {
	n, _ := startNode(t, nil)
	c := newClient(t, n.HTTPAddr())
	ctx := testCtx(t)
	tk, err := c.Submit(ctx, client.Spec{Type: "block"})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	waitState(t, c, tk.ID, client.Running)
	if _, err := c.Cancel(ctx, tk.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	got, err := c.Wait(ctx, tk.ID, 10*time.Second)
	if err != nil || got.State != client.Cancelled {
		t.Fatalf("after Cancel: state %s, %v; want cancelled", got.State, err)
	}
	_, err = c.Cancel(ctx, tk.ID)
	e := apiError(t, err, http.StatusConflict, "conflict")
	if !strings.Contains(e.Message, "already cancelled") {
		t.Fatalf("409 message %q does not say the task is already cancelled", e.Message)
	}
	if !strings.Contains(err.Error(), "409") {
		t.Fatalf("error text %q does not show the status", err)
	}
}

func TestSubmitBatch(t *testing.T) {
	n, _ := startNode(t, nil)
	c := newClient(t, n.HTTPAddr())
	ctx := testCtx(t)
	specs := []client.Spec{
		{Type: "noop"},
		{Type: "echo", Payload: json.RawMessage(`"hi"`)},
		{Type: "sum", Payload: json.RawMessage(`[1,2,3]`)},
	}

	s, err := c.SubmitBatch(ctx, specs)
	if err != nil {
		t.Fatalf("SubmitBatch: %v", err)
	}
	if len(s.IDs) != 3 || s.Graph != "" || len(s.Tasks) != 0 {
		t.Fatalf("SubmitBatch = %+v, want 3 ids, no graph, no records", s)
	}
	got, err := c.Wait(ctx, s.IDs[2], 10*time.Second)
	if err != nil || got.State != client.Succeeded || string(got.Result) != "6" {
		t.Fatalf("batch task sum: %s %s, %v; want succeeded 6", got.State, got.Result, err)
	}

	s, err = c.SubmitBatchAndWait(ctx, specs, 10*time.Second)
	if err != nil {
		t.Fatalf("SubmitBatchAndWait: %v", err)
	}
	if len(s.Tasks) != 3 {
		t.Fatalf("SubmitBatchAndWait: %d records, want 3", len(s.Tasks))
	}
	want := []string{"", `"hi"`, "6"}
	for i, tk := range s.Tasks {
		if tk.ID != s.IDs[i] || tk.State != client.Succeeded || (want[i] != "" && string(tk.Result) != want[i]) {
			t.Fatalf("SubmitBatchAndWait record %d = %s %s %s, want %s succeeded %s", i, tk.ID, tk.State, tk.Result, s.IDs[i], want[i])
		}
	}

	// All or nothing: one bad spec refuses the whole batch, naming it.
	_, err = c.SubmitBatch(ctx, []client.Spec{{Type: "noop"}, {Type: "sleep", Timeout: -1}})
	e := apiError(t, err, http.StatusBadRequest, "invalid_spec")
	if !strings.HasPrefix(e.Field, "tasks[1]") {
		t.Fatalf("Field = %q, want tasks[1]…", e.Field)
	}
}

func TestList(t *testing.T) {
	n, _ := startNode(t, nil)
	c := newClient(t, n.HTTPAddr())
	ctx := testCtx(t)
	var echoes []string
	for i := range 5 {
		tk, err := c.SubmitAndWait(ctx, client.Spec{Type: "echo", Payload: json.RawMessage(`1`)}, 10*time.Second)
		if err != nil {
			t.Fatalf("submit echo %d: %v", i, err)
		}
		echoes = append(echoes, tk.ID)
	}
	for range 2 {
		if _, err := c.SubmitAndWait(ctx, client.Spec{Type: "noop"}, 10*time.Second); err != nil {
			t.Fatalf("submit noop: %v", err)
		}
	}
	failed, err := c.SubmitAndWait(ctx, client.Spec{Type: "sleep", Payload: json.RawMessage(`{"ms":5000}`),
		Timeout: client.Duration(time.Millisecond)}, 10*time.Second)
	if err != nil || failed.State != client.Failed {
		t.Fatalf("failing task: %s, %v", failed.State, err)
	}

	// Type filter and cursor: pages of 2, newest first, every echo once.
	var got []string
	opts := client.ListOptions{Type: "echo", Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatalf("more than 5 pages of 2 for 5 tasks")
		}
		l, err := c.List(ctx, opts)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(l.Tasks) > 2 {
			t.Fatalf("page of %d tasks, limit 2", len(l.Tasks))
		}
		for _, tk := range l.Tasks {
			if tk.Type != "echo" {
				t.Fatalf("List type=echo returned a %s task", tk.Type)
			}
			got = append(got, tk.ID)
		}
		if l.NextCursor == "" {
			break
		}
		opts.Cursor = l.NextCursor
	}
	want := slices.Clone(echoes)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("paged echo ids = %v, want newest first %v", got, want)
	}

	// State filter.
	l, err := c.List(ctx, client.ListOptions{States: []client.State{client.Failed}})
	if err != nil {
		t.Fatalf("List state=failed: %v", err)
	}
	if len(l.Tasks) != 1 || l.Tasks[0].ID != failed.ID {
		t.Fatalf("List state=failed = %d tasks, want only %s", len(l.Tasks), failed.ID)
	}
	l, err = c.List(ctx, client.ListOptions{States: []client.State{client.Succeeded, client.Failed}})
	if err != nil {
		t.Fatalf("List state=succeeded,failed: %v", err)
	}
	if len(l.Tasks) != 8 {
		t.Fatalf("List state=succeeded,failed = %d tasks, want 8", len(l.Tasks))
	}

	// A bad filter is the user's error, with a code.
	_, err = c.List(ctx, client.ListOptions{States: []client.State{"bogus"}})
	apiError(t, err, http.StatusBadRequest, "invalid_request")
}

func TestClusterAndReady(t *testing.T) {
	tc := testcluster.Start(t, testcluster.Options{Nodes: 2})
	ctx := testCtx(t)
	c0 := newClient(t, tc.Node(0).HTTPAddr())
	c1 := newClient(t, tc.Node(1).HTTPAddr())

	if err := c0.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	cl, err := c0.Cluster(ctx)
	if err != nil {
		t.Fatalf("Cluster: %v", err)
	}
	if len(cl.Members) != 2 {
		t.Fatalf("Cluster: %d members, want 2", len(cl.Members))
	}
	var self int
	for _, m := range cl.Members {
		if m.State != "alive" || m.HTTP == "" || m.Slots != 2 {
			t.Fatalf("member %+v: want alive with an HTTP address and 2 slots", m)
		}
		if m.Self {
			self++
			if m.Name != cl.Self || m.HTTP != tc.Node(0).HTTPAddr() {
				t.Fatalf("self member %s (%s), want %s (%s)", m.Name, m.HTTP, cl.Self, tc.Node(0).HTTPAddr())
			}
		}
	}
	if self != 1 {
		t.Fatalf("%d members marked self, want 1", self)
	}

	// Any node answers for any task.
	tk, err := c0.Submit(ctx, client.Spec{Type: "echo", Payload: json.RawMessage(`"anywhere"`)})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	got, err := c1.Wait(ctx, tk.ID, 10*time.Second)
	if err != nil || got.State != client.Succeeded || string(got.Result) != `"anywhere"` {
		t.Fatalf("Wait through the other node: %s %s, %v", got.State, got.Result, err)
	}

	// A stopping node is not ready: 503.
	tc.Stop(1)
	err = c1.Ready(ctx)
	if err == nil {
		t.Fatalf("Ready on a stopped node: nil error")
	}
}

func TestGraph(t *testing.T) {
	n, _ := startNode(t, nil)
	c := newClient(t, n.HTTPAddr())
	ctx := testCtx(t)

	t.Run("succeeds", func(t *testing.T) {
		s, err := c.SubmitBatch(ctx, []client.Spec{
			{Name: "a", Type: "sum", Payload: json.RawMessage(`[1,2]`)},
			{Name: "b", Type: "sum", Payload: json.RawMessage(`10`), Deps: []string{"a"}},
			{Name: "c", Type: "echo", Payload: json.RawMessage(`"done"`), Deps: []string{"b"}, Trigger: "all_done"},
		})
		if err != nil {
			t.Fatalf("SubmitBatch: %v", err)
		}
		if s.Graph == "" || len(s.IDs) != 3 || s.Names["b"] != s.IDs[1] {
			t.Fatalf("SubmitBatch = %+v, want a graph id and names", s)
		}
		g, err := c.WaitGraph(ctx, s.Graph, 10*time.Second, true)
		if err != nil {
			t.Fatalf("WaitGraph: %v", err)
		}
		if g.ID != s.Graph || g.State != client.Succeeded || g.Counts[client.Succeeded] != 3 || len(g.Tasks) != 3 {
			t.Fatalf("WaitGraph = %s %s %v, %d tasks; want succeeded 3/3", g.ID, g.State, g.Counts, len(g.Tasks))
		}
		results := map[string]string{}
		for _, tk := range g.Tasks {
			results[tk.Name] = string(tk.Result)
		}
		if results["a"] != "3" || results["b"] != "13" || results["c"] != `"done"` {
			t.Fatalf("graph results %v, want a=3 b=13 c=\"done\"", results)
		}
		g, err = c.Graph(ctx, s.Graph)
		if err != nil || g.State != client.Succeeded || len(g.Tasks) != 3 {
			t.Fatalf("Graph = %s, %d tasks, %v", g.State, len(g.Tasks), err)
		}
		g, err = c.WaitGraph(ctx, s.Graph, 10*time.Second, false)
		if err != nil || g.State != client.Succeeded || len(g.Tasks) != 0 {
			t.Fatalf("WaitGraph without tasks = %s, %d tasks, %v; want succeeded and no tasks", g.State, len(g.Tasks), err)
		}
		_, err = c.CancelGraph(ctx, s.Graph)
		apiError(t, err, http.StatusConflict, "conflict")
	})

	t.Run("cycle", func(t *testing.T) {
		_, err := c.SubmitBatch(ctx, []client.Spec{
			{Name: "x", Type: "noop", Deps: []string{"y"}},
			{Name: "y", Type: "noop", Deps: []string{"x"}},
		})
		e := apiError(t, err, http.StatusBadRequest, "invalid_graph")
		if !strings.Contains(e.Message, "cycle") {
			t.Fatalf("message %q does not name the cycle", e.Message)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		s, err := c.SubmitBatch(ctx, []client.Spec{
			{Name: "gate", Type: "block"},
			{Name: "after", Type: "noop", Deps: []string{"gate"}},
		})
		if err != nil {
			t.Fatalf("SubmitBatch: %v", err)
		}
		waitState(t, c, s.Names["gate"], client.Running)
		g, err := c.WaitGraph(ctx, s.Graph, 50*time.Millisecond, false)
		if err != nil || g.State != client.Running {
			t.Fatalf("WaitGraph with a short timeout = %s, %v; want running and no error", g.State, err)
		}
		g, err = c.CancelGraph(ctx, s.Graph)
		if err != nil {
			t.Fatalf("CancelGraph: %v", err)
		}
		if g.ID != s.Graph {
			t.Fatalf("CancelGraph returned graph %q, want %q", g.ID, s.Graph)
		}
		g, err = c.WaitGraph(ctx, s.Graph, 10*time.Second, true)
		if err != nil || g.State != client.Cancelled {
			t.Fatalf("after CancelGraph: %s %v, %v; want cancelled", g.State, g.Counts, err)
		}
		for _, tk := range g.Tasks {
			if tk.State == client.Succeeded {
				t.Fatalf("task %s succeeded after the graph was cancelled", tk.Name)
			}
		}
		_, err = c.Graph(ctx, n.ID()+"-g999999")
		apiError(t, err, http.StatusNotFound, "not_found")
	})
}

func TestToken(t *testing.T) {
	n, _ := startNode(t, func(cfg *node.Config) { cfg.Token = "s3cret" })
	ctx := testCtx(t)

	_, err := newClient(t, n.HTTPAddr()).Submit(ctx, client.Spec{Type: "noop"})
	apiError(t, err, http.StatusUnauthorized, "unauthorized")
	_, err = newClient(t, n.HTTPAddr(), client.WithToken("wrong")).Submit(ctx, client.Spec{Type: "noop"})
	apiError(t, err, http.StatusUnauthorized, "unauthorized")

	c := newClient(t, n.HTTPAddr(), client.WithToken("s3cret"))
	tk, err := c.SubmitAndWait(ctx, client.Spec{Type: "echo", Payload: json.RawMessage(`"ok"`)}, 10*time.Second)
	if err != nil || tk.State != client.Succeeded {
		t.Fatalf("SubmitAndWait with the token: %s, %v", tk.State, err)
	}
	if _, err := c.List(ctx, client.ListOptions{}); err != nil {
		t.Fatalf("List with the token: %v", err)
	}
	// Readiness needs no token.
	if err := newClient(t, n.HTTPAddr()).Ready(ctx); err != nil {
		t.Fatalf("Ready without a token: %v", err)
	}
}

func TestRetryOnQueueFull(t *testing.T) {
	n, release := startNode(t, func(cfg *node.Config) { cfg.MaxQueue = 1 })
	ctx := testCtx(t)
	c := newClient(t, n.HTTPAddr())
	first, err := c.Submit(ctx, client.Spec{Type: "block"})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	waitState(t, c, first.ID, client.Running)

	// No retries: the user sees the 429.
	_, err = newClient(t, n.HTTPAddr(), client.WithRetry(0, time.Millisecond)).Submit(ctx, client.Spec{Type: "noop"})
	e := apiError(t, err, http.StatusTooManyRequests, "queue_full")
	if e.Message == "" {
		t.Fatalf("429 without a message")
	}

	// With retries, the submission goes through once the blocking task is done.
	retrying := newClient(t, n.HTTPAddr(), client.WithRetry(10, 10*time.Millisecond))
	type result struct {
		tk  client.Task
		err error
	}
	done := make(chan result, 1)
	go func() {
		tk, err := retrying.SubmitAndWait(ctx, client.Spec{Type: "echo", Payload: json.RawMessage(`"second"`)}, 10*time.Second)
		done <- result{tk, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("submission went through while the queue was full: %+v, %v", r.tk, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	r := <-done
	if r.err != nil {
		t.Fatalf("SubmitAndWait with retries: %v", r.err)
	}
	if r.tk.State != client.Succeeded || string(r.tk.Result) != `"second"` {
		t.Fatalf("SubmitAndWait with retries = %s %s, want succeeded \"second\"", r.tk.State, r.tk.Result)
	}
}

// retryServer answers 503 with Retry-After: retryAfter failures times, then 200 with a
// task record, and keeps each request's arrival time.
func retryServer(t *testing.T, failures int, retryAfter string) (*httptest.Server, func() []time.Time) {
	t.Helper()
	var mu sync.Mutex
	var seen []time.Time
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, time.Now())
		mu.Unlock()
		if int(calls.Add(1)) <= failures {
			w.Header().Set("Retry-After", retryAfter)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"draining","message":"the node is shutting down"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"n1-1","type":"noop","state":"queued"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Run("zero means now", func(t *testing.T) {
		// The backoff alone would wait an hour: only Retry-After: 0 lets this pass.
		srv, seen := retryServer(t, 2, "0")
		c := newClient(t, srv.URL, client.WithRetry(5, time.Hour))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tk, err := c.Submit(ctx, client.Spec{Type: "noop"})
		if err != nil {
			t.Fatalf("Submit: %v (Retry-After: 0 not honoured?)", err)
		}
		if tk.ID != "n1-1" || len(seen()) != 3 {
			t.Fatalf("Submit = %q after %d requests, want n1-1 after 3", tk.ID, len(seen()))
		}
	})
	t.Run("one second", func(t *testing.T) {
		// The backoff alone would wait a millisecond: Retry-After: 1 must win.
		srv, seen := retryServer(t, 1, "1")
		c := newClient(t, srv.URL, client.WithRetry(5, time.Millisecond))
		tk, err := c.Submit(testCtx(t), client.Spec{Type: "noop"})
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		at := seen()
		if tk.ID != "n1-1" || len(at) != 2 {
			t.Fatalf("Submit = %q after %d requests, want n1-1 after 2", tk.ID, len(at))
		}
		if gap := at[1].Sub(at[0]); gap < 900*time.Millisecond {
			t.Fatalf("retried after %v, want the 1s Retry-After", gap)
		}
	})
	t.Run("retries exhausted", func(t *testing.T) {
		srv, seen := retryServer(t, 100, "0")
		c := newClient(t, srv.URL, client.WithRetry(2, time.Millisecond))
		_, err := c.Submit(testCtx(t), client.Spec{Type: "noop"})
		e := apiError(t, err, http.StatusServiceUnavailable, "draining")
		if e.Message != "the node is shutting down" {
			t.Fatalf("message %q", e.Message)
		}
		if got := len(seen()); got != 3 {
			t.Fatalf("%d requests, want 1 and 2 retries", got)
		}
	})
	t.Run("not JSON", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "bad gateway", http.StatusBadGateway)
		}))
		t.Cleanup(srv.Close)
		_, err := newClient(t, srv.URL).Get(testCtx(t), "x")
		e := apiError(t, err, http.StatusBadGateway, "http_502")
		if e.Message != "bad gateway" {
			t.Fatalf("message %q, want the body", e.Message)
		}
	})
}
