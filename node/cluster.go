package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/gossip"
	"github.com/starlingsched/starling/internal/api"
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
}

// DefaultClusterConfig is the configuration of an agent on a LAN.
func DefaultClusterConfig() *ClusterConfig {
	return &ClusterConfig{
		Gossip:        gossip.DefaultConfig(""),
		Steal:         steal.DefaultConfig(),
		NodeLosses:    3,
		StealInterval: 10 * time.Millisecond,
		LoadInterval:  100 * time.Millisecond,
		ReportResend:  time.Second,
	}
}

// FastClusterConfig has fast timers for nodes on one machine: tests, starling dev and
// benchmarks.
func FastClusterConfig() *ClusterConfig {
	return &ClusterConfig{
		Gossip:        gossip.FastConfig(""),
		Steal:         steal.LocalConfig(),
		NodeLosses:    3,
		StealInterval: 20 * time.Millisecond,
		LoadInterval:  20 * time.Millisecond,
		ReportResend:  200 * time.Millisecond,
	}
}

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
}

// meta is the static description of a node that gossip carries (at most 512 bytes).
type meta struct {
	ID    string           `msgpack:"i"`
	Inc   uint64           `msgpack:"n"`
	HTTP  string           `msgpack:"h"`
	RPC   string           `msgpack:"r"`
	Slots int              `msgpack:"s"`
	Tags  []string         `msgpack:"t,omitempty"`
	Res   map[string]int64 `msgpack:"c,omitempty"`
	Types []string         `msgpack:"y,omitempty"`
	Ver   string           `msgpack:"v,omitempty"`
}

// load is a node's load report, as gossip spreads it a few times a second.
type load struct {
	Ver     uint64           `msgpack:"v"`
	Queued  int              `msgpack:"q"`
	Bands   []api.Band       `msgpack:"p,omitempty"`
	Running int              `msgpack:"r"`
	Free    int              `msgpack:"f"`
	FreeRes map[string]int64 `msgpack:"x,omitempty"`
	Backlog []steal.Backlog  `msgpack:"b,omitempty"`
}

// peer is another node as this one knows it. Guarded by Node.mu.
type peer struct {
	meta     meta
	name     string
	state    string // alive, suspect, dead, left
	load     *load
	loadSeen time.Time
	gone     bool // dead or left: its tasks were re-queued, its records are lost
	goneAt   time.Time
	// lost is closed when the peer is declared gone: requests forwarded to it end.
	lost chan struct{}
	// final: it left or restarted, so this node id never comes back. A dead peer
	// may: a partition heals, a paused process resumes.
	final bool
}

// cluster is the node's cluster machinery. Its fields are set in New and never
// replaced; the state they point to is guarded by Node.mu unless said otherwise.
type cluster struct {
	cfg    ClusterConfig
	inc    uint64
	gossip *gossip.Cluster
	wire   *wire.Transport[peerMsg]
	thief  *steal.Thief
	victim *steal.Victim

	peers    map[string]*peer  // by node id
	names    map[string]string // name -> current node id
	foreign  map[string]*task  // tasks owned elsewhere, granted to this node to run
	outbox   map[string]*outgoing
	wake     chan struct{} // kicks the steal loop
	loadWake chan struct{} // asks the load loop to publish and push at once
	// reports gathers reports to owners (by owner id) for the report loop.
	reports    map[string][]report
	reportWake chan struct{}
	// onPeer indexes the tasks this node owns by the peer they are granted to or run
	// on (task.exec), so a peer's death finds its tasks without a scan.
	onPeer map[string]map[*task]struct{}
	// avgRun is a moving average of how long stolen runs take here: a thief of
	// short runs asks ahead (see prefetchBelow).
	avgRun time.Duration
	// cancels are cancels sent to executors and not yet confirmed, by task id.
	cancels map[string]*pendingCancel
	done    chan struct{} // closed when the node leaves the cluster
	// capability is what this node can run, for the thief.
	capability steal.Capability
}

// pendingCancel is a cancel resent until the executor confirms it.
type pendingCancel struct {
	exec   string
	epoch  uint64
	sentAt time.Time
	tries  int
}

// prefetchBelow: a thief whose stolen runs take less than this on average steals the
// next batch while its slots are still busy. Longer runs leave time to steal once a
// slot frees, and holding them in reserve would keep them from idle peers.
const prefetchBelow = 5 * time.Millisecond

// maxCancelTries bounds the resends of one cancel.
const maxCancelTries = 30

// outgoing is a final report waiting for its owner's acknowledgement.
type outgoing struct {
	owner  string
	report report
	sentAt time.Time
}

