package gossip

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cluster is this process's membership in a gossip cluster: a running
// memberlist plus the goroutines that deliver events, disseminate load,
// re-join failed members and join the seeds. Create one with New and stop
// it with Shutdown. All methods are safe for concurrent use.
type Cluster struct {
	cfg         Config
	logger      *slog.Logger
	ml          *memberlist.Memberlist
	broadcasts  *memberlist.TransmitLimitedQueue
	events      *eventQueue // nil without Config.Events
	incarnation int64       // start time: orders our load reports across restarts
	localAddr   string

	stop     chan struct{} // closed by Shutdown
	stopped  chan struct{} // closed when every goroutine we started has returned
	wg       sync.WaitGroup
	runMu    sync.Mutex // guards closed and wg.Add
	closed   bool
	left     atomic.Bool  // Leave was called: stop joining and sending load
	leaveMu  sync.RWMutex // held shared across memberlist.Leave, exclusively to shut memberlist down
	stopOnce sync.Once
	stopErr  error

	numAlive atomic.Int32 // alive members, self included; read by the broadcast queue

	stateLock sync.Mutex // guards the fields below; never held while calling into memberlist
	members   map[string]*memberEntry
	loads     map[string]*loadReport  // remote members' reports by origin
	intents   map[string]*leaveIntent // graceful-leave announcements by member
	latestInc map[string]int64        // highest incarnation seen per member
	meta      []byte                  // local meta
	localLoad localLoad
}

// memberEntry is the table row for one member, updated from memberlist's
// EventDelegate.
type memberEntry struct {
	addr  string
	meta  []byte
	state State
	since time.Time // last state change
}

// New validates cfg, starts memberlist and the member's goroutines, and
// starts joining cfg.Join in the background. It returns once this member is
// listening; use Join to wait for a join.
func New(cfg Config) (c *Cluster, err error) {
	cfg = cfg.withDefaults()
	var transport memberlist.Transport
	if cfg.Transport != nil {
		transport = cfg.Transport
	}
	started := false
	defer func() {
		// We own the transport: do not leak its listeners on failure.
		if !started && transport != nil {
			_ = transport.Shutdown()
		}
	}()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	insecureOK := len(cfg.SecretKey) > 0 || cfg.Insecure
	bindIP, bindPort, _ := splitAddr(cfg.BindAddr, true) // validated
	if cfg.Transport == nil && !bindIP.IsLoopback() && !insecureOK {
		return nil, fmt.Errorf("%w (bind address %s)", ErrKeyRequired, cfg.BindAddr)
	}

	c = &Cluster{
		cfg:         cfg,
		logger:      cfg.Logger.With(slog.String("member", cfg.Name)),
		incarnation: time.Now().UnixNano(),
		stop:        make(chan struct{}),
		stopped:     make(chan struct{}),
		members:     make(map[string]*memberEntry),
		loads:       make(map[string]*loadReport),
		intents:     make(map[string]*leaveIntent),
		latestInc:   make(map[string]int64),
		meta:        bytes.Clone(cfg.Meta),
	}
	if cfg.Events != nil {
		c.events = newEventQueue(c.logger)
	}
	stdLogger := newStdLogger(c.logger)

	if transport == nil {
		nt, err := newNetTransport(bindIP, bindPort, stdLogger)
		if err != nil {
			return nil, fmt.Errorf("gossip: listen on %s: %w", cfg.BindAddr, err)
		}
		transport = nt
		bindPort = nt.GetAutoBindPort()
	} else {
		_, port, err := transport.FinalAdvertiseAddr("", 0)
		if err != nil {
			return nil, fmt.Errorf("gossip: transport address: %w", err)
		}
		bindPort = port
	}

	mc := memberlistConfig(cfg.Profile) // fresh for every member
	mc.Name = cfg.Name
	mc.Transport = transport
	mc.Logger = stdLogger
	mc.BindAddr = bindIP.String()
	mc.BindPort = bindPort
	mc.AdvertiseAddr, mc.AdvertisePort = "", bindPort
	if cfg.AdvertiseAddr != "" {
		ip, port, _ := splitAddr(cfg.AdvertiseAddr, false) // validated
		if port == 0 {
			port = bindPort
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ip.String(), port
	}
	mc.SecretKey = bytes.Clone(cfg.SecretKey)
	d := &delegate{c: c}
	mc.Delegate = d
	mc.Events = d
	c.broadcasts = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(c.numAlive.Load()) },
		RetransmitMult: mc.RetransmitMult,
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	c.ml = ml
	started = true

	c.stateLock.Lock()
	if self := c.members[cfg.Name]; self != nil {
		c.localAddr = self.addr
	}
	c.stateLock.Unlock()
	if cfg.Transport != nil && !insecureOK && !isLoopbackAddr(c.localAddr) {
		_ = ml.Shutdown()
		return nil, fmt.Errorf("%w (transport address %s)", ErrKeyRequired, c.localAddr)
	}

	if c.events != nil {
		c.goFunc(func() { c.events.run(c.stop, cfg.Events) })
	}
	c.goFunc(c.loadLoop)
	c.goFunc(c.reconnectLoop)
	if len(cfg.Join) > 0 {
		c.goFunc(c.joinSeeds)
	}
	c.logger.Info("gossip started",
		slog.String("addr", c.localAddr),
		slog.String("profile", cfg.Profile.String()),
		slog.Bool("encrypted", len(cfg.SecretKey) > 0),
		slog.Int("seeds", len(cfg.Join)))
	return c, nil
}

