package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

func execNode(t testing.TB) *Node {
	return newTestNode(t, func(c *Config) { c.AllowExec = true; c.ExecOutputBytes = 64 })
}

func execSpec(t testing.TB, extra string, argv ...string) string {
	b, err := json.Marshal(ExecPayload{Argv: argv})
	if err != nil {
		t.Fatal(err)
	}
	return `{"type":"exec","payload":` + string(b) + extra + `}`
}

func execResult(t testing.TB, r api.Task) ExecResult {
	t.Helper()
	var res ExecResult
	if err := json.Unmarshal(r.Result, &res); err != nil {
		t.Fatalf("exec result %s: %v", r.Result, err)
	}
	return res
}

func TestExecRuns(t *testing.T) {
	n := execNode(t)
	r := waitTerminal(t, n, submit(t, n, `{"type":"exec","payload":{"argv":["sh","-c","echo out; echo err >&2; cat; echo \"$FOO $STARLING_ATTEMPT\""],"stdin":"in\n","env":{"FOO":"bar"}}}`).ID)
	res := execResult(t, r)
	if r.State != api.Succeeded || res.ExitCode != 0 || res.Stdout != "out\nin\nbar 1\n" || res.Stderr != "err\n" {
		t.Errorf("exec: %s %q; result %+v", r.State, r.Error, res)
	}

	r = waitTerminal(t, n, submit(t, n, execSpec(t, "", "sh", "-c", "echo why >&2; exit 3")).ID)
	res = execResult(t, r)
	if r.State != api.Failed || res.ExitCode != 3 || !strings.Contains(r.Error, "exit status 3") || !strings.Contains(r.Error, "why") {
		t.Errorf("a non-zero exit: %s %q; result %+v; want failed with the status and stderr's last line", r.State, r.Error, res)
	}

	r = waitTerminal(t, n, submit(t, n, execSpec(t, "", "sh", "-c", "head -c 1000 /dev/zero | tr '\\0' x")).ID)
	res = execResult(t, r)
	if r.State != api.Succeeded || len(res.Stdout) != 64 || !res.StdoutTruncated {
		t.Errorf("output over the cap: %s, %d bytes kept, truncated %v; want 64 and true", r.State, len(res.Stdout), res.StdoutTruncated)
	}

	r = waitTerminal(t, n, submit(t, n, execSpec(t, "", "/no/such/program")).ID)
	if r.State != api.Failed || !strings.Contains(r.Error, "/no/such/program") {
		t.Errorf("a missing program: %s %q", r.State, r.Error)
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

// startTree submits an exec whose shell starts a background sleep and writes both
// pids to a file; it returns the task id and the pids once both run.
func startTree(t *testing.T, n *Node, extra string) (string, []int) {
	t.Helper()
	pidfile := filepath.Join(t.TempDir(), "pids")
	id := submit(t, n, execSpec(t, extra, "sh", "-c", `sleep 30 & echo $$ $! > "$0.tmp" && mv "$0.tmp" "$0"; wait`, pidfile)).ID
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
	return id, pids
}

func waitGone(t *testing.T, pids []int) {
	t.Helper()
	for _, p := range pids {
		waitFor(t, 10*time.Second, fmt.Sprintf("process %d to be gone", p), func() bool { return processGone(p) })
	}
}

// TestExecCancelKillsGroup: cancelling a running exec kills its whole process group,
// the background child included.
func TestExecCancelKillsGroup(t *testing.T) {
	n := execNode(t)
	id, pids := startTree(t, n, "")
	if r := getTask(t, n, id); r.State != api.Running {
		t.Fatalf("exec is %s, want running", r.State)
	}
	if r := do(t, n, http.MethodDelete, "/v1/tasks/"+id, ""); r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	waitGone(t, pids)
	if r := getTask(t, n, id); r.State != api.Cancelled {
		t.Errorf("after cancel: %s", r.State)
	}
	// The slot is free again.
	if r := waitTerminal(t, n, submit(t, n, execSpec(t, "", "true")).ID); r.State != api.Succeeded {
		t.Errorf("the next exec: %s %s", r.State, r.Error)
	}
}

// TestExecTimeoutKillsGroup: a timed-out exec fails saying so, and nothing it started
// survives.
func TestExecTimeoutKillsGroup(t *testing.T) {
	n := execNode(t)
	id, pids := startTree(t, n, `,"timeout":"1s"`)
	r := waitTerminal(t, n, id)
	if r.State != api.Failed || !strings.Contains(r.Error, "timeout") {
		t.Errorf("timed-out exec: %s %q; want failed with timeout", r.State, r.Error)
	}
	waitGone(t, pids)
}

// TestExecLeavesNoStragglers: a program that exits leaving a background child behind
// does not leave the child running after the task.
func TestExecLeavesNoStragglers(t *testing.T) {
	n := execNode(t)
	pidfile := filepath.Join(t.TempDir(), "pid")
	spec := execSpec(t, "", "sh", "-c", `sleep 30 >/dev/null 2>&1 & echo $! > "$0"`, pidfile)
	r := waitTerminal(t, n, submit(t, n, spec).ID)
	if r.State != api.Succeeded {
		t.Fatalf("exec: %s %s", r.State, r.Error)
	}
	b, err := os.ReadFile(pidfile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid == 0 {
		t.Fatalf("pid file: %q %v", b, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	waitFor(t, 10*time.Second, "the background child to be gone", func() bool { return processGone(pid) })
}

// TestExecEnvDropsStarlingSettings: the program does not see the agent's STARLING_
// settings (the token among them), only its task's.
func TestExecEnvDropsStarlingSettings(t *testing.T) {
	t.Setenv("STARLING_TOKEN", "do-not-leak")
	n := execNode(t)
	r := waitTerminal(t, n, submit(t, n, execSpec(t, "", "sh", "-c", `env | grep ^STARLING_ | cut -d= -f1 | sort`)).ID)
	if res := execResult(t, r); res.Stdout != "STARLING_ATTEMPT\nSTARLING_TASK_ID\n" {
		t.Errorf("STARLING_ variables seen by the program: %q", res.Stdout)
	}
}
