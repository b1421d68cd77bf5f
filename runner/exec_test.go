package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newExec(t testing.TB, allow []string, outputBytes int) *Exec {
	t.Helper()
	x, err := NewExec(allow, outputBytes)
	if err != nil {
		t.Fatalf("NewExec: %v", err)
	}
	return x
}

func execPayload(t testing.TB, p ExecPayload) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newExecPool is a pool with the exec handler, any program allowed, 64 bytes of output.
func newExecPool(t testing.TB) *harness {
	t.Helper()
	h := newPool(t, nil)
	x := newExec(t, nil, 64)
	h.handle(t, "exec", x.Run)
	h.reg.SetValidator("exec", x.Check)
	return h
}

func TestExec_runs(t *testing.T) {
	stdin := "in\n"
	for _, c := range []struct {
		name      string
		payload   ExecPayload
		deps      map[string]json.RawMessage
		want      ExecResult
		wantErr   string // contained in the error; "" means success
		noResult  bool
		checkTail bool
	}{
		{name: "stdout, stderr, stdin, env and attempt",
			payload: ExecPayload{Argv: []string{"sh", "-c", `echo out; echo err >&2; cat; echo "$FOO $STARLING_ATTEMPT $STARLING_TASK_ID"`},
				Stdin: &stdin, Env: map[string]string{"FOO": "bar"}},
			want: ExecResult{Stdout: "out\nin\nbar 2 t-1\n", Stderr: "err\n"}},
		{name: "a non-zero exit", payload: ExecPayload{Argv: []string{"sh", "-c", "echo why >&2; exit 3"}},
			want: ExecResult{ExitCode: 3, Stderr: "why\n"}, wantErr: "exec sh: exit status 3: why"},
		{name: "output over the cap",
			payload: ExecPayload{Argv: []string{"sh", "-c", `head -c 1000 /dev/zero | tr '\0' x; echo e >&2`}},
			want:    ExecResult{Stdout: strings.Repeat("x", 64), StdoutTruncated: true, Stderr: "e\n"}},
		{name: "a missing program", payload: ExecPayload{Argv: []string{"/no/such/program"}},
			wantErr: "exec /no/such/program", noResult: true},
		{name: "deps on stdin", payload: ExecPayload{Argv: []string{"cat"}},
			deps: map[string]json.RawMessage{"b": json.RawMessage(`5`), "a": json.RawMessage(`{"x":1}`)},
			want: ExecResult{Stdout: `{"a":{"x":1},"b":5}`}},
		{name: "own stdin over the deps", payload: ExecPayload{Argv: []string{"cat"}, Stdin: &stdin},
			deps: map[string]json.RawMessage{"a": json.RawMessage(`1`)},
			want: ExecResult{Stdout: "in\n"}},
		{name: "in a directory", payload: ExecPayload{Argv: []string{"pwd"}, Dir: "/"},
			want: ExecResult{Stdout: "/\n"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := newExec(t, nil, 64)
			in := &Input{ID: "t-1", Attempt: 2, Type: "exec", Payload: execPayload(t, c.payload), Deps: c.deps}
			v, err := x.Run(context.Background(), in)
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("error %v, want %q", err, c.wantErr)
			}
			if c.noResult {
				if v != nil {
					t.Errorf("result %+v, want none", v)
				}
				return
			}
			if res, ok := v.(ExecResult); !ok || res != c.want {
				t.Errorf("result %+v, want %+v", v, c.want)
			}
		})
	}
}

func TestExec_check(t *testing.T) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) on this machine")
	}
	allowTrue := newExec(t, []string{"true"}, 64)
	anything := newExec(t, nil, 64)
	for _, c := range []struct {
		name       string
		x          *Exec
		payload    string
		wantErr    string // contained; "" means valid
		notAllowed bool
	}{
		{"allowed by name", allowTrue, `{"argv":["true"]}`, "", false},
		{"allowed by path", allowTrue, fmt.Sprintf(`{"argv":[%q, "x"]}`, truePath), "", false},
		{"not in the allowlist", allowTrue, `{"argv":["ls"]}`, `program "ls" is not in the exec allowlist (allowed: `, true},
		{"not found", allowTrue, `{"argv":["no-such-program-xyz"]}`, "not in the exec allowlist", true},
		{"any program without an allowlist", anything, `{"argv":["ls","-l"]}`, "", false},
		{"no payload", anything, ``, `exec needs {"argv": ["program", "arg", ...]}`, false},
		{"an unknown field", anything, `{"args":["true"]}`, `unknown field "args"`, false},
		{"no argv", anything, `{"argv":[]}`, "argv must name a program", false},
		{"an empty program", anything, `{"argv":[""]}`, "argv must name a program", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.x.Check([]byte(c.payload))
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("Check(%s): %v, want %q", c.payload, err, c.wantErr)
			}
			if errors.Is(err, ErrExecNotAllowed) != c.notAllowed {
				t.Errorf("Check(%s): errors.Is(err, ErrExecNotAllowed) = %v, want %v", c.payload, !c.notAllowed, c.notAllowed)
			}
			if c.wantErr == "" {
				return
			}
			// Run refuses what Check refuses, without running anything.
			if v, err := c.x.Run(context.Background(), &Input{Payload: json.RawMessage(c.payload)}); err == nil || v != nil {
				t.Errorf("Run ran a payload Check refuses: %v, %v", v, err)
			}
		})
	}
}

func TestNewExec(t *testing.T) {
	for _, c := range []struct {
		name        string
		allow       []string
		outputBytes int
		want        string
	}{
		{"an unknown allowlisted program", []string{"true", "no-such-program-xyz"}, 64, `runner: exec allowlist: program "no-such-program-xyz" not found`},
		{"no output", nil, 0, "runner: exec output cap must be positive, got 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewExec(c.allow, c.outputBytes); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("NewExec: %v, want %q", err, c.want)
			}
		})
	}
}

