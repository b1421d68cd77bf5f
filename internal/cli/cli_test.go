package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/gossip"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer that a node's logger and the test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv returns an env writing to buffers and reading variables from vars only.
func testEnv(vars map[string]string) (*env, *syncBuffer, *syncBuffer) {
	var stdout, stderr syncBuffer
	return &env{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return vars[k] }}, &stdout, &stderr
}

// result is what a user sees of one command.
type result struct {
	code           int
	stdout, stderr string
}

// starling runs the command line with args, as a user would, and returns the exit
// code and output.
func starling(t testing.TB, vars map[string]string, args ...string) result {
	t.Helper()
	e, stdout, stderr := testEnv(vars)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, e, args)
	return result{code, stdout.String(), stderr.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%sstderr:\n%s", r.code, r.stdout, r.stderr)
}

// testNode starts a node with exec allowed and a "block" handler that returns once
// release is called (or its run is cancelled); it stops when the test ends.
func testNode(t testing.TB) (addr string, release func()) {
	t.Helper()
	cfg := node.LocalConfig()
	cfg.Slots = 4
	cfg.AllowExec = true
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
	return n.HTTPAddr(), release
}

// decodeTask reads the record a command printed, its result compacted.
func decodeTask(t testing.TB, r result) client.Task {
	t.Helper()
	var tk client.Task
	if err := json.Unmarshal([]byte(r.stdout), &tk); err != nil {
		t.Fatalf("stdout is not a task record: %v\n%s", err, r)
	}
	if len(tk.Result) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, tk.Result); err != nil {
			t.Fatal(err)
		}
		tk.Result = b.Bytes()
	}
	return tk
}

// submitID submits a task through the command line and returns the id it prints.
func submitID(t testing.TB, addr string, args ...string) string {
	t.Helper()
	r := starling(t, nil, append([]string{"submit", "--addr", addr}, args...)...)
	id := strings.TrimSpace(r.stdout)
	if r.code != 0 || id == "" || strings.ContainsAny(id, " \n{") {
		t.Fatalf("submit %v: want exit 0 and just an id\n%s", args, r)
	}
	return id
}

// waitRunning polls until the task is running.
func waitRunning(t testing.TB, addr, id string) {
	t.Helper()
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tk, err := c.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if tk.State == client.Running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s after 10s, want running", id, tk.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReadPayload(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, []byte(`{"from": "file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`{"from": `), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, arg, stdin string
		want             string
		wantUsage        bool // a usage error (exit 2)
		wantErr          string
	}{
		{name: "JSON object", arg: `{"a": 1}`, want: `{"a": 1}`},
		{name: "JSON number", arg: `42`, want: `42`},
		{name: "JSON string", arg: `"hi"`, want: `"hi"`},
		{name: "text becomes a JSON string", arg: `hello world`, want: `"hello world"`},
		{name: "text with quotes", arg: `say "hi"`, want: `"say \"hi\""`},
		{name: "file", arg: "@" + good, want: `{"from": "file"}`},
		{name: "stdin JSON", arg: "-", stdin: `[1, 2]` + "\n", want: `[1, 2]` + "\n"},
		{name: "stdin text", arg: "-", stdin: `plain`, want: `"plain"`},
		{name: "file not JSON", arg: "@" + bad, wantUsage: true, wantErr: "is not valid JSON"},
		{name: "missing file", arg: "@" + filepath.Join(dir, "nope.json"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readPayload(tt.arg, strings.NewReader(tt.stdin))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readPayload(%q) = %s, %v; want an error containing %q", tt.arg, got, err, tt.wantErr)
				}
				if errors.Is(err, errUsage) != tt.wantUsage {
					t.Fatalf("readPayload(%q): usage error %v, want %v", tt.arg, errors.Is(err, errUsage), tt.wantUsage)
				}
				return
			}
			if err != nil {
				t.Fatalf("readPayload(%q): %v", tt.arg, err)
			}
			if string(got) != tt.want || !json.Valid(got) {
				t.Fatalf("readPayload(%q) = %s, want %s", tt.arg, got, tt.want)
			}
		})
	}
}

