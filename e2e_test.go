package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
)

// The multi-process test of DESIGN.md §8: the real binary, three agents on loopback,
// one of them killed with SIGKILL while it runs tasks.

// agent is a starling agent running as a process.
type agent struct {
	name   string
	http   string
	gossip string
	bin    string
	args   []string // the command line, the same at every start
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan struct{} // closed when the process has exited
}

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

// buildStarling builds the binary into a temporary directory.
func buildStarling(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "starling")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback port that is free for TCP and UDP (gossip uses both).
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port for TCP and UDP")
	return 0
}

// startAgent starts an agent; join is a gossip address to join ("" for the first),
// extra more flags.
func startAgent(t *testing.T, bin, name, join string, extra ...string) *agent {
	t.Helper()
	a := &agent{
		name:   name,
		http:   net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		gossip: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		bin:    bin,
		out:    &syncBuffer{},
	}
	a.args = []string{"agent", "--name", name, "--http", a.http, "--bind", a.gossip,
		"--profile", "fast", "--slots", "2", "--log-level", "warn"}
	if join != "" {
		a.args = append(a.args, "--join", join)
	}
	a.args = append(a.args, extra...)
	a.start(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", name, a.out)
		}
	})
	return a
}

// start runs the agent's command line (again, after it was killed: the same
// flags, the same ports).
func (a *agent) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = a.out, a.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", a.name, err)
	}
	done := make(chan struct{})
	a.cmd, a.done = cmd, done
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

