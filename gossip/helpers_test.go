package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger logs to stderr when GOSSIP_TEST_LOG is set (debug with
// GOSSIP_TEST_LOG=debug), and discards otherwise.
func testLogger() *slog.Logger {
	switch os.Getenv("GOSSIP_TEST_LOG") {
	case "":
		return slog.New(slog.DiscardHandler)
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	default:
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
}

// start creates a Fast-profile member on an ephemeral loopback port and
// shuts it down when the test ends.
func start(t testing.TB, name string, opts ...func(*Config)) *Cluster {
	t.Helper()
	cfg := FastConfig(name)
	cfg.Logger = testLogger()
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { shutdown(t, c) })
	return c
}

func shutdown(t testing.TB, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown(%s): %v", c.LocalName(), err)
	}
}

func joining(seeds ...*Cluster) func(*Config) {
	return func(cfg *Config) {
		for _, s := range seeds {
			cfg.Join = append(cfg.Join, s.LocalAddr())
		}
	}
}

func withEvents(r *recorder) func(*Config) { return func(cfg *Config) { cfg.Events = r } }

// cluster starts n members named m0..m(n-1) that join m0 and waits until
// every one sees all n alive.
func cluster(t testing.TB, n int, opts ...func(*Config)) []*Cluster {
	t.Helper()
	cs := []*Cluster{start(t, "m0", opts...)}
	for i := 1; i < n; i++ {
		cs = append(cs, start(t, fmt.Sprintf("m%d", i), append(slices.Clone(opts), joining(cs[0]))...))
	}
	waitConverged(t, cs...)
	return cs
}

func waitConverged(t testing.TB, cs ...*Cluster) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d members to converge", len(cs)), func() bool {
		for _, c := range cs {
			if c.NumAlive() != len(cs) {
				return false
			}
			for _, o := range cs {
				if m, ok := c.Member(o.LocalName()); !ok || m.State != StateAlive {
					return false
				}
			}
		}
		return true
	})
}

// stateOf returns how c sees the named member ("absent" if unknown).
func stateOf(c *Cluster, name string) string {
	m, ok := c.Member(name)
	if !ok {
		return "absent"
	}
	return m.State.String()
}

// recorder is an Events that keeps everything it is told.
type recorder struct {
	mu     sync.Mutex
	events []recorded
}

type recorded struct {
	kind   string
	member Member
}

var _ Events = (*recorder)(nil)

func (r *recorder) add(kind string, m Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recorded{kind, m})
}

func (r *recorder) MemberJoin(m Member)   { r.add("join", m) }
func (r *recorder) MemberUpdate(m Member) { r.add("update", m) }
func (r *recorder) MemberLeave(m Member)  { r.add("leave", m) }
func (r *recorder) MemberFailed(m Member) { r.add("failed", m) }

// find returns the events of kind about name, in order.
func (r *recorder) find(kind, name string) []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Member
	for _, e := range r.events {
		if e.kind == kind && e.member.Name == name {
			out = append(out, e.member)
		}
	}
	return out
}

func (r *recorder) has(kind, name string) bool { return len(r.find(kind, name)) > 0 }

// freePort reserves and releases a loopback port nobody listens on.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// captureHandler is a slog.Handler that records messages and levels.
type captureHandler struct {
	mu      *sync.Mutex
	records *[]slog.Record
}

func newCapture() (*slog.Logger, func() []slog.Record) {
	h := captureHandler{mu: new(sync.Mutex), records: new([]slog.Record)}
	return slog.New(h), func() []slog.Record {
		h.mu.Lock()
		defer h.mu.Unlock()
		return slices.Clone(*h.records)
	}
}

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records = append(*h.records, r.Clone())
	return nil
}
func (h captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h captureHandler) WithGroup(string) slog.Handler      { return h }