func TestParseRequires(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		want  *client.Requires
		err   string
	}{
		{name: "none", flags: nil, want: nil},
		{name: "tag", flags: []string{"gpu"}, want: &client.Requires{Tags: []string{"gpu"}}},
		{name: "key=value tag", flags: []string{"zone=eu"}, want: &client.Requires{Tags: []string{"zone=eu"}}},
		{name: "resource", flags: []string{"gpu=1"}, want: &client.Requires{Resources: map[string]int64{"gpu": 1}}},
		{name: "zero resource", flags: []string{"cpu=0"}, want: &client.Requires{Resources: map[string]int64{"cpu": 0}}},
		{name: "forced tag", flags: []string{"tag:rack=3"}, want: &client.Requires{Tags: []string{"rack=3"}}},
		{name: "mixed", flags: []string{"gpu", "cpu=2", "mem_mb=512", "tag:rack=3"},
			want: &client.Requires{Tags: []string{"gpu", "rack=3"}, Resources: map[string]int64{"cpu": 2, "mem_mb": 512}}},
		{name: "negative", flags: []string{"cpu=-1"}, err: "N >= 0"},
		{name: "no name", flags: []string{"=3"}, err: "NAME=N"},
		{name: "empty", flags: []string{""}, err: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRequires(tt.flags)
			if tt.err != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseRequires(%q) = %+v, %v; want a usage error containing %q", tt.flags, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRequires(%q): %v", tt.flags, err)
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(tt.want)
			if string(gb) != string(wb) {
				t.Fatalf("parseRequires(%q) = %s, want %s", tt.flags, gb, wb)
			}
		})
	}
}

