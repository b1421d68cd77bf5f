package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The exec handler runs a program. It is off unless Config.AllowExec is set, and then
// limited to Config.ExecAllow when that is not empty. Each run gets its own process
// group; cancel, timeout and the end of the run kill the whole group, so nothing it
// started outlives the task.

// ExecPayload is the exec handler's input.
type ExecPayload struct {
	Argv  []string          `json:"argv"`
	Env   map[string]string `json:"env,omitempty"`
	Stdin *string           `json:"stdin,omitempty"`
	Dir   string            `json:"dir,omitempty"`
}

// ExecResult is the exec handler's result.
type ExecResult struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
}

type execRunner struct {
	allow     []string // resolved absolute paths; empty: any program
	outputCap int
}

func newExecRunner(allow []string, outputCap int) (*execRunner, error) {
	r := &execRunner{outputCap: outputCap}
	for _, p := range allow {
		abs, err := resolveProgram(p)
		if err != nil {
			return nil, fmt.Errorf("exec allowlist: %w", err)
		}
		r.allow = append(r.allow, abs)
	}
	return r, nil
}

func resolveProgram(p string) (string, error) {
	abs, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("program %q not found: %w", p, err)
	}
	if abs, err = filepath.Abs(abs); err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs, nil
}

// errExecNotAllowed marks a program outside the allowlist.
var errExecNotAllowed = errors.New("not in the exec allowlist")

// check validates a payload: the shape and the allowlist.
func (r *execRunner) check(payload json.RawMessage) (*ExecPayload, error) {
	var p ExecPayload
	if len(payload) == 0 {
		return nil, errors.New(`exec needs {"argv": ["program", "arg", ...]}`)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf(`exec needs {"argv": [...], "env": {...}, "stdin": "...", "dir": "..."}: %v`, err)
	}
	if len(p.Argv) == 0 || p.Argv[0] == "" {
		return nil, errors.New("argv must name a program")
	}
	if len(r.allow) > 0 {
		abs, err := resolveProgram(p.Argv[0])
		if err != nil || !slices.Contains(r.allow, abs) {
			return nil, fmt.Errorf("program %q is %w (allowed: %s)", p.Argv[0], errExecNotAllowed, strings.Join(r.allow, ", "))
		}
	}
	return &p, nil
}

func (r *execRunner) run(ctx context.Context, in *Input) (any, error) {
	p, err := r.check(in.Payload)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, p.Argv[0], p.Argv[1:]...)
	cmd.Dir = p.Dir
	cmd.Env = execEnv(p.Env, in)
	switch {
	case p.Stdin != nil:
		cmd.Stdin = strings.NewReader(*p.Stdin)
	case len(in.Deps) > 0:
		deps, err := json.Marshal(in.Deps)
		if err != nil {
			return nil, err
		}
		cmd.Stdin = bytes.NewReader(deps)
	}
	stdout := &capWriter{max: r.outputCap}
	stderr := &capWriter{max: r.outputCap}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	// Output pipes stay open while a straggler holds them; do not wait for it long.
	cmd.WaitDelay = 2 * time.Second

	runErr := cmd.Run()
	killGroup(cmd) // whatever the program left behind goes with it
	res := ExecResult{
		ExitCode:        cmd.ProcessState.ExitCode(),
		Stdout:          stdout.String(),
		Stderr:          stderr.String(),
		StdoutTruncated: stdout.dropped > 0,
		StderrTruncated: stderr.dropped > 0,
	}
	if cmd.ProcessState == nil { // it never started
		return nil, fmt.Errorf("exec %s: %w", p.Argv[0], runErr)
	}
	if ctx.Err() != nil {
		return res, context.Cause(ctx)
	}
	if runErr != nil {
		msg := fmt.Sprintf("exec %s: %v", p.Argv[0], runErr)
		if tail := lastLine(res.Stderr); tail != "" {
			msg += ": " + tail
		}
		return res, errors.New(msg)
	}
	return res, nil
}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// execEnv is the agent's environment without its own STARLING_ settings (the token
// among them), plus the task's variables.
func execEnv(extra map[string]string, in *Input) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STARLING_") {
			env = append(env, kv)
		}
	}
	env = append(env, "STARLING_TASK_ID="+in.ID, fmt.Sprintf("STARLING_ATTEMPT=%d", in.Attempt))
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// capWriter keeps the first max bytes written to it and counts the rest.
type capWriter struct {
	buf     bytes.Buffer
	max     int
	dropped int64
}

func (w *capWriter) Write(p []byte) (int, error) {
	room := w.max - w.buf.Len()
	if room >= len(p) {
		w.buf.Write(p)
		return len(p), nil
	}
	if room > 0 {
		w.buf.Write(p[:room])
	}
	w.dropped += int64(len(p) - max(room, 0))
	return len(p), nil
}

func (w *capWriter) String() string { return w.buf.String() }
