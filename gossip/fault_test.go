package gossip

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// faultNet decides which loopback addresses can reach each other. Addresses
// placed in different groups by partition cannot; unlisted ones reach all.
type faultNet struct {
	mu    sync.Mutex // guards group
	group map[string]int
}

func newFaultNet() *faultNet { return &faultNet{group: map[string]int{}} }

// partition splits the given address sets from each other.
func (f *faultNet) partition(sides ...[]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, side := range sides {
		for _, addr := range side {
			f.group[addr] = i + 1
		}
	}
}

// heal lets everyone talk again.
func (f *faultNet) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.group)
}

func (f *faultNet) blocked(from, to string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	g1, ok1 := f.group[from]
	g2, ok2 := f.group[to]
	return ok1 && ok2 && g1 != g2
}

var errPartitioned = errors.New("fault injection: partitioned")

// faultTransport is a memberlist NetTransport that silently drops packets
// to, and refuses streams to, addresses its faultNet blocks. Every member
// uses one, so blocking outbound traffic on both sides cuts both directions.
type faultTransport struct {
	*memberlist.NetTransport
	net  *faultNet
	self string
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func newFaultTransport(t testing.TB, fn *faultNet) *faultTransport {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    newStdLogger(testLogger()),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &faultTransport{NetTransport: nt, net: fn, self: net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort()))}
}

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.net.blocked(t.self, addr) {
		return time.Now(), nil // lost in the network
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.net.blocked(t.self, a.Addr) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.net.blocked(t.self, addr) {
		return nil, errPartitioned
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.net.blocked(t.self, a.Addr) {
		return nil, errPartitioned
	}
	return t.NetTransport.DialAddressTimeout(a, timeout)
}