// TestExec_allowlistRunsWhatItChecked: with an allowlist, the program that runs is
// the one that passed it, even when argv[0] is a relative path and dir is set (which
// would otherwise look argv[0] up again, from dir).
func TestExec_allowlistRunsWhatItChecked(t *testing.T) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) on this machine")
	}
	realTrue, _ := filepath.EvalSymlinks(truePath)
	x := newExec(t, []string{"true"}, 64)
	t.Chdir(filepath.Dir(realTrue)) // "./true" passes the allowlist from here
	dir := t.TempDir()
	fake := filepath.Join(dir, filepath.Base(realTrue))
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho escaped\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	payload := execPayload(t, ExecPayload{Argv: []string{"./" + filepath.Base(realTrue)}, Dir: dir})
	if err := x.Check(payload); err != nil {
		t.Fatalf("Check: %v", err)
	}
	v, err := x.Run(context.Background(), &Input{ID: "t-1", Attempt: 1, Payload: payload})
	if res, _ := v.(ExecResult); err != nil || res.Stdout != "" {
		t.Errorf("ran %+v, %v; want the allowlisted program, not the one in dir", v, err)
	}
}

// TestExec_envDropsStarlingSettings: the program does not see the agent's STARLING_
// settings (the token among them), only its task's.
func TestExec_envDropsStarlingSettings(t *testing.T) {
	t.Setenv("STARLING_TOKEN", "do-not-leak")
	x := newExec(t, nil, 1024)
	payload := execPayload(t, ExecPayload{Argv: []string{"sh", "-c", `env | grep ^STARLING_ | cut -d= -f1 | sort`}})
	v, err := x.Run(context.Background(), &Input{ID: "t-1", Attempt: 1, Payload: payload})
	if res, _ := v.(ExecResult); err != nil || res.Stdout != "STARLING_ATTEMPT\nSTARLING_TASK_ID\n" {
		t.Errorf("STARLING_ variables seen by the program: %+v %v", v, err)
	}
}

// processGone reports whether pid has exited. A zombie counts as gone: it is dead and
// only waits for its parent (here pid 1, which may never reap it) to collect it.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// startTree starts an exec run whose shell starts a background sleep and writes both
// pids to a file; it returns the pids once both run.
func startTree(t *testing.T, h *harness, id string) []int {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "pids")
	payload := execPayload(t, ExecPayload{Argv: []string{"sh", "-c", `sleep 30 & echo $$ $! > "$0.tmp" && mv "$0.tmp" "$0"; wait`, pidfile}})
	h.pool.Start(Run{ID: id, Attempt: 1, Epoch: 1, Type: "exec", Payload: payload})
	waitFor(t, 10*time.Second, "the exec to write its pids", func() bool { return fileExists(pidfile) })
	b, _ := os.ReadFile(pidfile)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file %q", b)
		}
		pids = append(pids, p)
	}
	if len(pids) != 2 {
		t.Fatalf("pid file %q", b)
	}
	for _, p := range pids {
		if processGone(p) {
			t.Fatalf("process %d is gone before the test did anything", p)
		}
	}
	t.Cleanup(func() {
		for _, p := range pids {
			if !processGone(p) {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
	return pids
}

func waitGone(t *testing.T, pids []int) {
	t.Helper()
	for _, p := range pids {
		waitFor(t, 10*time.Second, fmt.Sprintf("process %d to be gone", p), func() bool { return processGone(p) })
	}
}

// TestExec_stopKillsGroup: stopping a running exec kills its whole process group, the
// background child included, and the run fails with the cause; the slot is free again.
func TestExec_stopKillsGroup(t *testing.T) {
	for _, c := range []struct {
		name    string
		cause   error
		wantErr string
	}{
		{"cancel", ErrCancelled, "cancelled"},
		{"timeout", TimeoutError{time.Second}, "timeout: the run exceeded 1s"},
		{"shutdown", ErrStopped, "node: shutting down"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newExecPool(t)
			pids := startTree(t, h, "tree")
			h.pool.Stop("tree", 1, c.cause)
			d := h.next(t)
			if d.Err != c.wantErr {
				t.Errorf("stopped exec: %q, want %q", d.Err, c.wantErr)
			}
			var res ExecResult
			if err := json.Unmarshal(d.Result, &res); err != nil || res.ExitCode != -1 {
				t.Errorf("stopped exec's result %s (%v); want the killed program's, exit code -1", d.Result, err)
			}
			waitGone(t, pids)
			h.pool.Start(Run{ID: "next", Attempt: 1, Type: "exec", Payload: execPayload(t, ExecPayload{Argv: []string{"true"}})})
			if d := h.next(t); d.ID != "next" || d.Err != "" {
				t.Errorf("the next exec: %+v", d)
			}
		})
	}
}

// TestExec_leavesNoStragglers: a program that exits leaving a background child behind
// does not leave the child running after the run.
func TestExec_leavesNoStragglers(t *testing.T) {
	h := newExecPool(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	payload := execPayload(t, ExecPayload{Argv: []string{"sh", "-c", `sleep 30 >/dev/null 2>&1 & echo $! > "$0"`, pidfile}})
	h.pool.Start(Run{ID: "t-1", Attempt: 1, Type: "exec", Payload: payload})
	if d := h.next(t); d.Err != "" {
		t.Fatalf("exec: %s", d.Err)
	}
	b, err := os.ReadFile(pidfile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid == 0 {
		t.Fatalf("pid file: %q %v", b, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	waitFor(t, 10*time.Second, "the background child to be gone", func() bool { return processGone(pid) })
}
