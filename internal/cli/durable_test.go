package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
)

// running is a long-running command (agent, dev) started by background.
type running struct {
	stdout, stderr *syncBuffer
	match          []string // what the ready pattern matched
	cancel         context.CancelFunc
	done           chan int
}

// background runs a long-running command as a user would, until ready matches its
// stdout or stderr, and returns it; it stops when the test ends if stop was not
// called. A command that exits first fails the test.
func background(t testing.TB, vars map[string]string, ready *regexp.Regexp, args ...string) *running {
	t.Helper()
	e, stdout, stderr := testEnv(vars)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stdout: stdout, stderr: stderr, cancel: cancel, done: make(chan int, 1)}
	go func() { r.done <- run(ctx, e, args) }()
	t.Cleanup(func() { r.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := ready.FindStringSubmatch(stdout.String()); m != nil {
			r.match = m
			return r
		}
		if m := ready.FindStringSubmatch(stderr.String()); m != nil {
			r.match = m
			return r
		}
		select {
		case code := <-r.done:
			r.done <- code
			t.Fatalf("starling %s exited with %d before it was ready\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("starling %s not ready after 20s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), stdout, stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the command as Ctrl-C would and returns its exit code.
func (r *running) stop(t testing.TB) int {
	t.Helper()
	r.cancel()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(20 * time.Second):
		t.Fatalf("the command did not stop within 20s of Ctrl-C")
		return -1
	}
}

var agentServing = regexp.MustCompile(`serving http://(127\.0\.0\.1:\d+) `)

// The agent keeps its tasks in --data-dir (or STARLING_DATA_DIR): started again on the
// directory it is the same node, and answers for the tasks it ran before.
func TestAgent_dataDir(t *testing.T) {
	tests := []struct {
		name string
		vars func(dir string) map[string]string
		args func(dir string) []string
	}{
		{name: "flag", args: func(dir string) []string { return []string{"--data-dir", dir} }},
		{name: "env", vars: func(dir string) map[string]string { return map[string]string{"STARLING_DATA_DIR": dir} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			var vars map[string]string
			args := []string{"agent", "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--profile", "fast", "--slots", "1"}
			if tt.vars != nil {
				vars = tt.vars(dir)
			}
			if tt.args != nil {
				args = append(args, tt.args(dir)...)
			}
			says := regexp.MustCompile(`data directory ` + regexp.QuoteMeta(dir) + ` \(node id (\S+)\)`)
			a := background(t, vars, agentServing, args...)
			m := says.FindStringSubmatch(a.stderr.String())
			if m == nil {
				t.Fatalf("the agent does not say where its data lives\n%s", a.stderr)
			}
			nodeID := m[1]
			id := submitID(t, a.match[1], "echo", `"kept"`)
			if r := starling(t, nil, "wait", "--addr", a.match[1], id); r.code != 0 {
				t.Fatalf("wait: %s", r)
			}
			if code := a.stop(t); code != 0 {
				t.Fatalf("agent exited with %d\n%s", code, a.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "VERSION")); err != nil {
				t.Fatalf("the data directory holds no store: %v", err)
			}

			again := background(t, vars, agentServing, args...)
			if m := says.FindStringSubmatch(again.stderr.String()); m == nil || m[1] != nodeID {
				t.Fatalf("started again on %s: want node id %s\n%s", dir, nodeID, again.stderr)
			}
			r := starling(t, nil, "status", "--addr", again.match[1], id)
			if r.code != 0 {
				t.Fatalf("status of a task the agent ran before its restart: want exit 0\n%s", r)
			}
			if tk := decodeTask(t, r); tk.State != client.Succeeded || string(tk.Result) != `"kept"` {
				t.Fatalf("after the restart: %s %s, want succeeded \"kept\"", tk.State, tk.Result)
			}
		})
	}
	t.Run("without it, memory", func(t *testing.T) {
		a := background(t, nil, agentServing, "agent", "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--profile", "fast")
		if !strings.Contains(a.stderr.String(), "memory only") || !strings.Contains(a.stderr.String(), "--data-dir") {
			t.Fatalf("an agent without --data-dir does not say its tasks live in memory\n%s", a.stderr)
		}
	})
}

// A data directory the agent cannot use is refused with a sentence, exit status 1.
func TestAgent_dataDirRefused(t *testing.T) {
	inUse := t.TempDir()
	background(t, nil, agentServing, "agent", "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--profile", "fast", "--data-dir", inUse)
	newer := t.TempDir()
	if err := os.WriteFile(filepath.Join(newer, "VERSION"), []byte("starling store format 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notOurs := t.TempDir()
	if err := os.WriteFile(filepath.Join(notOurs, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir string
		want      []string
	}{
		{name: "in use by another process", dir: inUse, want: []string{inUse, "in use", "another starling process", "pid"}},
		{name: "newer format", dir: newer, want: []string{newer, "newer starling"}},
		{name: "someone else's directory", dir: notOurs, want: []string{notOurs, "not a starling data directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := starling(t, nil, "agent", "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--profile", "fast", "--data-dir", tt.dir)
			if r.code != 1 || r.stdout != "" || strings.Contains(r.stderr, "goroutine ") {
				t.Fatalf("want exit 1 and a message, no trace\n%s", r)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "starling agent: ") {
				t.Fatalf("the error is not the last line of stderr\n%s", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("the error does not say %q\n%s", w, r)
				}
			}
		})
	}
}

var devServing = regexp.MustCompile(`node-0\s+http://(127\.0\.0\.1:\d+)\s`)

// dev gives every node a directory under --data-dir, kept across runs; without it, a
// temporary one it removes when it stops. It says where either lives.
func TestDev_dataDir(t *testing.T) {
	t.Run("kept", func(t *testing.T) {
		root := t.TempDir()
		args := []string{"dev", "--nodes", "2", "--port", "0", "--data-dir", root}
		d := background(t, nil, devServing, args...)
		if !strings.Contains(d.stdout.String(), filepath.Join(root, "node-N")) || !strings.Contains(d.stdout.String(), "--data-dir "+root+" again") {
			t.Fatalf("dev does not say where its data lives\n%s", d.stdout)
		}
		id := submitID(t, d.match[1], "echo", `"kept"`)
		if r := starling(t, nil, "wait", "--addr", d.match[1], id); r.code != 0 {
			t.Fatalf("wait: %s", r)
		}
		if code := d.stop(t); code != 0 {
			t.Fatalf("dev exited with %d\n%s", code, d.stderr)
		}
		for _, name := range []string{"node-0", "node-1"} {
			if _, err := os.Stat(filepath.Join(root, name, "VERSION")); err != nil {
				t.Fatalf("after dev stopped: %v", err)
			}
		}
		again := background(t, nil, devServing, args...)
		r := starling(t, nil, "status", "--addr", again.match[1], id)
		if r.code != 0 {
			t.Fatalf("status of a task of the previous dev: want exit 0\n%s", r)
		}
		if tk := decodeTask(t, r); tk.State != client.Succeeded || string(tk.Result) != `"kept"` {
			t.Fatalf("in the second dev: %s %s, want succeeded \"kept\"", tk.State, tk.Result)
		}
	})
	t.Run("temporary", func(t *testing.T) {
		where := regexp.MustCompile(`keeps its tasks in (\S+)/node-N, a temporary directory`)
		// An agent's STARLING_DATA_DIR is not dev's root.
		agentDir := t.TempDir()
		d := background(t, map[string]string{"STARLING_DATA_DIR": agentDir}, devServing, "dev", "--nodes", "1", "--port", "0")
		m := where.FindStringSubmatch(d.stdout.String())
		if m == nil {
			t.Fatalf("dev does not say where its data lives\n%s", d.stdout)
		}
		if _, err := os.Stat(filepath.Join(m[1], "node-0", "VERSION")); err != nil {
			t.Fatalf("node 0 has no data directory: %v", err)
		}
		if code := d.stop(t); code != 0 {
			t.Fatalf("dev exited with %d\n%s", code, d.stderr)
		}
		if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
			t.Fatalf("the temporary data directory outlived dev: %v", err)
		}
		if left, err := os.ReadDir(agentDir); err != nil || len(left) > 0 {
			t.Fatalf("dev wrote into STARLING_DATA_DIR: %v %v", left, err)
		}
	})
}

// bench --data-dir and --durable make its node durable, and say so; an agent's
// STARLING_DATA_DIR does not.
func TestBench_durable(t *testing.T) {
	agentDir := t.TempDir()
	vars := map[string]string{"STARLING_DATA_DIR": agentDir}
	dir := filepath.Join(t.TempDir(), "bench")
	tests := []struct {
		name    string
		args    []string
		durable bool
	}{
		{name: "in memory", args: nil, durable: false},
		{name: "--durable", args: []string{"--durable"}, durable: true},
		{name: "--data-dir", args: []string{"--data-dir", dir}, durable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := starling(t, vars, append([]string{"bench", "--workload", "roundtrip", "--tasks", "5"}, tt.args...)...)
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil {
				t.Fatalf("want exit 0 and one JSON object (%v)\n%s", err, r)
			}
			if got["durable"] != tt.durable || got["p50_ms"] == nil {
				t.Fatalf("durable = %v, p50_ms = %v; want durable %v and the roundtrip's keys\n%s", got["durable"], got["p50_ms"], tt.durable, r)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "VERSION")); err != nil {
		t.Fatalf("--data-dir: %v", err)
	}
	if left, err := os.ReadDir(agentDir); err != nil || len(left) > 0 {
		t.Fatalf("bench wrote into STARLING_DATA_DIR: %v %v", left, err)
	}
}
