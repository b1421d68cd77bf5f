package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

func TestBodyLimit(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	body := `{"type":"echo","payload":"` + strings.Repeat("x", 4096) + `"}`
	e := do(t, n, http.MethodPost, "/v1/tasks", body).apiErr(t, http.StatusRequestEntityTooLarge)
	if e.Code != api.CodeTooLarge || !strings.Contains(e.Message, "1024-byte limit") {
		t.Errorf("over the body limit: %+v", e)
	}
	// Just under it is fine.
	ok := `{"type":"echo","payload":"` + strings.Repeat("x", 900) + `"}`
	submit(t, n, ok)
}

func TestBatchLimit(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.MaxBatch = 3 })
	batch := func(k int) string {
		specs := slices.Repeat([]string{`{"type":"noop"}`}, k)
		return `{"tasks":[` + strings.Join(specs, ",") + `]}`
	}
	e := do(t, n, http.MethodPost, "/v1/tasks", batch(4)).apiErr(t, http.StatusRequestEntityTooLarge)
	if e.Code != api.CodeTooLarge || !strings.Contains(e.Message, "4 tasks") || !strings.Contains(e.Message, "limit is 3") {
		t.Errorf("over the batch limit: %+v", e)
	}
	r := do(t, n, http.MethodPost, "/v1/tasks", batch(3))
	var sub api.Submitted
	r.decode(t, &sub)
	if r.status != http.StatusAccepted || len(sub.IDs) != 3 {
		t.Fatalf("a batch at the limit: %d %s", r.status, r.body)
	}
}

// TestQueueFull: past MaxQueue unfinished tasks a submission is refused with 429 and
// Retry-After, all or nothing; everything accepted still runs.
func TestQueueFull(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1; c.MaxQueue = 4 })
	g, blocked := blockSlots(t, n, 1)
	accepted := slices.Clone(blocked)
	for range 2 {
		accepted = append(accepted, submit(t, n, `{"type":"echo","payload":1}`).ID)
	}
	// One place left: a batch of two is refused whole.
	r := do(t, n, http.MethodPost, "/v1/tasks", `{"tasks":[{"type":"noop"},{"type":"noop"}]}`)
	e := r.apiErr(t, http.StatusTooManyRequests)
	if e.Code != api.CodeQueueFull || r.header.Get("Retry-After") == "" {
		t.Errorf("a batch over the queue limit: %+v, Retry-After %q", e, r.header.Get("Retry-After"))
	}
	accepted = append(accepted, submit(t, n, `{"type":"echo","payload":2}`).ID)
	r = do(t, n, http.MethodPost, "/v1/tasks", `{"type":"noop"}`)
	e = r.apiErr(t, http.StatusTooManyRequests)
	if e.Code != api.CodeQueueFull || !strings.Contains(e.Message, "limit 4") {
		t.Errorf("a full queue: %+v", e)
	}
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	var list api.TaskList
	do(t, n, http.MethodGet, "/v1/tasks", "").decode(t, &list)
	if len(list.Tasks) != len(accepted) {
		t.Errorf("%d tasks stored, want the %d accepted", len(list.Tasks), len(accepted))
	}
	g.open()
	for _, id := range accepted {
		if rec := waitTerminal(t, n, id); rec.State != api.Succeeded {
			t.Errorf("accepted task %s: %s %s", id, rec.State, rec.Error)
		}
	}
	// Finished tasks do not count: there is room again.
	submit(t, n, `{"type":"noop"}`)
}