func TestParseDeadline(t *testing.T) {
	now := time.Date(2026, 11, 24, 17, 0, 0, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{in: "2026-11-24T18:00:00Z", want: time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC), ok: true},
		{in: "2026-11-24T18:00:00+02:00", want: time.Date(2026, 11, 24, 16, 0, 0, 0, time.UTC), ok: true},
		{in: "10m", want: now.Add(10 * time.Minute), ok: true},
		{in: "1h30m", want: now.Add(90 * time.Minute), ok: true},
		{in: "tomorrow"},
		{in: "2026-11-24"},
		{in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseDeadline(tt.in, now)
			if !tt.ok {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "RFC 3339") {
					t.Fatalf("parseDeadline(%q) = %v, %v; want a usage error that shows the forms", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseDeadline(%q): %v", tt.in, err)
			}
			if !got.Equal(tt.want) {
				t.Fatalf("parseDeadline(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// TestParseEnv checks the STARLING_* binding of the agent's flags.
func TestParseEnv(t *testing.T) {
	tests := []struct {
		name      string
		vars      map[string]string
		args      []string
		maxQueue  int
		tags      []string
		allowExec bool
		usage     string // a usage error containing this
	}{
		{name: "defaults", maxQueue: node.DefaultConfig().MaxQueue},
		{name: "env", vars: map[string]string{"STARLING_MAX_QUEUE": "7", "STARLING_TAG": "gpu,zone=eu", "STARLING_ALLOW_EXEC": "true"},
			maxQueue: 7, tags: []string{"gpu", "zone=eu"}, allowExec: true},
		{name: "flags win", vars: map[string]string{"STARLING_MAX_QUEUE": "7", "STARLING_TAG": "gpu,zone=eu"},
			args: []string{"--max-queue", "9", "--tag", "ssd"}, maxQueue: 9, tags: []string{"ssd"}},
		{name: "repeated flag", args: []string{"--tag", "a", "--tag", "b"}, maxQueue: node.DefaultConfig().MaxQueue, tags: []string{"a", "b"}},
		{name: "bad env value", vars: map[string]string{"STARLING_MAX_QUEUE": "lots"}, usage: `STARLING_MAX_QUEUE="lots"`},
		{name: "bad flag", args: []string{"--max-queue", "lots"}, usage: "--max-queue"},
		{name: "unknown flag", args: []string{"--nope"}, usage: "unknown flag: --nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _, _ := testEnv(tt.vars)
			fs := newFlags(e, "agent", "agent [flags]")
			var a agentFlags
			a.register(fs)
			err := parse(e, fs, tt.args)
			if tt.usage != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.usage) {
					t.Fatalf("parse: %v; want a usage error containing %q", err, tt.usage)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if a.cfg.MaxQueue != tt.maxQueue || !slices.Equal(a.cfg.Tags, tt.tags) || a.cfg.AllowExec != tt.allowExec {
				t.Fatalf("max-queue %d, tags %q, allow-exec %v; want %d, %q, %v",
					a.cfg.MaxQueue, a.cfg.Tags, a.cfg.AllowExec, tt.maxQueue, tt.tags, tt.allowExec)
			}
		})
	}
}

func TestCommandsWithoutNode(t *testing.T) {
	t.Run("version", func(t *testing.T) {
		r := starling(t, nil, "version")
		if r.code != 0 || !regexp.MustCompile(`^starling \S+\n$`).MatchString(r.stdout) {
			t.Fatalf("want exit 0 and \"starling VERSION\"\n%s", r)
		}
	})
	t.Run("help", func(t *testing.T) {
		r := starling(t, nil, "help")
		if r.code != 0 || !strings.Contains(r.stdout, "submit") || !strings.Contains(r.stdout, "agent") {
			t.Fatalf("want exit 0 and the commands\n%s", r)
		}
		if r := starling(t, nil); r.code != 2 || !strings.Contains(r.stdout, "Usage: starling COMMAND") {
			t.Fatalf("no arguments: want exit 2 and the usage\n%s", r)
		}
	})
	t.Run("unknown command", func(t *testing.T) {
		r := starling(t, nil, "frobnicate")
		if r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) || !strings.Contains(r.stderr, "Commands:") {
			t.Fatalf("want exit 2, the command named and the usage on stderr\n%s", r)
		}
	})
	t.Run("agent bad flag", func(t *testing.T) {
		r := starling(t, nil, "agent", "--no-such-flag")
		if r.code != 2 || !strings.Contains(r.stderr, "unknown flag: --no-such-flag") {
			t.Fatalf("want exit 2 and the flag named\n%s", r)
		}
	})
	t.Run("agent bad profile", func(t *testing.T) {
		r := starling(t, nil, "agent", "--profile", "warp")
		if r.code != 2 || !strings.Contains(r.stderr, `--profile "warp"`) {
			t.Fatalf("want exit 2 and the value named\n%s", r)
		}
	})
	t.Run("agent bad env", func(t *testing.T) {
		r := starling(t, map[string]string{"STARLING_SLOTS": "many"}, "agent")
		if r.code != 2 || !strings.Contains(r.stderr, "STARLING_SLOTS") {
			t.Fatalf("want exit 2 and the variable named\n%s", r)
		}
	})
	t.Run("submit without type", func(t *testing.T) {
		r := starling(t, nil, "submit")
		if r.code != 2 || !strings.Contains(r.stderr, "want TYPE") {
			t.Fatalf("want exit 2\n%s", r)
		}
	})
	t.Run("submit bad address", func(t *testing.T) {
		r := starling(t, nil, "submit", "--addr", "ftp://x", "noop")
		if r.code != 2 || !strings.Contains(r.stderr, "--addr") {
			t.Fatalf("want exit 2 and --addr named\n%s", r)
		}
	})
	t.Run("keygen", func(t *testing.T) {
		r := starling(t, nil, "keygen")
		key := strings.TrimSpace(r.stdout)
		if r.code != 0 || key == "" {
			t.Fatalf("want exit 0 and a key\n%s", r)
		}
		if _, err := base64.StdEncoding.DecodeString(key); err != nil {
			t.Fatalf("key %q is not base64: %v", key, err)
		}
		if _, err := gossip.ParseKey(key); err != nil {
			t.Fatalf("gossip.ParseKey(%q): %v", key, err)
		}
		if other := strings.TrimSpace(starling(t, nil, "keygen").stdout); other == key {
			t.Fatalf("two keygen runs printed the same key")
		}
	})
}

func TestSubmitAndFollow(t *testing.T) {
	addr, _ := testNode(t)

	t.Run("submit --wait", func(t *testing.T) {
		r := starling(t, nil, "submit", "--addr", addr, "--wait", "echo", `{"a":1}`)
		if r.code != 0 {
			t.Fatalf("want exit 0\n%s", r)
		}
		tk := decodeTask(t, r)
		if tk.State != client.Succeeded || string(tk.Result) != `{"a":1}` || tk.Type != "echo" {
			t.Fatalf("record %s %s %s, want a succeeded echo of {\"a\":1}", tk.Type, tk.State, tk.Result)
		}
	})

	t.Run("submit flags", func(t *testing.T) {
		r := starling(t, map[string]string{"STARLING_ADDR": addr}, "submit", "--priority", "5", "--deadline", "10m",
			"--timeout", "30s", "--retries", "2", "--name", "n1", "--require", "cpu=1", "-o", "json", "echo", "plain text")
		if r.code != 0 {
			t.Fatalf("want exit 0\n%s", r)
		}
		tk := decodeTask(t, r)
		if tk.Priority != 5 || tk.Deadline == nil || time.Until(*tk.Deadline) < 9*time.Minute || tk.Timeout != client.Duration(30*time.Second) ||
			tk.Retries != 2 || tk.Name != "n1" || tk.Requires == nil || tk.Requires.Resources["cpu"] != 1 || string(tk.Payload) != `"plain text"` {
			t.Fatalf("the record does not carry the flags: %s", r.stdout)
		}
	})

	t.Run("submit prints the id", func(t *testing.T) {
		id := submitID(t, addr, "sleep", `{"ms":5}`)
		r := starling(t, nil, "wait", "--addr", addr, id)
		if r.code != 0 || r.stdout != id+"\tsucceeded\n" {
			t.Fatalf("wait: want exit 0 and %q\n%s", id+"\tsucceeded\n", r)
		}
		r = starling(t, nil, "status", "--addr", addr, id)
		if r.code != 0 {
			t.Fatalf("status: want exit 0\n%s", r)
		}
		if tk := decodeTask(t, r); tk.ID != id || tk.State != client.Succeeded || string(tk.Result) != `{"slept_ms":5}` {
			t.Fatalf("status: %s %s %s", tk.ID, tk.State, tk.Result)
		}
		r = starling(t, map[string]string{"STARLING_ADDR": addr}, "status", id)
		if r.code != 0 || decodeTask(t, r).ID != id {
			t.Fatalf("status with STARLING_ADDR: want the record\n%s", r)
		}
	})

	t.Run("submit --exec", func(t *testing.T) {
		r := starling(t, nil, "submit", "--exec", "--addr", addr, "--wait", "--env", "WHO=starling", "--", "sh", "-c", `echo "hi $WHO"`)
		if r.code != 0 {
			t.Fatalf("want exit 0\n%s", r)
		}
		tk := decodeTask(t, r)
		var out struct {
			ExitCode int    `json:"exit_code"`
			Stdout   string `json:"stdout"`
		}
		if err := json.Unmarshal(tk.Result, &out); err != nil || tk.Type != "exec" || out.ExitCode != 0 || out.Stdout != "hi starling\n" {
			t.Fatalf("exec record %s %s %s, want stdout \"hi starling\\n\"", tk.Type, tk.State, tk.Result)
		}
		id := submitID(t, addr, "--exec", "--", "sh", "-c", "echo hi")
		if r := starling(t, nil, "wait", "--addr", addr, id); r.code != 0 {
			t.Fatalf("wait for the exec task: want exit 0\n%s", r)
		}
		r = starling(t, nil, "submit", "--exec", "--addr", addr)
		if r.code != 2 || !strings.Contains(r.stderr, "needs a program") {
			t.Fatalf("--exec without a program: want exit 2\n%s", r)
		}
	})

	t.Run("submit --wait a failure", func(t *testing.T) {
		r := starling(t, nil, "submit", "--addr", addr, "--wait", "--exec", "--", "sh", "-c", "echo oops >&2; exit 3")
		if r.code != 1 {
			t.Fatalf("want exit 1 for a failed task\n%s", r)
		}
		if tk := decodeTask(t, r); tk.State != client.Failed || !strings.Contains(tk.Error, "oops") {
			t.Fatalf("record %s %q, want failed with stderr's line", tk.State, tk.Error)
		}
	})

	t.Run("submit --wait shorter than the task", func(t *testing.T) {
		start := time.Now()
		r := starling(t, nil, "submit", "--addr", addr, "--wait=200ms", "block")
		if r.code != 1 {
			t.Fatalf("want exit 1 for an unfinished task\n%s", r)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("--wait=200ms returned after %v", el)
		}
		tk := decodeTask(t, r)
		if tk.State.Terminal() {
			t.Fatalf("record %s, want it unfinished", tk.State)
		}
		starling(t, nil, "cancel", "--addr", addr, tk.ID)
	})

	t.Run("wait failed", func(t *testing.T) {
		ok := submitID(t, addr, "noop")
		bad := submitID(t, addr, "--timeout", "10ms", "sleep", `{"ms":60000}`)
		r := starling(t, nil, "wait", "--addr", addr, ok, bad)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if r.code != 1 || len(lines) != 2 || lines[0] != ok+"\tsucceeded" || !strings.HasPrefix(lines[1], bad+"\tfailed\t") {
			t.Fatalf("want exit 1, %s succeeded and %s failed with its error\n%s", ok, bad, r)
		}
		r = starling(t, nil, "wait", "--addr", addr, "-o", "json", bad)
		if r.code != 1 || decodeTask(t, r).State != client.Failed {
			t.Fatalf("wait -o json: want exit 1 and the failed record\n%s", r)
		}
	})

	t.Run("wait --timeout", func(t *testing.T) {
		id := submitID(t, addr, "block")
		waitRunning(t, addr, id)
		r := starling(t, nil, "wait", "--addr", addr, "--timeout", "200ms", id)
		if r.code != 1 || r.stdout != id+"\trunning\n" || r.stderr != "" {
			t.Fatalf("want exit 1 and %q\n%s", id+"\trunning\n", r)
		}
		starling(t, nil, "cancel", "--addr", addr, id)
	})

	t.Run("cancel", func(t *testing.T) {
		id := submitID(t, addr, "block")
		waitRunning(t, addr, id)
		r := starling(t, nil, "cancel", "--addr", addr, id)
		if r.code != 0 || r.stdout != id+"\tcancelled\n" {
			t.Fatalf("want exit 0 and %q\n%s", id+"\tcancelled\n", r)
		}
		r = starling(t, nil, "wait", "--addr", addr, id)
		if r.code != 1 || !strings.HasPrefix(r.stdout, id+"\tcancelled") {
			t.Fatalf("wait for a cancelled task: want exit 1\n%s", r)
		}
		r = starling(t, nil, "cancel", "--addr", addr, id)
		if r.code != 1 || !strings.Contains(r.stderr, id+": ") || !strings.Contains(r.stderr, "409 conflict") {
			t.Fatalf("cancel again: want exit 1 and the 409 on stderr\n%s", r)
		}
		r = starling(t, nil, "cancel", "--addr", addr)
		if r.code != 2 {
			t.Fatalf("cancel without ids: want exit 2\n%s", r)
		}
	})

	t.Run("status unknown", func(t *testing.T) {
		r := starling(t, nil, "status", "--addr", addr, "nobody-1")
		if r.code != 1 || !strings.Contains(r.stderr, "starling status: ") || !strings.Contains(r.stderr, "404") {
			t.Fatalf("want exit 1 and the 404\n%s", r)
		}
	})
}

func TestListings(t *testing.T) {
	addr, _ := testNode(t)
	a := submitID(t, addr, "echo", `"a"`)
	b := submitID(t, addr, "sleep", `{"ms":1}`)
	if r := starling(t, nil, "wait", "--addr", addr, a, b); r.code != 0 {
		t.Fatalf("wait: %s", r)
	}

	t.Run("tasks -o json", func(t *testing.T) {
		r := starling(t, nil, "tasks", "--addr", addr, "-o", "json")
		var tasks []client.Task
		if err := json.Unmarshal([]byte(r.stdout), &tasks); r.code != 0 || err != nil {
			t.Fatalf("want exit 0 and a JSON array (%v)\n%s", err, r)
		}
		if len(tasks) != 2 || tasks[0].ID != b || tasks[1].ID != a {
			t.Fatalf("tasks %+v, want %s then %s (newest first)", tasks, b, a)
		}
		r = starling(t, nil, "tasks", "--addr", addr, "-o", "json", "--type", "echo", "--state", "succeeded")
		if err := json.Unmarshal([]byte(r.stdout), &tasks); err != nil || len(tasks) != 1 || tasks[0].ID != a {
			t.Fatalf("--type echo: want only %s\n%s", a, r)
		}
		r = starling(t, nil, "tasks", "--addr", addr, "-o", "json", "--limit", "1", "--all")
		if err := json.Unmarshal([]byte(r.stdout), &tasks); err != nil || len(tasks) != 2 {
			t.Fatalf("--limit 1 --all: want both tasks page by page\n%s", r)
		}
	})

	t.Run("tasks table", func(t *testing.T) {
		r := starling(t, nil, "tasks", "--addr", addr)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if r.code != 0 || len(lines) != 3 {
			t.Fatalf("want exit 0, a header and two rows\n%s", r)
		}
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"ID", "TYPE", "STATE", "PRI", "ATTEMPT", "OWNER", "NODE", "AGE", "ERROR", "/", "WAITING"}) {
			t.Fatalf("header %q", lines[0])
		}
		if f := strings.Fields(lines[1]); len(f) < 7 || f[0] != b || f[1] != "sleep" || f[2] != "succeeded" || f[3] != "0" || f[4] != "1" {
			t.Fatalf("first row %q, want %s sleep succeeded 0 1 …", lines[1], b)
		}
		if r := starling(t, nil, "tasks", "--addr", addr, "-o", "yaml"); r.code != 2 {
			t.Fatalf("-o yaml: want exit 2\n%s", r)
		}
	})

	t.Run("members", func(t *testing.T) {
		r := starling(t, nil, "members", "--addr", addr)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if r.code != 0 || len(lines) != 2 {
			t.Fatalf("want exit 0, a header and one member\n%s", r)
		}
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"NAME", "STATE", "HTTP", "SLOTS", "RUNNING", "QUEUED", "TAGS"}) {
			t.Fatalf("header %q", lines[0])
		}
		if !strings.Contains(lines[1], " * ") || !strings.Contains(lines[1], addr) || !strings.Contains(lines[1], "alive") {
			t.Fatalf("member row %q: want the node marked self, alive, with its address", lines[1])
		}
		r = starling(t, nil, "members", "--addr", addr, "-o", "json")
		var c client.Cluster
		if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || len(c.Members) != 1 || c.Members[0].Slots != 4 {
			t.Fatalf("members -o json: want one member with 4 slots (%v)\n%s", err, r)
		}
	})
}