// newNetTransport binds memberlist's UDP+TCP transport. With port 0 the
// kernel picks a TCP port that may be taken for UDP, so retry a few times,
// as memberlist does.
func newNetTransport(ip net.IP, port int, logger *log.Logger) (*memberlist.NetTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{ip.String()}, BindPort: port, Logger: logger}
	attempts := 1
	if port == 0 {
		attempts = 10
	}
	var err error
	for range attempts {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(nc); err == nil {
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, err
}

func isLoopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// goFunc runs f on a goroutine that Shutdown waits for. It reports false,
// without running f, once Shutdown has begun.
func (c *Cluster) goFunc(f func()) bool {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

func (c *Cluster) isClosed() bool {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	return c.closed
}

// LocalName returns this member's name.
func (c *Cluster) LocalName() string { return c.cfg.Name }

// LocalAddr returns the host:port other members reach this one at: the
// advertised address, with the actual port when BindAddr asked for port 0.
func (c *Cluster) LocalAddr() string { return c.localAddr }

// NumAlive returns how many members, this one included, are alive.
func (c *Cluster) NumAlive() int { return int(c.numAlive.Load()) }

// Members returns every member this one knows, itself included, sorted by
// name: alive ones, failed ones until Config.ReconnectTimeout, and ones that
// left until Config.TombstoneTimeout.
func (c *Cluster) Members() []Member {
	now := time.Now()
	c.stateLock.Lock()
	out := make([]Member, 0, len(c.members))
	for name, e := range c.members {
		out = append(out, c.memberLocked(name, e, now))
	}
	c.stateLock.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member returns the named member, if known.
func (c *Cluster) Member(name string) (Member, bool) {
	c.stateLock.Lock()
	defer c.stateLock.Unlock()
	e, ok := c.members[name]
	if !ok {
		return Member{}, false
	}
	return c.memberLocked(name, e, time.Now()), true
}

func (c *Cluster) memberLocked(name string, e *memberEntry, now time.Time) Member {
	m := Member{
		Name:  name,
		Addr:  e.addr,
		Meta:  bytes.Clone(e.meta),
		State: e.state,
		Local: name == c.cfg.Name,
	}
	m.Load, m.LoadAge, _ = c.loadLocked(name, now)
	return m
}

// UpdateMeta replaces this member's metadata and broadcasts it; peers see a
// MemberUpdate. It waits up to Config.BroadcastTimeout for the broadcast to
// go out; on timeout the update is still queued and an error is returned.
func (c *Cluster) UpdateMeta(meta []byte) error {
	if len(meta) > MaxMetaSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(meta), MaxMetaSize)
	}
	c.leaveMu.RLock()
	defer c.leaveMu.RUnlock()
	if c.isClosed() {
		return ErrShutdown
	}
	c.stateLock.Lock()
	c.meta = bytes.Clone(meta)
	c.stateLock.Unlock()
	if err := c.ml.UpdateNode(c.cfg.BroadcastTimeout); err != nil {
		return fmt.Errorf("gossip: update meta: %w", err)
	}
	return nil
}

// Shutdown stops memberlist without announcing a departure (peers will
// declare this member failed; call Leave first to leave gracefully) and
// waits, bounded by ctx, for every goroutine this member started. It is
// idempotent; later calls wait the same way. A Leave or UpdateMeta in
// progress is allowed to finish first (each is bounded by its own timeout).
// Once Shutdown returns nil, no more Events are delivered.
func (c *Cluster) Shutdown(ctx context.Context) error {
	c.stopOnce.Do(func() {
		c.leaveMu.Lock()
		c.runMu.Lock()
		c.closed = true
		c.runMu.Unlock()
		close(c.stop)
		if err := c.ml.Shutdown(); err != nil {
			c.stopErr = fmt.Errorf("gossip: shutdown memberlist: %w", err)
		}
		c.leaveMu.Unlock()
		go func() {
			c.wg.Wait()
			close(c.stopped)
		}()
		c.logger.Info("gossip stopped")
	})
	select {
	case <-c.stopped:
		return c.stopErr
	case <-ctx.Done():
		return fmt.Errorf("gossip: shutdown: %w", ctx.Err())
	}
}

// sleep waits for d or Shutdown; it reports false on Shutdown.
func (c *Cluster) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.stop:
		return false
	case <-t.C:
		return true
	}
}

func hostPort(ip net.IP, port uint16) string {
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}