func TestAuth(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Token = "s3cret" })
	for _, path := range []string{"/v1/tasks", "/v1/tasks/x-1", "/metrics", "/v1/events", "/v1/cluster"} {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "s3cret"}, {"Authorization", "Basic s3cret"}} {
			r := do(t, n, http.MethodGet, path, "", hdr...)
			e := r.apiErr(t, http.StatusUnauthorized)
			if e.Code != api.CodeUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("GET %s with %v: %+v, WWW-Authenticate %q", path, hdr, e, r.header.Get("WWW-Authenticate"))
			}
		}
	}
	if e := do(t, n, http.MethodGet, "/v1/tasks", "", "Authorization", "Bearer wrong").apiErr(t, 401); !strings.Contains(e.Message, "wrong") {
		t.Errorf("a wrong token: %q; want it to say the token is wrong", e.Message)
	}
	if e := do(t, n, http.MethodGet, "/v1/tasks", "").apiErr(t, 401); !strings.Contains(e.Message, "Authorization: Bearer") {
		t.Errorf("no token: %q; want it to say how to send one", e.Message)
	}
	// A refused submission is not stored.
	do(t, n, http.MethodPost, "/v1/tasks", `{"type":"noop"}`).apiErr(t, 401)
	auth := []string{"Authorization", "Bearer s3cret"}
	r := do(t, n, http.MethodPost, "/v1/tasks?wait=5s", `{"type":"echo","payload":"ok"}`, auth...)
	if r.status != http.StatusOK {
		t.Fatalf("submit with the token: %d %s", r.status, r.body)
	}
	var list api.TaskList
	r = do(t, n, http.MethodGet, "/v1/tasks", "", auth...)
	r.decode(t, &list)
	if r.status != http.StatusOK || len(list.Tasks) != 1 {
		t.Errorf("list with the token: %d, %d tasks; want 200 and only the authorised task", r.status, len(list.Tasks))
	}
	if r := do(t, n, http.MethodGet, "/metrics", "", auth...); r.status != http.StatusOK {
		t.Errorf("/metrics with the token: %d", r.status)
	}
	if r := do(t, n, http.MethodGet, "/v1/tasks", "", "Authorization", "bearer s3cret"); r.status != http.StatusOK {
		t.Errorf("the scheme in lower case: %d; auth schemes are case-insensitive", r.status)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := do(t, n, http.MethodGet, path, ""); r.status != http.StatusOK {
			t.Errorf("%s without a token: %d %s; health checks are open", path, r.status, r.body)
		}
	}

	open := newTestNode(t, nil)
	if r := do(t, open, http.MethodGet, "/v1/tasks", ""); r.status != http.StatusOK {
		t.Errorf("no token configured: %d %s; want the API open", r.status, r.body)
	}
}

func TestNonLoopbackNeedsToken(t *testing.T) {
	cfg := LocalConfig()
	cfg.HTTPAddr = "0.0.0.0:0"
	if n, err := New(cfg); !errors.Is(err, ErrInsecure) {
		if n != nil {
			n.Shutdown(t.Context())
		}
		t.Fatalf("New on 0.0.0.0 without a token: %v, want ErrInsecure", err)
	} else if !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("the error %q does not say how to proceed", err)
	}
	for name, mutate := range map[string]func(*Config){
		"with a token":  func(c *Config) { c.HTTPAddr = "0.0.0.0:0"; c.Token = "t" },
		"with Insecure": func(c *Config) { c.HTTPAddr = "0.0.0.0:0"; c.Insecure = true },
	} {
		t.Run(name, func(t *testing.T) {
			n := newTestNode(t, mutate)
			host, port, _ := net.SplitHostPort(n.HTTPAddr())
			if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() || port == "0" {
				t.Errorf("listening on %s, want 0.0.0.0 and a real port", n.HTTPAddr())
			}
			resp, err := httpClient.Get("http://127.0.0.1:" + port + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz: %d", resp.StatusCode)
			}
		})
	}
	for _, host := range []string{"localhost:0", "[::1]:0", "127.0.0.2:0"} {
		cfg := LocalConfig()
		cfg.HTTPAddr = host
		n, err := New(cfg)
		if errors.Is(err, ErrInsecure) {
			t.Errorf("%s is loopback, refused: %v", host, err)
		}
		if n != nil {
			n.Shutdown(t.Context())
		}
	}
}