// startCluster joins the cluster: peer RPC, gossip, the steal and load loops.
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
	w, err := wire.New(wire.Config[peerMsg]{
		ID: n.id, Key: key, Listener: ln, Dial: c.cfg.RPCDial,
		Handle: n.handlePeer, Logger: n.log.With(slog.String("part", "rpc")),
	})
	if err != nil {
		ln.Close()
		return err
	}
	gc := c.cfg.Gossip
	gc.Name = n.cfg.Name
	gc.Logger = n.log.With(slog.String("part", "gossip"))
	gc.Events = gossip.EventFuncs{Join: n.memberUp, Update: n.memberUp, Leave: n.memberGone, Failed: n.memberGone}
	n.mu.Lock()
	c.wire = w // before gossip starts: its events may send
	md := n.metaLocked(w.Addr())
	n.mu.Unlock()
	if gc.Meta, err = msgpack.Marshal(md); err != nil {
		w.Close()
		return err
	}
	g, err := gossip.New(gc)
	if err != nil {
		w.Close()
		return fmt.Errorf("node: %w", err)
	}
	n.mu.Lock()
	c.gossip = g
	n.mu.Unlock()
	n.goFunc(n.stealLoop)
	n.goFunc(n.loadLoop)
	n.goFunc(n.reportLoop)
	return nil
}

// metaLocked describes this node for gossip.
func (n *Node) metaLocked(rpc string) meta {
	return meta{
		ID: n.id, Inc: n.cluster.inc, HTTP: n.HTTPAddr(), RPC: rpc, Slots: n.cfg.Slots,
		Tags: n.cfg.Tags, Res: n.cfg.Resources, Types: n.typesLocked(), Ver: n.cfg.Version,
	}
}

