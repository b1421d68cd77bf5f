package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/internal/faultnet"
	"github.com/starlingsched/starling/node"
)

// Options shape a cluster.
type Options struct {
	// Nodes is how many nodes to start (default 3).
	Nodes int
	// Slots per node (default 2).
	Slots int
	// Handlers are registered on every node before it starts.
	Handlers map[string]node.Handler
	// NodeHandlers, when set, returns more handlers for node i (named name), registered
	// before it starts, on every start: a handler only some nodes have, or one that
	// knows which node runs it.
	NodeHandlers func(i int, name string) map[string]node.Handler
	// Profile names the nodes' timers (node.ClusterProfile): fast (the default, for
	// tests), local or lan.
	Profile string
	// Configure may change node i's configuration before it starts.
	Configure func(i int, cfg *node.Config)
	// Logger receives every node's logs (default: discard).
	Logger *slog.Logger
	// Durable gives every node a data directory (node.Config.DataDir), so that
	// Restart brings a killed or stopped node back as the same node: its id, its
	// tasks. Without it, Restart starts a new node (a new id) under the old name.
	Durable bool
	// DataDir is the root of the durable nodes' directories: node i keeps its
	// records in DataDir/node-i, which outlives the cluster (a second cluster on
	// the same root gets the nodes back). Setting it makes the nodes durable. Empty,
	// with Durable: a temporary directory that Close removes.
	DataDir string
}

// Cluster is a set of in-process nodes.
type Cluster struct {
	opts Options
	// Net injects the faults.
	Net *faultnet.Network

	mu      sync.Mutex // guards members
	members []*member

	// root holds the nodes' data directories ("" for in-memory nodes); Close
	// removes it when the cluster made it.
	root     string
	tempRoot bool
}

type member struct {
	name    string
	dataDir string // as the node was last started with ("": in memory)
	node    *node.Node
	client  *client.Client
	alive   bool
}

// New starts a cluster and waits until every node sees every other.
func New(opts Options) (*Cluster, error) {
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.Slots <= 0 {
		opts.Slots = 2
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{opts: opts, Net: faultnet.New(), root: opts.DataDir}
	if opts.Durable && c.root == "" {
		root, err := os.MkdirTemp("", "starling-testcluster-")
		if err != nil {
			return nil, fmt.Errorf("testcluster: %w", err)
		}
		c.root, c.tempRoot = root, true
	}
	for i := range opts.Nodes {
		m := &member{name: fmt.Sprintf("node-%d", i)}
		c.members = append(c.members, m)
		if err := c.startNode(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitConverged(30 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Start is New for a test: it fails the test on error and closes the cluster when the
// test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// startNode starts (or restarts) node i and joins it to the live nodes.
func (c *Cluster) startNode(i int) error {
	m := c.members[i]
	cfg := node.LocalConfig()
	cfg.Name = m.name
	cfg.Slots = c.opts.Slots
	cfg.Logger = c.opts.Logger
	if c.root != "" {
		cfg.DataDir = filepath.Join(c.root, m.name)
	}
	profile := c.opts.Profile
	if profile == "" {
		profile = "fast"
	}
	cc, err := node.ClusterProfile(profile) // Configure may change the timers
	if err != nil {
		return err
	}
	for _, other := range c.live() {
		if other != m {
			if addr := other.node.Members().Members[0].Gossip; addr != "" {
				cc.Gossip.Join = append(cc.Gossip.Join, addr)
			}
		}
	}
	nt, err := netTransport()
	if err != nil {
		return err
	}
	cc.Gossip.Transport = c.Net.Transport(m.name, nt)
	cc.RPCDial = c.Net.Dialer(m.name)
	cfg.Cluster = cc
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		nt.Shutdown()
		return err
	}
	handlers := maps.Clone(c.opts.Handlers)
	if c.opts.NodeHandlers != nil {
		if handlers == nil {
			handlers = map[string]node.Handler{}
		}
		maps.Copy(handlers, c.opts.NodeHandlers(i, m.name))
	}
	for typ, h := range handlers {
		if err := n.Handle(typ, h); err != nil {
			n.Shutdown(context.Background())
			return err
		}
	}
	if err := n.Start(); err != nil {
		return err
	}
	self := n.Members().Members[0]
	c.Net.Register(m.name, self.Gossip, self.RPC, self.HTTP)
	cl, err := client.New(n.HTTPAddr(), client.WithRetry(20, 20*time.Millisecond))
	if err != nil {
		return err
	}
	c.mu.Lock()
	m.node, m.client, m.alive, m.dataDir = n, cl, true, cfg.DataDir
	c.mu.Unlock()
	return nil
}

// netTransport binds memberlist's transport on a free loopback port (retrying when
// the TCP port it got is taken for UDP).
func netTransport() (*memberlist.NetTransport, error) {
	cfg := &memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: log.New(io.Discard, "", 0)}
	var err error
	for range 10 {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(cfg); err == nil {
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("testcluster: gossip transport: %w", err)
}

func (c *Cluster) live() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*member
	for _, m := range c.members {
		if m.alive {
			out = append(out, m)
		}
	}
	return out
}

// Len is the number of nodes, live or not.
func (c *Cluster) Len() int { return len(c.members) }

// Node returns node i (it may be stopped).
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].node
}

// Client returns a client of node i's API.
func (c *Cluster) Client(i int) *client.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].client
}

