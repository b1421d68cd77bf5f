package steal

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func capOf(types []string, tags []string, res map[string]int64) Capability {
	c := Capability{Types: map[string]bool{}, Tags: map[string]bool{}, Resources: res}
	for _, t := range types {
		c.Types[t] = true
	}
	for _, t := range tags {
		c.Tags[t] = true
	}
	return c
}

func TestCapabilityCanServe(t *testing.T) {
	c := capOf([]string{"resize", "echo"}, []string{"gpu", "zone=eu"}, map[string]int64{"cpu": 4, "mem_mb": 1024})
	tests := []struct {
		name  string
		class Class
		want  bool
	}{
		{"plain type", Class{Type: "echo"}, true},
		{"unknown type", Class{Type: "exec"}, false},
		{"empty type", Class{}, false},
		{"one tag", Class{Type: "resize", Tags: []string{"gpu"}}, true},
		{"two tags", Class{Type: "resize", Tags: []string{"gpu", "zone=eu"}}, true},
		{"missing tag", Class{Type: "resize", Tags: []string{"gpu", "ssd"}}, false},
		{"k=v compared whole", Class{Type: "resize", Tags: []string{"zone=us"}}, false},
		{"bare key of k=v tag", Class{Type: "resize", Tags: []string{"zone"}}, false},
		{"resources within capacity", Class{Type: "echo", Resources: map[string]int64{"cpu": 4, "mem_mb": 512}}, true},
		{"resource over capacity", Class{Type: "echo", Resources: map[string]int64{"cpu": 5}}, false},
		{"resource the node lacks", Class{Type: "echo", Resources: map[string]int64{"gpu_mem": 1}}, false},
		{"zero amount requires nothing", Class{Type: "echo", Resources: map[string]int64{"gpu_mem": 0}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.CanServe(tt.class); got != tt.want {
				t.Errorf("CanServe(%+v) = %v, want %v", tt.class, got, tt.want)
			}
		})
	}
	t.Run("zero capability serves nothing", func(t *testing.T) {
		if (Capability{}).CanServe(Class{Type: "echo"}) {
			t.Error("zero Capability serves echo")
		}
	})
}

func TestPeerLoadServable(t *testing.T) {
	c := capOf([]string{"a"}, []string{"gpu"}, nil)
	p := PeerLoad{ID: "p", Backlog: []Backlog{
		{Class: Class{Type: "a"}, Count: 3, TopPriority: 1},
		{Class: Class{Type: "a", Tags: []string{"gpu"}}, Count: 2, TopPriority: 5},
		{Class: Class{Type: "b"}, Count: 10, TopPriority: 9},                        // wrong type
		{Class: Class{Type: "a", Tags: []string{"ssd"}}, Count: 10, TopPriority: 9}, // missing tag
		{Class: Class{Type: "a"}, Count: 0, TopPriority: 20},                        // empty
	}}
	count, top, ok := p.Servable(c)
	if !ok || count != 5 || top != 5 {
		t.Errorf("Servable = %d, %d, %v; want 5, 5, true", count, top, ok)
	}
	if _, _, ok := p.Servable(capOf([]string{"z"}, nil, nil)); ok {
		t.Error("Servable ok for a capability that serves nothing")
	}
	neg := PeerLoad{Backlog: []Backlog{{Class: Class{Type: "a"}, Count: 1, TopPriority: -3}}}
	if _, top, ok := neg.Servable(c); !ok || top != -3 {
		t.Errorf("negative priority: top %d ok %v; want -3 true", top, ok)
	}
}

func cands(prios ...int) []Candidate {
	out := make([]Candidate, len(prios))
	for i, p := range prios {
		id := string(rune('a' + i))
		out[i] = Candidate{ID: id, Epoch: uint64(i), Priority: p, Class: Class{Type: "a"}, Spec: []byte("spec " + id)}
	}
	return out
}