// TestSubmitWait: POST ?wait= answers with the finished record(s).
func TestSubmitWait(t *testing.T) {
	n := newTestNode(t, nil)
	r := do(t, n, http.MethodPost, "/v1/tasks?wait=10s", `{"type":"echo","payload":{"a":1}}`)
	var rec api.Task
	r.decode(t, &rec)
	if r.status != http.StatusOK || rec.State != api.Succeeded || compactJSON(t, rec.Result) != `{"a":1}` {
		t.Errorf("single with wait: %d %s", r.status, r.body)
	}
	if rec.Owner != n.Name() || rec.Node != n.Name() || rec.FinishedAt == nil || rec.CreatedAt.IsZero() || rec.Attempt != 1 {
		t.Errorf("record lacks owner/node/timestamps/attempt: %s", r.body)
	}

	r = do(t, n, http.MethodPost, "/v1/tasks?wait=10s", `{"tasks":[{"type":"echo","payload":1},{"type":"sleep","payload":{"ms":20}},{"type":"echo","payload":3}]}`)
	var sub api.Submitted
	r.decode(t, &sub)
	if len(sub.IDs) != 3 || len(sub.Tasks) != 3 {
		t.Fatalf("batch with wait: %d %s", r.status, r.body)
	}
	for i, tk := range sub.Tasks {
		if tk.ID != sub.IDs[i] || tk.State != api.Succeeded {
			t.Errorf("batch record %d: id %s (want %s), %s", i, tk.ID, sub.IDs[i], tk.State)
		}
	}
	if compactJSON(t, sub.Tasks[2].Result) != "3" {
		t.Errorf("third result %s", sub.Tasks[2].Result)
	}

	// Without wait: 202 with the queued (or running) record; a batch gets ids only.
	r = do(t, n, http.MethodPost, "/v1/tasks", `{"tasks":[{"type":"noop"}]}`)
	sub = api.Submitted{}
	r.decode(t, &sub)
	if r.status != http.StatusAccepted || len(sub.IDs) != 1 || sub.Tasks != nil {
		t.Errorf("batch without wait: %d %s", r.status, r.body)
	}

	// A wait that ends first answers 202 with the unfinished record.
	start := time.Now()
	r = do(t, n, http.MethodPost, "/v1/tasks?wait=100ms", `{"type":"sleep","payload":{"ms":20000}}`)
	rec = api.Task{}
	r.decode(t, &rec)
	if r.status != http.StatusAccepted || rec.State.Terminal() {
		t.Errorf("wait elapsed: %d %s", r.status, r.body)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("answered after %v, before the wait", el)
	}
	do(t, n, http.MethodDelete, "/v1/tasks/"+rec.ID, "")
}

// TestGetWait: GET ?wait= long-polls until the task is terminal or the wait ends.
func TestGetWait(t *testing.T) {
	n := newTestNode(t, func(c *Config) { c.Slots = 1 })
	g, blocked := blockSlots(t, n, 1)
	id := blocked[0]

	start := time.Now()
	rec := getTaskQ(t, n, id, "?wait=100ms")
	if rec.State != api.Running {
		t.Errorf("after the wait elapsed: %s, want running", rec.State)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("answered after %v, before the wait ended", el)
	}

	got := make(chan api.Task, 1)
	go func() {
		resp, err := httpClient.Get(n.URL() + "/v1/tasks/" + id + "?wait=20s")
		if err != nil {
			got <- api.Task{Error: err.Error()}
			return
		}
		defer resp.Body.Close()
		var r api.Task
		json.NewDecoder(resp.Body).Decode(&r)
		got <- r
	}()
	time.Sleep(50 * time.Millisecond) // let the poll start; the assertion does not depend on it
	g.open()
	select {
	case r := <-got:
		if r.State != api.Succeeded || compactJSON(t, r.Result) != `"released"` {
			t.Errorf("long poll answered %s %q result %s; want the succeeded record", r.State, r.Error, r.Result)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not return when the task finished")
	}
	// On a finished task it answers at once.
	start = time.Now()
	getTaskQ(t, n, id, "?wait=30s")
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("a long poll on a finished task took %v", el)
	}
	e := do(t, n, http.MethodGet, "/v1/tasks/"+n.ID()+"-zzz", "").apiErr(t, http.StatusNotFound)
	if e.Code != api.CodeNotFound || !strings.Contains(e.Message, "expired or unknown task") {
		t.Errorf("unknown id: %+v", e)
	}
}

