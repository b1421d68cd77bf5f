package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// submitGraph posts a batch and returns the answer.
func submitGraph(t testing.TB, n *Node, body string) api.Submitted {
	t.Helper()
	r := do(t, n, http.MethodPost, "/v1/tasks", body)
	if r.status != http.StatusAccepted {
		t.Fatalf("submit graph: status %d: %s", r.status, r.body)
	}
	var s api.Submitted
	r.decode(t, &s)
	if s.Graph == "" {
		t.Fatalf("no graph id in %s", r.body)
	}
	return s
}

// waitGraph long-polls a graph until it is done.
func waitGraph(t testing.TB, n *Node, id string) api.Graph {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(t, n, http.MethodGet, "/v1/graphs/"+id+"?wait=5s", "")
		if r.status != http.StatusOK {
			t.Fatalf("GET graph %s: status %d: %s", id, r.status, r.body)
		}
		var g api.Graph
		r.decode(t, &g)
		if g.State != api.Running && g.State != api.Pending {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("graph %s still %s: %v", id, g.State, g.Counts)
		}
	}
}

func byName(t testing.TB, g api.Graph, name string) api.Task {
	t.Helper()
	id := g.Names[name]
	for _, r := range g.Tasks {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("graph %s has no task named %q", g.ID, name)
	return api.Task{}
}

func TestGraph_diamondPassesResults(t *testing.T) {
	n := newTestNode(t, nil)
	var inputs = make(chan map[string]json.RawMessage, 1)
	mustHandle(t, n, "join", func(_ context.Context, in *Input) (any, error) {
		inputs <- in.Deps
		sum, _ := n.reg.Lookup("sum")
		return sum(context.Background(), in)
	})
	s := submitGraph(t, n, `{"tasks": [
		{"name": "a", "type": "sum", "payload": 1},
		{"name": "b", "type": "sum", "payload": 10, "deps": ["a"]},
		{"name": "c", "type": "sum", "payload": 100, "deps": ["a"]},
		{"name": "d", "type": "join", "deps": ["b", "c"]}]}`)
	if len(s.IDs) != 4 || s.Names["d"] != s.IDs[3] {
		t.Fatalf("answer: %+v", s)
	}
	g := waitGraph(t, n, s.Graph)
	if g.State != api.Succeeded || g.Counts[api.Succeeded] != 4 {
		t.Fatalf("graph %s: %v", g.State, g.Counts)
	}
	// b = 1+10, c = 1+100, d = b+c.
	if d := byName(t, g, "d"); string(d.Result) != "112" || d.Graph != s.Graph {
		t.Fatalf("d: result %s graph %q", d.Result, d.Graph)
	}
	deps := <-inputs
	if string(deps["b"]) != "11" || string(deps["c"]) != "101" || len(deps) != 2 {
		t.Fatalf("the join got deps %v", deps)
	}
	// Order: a before b and c, which are before d.
	a, b, c, d := byName(t, g, "a"), byName(t, g, "b"), byName(t, g, "c"), byName(t, g, "d")
	if b.StartedAt.Before(*a.FinishedAt) || c.StartedAt.Before(*a.FinishedAt) ||
		d.StartedAt.Before(*b.FinishedAt) || d.StartedAt.Before(*c.FinishedAt) {
		t.Fatal("a task started before its deps finished")
	}
}

func TestGraph_wideFanOutFanIn(t *testing.T) {
	n := newTestNode(t, nil)
	const width = 1000
	specs := []string{`{"name": "root", "type": "sum", "payload": 0}`}
	var leaves []string
	for i := range width {
		specs = append(specs, fmt.Sprintf(`{"name": "l%d", "type": "sum", "payload": %d, "deps": ["root"]}`, i, i))
		leaves = append(leaves, fmt.Sprintf("%q", fmt.Sprintf("l%d", i)))
	}
	specs = append(specs, `{"name": "total", "type": "sum", "deps": [`+strings.Join(leaves, ",")+`]}`)
	s := submitGraph(t, n, `{"tasks": [`+strings.Join(specs, ",")+`]}`)
	g := waitGraph(t, n, s.Graph)
	if g.State != api.Succeeded {
		t.Fatalf("graph %s: %v", g.State, g.Counts)
	}
	if got, want := string(byName(t, g, "total").Result), fmt.Sprint(width*(width-1)/2); got != want {
		t.Fatalf("total = %s, want %s", got, want)
	}
}

func TestGraph_longChain(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	const length = 10_000
	specs := make([]api.Spec, length)
	for i := range specs {
		specs[i] = api.Spec{Type: "sum", Name: fmt.Sprintf("t%d", i), Payload: json.RawMessage("1")}
		if i > 0 {
			specs[i].Deps = []string{fmt.Sprintf("t%d", i-1)}
		}
	}
	body, _ := json.Marshal(api.Batch{Tasks: specs})
	s := submitGraph(t, n, string(body))
	g := waitGraph(t, n, s.Graph)
	if g.State != api.Succeeded || g.Counts[api.Succeeded] != length {
		t.Fatalf("graph %s: %v", g.State, g.Counts)
	}
	// Each link adds one to the sum of its dep: the last holds the length.
	if got := string(byName(t, g, fmt.Sprintf("t%d", length-1)).Result); got != fmt.Sprint(length) {
		t.Fatalf("last link = %s, want %d", got, length)
	}
}

func TestGraph_failurePropagates(t *testing.T) {
	n := newTestNode(t, nil)
	mustHandle(t, n, "fail", func(context.Context, *Input) (any, error) { return nil, errors.New("boom") })
	var cleanupRan = make(chan map[string]json.RawMessage, 1)
	mustHandle(t, n, "cleanup", func(_ context.Context, in *Input) (any, error) {
		cleanupRan <- in.Deps
		return "cleaned", nil
	})
	s := submitGraph(t, n, `{"tasks": [
		{"name": "ok", "type": "echo", "payload": "fine"},
		{"name": "bad", "type": "fail", "retries": 1},
		{"name": "child", "type": "noop", "deps": ["bad", "ok"]},
		{"name": "grandchild", "type": "noop", "deps": ["child"]},
		{"name": "cleanup", "type": "cleanup", "deps": ["grandchild", "ok"], "trigger": "all_done"}]}`)
	g := waitGraph(t, n, s.Graph)
	if g.State != api.Failed {
		t.Fatalf("graph %s, want failed: %v", g.State, g.Counts)
	}
	bad := byName(t, g, "bad")
	if bad.State != api.Failed || bad.Attempt != 2 {
		t.Fatalf("bad: %s after %d attempts, want failed after its retry", bad.State, bad.Attempt)
	}
	for _, name := range []string{"child", "grandchild"} {
		r := byName(t, g, name)
		if r.State != api.UpstreamFailed || r.Attempt != 0 || r.StartedAt != nil {
			t.Fatalf("%s: %s attempt %d; want upstream_failed without running", name, r.State, r.Attempt)
		}
		if !strings.Contains(r.Error, "ended") {
			t.Fatalf("%s: error %q does not say which dep ended how", name, r.Error)
		}
	}
	if c := byName(t, g, "cleanup"); c.State != api.Succeeded || string(c.Result) != `"cleaned"` {
		t.Fatalf("cleanup (all_done): %s %s", c.State, c.Result)
	}
	deps := <-cleanupRan
	if string(deps["ok"]) != `"fine"` || string(deps["grandchild"]) != "null" {
		t.Fatalf("cleanup got deps %v", deps)
	}
}

func TestGraph_cancel(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	gate := newGate()
	mustHandle(t, n, "gate", gate.handler)
	s := submitGraph(t, n, `{"tasks": [
		{"name": "first", "type": "gate"},
		{"name": "second", "type": "noop", "deps": ["first"]},
		{"name": "cleanup", "type": "noop", "deps": ["second"], "trigger": "all_done"}]}`)
	waitState(t, n, s.Names["first"], api.Running)
	r := do(t, n, http.MethodDelete, "/v1/graphs/"+s.Graph, "")
	if r.status != http.StatusOK {
		t.Fatalf("DELETE graph: %d %s", r.status, r.body)
	}
	g := waitGraph(t, n, s.Graph)
	if g.State != api.Cancelled || g.Counts[api.Cancelled] != 3 {
		t.Fatalf("graph %s %v; want all 3 cancelled (the all_done clean-up too)", g.State, g.Counts)
	}
	gate.open()
	if e := do(t, n, http.MethodDelete, "/v1/graphs/"+s.Graph, "").apiErr(t, http.StatusConflict); e.Code != api.CodeConflict {
		t.Fatalf("second cancel: %+v", e)
	}
	if e := do(t, n, http.MethodGet, "/v1/graphs/nosuch-g1", "").apiErr(t, http.StatusNotFound); !strings.Contains(e.Message, "unknown graph") {
		t.Fatalf("unknown graph: %+v", e)
	}
}

func TestGraph_depsOnExistingTasks(t *testing.T) {
	n := newTestNode(t, nil)
	done := waitTerminal(t, n, submit(t, n, `{"type":"sum","payload":5}`).ID)
	gate := newGate()
	mustHandle(t, n, "gate", gate.handler)
	later := submit(t, n, `{"type":"gate"}`)
	mustHandle(t, n, "deps", func(_ context.Context, in *Input) (any, error) { return in.Deps, nil })
	s := submitGraph(t, n, fmt.Sprintf(`{"tasks": [{"name": "x", "type": "deps", "deps": [%q, %q]}]}`, done.ID, later.ID))
	if rec := getTask(t, n, s.IDs[0]); rec.State != api.Pending {
		t.Fatalf("x is %s while a dep runs; want pending", rec.State)
	}
	gate.open()
	g := waitGraph(t, n, s.Graph)
	want := fmt.Sprintf(`{%q:5,%q:"released"}`, done.ID, later.ID)
	if x := byName(t, g, "x"); x.State != api.Succeeded || string(x.Result) != want {
		t.Fatalf("x: %s %s %s; want the results of both deps by id: %s", x.State, x.Result, x.Error, want)
	}
}

// The event stream can follow one graph: ?graph=ID, every event naming it.
func TestGraph_events(t *testing.T) {
	n := newTestNode(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	gate := newGate()
	mustHandle(t, n, "gate", gate.handler)
	s := submitGraph(t, n, `{"tasks": [{"name": "a", "type": "gate"}, {"name": "b", "type": "noop", "deps": ["a"]}]}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/v1/events?graph="+s.Graph, nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Scan()                       // the opening comment
	submit(t, n, `{"type":"noop"}`) // not in the graph: filtered out
	gate.open()
	var seen []string
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var e api.Event
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			t.Fatal(err)
		}
		if e.Graph != s.Graph {
			t.Fatalf("event %s of another graph", v)
		}
		seen = append(seen, e.Task+" "+string(e.State))
		if e.Task == s.Names["b"] && e.State.Terminal() {
			break
		}
	}
	want := []string{s.Names["a"] + " succeeded", s.Names["b"] + " queued", s.Names["b"] + " running", s.Names["b"] + " succeeded"}
	if !slices.Equal(seen, want) {
		t.Fatalf("events %v, want %v", seen, want)
	}
}

func TestGraph_depthLimit(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxGraphDepth = 3 })
	ok := `{"tasks": [{"name": "a", "type": "noop"}, {"name": "b", "type": "noop", "deps": ["a"]}, {"name": "c", "type": "noop", "deps": ["b"]}]}`
	submitGraph(t, n, ok)
	deep := `{"tasks": [{"name": "a", "type": "noop"}, {"name": "b", "type": "noop", "deps": ["a"]}, {"name": "c", "type": "noop", "deps": ["b"]}, {"name": "d", "type": "noop", "deps": ["c"]}]}`
	e := do(t, n, http.MethodPost, "/v1/tasks", deep).apiErr(t, http.StatusBadRequest)
	if e.Code != api.CodeInvalidGraph || !strings.Contains(e.Message, "exceeds the limit of 3") {
		t.Fatalf("a chain of 4 with MaxGraphDepth 3: %+v", e)
	}
}

// An exec task in a graph gets its deps' results on standard input, as one JSON object,
// unless its payload gives stdin.
func TestGraph_execGetsDepsOnStdin(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.AllowExec = true })
	s := submitGraph(t, n, `{"tasks": [
		{"name": "a", "type": "echo", "payload": {"x": 1}},
		{"name": "b", "type": "sum", "payload": [2, 3]},
		{"name": "cat", "type": "exec", "payload": {"argv": ["cat"]}, "deps": ["a", "b"]},
		{"name": "own", "type": "exec", "payload": {"argv": ["cat"], "stdin": "mine"}, "deps": ["a"]}]}`)
	g := waitGraph(t, n, s.Graph)
	if g.State != api.Succeeded {
		t.Fatalf("graph %s: %v", g.State, g.Counts)
	}
	if out := execResult(t, byName(t, g, "cat")).Stdout; out != `{"a":{"x":1},"b":5}` {
		t.Fatalf("cat's stdin was %q, want the deps' results as one JSON object", out)
	}
	if out := execResult(t, byName(t, g, "own")).Stdout; out != "mine" {
		t.Fatalf("a given stdin was replaced by the deps: %q", out)
	}
}