func TestChoose(t *testing.T) {
	all := capOf([]string{"a"}, nil, nil)
	gpuOnly := Class{Type: "a", Tags: []string{"gpu"}}
	tests := []struct {
		name  string
		max   int
		cap   Capability
		cands []Candidate
		want  []int
	}{
		{"nothing queued", 5, all, nil, nil},
		{"one queued is taken", 5, all, cands(0), []int{0}},
		{"half rounded up of 5", 10, all, cands(0, 0, 0, 0, 0), []int{0, 1, 2}},
		{"half of 4", 10, all, cands(0, 0, 0, 0), []int{0, 1}},
		{"bounded by max", 2, all, cands(0, 0, 0, 0, 0, 0, 0, 0), []int{0, 1}},
		{"max zero", 0, all, cands(0, 0), nil},
		{"highest priority first", 10, all, cands(1, 9, 3, 9), []int{1, 3}},
		{"ties keep queue order", 10, all, cands(5, 5, 5), []int{0, 1}},
		{"only what the thief can serve", 10, all,
			append(cands(0, 0, 0), Candidate{ID: "g1", Class: gpuOnly, Priority: 99}, Candidate{ID: "g2", Class: gpuOnly, Priority: 99}),
			[]int{0, 1}},
		{"half of the servable, not of all", 10, capOf([]string{"a"}, []string{"gpu"}, nil),
			[]Candidate{{ID: "x", Class: Class{Type: "b"}}, {ID: "y", Class: Class{Type: "b"}}, {ID: "g", Class: gpuOnly}},
			[]int{2}},
		{"nothing servable", 10, capOf([]string{"z"}, nil, nil), cands(1, 2, 3), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Choose(StealRequest{Max: tt.max, Cap: tt.cap}, tt.cands)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Choose = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPickVictim(t *testing.T) {
	c := capOf([]string{"a"}, nil, nil)
	load := func(id NodeID, count, top int) PeerLoad {
		return PeerLoad{ID: id, Backlog: []Backlog{{Class: Class{Type: "a"}, Count: count, TopPriority: top}}}
	}
	never := func(PeerLoad) bool { return false }
	tests := []struct {
		name    string
		peers   []PeerLoad
		skip    func(PeerLoad) bool
		want    []NodeID // acceptable answers; nil means none
		mustAll bool     // every acceptable answer must turn up over the runs
	}{
		{"no peers", nil, never, nil, false},
		{"only self", []PeerLoad{load("me", 5, 0)}, never, nil, false},
		{"nothing servable", []PeerLoad{{ID: "p", Backlog: []Backlog{{Class: Class{Type: "b"}, Count: 9}}}}, never, nil, false},
		{"single peer", []PeerLoad{load("p", 1, 0), load("q", 0, 0)}, never, []NodeID{"p"}, true},
		{"two peers: larger backlog wins", []PeerLoad{load("p", 1, 0), load("q", 7, 0)}, never, []NodeID{"q"}, true},
		{"higher priority beats larger backlog", []PeerLoad{load("p", 1, 3), load("q", 100, 0), load("r", 50, 2)}, never, []NodeID{"p"}, true},
		{"ties between two: either", []PeerLoad{load("p", 4, 0), load("q", 4, 0)}, never, []NodeID{"p", "q"}, true},
		{"skipped peers are out", []PeerLoad{load("p", 1, 0), load("q", 7, 9)}, func(p PeerLoad) bool { return p.ID == "q" }, []NodeID{"p"}, true},
		{"three equal-priority peers: never the smallest", []PeerLoad{load("p", 1, 0), load("q", 5, 0), load("r", 9, 0)}, never, []NodeID{"q", "r"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			seen := map[NodeID]bool{}
			for range 200 {
				e, ok := pickVictim(rng, c, "me", tt.peers, tt.skip)
				if ok != (tt.want != nil) {
					t.Fatalf("ok = %v, want %v", ok, tt.want != nil)
				}
				if !ok {
					continue
				}
				if !slices.Contains(tt.want, e.load.ID) {
					t.Fatalf("picked %q, want one of %v", e.load.ID, tt.want)
				}
				seen[e.load.ID] = true
			}
			if tt.mustAll {
				for _, id := range tt.want {
					if !seen[id] {
						t.Errorf("never picked %q in 200 draws", id)
					}
				}
			}
		})
	}
}

// TestPickVictimPowerOfTwo checks the distribution: with n equal-priority
// peers of distinct backlogs, the k-th smallest wins a draw of two with
// probability 2(k-1)/(n(n-1)), so the largest is picked most and the smallest
// never.
func TestPickVictimPowerOfTwo(t *testing.T) {
	c := capOf([]string{"a"}, nil, nil)
	var peers []PeerLoad
	for i := range 4 {
		peers = append(peers, PeerLoad{ID: NodeID(rune('p' + i)), Backlog: []Backlog{{Class: Class{Type: "a"}, Count: i + 1}}})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const draws = 12000
	got := map[NodeID]int{}
	for range draws {
		e, _ := pickVictim(rng, c, "me", peers, func(PeerLoad) bool { return false })
		got[e.load.ID]++
	}
	for k, p := range peers {
		want := float64(draws) * 2 * float64(k) / 12
		if d := float64(got[p.ID]) - want; d > 300 || d < -300 {
			t.Errorf("peer %s (backlog %d) picked %d times, want about %.0f", p.ID, k+1, got[p.ID], want)
		}
	}
}

func TestBackoff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.BackoffBase = 100 * time.Millisecond
	cfg.BackoffMax = time.Second
	tests := []struct {
		failures int
		full     time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{60, time.Second}, // no overflow
	}
	for _, jitter := range []float64{0, 0.5, 1} {
		cfg.Jitter = jitter
		rng := rand.New(rand.NewPCG(5, 6))
		for _, tt := range tests {
			lo := tt.full - time.Duration(jitter*float64(tt.full))
			minSeen, maxSeen := tt.full, time.Duration(0)
			for range 500 {
				d := backoff(rng, cfg, tt.failures)
				if d < lo || d > tt.full {
					t.Fatalf("jitter %v, %d failures: backoff %v outside [%v, %v]", jitter, tt.failures, d, lo, tt.full)
				}
				minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
			}
			if spread := tt.full - lo; spread > 0 && maxSeen-minSeen < spread/2 {
				t.Errorf("jitter %v, %d failures: backoffs span only [%v, %v] of [%v, %v]", jitter, tt.failures, minSeen, maxSeen, lo, tt.full)
			}
		}
	}
}

func TestStale(t *testing.T) {
	tests := []struct {
		current, reported uint64
		want              bool
	}{
		{3, 3, false},
		{3, 2, true},
		{3, 4, true}, // only the owner moves epochs: a higher one is not ours either
		{0, 0, false},
	}
	for _, tt := range tests {
		if got := Stale(tt.current, tt.reported); got != tt.want {
			t.Errorf("Stale(%d, %d) = %v, want %v", tt.current, tt.reported, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"default", func(*Config) {}, true},
		{"zero buffer", func(c *Config) { c.Buffer = 0 }, true},
		{"negative buffer", func(c *Config) { c.Buffer = -1 }, false},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, false},
		{"zero resend", func(c *Config) { c.ResendInterval = 0 }, false},
		{"zero backoff base", func(c *Config) { c.BackoffBase = 0 }, false},
		{"max below base", func(c *Config) { c.BackoffMax = c.BackoffBase - 1 }, false},
		{"jitter above one", func(c *Config) { c.Jitter = 1.5 }, false},
		{"negative jitter", func(c *Config) { c.Jitter = -0.1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.modify(&c)
			err := c.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, does not wrap ErrInvalidConfig", err)
			}
		})
	}
	if err := LocalConfig().Validate(); err != nil {
		t.Errorf("LocalConfig invalid: %v", err)
	}
}