func getTaskQ(t testing.TB, n *Node, id, query string) api.Task {
	t.Helper()
	r := do(t, n, http.MethodGet, "/v1/tasks/"+id+query, "")
	if r.status != http.StatusOK {
		t.Fatalf("GET %s%s: %d %s", id, query, r.status, r.body)
	}
	var rec api.Task
	r.decode(t, &rec)
	return rec
}

// TestList: filters by state and type, and pages with limit and cursor through every
// task exactly once, newest first.
func TestList(t *testing.T) {
	n := newTestNode(t, nil)
	mustHandle(t, n, "fail", func(context.Context, *Input) (any, error) { return nil, errBoom })
	var all, echoes, failed []string
	for i := range 11 {
		var spec string
		switch i % 3 {
		case 0:
			spec = `{"type":"echo","payload":1}`
		case 1:
			spec = `{"type":"noop"}`
		case 2:
			spec = `{"type":"fail"}`
		}
		id := submit(t, n, spec).ID
		waitTerminal(t, n, id)
		all = append(all, id)
		switch i % 3 {
		case 0:
			echoes = append(echoes, id)
		case 2:
			failed = append(failed, id)
		}
	}
	slices.Reverse(all)
	slices.Reverse(echoes)
	slices.Reverse(failed)
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", all},
		{"?limit=3", all},
		{"?limit=1", all},
		{"?limit=1000", all},
		{"?type=echo", echoes},
		{"?type=echo&limit=2", echoes},
		{"?state=failed&limit=2", failed},
		{"?state=failed&type=echo", nil},
		{"?state=succeeded,failed&limit=4", all},
		{"?state=queued", nil},
		{"?type=nothing", nil},
	} {
		var got []string
		q := c.query
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatalf("%s: more than 20 pages", c.query)
			}
			var list api.TaskList
			r := do(t, n, http.MethodGet, "/v1/tasks"+q, "")
			r.decode(t, &list)
			if r.status != http.StatusOK {
				t.Fatalf("%s: %d %s", q, r.status, r.body)
			}
			for _, tk := range list.Tasks {
				got = append(got, tk.ID)
			}
			if list.NextCursor == "" {
				break
			}
			sep := "?"
			if c.query != "" {
				sep = "&"
			}
			q = c.query + sep + "cursor=" + list.NextCursor
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("list%s: %v, want %v", c.query, got, c.want)
		}
	}
	// An empty listing is [] in JSON, not null.
	if r := do(t, n, http.MethodGet, "/v1/tasks?state=queued", ""); !strings.Contains(string(r.body), `"tasks":[]`) {
		t.Errorf("empty listing: %s", r.body)
	}
}

// TestEvents: /v1/events streams a task's state changes as server-sent events.
func TestEvents(t *testing.T) {
	n := newTestNode(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/v1/events?type=echo", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), ":") {
		t.Fatalf("the stream did not open with a comment: %q %v", sc.Text(), sc.Err())
	}
	submit(t, n, `{"type":"noop"}`) // filtered out by type
	id := submit(t, n, `{"type":"echo","payload":"e"}`).ID
	var states []string
	var name string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			name = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			var e api.Event
			if err := json.Unmarshal([]byte(v), &e); err != nil {
				t.Fatalf("event data %q: %v", v, err)
			}
			if e.Task != id || e.Type != "echo" || string(e.State) != name || e.Seq == 0 {
				t.Fatalf("event %q (%s) for another task, type or state; want %s", v, name, id)
			}
			states = append(states, string(e.State))
			if e.State.Terminal() {
				break
			}
		}
	}
	if want := []string{"queued", "running", "succeeded"}; !slices.Equal(states, want) {
		t.Errorf("events %v, want %v (stream error: %v)", states, want, sc.Err())
	}
}

