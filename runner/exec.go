package runner

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

// Exec is the exec handler: it runs a program. A node offers it only when asked to,
// and then limited to an allowlist when that is not empty. Each run gets its own
// process group; cancel, timeout and the end of the run kill the whole group, so
// nothing it started outlives the task.
//
// Register it with its validator:
//
//	x, err := runner.NewExec(allow, 1<<20)
//	...
//	reg.Register("exec", x.Run)
//	reg.SetValidator("exec", x.Check)
type Exec struct {
	allow       []string // resolved absolute paths; empty: any program
	outputBytes int
}

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

// NewExec returns an exec handler that runs only the programs in allow (any program
// when allow is empty) and keeps the first outputBytes of stdout and of stderr each.
// The allowlist names programs as argv[0] would (a name looked up in PATH, or a path);
// each must exist now, and is remembered by its absolute path with symlinks resolved.
func NewExec(allow []string, outputBytes int) (*Exec, error) {
	if outputBytes <= 0 {
		return nil, fmt.Errorf("runner: exec output cap must be positive, got %d", outputBytes)
	}
	x := &Exec{outputBytes: outputBytes}
	for _, p := range allow {
		abs, err := resolveProgram(p)
		if err != nil {
			return nil, fmt.Errorf("runner: exec allowlist: %w", err)
		}
		x.allow = append(x.allow, abs)
	}
	return x, nil
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

// Check validates an exec payload: its shape, and its program against the allowlist.
// An error for a program outside the allowlist wraps ErrExecNotAllowed.
func (x *Exec) Check(payload []byte) error {
	_, _, err := x.check(payload)
	return err
}

// check validates a payload and returns it with the program to run: the resolved
// path that passed the allowlist, or argv[0] as given when there is no allowlist.
func (x *Exec) check(payload []byte) (*ExecPayload, string, error) {
	var p ExecPayload
	if len(payload) == 0 {
		return nil, "", errors.New(`exec needs {"argv": ["program", "arg", ...]}`)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, "", fmt.Errorf(`exec needs {"argv": [...], "env": {...}, "stdin": "...", "dir": "..."}: %v`, err)
	}
	if len(p.Argv) == 0 || p.Argv[0] == "" {
		return nil, "", errors.New("argv must name a program")
	}
	if len(x.allow) == 0 {
		return &p, p.Argv[0], nil
	}
	abs, err := resolveProgram(p.Argv[0])
	if err != nil || !slices.Contains(x.allow, abs) {
		return nil, "", fmt.Errorf("program %q is %w (allowed: %s)", p.Argv[0], ErrExecNotAllowed, strings.Join(x.allow, ", "))
	}
	return &p, abs, nil
}

// Run runs the program of in's payload: it is a Handler. The program gets the agent's
// environment without its STARLING_ variables, plus STARLING_TASK_ID,
// STARLING_ATTEMPT and the payload's env; on stdin, the payload's stdin or else the
// deps' results as one JSON object. A non-zero exit fails the run with the exit status
// and the last line of stderr; the result is an ExecResult either way.
func (x *Exec) Run(ctx context.Context, in *Input) (any, error) {
	p, prog, err := x.check(in.Payload)
	if err != nil {
		return nil, err
	}
	// Run the program that passed the allowlist, not argv[0] again: a relative
	// argv[0] would be looked up from Dir this time.
	cmd := exec.CommandContext(ctx, prog, p.Argv[1:]...)
	cmd.Args[0] = p.Argv[0]
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
	stdout := &capWriter{max: x.outputBytes}
	stderr := &capWriter{max: x.outputBytes}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd) }
	// Output pipes stay open while a straggler holds them; do not wait for it long.
	cmd.WaitDelay = 2 * time.Second

	runErr := cmd.Run()
	killGroup(cmd) // whatever the program left behind goes with it

	if cmd.ProcessState == nil { // it never started
		return nil, fmt.Errorf("exec %s: %w", p.Argv[0], runErr)
	}
	res := ExecResult{
		ExitCode:        cmd.ProcessState.ExitCode(),
		Stdout:          stdout.String(),
		Stderr:          stderr.String(),
		StdoutTruncated: stdout.dropped > 0,
		StderrTruncated: stderr.dropped > 0,
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