func (a *agent) client(t *testing.T) *client.Client {
	t.Helper()
	cl, err := client.New(a.http, client.WithRetry(10, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestE2E_killNineAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three agents")
	}
	bin := buildStarling(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	agents := []*agent{startAgent(t, bin, "e2e-0", "")}
	agents = append(agents, startAgent(t, bin, "e2e-1", agents[0].gossip), startAgent(t, bin, "e2e-2", agents[0].gossip))
	clients := make([]*client.Client, len(agents))
	for i, a := range agents {
		clients[i] = a.client(t)
	}
	// Every agent sees all three alive.
	for i, cl := range clients {
		waitUntil(t, 30*time.Second, fmt.Sprintf("%s sees 3 members alive", agents[i].name), func() error {
			c, err := cl.Cluster(ctx)
			if err != nil {
				return err
			}
			alive := 0
			for _, m := range c.Members {
				if m.State == "alive" && m.HTTP != "" {
					alive++
				}
			}
			if alive != 3 {
				return fmt.Errorf("%d alive: %+v", alive, c.Members)
			}
			return nil
		})
	}
	out, err := exec.CommandContext(ctx, bin, "members", "--addr", agents[1].http).CombinedOutput()
	if err != nil {
		t.Fatalf("starling members: %v\n%s", err, out)
	}
	for _, a := range agents {
		if !bytes.Contains(out, []byte(a.name)) || !bytes.Contains(out, []byte(a.http)) {
			t.Errorf("starling members does not list %s at %s:\n%s", a.name, a.http, out)
		}
	}
	if got := strings.Count(string(out), "alive"); got != 3 {
		t.Errorf("starling members lists %d alive members, want 3:\n%s", got, out)
	}

	// 1,000 sleep tasks to agent 0, in batches.
	const total, batch = 1000, 100
	var ids []string
	for len(ids) < total {
		specs := make([]client.Spec, batch)
		for i := range specs {
			specs[i] = client.Spec{Type: "sleep", Payload: json.RawMessage(`{"ms": 5}`)}
		}
		s, err := clients[0].SubmitBatch(ctx, specs)
		if err != nil {
			t.Fatalf("submit after %d tasks: %v", len(ids), err)
		}
		if len(s.IDs) != batch {
			t.Fatalf("a batch of %d was answered with %d ids", batch, len(s.IDs))
		}
		ids = append(ids, s.IDs...)
	}
	// SIGKILL agent 2 while it runs some of them.
	victim := agents[2]
	waitUntil(t, 20*time.Second, "agent 2 has run tasks of agent 0 and runs some now", func() error {
		l, err := clients[0].List(ctx, client.ListOptions{Limit: 1000})
		if err != nil {
			return err
		}
		ran, running := 0, 0
		for _, r := range l.Tasks {
			if r.Node == victim.name {
				ran++
				if r.State == client.Running {
					running++
				}
			}
		}
		if ran < 20 || running == 0 {
			return fmt.Errorf("%s ran %d tasks and runs %d", victim.name, ran, running)
		}
		return nil
	})
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done

	// Every accepted task ends, exactly once: succeeded, where it first ran or on
	// another agent. Ask the owner, and a sample of them from agent 1 too.
	deadline, dcancel := context.WithTimeout(ctx, 60*time.Second)
	defer dcancel()
	perNode := map[string]int{}
	rerun := 0
	for i, id := range ids {
		rec, err := clients[0].Wait(deadline, id, 0)
		if err != nil {
			t.Fatalf("task %d (%s): %v (last state %s)", i, id, err, rec.State)
		}
		if rec.State != client.Succeeded {
			t.Errorf("task %s ended %s: %s", id, rec.State, rec.Error)
		}
		if rec.NodeLosses > 0 {
			rerun++
			if rec.Node == victim.name {
				t.Errorf("task %s lost its node but is recorded as run on it", id)
			}
		}
		perNode[rec.Node]++
		if i%10 == 0 {
			again, err := clients[1].Get(ctx, id)
			if err != nil || again.State != rec.State || again.Attempt != rec.Attempt || again.Node != rec.Node {
				t.Errorf("agent 1 on task %s: %s attempt %d on %s (%v); the owner says %s attempt %d on %s",
					id, again.State, again.Attempt, again.Node, err, rec.State, rec.Attempt, rec.Node)
			}
		}
	}
	t.Logf("tasks per agent: %v; %d re-run after losing %s", perNode, rerun, victim.name)
	if perNode[agents[1].name] == 0 || perNode[victim.name]+rerun == 0 {
		t.Errorf("the work did not spread: %v", perNode)
	}

	// The CLI against the live agents.
	out, err = exec.CommandContext(ctx, bin, "submit", "--addr", agents[1].http, "--wait", "sleep", `{"ms":100}`).Output()
	if err != nil {
		t.Fatalf("starling submit --wait: %v\n%s", err, out)
	}
	var rec client.Task
	if err := json.Unmarshal(out, &rec); err != nil {
		t.Fatalf("starling submit --wait printed %q: %v", out, err)
	}
	if rec.State != client.Succeeded || rec.Spec.Type != "sleep" || !strings.Contains(string(rec.Result), "100") {
		t.Errorf("starling submit --wait: %s (type %q, result %s), want a succeeded sleep", rec.State, rec.Spec.Type, rec.Result)
	}
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An owner that freezes (SIGSTOP: its sockets stay open, nothing answers) must not hang
// the other nodes: once gossip declares it dead, a long poll forwarded to it ends with
// 503 owner_unreachable (it may only be cut off), and once its death is confirmed
// (the profile's ConfirmDead) the answer is "owner lost". Never a terminal answer
// before that: the owner could come back and finish the task.
func TestE2E_frozenOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two agents")
	}
	bin := buildStarling(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a0 := startAgent(t, bin, "frozen-0", "")
	a1 := startAgent(t, bin, "frozen-1", a0.gossip)
	c0, c1 := a0.client(t), a1.client(t)
	waitUntil(t, 30*time.Second, "two members alive", func() error {
		c, err := c1.Cluster(ctx)
		if err != nil {
			return err
		}
		if len(c.Members) != 2 || c.Members[1].State != "alive" {
			return fmt.Errorf("members %+v", c.Members)
		}
		return nil
	})
	// Occupy every slot of both agents so the long task stays with its owner.
	var ids []string
	for range 5 {
		task, err := c0.Submit(ctx, client.Spec{Type: "sleep", Payload: []byte(`{"ms": 120000}`)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	queued := ids[len(ids)-1]
	if err := a0.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a0.cmd.Process.Signal(syscall.SIGCONT) })
	start := time.Now()
	// One request, no retries: what a client sees at first.
	resp, err := http.Get("http://" + a1.http + "/v1/tasks/" + queued + "?wait=60s")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "owner_unreachable") {
		t.Fatalf("wait through the live node, once gossip declares the owner dead: %d %s; want 503 owner_unreachable", resp.StatusCode, body)
	}
	var got client.Task
	waitUntil(t, 30*time.Second, "the owner's death confirmed", func() error {
		got, err = c1.Get(ctx, queued)
		return err
	})
	if got.State != client.Failed || !strings.Contains(got.Error, "owner lost") {
		t.Fatalf("got %s %q; want failed: owner lost", got.State, got.Error)
	}
	if took := time.Since(start); took > 45*time.Second {
		t.Fatalf("the answer took %s; it should come once gossip declares the owner dead", took)
	}
}

// A durable agent killed with SIGKILL under load and started again with the same
// command (the same --data-dir, the same ports) loses nothing it acknowledged: every
// task it accepted ends exactly once, the same on every agent, and it answers for
// the tasks of its previous life.
func TestE2E_killNineDurableAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three agents")
	}
	bin := buildStarling(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	agents := []*agent{startAgent(t, bin, "durable-0", "", "--data-dir", dirs[0])}
	for i := 1; i < 3; i++ {
		agents = append(agents, startAgent(t, bin, fmt.Sprintf("durable-%d", i), agents[0].gossip, "--data-dir", dirs[i]))
	}
	clients := make([]*client.Client, len(agents))
	for i, a := range agents {
		clients[i] = a.client(t)
	}
	waitAlive(t, ctx, clients[0], 3)
	owner := agents[0]

	// Submit to agent 0 without retries, so that what it acknowledged is known, in
	// batches of sleeps of 20-50 ms, faster than the three agents run them.
	var (
		ackMu sync.Mutex
		acked []string
	)
	ackedNow := func() []string {
		ackMu.Lock()
		defer ackMu.Unlock()
		return slices.Clone(acked)
	}
	sleeps := func(n, seed int) []client.Spec {
		specs := make([]client.Spec, n)
		for i := range specs {
			specs[i] = client.Spec{Type: "sleep", Payload: json.RawMessage(fmt.Sprintf(`{"ms": %d}`, 20+(seed+i*7)%31))}
		}
		return specs
	}
	once, err := client.New(owner.http, client.WithRetry(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	submitted := make(chan error, 1)
	go func() {
		for k := 0; ; k++ {
			select {
			case <-stop:
				submitted <- nil
				return
			default:
			}
			s, err := once.SubmitBatch(ctx, sleeps(20, k))
			if err != nil {
				submitted <- err // the kill
				return
			}
			ackMu.Lock()
			acked = append(acked, s.IDs...)
			ackMu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	waitUntil(t, 20*time.Second, "agent 0 runs tasks, another agent runs some of them, a backlog waits", func() error {
		if n := len(ackedNow()); n < 200 {
			return fmt.Errorf("%d acknowledged", n)
		}
		l, err := clients[0].List(ctx, client.ListOptions{States: []client.State{client.Running, client.Queued}, Limit: 1000})
		if err != nil {
			return err
		}
		here, there, queued := 0, 0, 0
		for _, r := range l.Tasks {
			switch {
			case r.State == client.Queued:
				queued++
			case r.Node == owner.name:
				here++
			default:
				there++
			}
		}
		if here == 0 || there == 0 || queued < 20 {
			return fmt.Errorf("running on agent 0 %d, elsewhere %d; queued %d", here, there, queued)
		}
		return nil
	})
	before := ackedNow()
	if err := owner.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-owner.done
	close(stop)
	<-submitted
	owner.start(t)
	waitUntil(t, 20*time.Second, "agent 0 serves again", func() error { return clients[0].Ready(ctx) })
	waitAlive(t, ctx, clients[1], 3)

	// The same node: its new tasks carry its id, and a second agent on its directory
	// is refused.
	more, err := clients[0].SubmitBatch(ctx, sleeps(100, 1))
	if err != nil {
		t.Fatalf("submit to the restarted agent: %v", err)
	}
	oldOwner, _ := node.OwnerOf(before[0])
	if o, _ := node.OwnerOf(more.IDs[0]); o != oldOwner {
		t.Errorf("the restarted agent hands out ids of node %s, want its old id %s", o, oldOwner)
	}
	second := exec.CommandContext(ctx, bin, "agent", "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0", "--data-dir", dirs[0])
	out, err := second.CombinedOutput()
	if code := second.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "in use") {
		t.Errorf("a second agent on agent 0's data directory: exit %d (%v), want 1 and \"in use\":\n%s", code, err, out)
	}

	// Every acknowledged task ends once: succeeded, the same on every agent.
	ids := append(ackedNow(), more.IDs...)
	deadline, dcancel := context.WithTimeout(ctx, 60*time.Second)
	defer dcancel()
	perNode := map[string]int{}
	lost := 0
	for _, id := range ids {
		rec, err := clients[0].Wait(deadline, id, 0)
		if err != nil {
			t.Fatalf("task %s: %v (last state %s)", id, err, rec.State)
		}
		if rec.State != client.Succeeded || !strings.Contains(string(rec.Result), "slept_ms") {
			t.Errorf("task %s ended %s (%s): %s", id, rec.State, rec.Result, rec.Error)
		}
		perNode[rec.Node]++
		lost += rec.NodeLosses
		for k := 1; k < len(clients); k++ {
			again, err := clients[k].Get(ctx, id)
			if err != nil || again.State != rec.State || again.Attempt != rec.Attempt || again.Node != rec.Node || !bytes.Equal(again.Result, rec.Result) {
				t.Errorf("%s on task %s: %s attempt %d on %s, result %s (%v); agent 0 says %s attempt %d on %s, result %s",
					agents[k].name, id, again.State, again.Attempt, again.Node, again.Result, err, rec.State, rec.Attempt, rec.Node, rec.Result)
			}
		}
	}
	t.Logf("%d tasks acknowledged before the kill, %d after; per agent %v; %d node losses", len(before), len(ids)-len(before), perNode, lost)
	if lost == 0 {
		t.Errorf("no task counts a node loss, yet agent 0 was killed while it ran some")
	}
	if len(perNode) < 3 {
		t.Errorf("the work did not spread: %v", perNode)
	}

	// starling status of a task from before the kill, on the restarted agent.
	out, err = exec.CommandContext(ctx, bin, "status", "--addr", owner.http, before[0]).Output()
	if err != nil {
		t.Fatalf("starling status %s: %v\n%s", before[0], err, out)
	}
	var rec client.Task
	if err := json.Unmarshal(out, &rec); err != nil || rec.ID != before[0] || rec.State != client.Succeeded {
		t.Errorf("starling status %s: %s %s (%v)", before[0], rec.ID, rec.State, err)
	}
}

// waitAlive waits until the agent behind cl sees n members alive.
func waitAlive(t *testing.T, ctx context.Context, cl *client.Client, n int) {
	t.Helper()
	waitUntil(t, 30*time.Second, fmt.Sprintf("%d members alive", n), func() error {
		c, err := cl.Cluster(ctx)
		if err != nil {
			return err
		}
		alive := 0
		for _, m := range c.Members {
			if m.State == "alive" && m.HTTP != "" {
				alive++
			}
		}
		if alive != n {
			return fmt.Errorf("%d alive: %+v", alive, c.Members)
		}
		return nil
	})
}