func TestGraphCommands(t *testing.T) {
	addr, _ := testNode(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("submit --wait", func(t *testing.T) {
		f := write("sum.json", `{"tasks": [
			{"name": "a", "type": "sum", "payload": [1, 2]},
			{"name": "b", "type": "sum", "payload": 10, "deps": ["a"]},
			{"name": "total", "type": "sum", "payload": 100, "deps": ["b"]}]}`)
		r := starling(t, nil, "graph", "submit", "--addr", addr, "--wait", f)
		if r.code != 0 {
			t.Fatalf("want exit 0\n%s", r)
		}
		if !strings.Contains(r.stdout, ": succeeded, 3 succeeded\n") || !strings.HasSuffix(r.stdout, "result:\n  total = 113\n") {
			t.Fatalf("want the state and the final result line \"total = 113\"\n%s", r)
		}
		if !regexp.MustCompile(`^graph \S+: 3 tasks\n$`).MatchString(r.stderr) {
			t.Fatalf("stderr %q, want \"graph ID: 3 tasks\"", r.stderr)
		}
	})

	t.Run("bare array", func(t *testing.T) {
		f := write("array.json", `[{"name": "x", "type": "echo", "payload": "first"},
			{"name": "y", "type": "echo", "payload": "second", "deps": ["x"]}]`)
		r := starling(t, nil, "graph", "submit", "--addr", addr, "--wait", f)
		if r.code != 0 || !strings.HasSuffix(r.stdout, "result:\n  y = \"second\"\n") {
			t.Fatalf("want exit 0 and y's result\n%s", r)
		}
	})

	t.Run("yaml", func(t *testing.T) {
		f := write("sum.yaml", `tasks:
  - name: a
    type: sum
    payload: [1, 2]
  - name: total
    type: sum
    payload: 10
    deps: [a]
`)
		r := starling(t, nil, "graph", "submit", "--addr", addr, "--wait", f)
		if r.code != 0 || !strings.HasSuffix(r.stdout, "result:\n  total = 13\n") {
			t.Fatalf("want exit 0 and total = 13 from a YAML graph\n%s", r)
		}
	})

	t.Run("a misspelt field is an error, not dropped", func(t *testing.T) {
		f := write("typo.json", `{"tasks": [{"name": "a", "type": "noop", "prority": 5}, {"name": "b", "type": "noop", "deps": ["a"]}]}`)
		r := starling(t, nil, "graph", "submit", "--addr", addr, f)
		if r.code != 2 || !strings.Contains(r.stderr, "prority") {
			t.Fatalf("want exit 2 naming the unknown field\n%s", r)
		}
	})

	t.Run("cycle", func(t *testing.T) {
		f := write("cycle.json", `{"tasks": [
			{"name": "a", "type": "noop", "deps": ["c"]},
			{"name": "b", "type": "noop", "deps": ["a"]},
			{"name": "c", "type": "noop", "deps": ["b"]}]}`)
		r := starling(t, nil, "graph", "submit", "--addr", addr, f)
		if r.code != 1 || r.stdout != "" {
			t.Fatalf("want exit 1 and nothing on stdout\n%s", r)
		}
		if !strings.Contains(r.stderr, "cycle") || !strings.Contains(r.stderr, "invalid_graph") ||
			!regexp.MustCompile(`a -> c -> b -> a|b -> a -> c -> b|c -> b -> a -> c`).MatchString(r.stderr) {
			t.Fatalf("stderr does not name the cycle's path\n%s", r)
		}
	})

	t.Run("not a graph file", func(t *testing.T) {
		r := starling(t, nil, "graph", "submit", "--addr", addr, write("bad.json", `{"tasks": `))
		if r.code != 2 || !strings.Contains(r.stderr, "want {\"tasks\": [...]}") {
			t.Fatalf("want exit 2\n%s", r)
		}
	})

	t.Run("status and cancel", func(t *testing.T) {
		f := write("block.json", `{"tasks": [
			{"name": "gate", "type": "block"},
			{"name": "after", "type": "noop", "deps": ["gate"]}]}`)
		r := starling(t, nil, "graph", "submit", "--addr", addr, f)
		id := strings.TrimSpace(r.stdout)
		if r.code != 0 || id == "" || strings.Contains(id, "\n") {
			t.Fatalf("graph submit without --wait: want exit 0 and the graph id\n%s", r)
		}
		// Without --wait, status prints the graph as it is, at once.
		start := time.Now()
		r = starling(t, nil, "graph", "status", "--addr", addr, id)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "graph "+id+": ") || time.Since(start) > 5*time.Second {
			t.Fatalf("graph status of an unfinished graph: want exit 0 at once (took %v)\n%s", time.Since(start), r)
		}
		r = starling(t, nil, "graph", "status", "--addr", addr, "--wait=100ms", id)
		if r.code != 1 || strings.Contains(r.stdout, "succeeded") || !strings.HasPrefix(r.stdout, "graph "+id+": running") {
			t.Fatalf("graph status --wait=100ms of an unfinished graph: want it printed, and exit 1 as it did not succeed in time\n%s", r)
		}
		r = starling(t, nil, "graph", "cancel", "--addr", addr, id)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "graph "+id+": cancelled") {
			t.Fatalf("graph cancel: want exit 0 and the graph cancelled\n%s", r)
		}
		r = starling(t, nil, "graph", "status", "--addr", addr, "-o", "json", id)
		var g client.Graph
		if err := json.Unmarshal([]byte(r.stdout), &g); err != nil || g.State != client.Cancelled || r.code != 1 {
			t.Fatalf("graph status -o json after cancel: want the cancelled graph, exit 1 as it did not succeed (%v)\n%s", err, r)
		}
		r = starling(t, nil, "graph", "status", "--addr", addr, id)
		if r.code != 1 {
			t.Fatalf("graph status of a cancelled graph: want exit 1\n%s", r)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"graph"}, {"graph", "frob"}, {"graph", "submit"}, {"graph", "status"}} {
			if r := starling(t, nil, args...); r.code != 2 {
				t.Fatalf("%v: want exit 2\n%s", args, r)
			}
		}
	})
}

