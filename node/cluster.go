package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/engine"
	"github.com/starlingsched/starling/gossip"
	"github.com/starlingsched/starling/internal/wire"
	"github.com/starlingsched/starling/steal"
)

// ClusterConfig makes a node a member of a cluster: gossip membership, peer RPC and
// work stealing. A nil Config.Cluster runs a node on its own.
type ClusterConfig struct {
	// Gossip configures membership. Name, Meta and Events are set by the node.
	Gossip gossip.Config
	// RPCAddr is where peers connect for stealing and reports. Default: the gossip
	// bind host on a free port (peers learn it through gossip).
	RPCAddr string
	// RPCDial replaces the peer dialer (tests inject faults with it).
	RPCDial func(ctx context.Context, addr string) (net.Conn, error)
	// Steal configures the stealing policy; zero means steal.DefaultConfig.
	Steal steal.Config
	// NodeLosses is how many times a task may lose its executing node before it
	// fails with "node lost". 0 means the default, 3; a negative number allows no
	// loss at all (the first lost node fails the task).
	NodeLosses int
	// StealInterval is how often an idle node looks for work to steal and resends
	// what is unanswered. Default 10ms.
	StealInterval time.Duration
	// LoadInterval is how often the node publishes its load. Default 100ms.
	LoadInterval time.Duration
	// ReportResend is how often an unacknowledged result report is sent again to
	// its owner. Default 1s.
	ReportResend time.Duration
	// ConfirmDead is how long after gossip declares an owner dead other nodes still
	// answer for its tasks with 503 owner_unreachable (it may only be cut off, and
	// come back), before they answer "failed: owner lost". A member that left is
	// gone at once. Default 30s.
	ConfirmDead time.Duration
	// MaxGrantBytes bounds the dep results one steal grant carries; a task whose
	// deps' results alone are larger runs on its owner. Default 8 MiB.
	MaxGrantBytes int
}

// Profiles name coherent sets of timers: gossip's failure detection, stealing,
// load reports, report resends and how long a dead owner is given to come back all
// move together.
//
//   - lan: machines on a network. Deaths are noticed in seconds, false ones rarely.
//   - local: several nodes on one machine that also does other work (starling dev):
//     quicker than lan, and tolerant of a busy machine's pauses.
//   - fast: loopback tests. Deaths are noticed in well under a second; a loaded
//     machine produces false ones.
var profiles = map[string]func() *ClusterConfig{
	"lan": func() *ClusterConfig {
		return &ClusterConfig{
			Gossip: gossip.DefaultConfig(""), Steal: steal.DefaultConfig(), NodeLosses: 3,
			StealInterval: 10 * time.Millisecond, LoadInterval: 100 * time.Millisecond,
			ReportResend: time.Second, ConfirmDead: 30 * time.Second,
		}
	},
	"local": func() *ClusterConfig {
		return &ClusterConfig{
			Gossip: gossip.LocalConfig(""), Steal: steal.LocalConfig(), NodeLosses: 3,
			StealInterval: 10 * time.Millisecond, LoadInterval: 50 * time.Millisecond,
			ReportResend: 500 * time.Millisecond, ConfirmDead: 10 * time.Second,
		}
	},
	"fast": func() *ClusterConfig {
		return &ClusterConfig{
			Gossip: gossip.FastConfig(""), Steal: steal.LocalConfig(), NodeLosses: 3,
			StealInterval: 20 * time.Millisecond, LoadInterval: 20 * time.Millisecond,
			ReportResend: 200 * time.Millisecond, ConfirmDead: 2 * time.Second,
		}
	},
}

// Profiles lists the profile names.
var Profiles = []string{"lan", "local", "fast"}

// ClusterProfile returns the cluster configuration of a named profile: lan, local
// or fast.
func ClusterProfile(name string) (*ClusterConfig, error) {
	p, ok := profiles[name]
	if !ok {
		return nil, fmt.Errorf("node: unknown profile %q (lan, local or fast)", name)
	}
	return p(), nil
}

// DefaultClusterConfig is the lan profile: an agent on a network.
func DefaultClusterConfig() *ClusterConfig { return profiles["lan"]() }

// LocalClusterConfig is the local profile: several nodes on one busy machine.
func LocalClusterConfig() *ClusterConfig { return profiles["local"]() }

// FastClusterConfig is the fast profile: nodes on one machine in tests and
// benchmarks.
func FastClusterConfig() *ClusterConfig { return profiles["fast"]() }