// DataDir returns the data directory node i keeps its records in, "" for a node in
// memory.
func (c *Cluster) DataDir(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].dataDir
}

// Alive reports whether node i runs.
func (c *Cluster) Alive(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i].alive
}

// WaitConverged waits until every live node sees every other live node alive.
func (c *Cluster) WaitConverged(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		live := c.live()
		names := map[string]bool{}
		for _, m := range live {
			names[m.name] = true
		}
		ok := true
		for _, m := range live {
			seen := 0
			for _, mem := range m.node.Members().Members {
				if names[mem.Name] && mem.State == "alive" {
					seen++
				}
			}
			if seen != len(live) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testcluster: %d nodes did not converge within %s", len(live), timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Submit submits specs to node i as one submission and returns their ids.
func (c *Cluster) Submit(ctx context.Context, i int, specs ...client.Spec) ([]string, error) {
	cl := c.Client(i)
	if len(specs) == 1 {
		t, err := cl.Submit(ctx, specs[0])
		if err != nil {
			return nil, err
		}
		return []string{t.ID}, nil
	}
	s, err := cl.SubmitBatch(ctx, specs)
	if err != nil {
		return nil, err
	}
	return s.IDs, nil
}

// Await waits until every task is terminal, asking its owner while the owner runs
// (during a partition another node may take it for lost) and any live node
// otherwise, and returns the records in order.
func (c *Cluster) Await(ctx context.Context, ids []string) ([]api.Task, error) {
	out := make([]api.Task, len(ids))
	for i, id := range ids {
		for {
			live := c.live()
			if len(live) == 0 {
				return out, errors.New("testcluster: no live node")
			}
			ask := live[i%len(live)]
			if owner, ok := node.OwnerOf(id); ok {
				for _, m := range live {
					if m.node.ID() == owner {
						ask = m
					}
				}
			}
			t, err := ask.client.Wait(ctx, id, 0)
			if err == nil && t.State.Terminal() {
				out[i] = t
				break
			}
			if ctx.Err() != nil {
				if err == nil {
					err = ctx.Err()
				}
				return out, fmt.Errorf("testcluster: task %s: %w (last state %q)", id, err, t.State)
			}
			time.Sleep(10 * time.Millisecond) // the node asked may have just died
		}
	}
	return out, nil
}

// Kill stops node i abruptly, as a crash would.
func (c *Cluster) Kill(i int) {
	m := c.down(i)
	if m != nil {
		m.node.Kill()
	}
}

// Stop stops node i gracefully: it leaves the cluster.
func (c *Cluster) Stop(i int) {
	m := c.down(i)
	if m != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.node.Shutdown(ctx)
	}
}

func (c *Cluster) down(i int) *member {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if !m.alive {
		return nil
	}
	m.alive = false
	return m
}

// Restart starts a stopped or killed node i again, under the same name, on new
// ports. A durable node (Options.Durable) comes back on its data directory as the
// same node, with its id and its tasks; any other is a new node with a new id.
func (c *Cluster) Restart(i int) error {
	if c.Alive(i) {
		return fmt.Errorf("testcluster: node %d is running", i)
	}
	return c.startNode(i)
}

// Pause cuts node i off the network without stopping it; Resume reconnects it.
func (c *Cluster) Pause(i int) { c.Net.Pause(c.members[i].name) }

// Resume undoes Pause.
func (c *Cluster) Resume(i int) { c.Net.Resume(c.members[i].name) }

// Partition splits the nodes into groups (by index) that cannot reach each other.
func (c *Cluster) Partition(groups ...[]int) {
	var named [][]string
	for _, g := range groups {
		var names []string
		for _, i := range g {
			names = append(names, c.members[i].name)
		}
		named = append(named, names)
	}
	c.Net.Partition(named...)
}

// Heal ends every partition.
func (c *Cluster) Heal() { c.Net.Heal() }

// Close stops every node gracefully, one after the other: nodes that leave together
// wait for each other's leave broadcasts (seconds), one at a time takes milliseconds.
// It removes the nodes' data directories when the cluster made them (Durable without
// DataDir).
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
	if c.tempRoot {
		os.RemoveAll(c.root)
	}
}