// TestAgent runs the agent subcommand for real: it serves until its context ends,
// then stops gracefully.
func TestAgent(t *testing.T) {
	e, stdout, stderr := testEnv(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, e, []string{"agent", "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--profile", "fast", "--slots", "2"})
	}()
	serving := regexp.MustCompile(`serving http://(127\.0\.0\.1:\d+) \(slots 2,`)
	var addr string
	deadline := time.Now().Add(20 * time.Second)
	for addr == "" {
		if m := serving.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("agent exited with %d before serving\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("agent not serving after 20s\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "submit with: starling submit --addr "+addr) {
		t.Fatalf("the agent does not print how to submit to it\n%s", stderr.String())
	}

	r := starling(t, nil, "submit", "--addr", addr, "--wait", "echo", `"to the agent"`)
	if r.code != 0 || string(decodeTask(t, r).Result) != `"to the agent"` {
		t.Fatalf("submit to the agent: %s", r)
	}
	r = starling(t, nil, "members", "--addr", addr, "-o", "json")
	var c client.Cluster
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || len(c.Members) != 1 || c.Members[0].Gossip == "" || c.Members[0].RPC == "" {
		t.Fatalf("members of the agent: want one member with gossip and RPC addresses (%v)\n%s", err, r)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("agent exited with %d after its context ended, want 0\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not stop within 20s of its context ending")
	}
	if !strings.Contains(stderr.String(), "stopping") || stdout.String() != "" {
		t.Fatalf("want the stop logged on stderr and nothing on stdout\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	cl, err := client.New(addr, client.WithRetry(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Ready(context.Background()); err == nil {
		t.Fatalf("the agent still answers after it stopped")
	}
}

// tasks --cluster lists every member's tasks, not only the node asked.
func TestTasksAcrossTheCluster(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ids []string
	for i := range 2 {
		task, err := c.Client(i).SubmitAndWait(ctx, client.Spec{Type: "noop"}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	addr := c.Node(0).HTTPAddr()
	r := starling(t, nil, "tasks", "--addr", addr, "-o", "json")
	var one []client.Task
	if err := json.Unmarshal([]byte(r.stdout), &one); err != nil || len(one) != 1 || one[0].ID != ids[0] {
		t.Fatalf("tasks without --cluster: want node 0's task only\n%s", r)
	}
	r = starling(t, nil, "tasks", "--addr", addr, "--cluster", "-o", "json")
	var all []client.Task
	if err := json.Unmarshal([]byte(r.stdout), &all); err != nil || len(all) != 2 || all[0].ID != ids[1] || all[1].ID != ids[0] {
		t.Fatalf("tasks --cluster: want both nodes' tasks, newest first\n%s", r)
	}
}