func (c *ClusterConfig) fill() {
	if c.Steal == (steal.Config{}) {
		c.Steal = steal.DefaultConfig()
	}
	switch {
	case c.NodeLosses == 0:
		c.NodeLosses = 3
	case c.NodeLosses < 0:
		c.NodeLosses = 0 // a zero budget, which 0 cannot say
	}
	if c.StealInterval <= 0 {
		c.StealInterval = 10 * time.Millisecond
	}
	if c.LoadInterval <= 0 {
		c.LoadInterval = 100 * time.Millisecond
	}
	if c.ReportResend <= 0 {
		c.ReportResend = time.Second
	}
	if c.ConfirmDead <= 0 {
		c.ConfirmDead = 30 * time.Second
	}
	if c.MaxGrantBytes <= 0 {
		c.MaxGrantBytes = 8 << 20
	}
}

// engineConfig is the engine's share of the cluster configuration.
func (c *ClusterConfig) engineConfig() *engine.ClusterConfig {
	g := c.Gossip
	keep := g.ReconnectTimeout
	if keep <= 0 {
		keep = time.Hour
	}
	ttl := g.LoadTTL
	if ttl <= 0 {
		ttl = max(5*time.Second, 5*c.LoadInterval)
	}
	return &engine.ClusterConfig{
		Steal: c.Steal, NodeLosses: c.NodeLosses, StealInterval: c.StealInterval, LoadInterval: c.LoadInterval,
		LoadTTL: ttl, ReportResend: c.ReportResend, ReportKeep: keep, MaxGrantBytes: c.MaxGrantBytes,
		OwnerGrace: c.ConfirmDead,
	}
}

// clusterIO is the node's peer plane: gossip and peer RPC. Its fields are set by
// startCluster and never replaced.
type clusterIO struct {
	cfg ClusterConfig
	// mu guards gossip and wire while startCluster sets them (the loop may already
	// run) and pendingLoad, the load the engine published before gossip was up.
	mu          sync.Mutex
	gossip      *gossip.Cluster
	wire        *wire.Transport[engine.Message]
	pendingLoad []byte
	// trimmed is set once a load report had to be cut to fit gossip (logged once).
	trimmed atomic.Bool
}

// startCluster joins the cluster: peer RPC, gossip, and the loop that reads the
// peers' loads. The event loop runs already: their callbacks feed it.
func (n *Node) startCluster() error {
	c := n.cluster
	rpcAddr := c.cfg.RPCAddr
	if rpcAddr == "" {
		host, _, err := net.SplitHostPort(c.cfg.Gossip.BindAddr)
		if err != nil || host == "" {
			host = "127.0.0.1"
		}
		rpcAddr = net.JoinHostPort(host, "0")
	}
	ln, err := net.Listen("tcp", rpcAddr)
	if err != nil {
		return fmt.Errorf("node: peer rpc: listen on %s: %w", rpcAddr, err)
	}
	var key []byte
	if len(c.cfg.Gossip.SecretKey) > 0 {
		key = gossip.DeriveKey(c.cfg.Gossip.SecretKey, "starling peer rpc")
	}
	w, err := wire.New(wire.Config[engine.Message]{
		ID: n.id, Key: key, Listener: ln, Dial: c.cfg.RPCDial, Logger: n.log.With(slog.String("part", "rpc")),
		Handle: func(from string, m *engine.Message) { n.send(engine.Receive{From: from, Msg: m}) },
	})
	if err != nil {
		ln.Close()
		return err
	}
	c.mu.Lock()
	c.wire = w // before gossip starts: its events lead to sends
	c.mu.Unlock()
	gc := c.cfg.Gossip
	gc.Name = n.cfg.Name
	gc.Logger = n.log.With(slog.String("part", "gossip"))
	gc.Events = gossip.EventFuncs{Join: n.memberUp, Update: n.memberUp, Leave: n.memberGone, Failed: n.memberGone}
	if gc.Meta, err = msgpack.Marshal(n.meta(n.reg.Types())); err != nil {
		w.Close()
		return err
	}
	g, err := gossip.New(gc)
	if err != nil {
		w.Close()
		return fmt.Errorf("node: %w", err)
	}
	n.handleMu.Lock()
	c.mu.Lock()
	c.gossip = g
	load := c.pendingLoad
	c.mu.Unlock()
	n.handleMu.Unlock()
	if load != nil {
		if err := g.SetLoad(load); err != nil {
			n.log.Warn("publishing the load report", slog.Any("err", err))
		}
	}
	n.goFunc(n.readLoads)
	return nil
}

// meta describes this node for gossip.
func (n *Node) meta(types []string) engine.Meta {
	return engine.Meta{
		ID: n.id, Inc: n.inc, HTTP: n.HTTPAddr(), RPC: n.cluster.wire.Addr(), Slots: n.cfg.Slots,
		Tags: n.cfg.Tags, Res: n.cfg.Resources, Types: types, Ver: n.cfg.Version, Durable: n.cfg.DataDir != "",
	}
}

