// Package faultnet injects network faults between in-process nodes: partitions and
// paused nodes, for memberlist's transport and for peer connections. It exists for
// testcluster; production code never uses it.
//
// Every node registers the addresses it listens on under its name. A message or a
// connection from one node to another passes only while the two can reach each
// other: they are in the same partition group and neither is paused. A connection
// opened while they could is broken at its next read or write once they cannot.
package faultnet

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrUnreachable is returned for a dial or write across a fault.
var ErrUnreachable = errors.New("faultnet: unreachable")

// Network is the fault state shared by a set of nodes.
type Network struct {
	mu     sync.RWMutex
	owner  map[string]string // address -> node name
	group  map[string]int    // node -> partition group; absent: group 0
	paused map[string]bool
}

// New returns a network without faults.
func New() *Network {
	return &Network{owner: make(map[string]string), group: make(map[string]int), paused: make(map[string]bool)}
}

// Register names the node that listens on addrs.
func (n *Network) Register(node string, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.owner[a] = node
	}
}

// Partition splits the nodes into groups that cannot reach each other. Nodes not
// named form one more group of their own.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = make(map[string]int)
	for i, g := range groups {
		for _, node := range g {
			n.group[node] = i + 1
		}
	}
}

// Heal ends every partition.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = make(map[string]int)
}

// Pause cuts a node off from everyone without stopping it; Resume reconnects it.
func (n *Network) Pause(node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.paused[node] = true
}

// Resume undoes Pause.
func (n *Network) Resume(node string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.paused, node)
}

// Reachable reports whether node from can reach the node listening on addr. Unknown
// addresses are reachable unless from is paused.
func (n *Network) Reachable(from, addr string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.paused[from] {
		return false
	}
	to, ok := n.owner[addr]
	if !ok {
		return true
	}
	return !n.paused[to] && n.group[from] == n.group[to]
}

// Dialer returns a dial function for node from that refuses unreachable peers and
// breaks connections when a fault starts.
func (n *Network) Dialer(from string) func(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if !n.Reachable(from, addr) {
			return nil, ErrUnreachable
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &conn{Conn: c, net: n, from: from, to: addr}, nil
	}
}

// conn breaks when its two ends stop being able to reach each other.
type conn struct {
	net.Conn
	net      *Network
	from, to string
}

func (c *conn) check() error {
	if !c.net.Reachable(c.from, c.to) {
		c.Conn.Close()
		return ErrUnreachable
	}
	return nil
}

func (c *conn) Read(b []byte) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	k, err := c.Conn.Read(b)
	if err == nil {
		err = c.check()
	}
	return k, err
}

func (c *conn) Write(b []byte) (int, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// Transport wraps memberlist's transport of node from: packets to or from unreachable
// nodes are dropped and streams to them refused.
func (n *Network) Transport(from string, inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	t := &transport{NodeAwareTransport: inner, net: n, from: from, packets: make(chan *memberlist.Packet),
		stop: make(chan struct{}), done: make(chan struct{})}
	t.wg.Add(1)
	go t.filter()
	return t
}

type transport struct {
	memberlist.NodeAwareTransport
	net      *Network
	from     string
	packets  chan *memberlist.Packet
	stop     chan struct{} // closed when Shutdown starts: packets are dropped
	done     chan struct{} // closed when the inner transport has shut down
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func (t *transport) filter() {
	defer t.wg.Done()
	in := t.NodeAwareTransport.PacketCh()
	for {
		// Keep draining the inner transport until it has shut down: its listeners
		// block on sending packets, and its Shutdown waits for them.
		select {
		case <-t.done:
			return
		case p := <-in:
			if !t.net.Reachable(t.from, p.From.String()) {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.stop: // memberlist no longer reads: drop it
			}
		}
	}
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if !t.net.Reachable(t.from, addr) {
		return time.Now(), nil // lost on the way, as UDP would be
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if !t.net.Reachable(t.from, a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if !t.net.Reachable(t.from, a.Addr) {
		return nil, ErrUnreachable
	}
	c, err := t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, net: t.net, from: t.from, to: a.Addr}, nil
}

func (t *transport) Shutdown() error {
	var err error
	t.stopOnce.Do(func() {
		close(t.stop)
		err = t.NodeAwareTransport.Shutdown()
		close(t.done)
		t.wg.Wait()
	})
	return err
}