// stopCluster leaves the cluster (gracefully when leave is set) and stops its parts.
func (n *Node) stopCluster(ctx context.Context, leave bool) {
	c := n.cluster
	close(c.done)
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

// memberUp handles a join or an update from gossip.
func (n *Node) memberUp(m gossip.Member) {
	if m.Local {
		return
	}
	var md meta
	if err := msgpack.Unmarshal(m.Meta, &md); err != nil || md.ID == "" {
		n.log.Warn("a member without Starling metadata", slog.String("member", m.Name), slog.Any("err", err))
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.cluster
	if old, ok := c.names[m.Name]; ok && old != md.ID {
		// The member restarted under the same name: its old self is gone.
		n.peerGoneLocked(old, "restarted")
		n.peerFinalLocked(old)
	}
	p := c.peers[md.ID]
	if p == nil {
		p = &peer{lost: make(chan struct{})}
		c.peers[md.ID] = p
		n.log.Info("peer joined", slog.String("peer", m.Name), slog.String("id", md.ID), slog.String("http", md.HTTP))
	}
	if p.gone {
		if p.final || m.State != gossip.StateAlive {
			return // a restart gets a new node id; one that left never comes back
		}
		n.peerBackLocked(md.ID, p)
	}
	p.meta, p.name, p.state = md, m.Name, m.State.String()
	c.names[m.Name] = md.ID
}

// peerBackLocked takes back a peer that was declared dead but lives: a partition
// healed, or it was paused. What it ran for this node was re-queued with a new epoch
// when it was declared dead, so its late reports are fenced off; it works with this
// node again from now on, and hears the reports this node kept for it.
func (n *Node) peerBackLocked(id string, p *peer) {
	c := n.cluster
	p.gone, p.goneAt, p.lost = false, time.Time{}, make(chan struct{})
	n.log.Warn("peer back after being declared dead", slog.String("peer", p.name), slog.String("id", id))
	c.thief.PeerAlive(steal.NodeID(id))
	now := time.Now()
	for _, o := range c.outbox {
		if o.owner == id {
			o.sentAt = now.Add(-c.cfg.ReportResend) // resend at the next tick
		}
	}
	n.kick()
}

// memberGone handles a member declared dead or gone.
func (n *Node) memberGone(m gossip.Member) {
	if m.Local {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	id, ok := n.cluster.names[m.Name]
	if !ok {
		// Gone already? Gossip reports a member that left after declaring it
		// dead when the leave intent comes second.
		var md meta
		if msgpack.Unmarshal(m.Meta, &md) != nil || md.ID == "" {
			return
		}
		p := n.cluster.peers[md.ID]
		if p == nil || !p.gone || p.name != m.Name || p.state != gossip.StateDead.String() {
			return
		}
		id = md.ID
		p.state = m.State.String()
	}
	n.peerGoneLocked(id, m.State.String())
	if m.State == gossip.StateLeft {
		n.peerFinalLocked(id)
	}
}

// peerFinalLocked marks a gone peer as never coming back (it left, or restarted
// under a new id): the reports kept for it are dropped.
func (n *Node) peerFinalLocked(id string) {
	c := n.cluster
	if p := c.peers[id]; p != nil {
		p.final = true
	}
	for k, o := range c.outbox {
		if o.owner == id {
			delete(c.outbox, k)
		}
	}
}

// abandonedLocked reports whether a kept report's owner has been gone longer than
// gossip retries it: the report is dropped.
func (n *Node) abandonedLocked(o *outgoing, now time.Time) bool {
	keep := n.cluster.cfg.Gossip.ReconnectTimeout
	if keep <= 0 {
		keep = time.Hour
	}
	p := n.cluster.peers[o.owner]
	return p == nil || (p.gone && now.Sub(p.goneAt) > keep)
}

// peerGoneLocked gives a peer up: what it was running for this node runs again
// elsewhere, and what this node ran for it is cancelled (its records are lost). The
// reports owed to it are kept, with a lost report for every cancelled run, in case it
// comes back (a false death): until then nobody may wait for them, after that its
// owner re-queues what was running here.
func (n *Node) peerGoneLocked(id, why string) {
	c := n.cluster
	p := c.peers[id]
	if p == nil || p.gone {
		return
	}
	p.gone, p.goneAt = true, time.Now()
	close(p.lost)
	if why != "" {
		p.state = why
	}
	if c.names[p.name] == id {
		delete(c.names, p.name)
	}
	now := time.Now()
	n.log.Warn("peer gone", slog.String("peer", p.name), slog.String("id", id), slog.String("state", p.state))
	sid := steal.NodeID(id)
	c.thief.PeerDead(sid)
	for _, g := range c.victim.PeerDead(sid) {
		// A grant it had not acknowledged yet: it may have started the tasks (a
		// thief runs them before its acknowledgement is even sent), so they lost
		// a node like the ones it acknowledged. A task that kills every node it
		// starts on must use up its budget, whatever the timing.
		if t := n.store.get(g.ID); t != nil && t.epoch == g.Epoch && !t.state.Terminal() && t.heapIdx < 0 {
			n.executorLostLocked(t, p, now)
		}
	}
	lost := make([]*task, 0, len(c.onPeer[id]))
	for t := range c.onPeer[id] {
		if !t.state.Terminal() {
			lost = append(lost, t)
		}
	}
	for _, t := range lost {
		n.executorLostLocked(t, p, now)
	}
	for tid, t := range c.foreign {
		if t.owner == sid {
			n.dropForeignLocked(tid, t)
			rep := report{ID: t.id, Epoch: t.epoch, Attempt: t.attempt, State: api.Failed, Node: n.cfg.Name, At: now, Lost: true,
				Error: "the run was cancelled: its owner " + p.name + " was declared " + p.state}
			c.outbox[tid] = &outgoing{owner: id, report: rep, sentAt: now}
		}
	}
	if c.wire != nil && p.meta.RPC != "" {
		c.wire.Drop(p.meta.RPC)
	}
	n.dispatchLocked()
}

// executorLostLocked re-queues a task whose executing node is gone, or fails it once it
// has lost too many nodes.
func (n *Node) executorLostLocked(t *task, p *peer, now time.Time) {
	t.nodeLosses++
	n.setExecLocked(t, "")
	t.epoch++
	if t.nodeLosses > n.cluster.cfg.NodeLosses {
		n.terminateLocked(t, "failed", fmt.Sprintf("node lost: %s (%s) was %s; the task lost %d nodes, over the budget of %d",
			p.name, p.meta.ID, p.state, t.nodeLosses, n.cluster.cfg.NodeLosses), now)
		return
	}
	n.log.Debug("re-queueing a task of a lost node", slog.String("task", t.id), slog.String("peer", p.name), slog.Int("losses", t.nodeLosses))
	n.enqueueLocked(t, now)
}

// peerByID returns a live peer.
func (n *Node) peerLocked(id string) (*peer, bool) {
	p := n.cluster.peers[id]
	if p == nil || p.gone {
		return nil, false
	}
	return p, true
}

// sendLocked sends m to a live peer; false when the peer is unknown or gone.
func (n *Node) sendLocked(id string, m *peerMsg) bool {
	p, ok := n.peerLocked(id)
	if !ok || p.meta.RPC == "" {
		return false
	}
	if err := n.cluster.wire.Send(p.meta.RPC, m); err != nil && !errors.Is(err, wire.ErrClosed) {
		n.log.Debug("send to peer failed", slog.String("peer", p.name), slog.Any("err", err))
		return false
	}
	return true
}

// flushReports gives the owners of the runs this node finished a moment to
// acknowledge them before the node goes.
func (n *Node) flushReports(ctx context.Context) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n.mu.Lock()
		pending := len(n.cluster.outbox)
		n.mu.Unlock()
		if pending == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kick wakes the steal loop at once (a slot freed, the queue ran dry).
func (n *Node) kick() {
	if n.cluster == nil {
		return
	}
	select {
	case n.cluster.wake <- struct{}{}:
	default:
	}
}

// setExecLocked records where t runs for this node ("" : here, or nowhere yet).
func (n *Node) setExecLocked(t *task, id string) {
	if t.exec == id {
		return
	}
	if c := n.cluster; c != nil {
		if old := c.onPeer[t.exec]; old != nil {
			delete(old, t)
			if len(old) == 0 {
				delete(c.onPeer, t.exec)
			}
		}
		if id != "" {
			if c.onPeer[id] == nil {
				c.onPeer[id] = make(map[*task]struct{})
			}
			c.onPeer[id][t] = struct{}{}
		}
	}
	t.exec = id
}