// updateMeta announces a changed set of task types.
func (c *clusterIO) updateMeta(n *Node, types []string) error {
	b, err := msgpack.Marshal(n.meta(types))
	if err != nil {
		return err
	}
	return c.gossip.UpdateMeta(b)
}

// memberUp handles a join or an update from gossip (on gossip's event goroutine).
func (n *Node) memberUp(m gossip.Member) {
	if m.Local {
		return
	}
	var md engine.Meta
	if err := msgpack.Unmarshal(m.Meta, &md); err != nil || md.ID == "" {
		n.log.Warn("a member without Starling metadata", slog.String("member", m.Name), slog.Any("err", err))
		return
	}
	n.send(engine.MemberUp{Name: m.Name, State: m.State.String(), Alive: m.State == gossip.StateAlive, Meta: md})
}

// memberGone handles a member declared dead or gone.
func (n *Node) memberGone(m gossip.Member) {
	if m.Local {
		return
	}
	var md engine.Meta
	_ = msgpack.Unmarshal(m.Meta, &md) // may be empty: the engine knows the member by name
	n.send(engine.MemberGone{Name: m.Name, State: m.State.String(), Left: m.State == gossip.StateLeft, Meta: md})
}

// readLoads hands the peers' gossiped load reports to the engine: a changed report
// at once, an unchanged one when gossip has a fresher copy of it (its origin repeats
// it so that it does not go stale), so the engine keeps believing it.
func (n *Node) readLoads() {
	c := n.cluster
	tick := time.NewTicker(c.cfg.LoadInterval)
	defer tick.Stop()
	type last struct {
		raw      []byte
		produced time.Time
	}
	sent := map[string]last{}
	for {
		select {
		case <-n.stopCtx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		seen := make(map[string]bool, len(sent))
		for _, m := range c.gossip.Members() {
			if m.Local || len(m.Load) == 0 {
				continue
			}
			seen[m.Name] = true
			produced := now.Add(-m.LoadAge)
			if l, ok := sent[m.Name]; ok && bytes.Equal(l.raw, m.Load) && produced.Sub(l.produced) < c.cfg.LoadInterval {
				continue
			}
			var l engine.Load
			if msgpack.Unmarshal(m.Load, &l) != nil {
				continue
			}
			sent[m.Name] = last{m.Load, produced}
			if !n.send(engine.PeerLoad{Name: m.Name, Load: l, Age: m.LoadAge}) {
				return
			}
		}
		for name := range sent {
			if !seen[name] {
				delete(sent, name) // gone from gossip: forget its last report
			}
		}
	}
}

// carryOut sends what the engine decided for the peers.
func (c *clusterIO) carryOut(n *Node, rd *engine.Ready) {
	c.mu.Lock()
	w, g := c.wire, c.gossip
	c.mu.Unlock()
	if w != nil { // before the peer plane is up there is nobody to send to
		for _, m := range rd.Messages {
			if err := w.Send(m.Addr, m.Msg); err != nil {
				n.log.Debug("send to peer failed", slog.String("peer", m.To), slog.Any("err", err))
			}
		}
		for _, addr := range rd.Drop {
			w.Drop(addr)
		}
	}
	if rd.Load != nil {
		b, trimmed, err := engine.EncodeLoad(rd.Load, gossip.MaxLoadSize)
		if err == nil && g == nil {
			c.mu.Lock()
			if c.gossip == nil {
				c.pendingLoad = b // startCluster publishes it
			} else {
				g = c.gossip
			}
			c.mu.Unlock()
		}
		if err == nil && g != nil {
			err = g.SetLoad(b)
		}
		if err != nil {
			n.log.Warn("publishing the load report", slog.Any("err", err))
		} else if trimmed && !c.trimmed.Swap(true) {
			n.log.Warn("the load report is over gossip's limit: it carries the highest-priority backlog classes only",
				slog.Int("limit", gossip.MaxLoadSize), slog.Int("classes", len(rd.Load.Backlog)))
		}
	}
}

// stop leaves the cluster (gracefully when leave is set) and stops its parts.
func (c *clusterIO) stop(n *Node, ctx context.Context, leave bool) {
	if c.gossip != nil {
		if leave {
			timeout := 2 * time.Second
			if dl, ok := ctx.Deadline(); ok {
				timeout = min(timeout, time.Until(dl))
			}
			if err := c.gossip.Leave(timeout); err != nil {
				n.log.Warn("leaving the cluster", slog.Any("err", err))
			}
		}
		c.gossip.Shutdown(ctx)
	}
	if c.wire != nil {
		c.wire.Close()
	}
}