func TestMetrics(t *testing.T) {
	n := newTestNode(t, nil)
	for range 3 {
		waitTerminal(t, n, submit(t, n, `{"type":"noop"}`).ID)
	}
	r := do(t, n, http.MethodGet, "/metrics", "")
	for _, want := range []string{
		"starling_tasks_submitted_total 3",
		`starling_tasks_finished_total{state="succeeded"} 3`,
		`starling_tasks_finished_total{state="failed"} 0`,
		"starling_slots 4",
	} {
		if !strings.Contains(string(r.body), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestRoutes(t *testing.T) {
	n := newTestNode(t, nil)
	r := do(t, n, http.MethodPut, "/v1/tasks", `{}`)
	if e := r.apiErr(t, http.StatusMethodNotAllowed); e.Code != api.CodeMethodNotAllowed || !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Errorf("PUT /v1/tasks: %+v, Allow %q", e, r.header.Get("Allow"))
	}
	if e := do(t, n, http.MethodGet, "/v2/nothing", "").apiErr(t, http.StatusNotFound); !strings.Contains(e.Message, "no such endpoint") {
		t.Errorf("unknown path: %+v", e)
	}
	var h api.Health
	do(t, n, http.MethodGet, "/readyz", "").decode(t, &h)
	if h.Status != "ready" || h.Node != n.Name() {
		t.Errorf("/readyz: %+v", h)
	}
	var c api.Cluster
	do(t, n, http.MethodGet, "/v1/cluster", "").decode(t, &c)
	if len(c.Members) != 1 || !c.Members[0].Self || c.Members[0].Slots != 4 || c.Members[0].HTTP != n.HTTPAddr() {
		t.Errorf("/v1/cluster: %+v", c)
	}
	if got := fmt.Sprint(n.Types()); got != "[echo noop sleep sum]" {
		t.Errorf("Types() = %s", got)
	}
}

// TestShutdownEndsLongPollsAndStreams: Shutdown does not wait for a long poll or an
// event stream to end on its own; both get an answer.
func TestShutdownEndsLongPollsAndStreams(t *testing.T) {
	n := newTestNode(t, nil)
	id := submit(t, n, `{"type":"noop","requires":{"tags":["nowhere"]}}`).ID // queued for good
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/v1/events", nil)
	stream, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	sc := bufio.NewScanner(stream.Body)
	sc.Scan() // the opening comment: subscribed
	polled := make(chan api.Task, 1)
	go func() {
		var rec api.Task
		if resp, err := httpClient.Get(n.URL() + "/v1/tasks/" + id + "?wait=60s"); err == nil {
			json.NewDecoder(resp.Body).Decode(&rec)
			resp.Body.Close()
		}
		polled <- rec
	}()
	// Give the poll time to reach the server: a poll sent after Shutdown would be
	// refused, and the test would fail, not pass, for it.
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := n.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Shutdown took %v with a long poll and a stream open", el)
	}
	select {
	case rec := <-polled:
		if rec.ID != id || rec.State != api.Queued {
			t.Errorf("the long poll answered %+v; want the queued record", rec)
		}
	case <-time.After(5 * time.Second):
		t.Error("the long poll got no answer")
	}
	for sc.Scan() {
	}
	// The stream ended (EOF) rather than the test's context.
	if ctx.Err() != nil {
		t.Error("the event stream stayed open after Shutdown")
	}
}
