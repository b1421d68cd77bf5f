package wire

import (
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type msg struct {
	N    int    `msgpack:"n"`
	Body string `msgpack:"b,omitempty"`
}

type inbox struct {
	mu   sync.Mutex
	from []string
	got  []msg
}

func (b *inbox) handle(from string, m *msg) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.from = append(b.from, from)
	b.got = append(b.got, *m)
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

func newTransport(t *testing.T, id string, key []byte, box *inbox) *Transport[msg] {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config[msg]{ID: id, Key: key, Listener: ln, Handle: box.handle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestTransport_deliversInOrder(t *testing.T) {
	key := []byte("cluster key")
	var boxA, boxB inbox
	a := newTransport(t, "a", key, &boxA)
	b := newTransport(t, "b", key, &boxB)
	const n = 20_000
	for i := range n {
		if err := a.Send(b.Addr(), &msg{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(a.Addr(), &msg{N: -1, Body: "reply"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return boxB.len() == n && boxA.len() == 1 })
	for i, m := range boxB.got {
		if m.N != i || boxB.from[i] != "a" {
			t.Fatalf("message %d: got %+v from %q, want N=%d from a", i, m, boxB.from[i], i)
		}
	}
	if boxA.got[0].Body != "reply" || boxA.from[0] != "b" {
		t.Fatalf("reply: got %+v from %q", boxA.got[0], boxA.from[0])
	}
}

func TestTransport_refusesWrongKey(t *testing.T) {
	var boxA, boxB inbox
	a := newTransport(t, "a", []byte("one key"), &boxA)
	b := newTransport(t, "b", []byte("another key"), &boxB)
	a.Send(b.Addr(), &msg{N: 1})
	time.Sleep(200 * time.Millisecond) // nothing must arrive; give it a chance to
	if boxB.len() != 0 {
		t.Fatalf("a peer with the wrong key delivered %d messages", boxB.len())
	}
	// Without a key on the sender, a keyed receiver refuses too.
	c := newTransport(t, "c", nil, &inbox{})
	c.Send(b.Addr(), &msg{N: 2})
	time.Sleep(200 * time.Millisecond)
	if boxB.len() != 0 {
		t.Fatalf("a peer without a key delivered %d messages", boxB.len())
	}
}

func TestTransport_reconnectsAfterPeerRestart(t *testing.T) {
	var boxA, boxB inbox
	a := newTransport(t, "a", nil, &boxA)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	b, err := New(Config[msg]{ID: "b", Listener: ln, Handle: boxB.handle})
	if err != nil {
		t.Fatal(err)
	}
	a.Send(addr, &msg{N: 1})
	waitFor(t, 5*time.Second, func() bool { return boxB.len() == 1 })
	b.Close()

	var boxB2 inbox
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot rebind %s: %v", addr, err)
	}
	b2, err := New(Config[msg]{ID: "b", Listener: ln2, Handle: boxB2.handle})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	// The first sends may go to the dead connection and be lost: best effort. Keep
	// sending until one arrives on the new peer.
	waitFor(t, 10*time.Second, func() bool {
		a.Send(addr, &msg{N: 2})
		time.Sleep(20 * time.Millisecond)
		return boxB2.len() > 0
	})
}

func TestTransport_closedRefusesSend(t *testing.T) {
	a := newTransport(t, "a", nil, &inbox{})
	a.Close()
	if err := a.Send("127.0.0.1:1", &msg{}); err != ErrClosed {
		t.Fatalf("Send after Close: got %v, want ErrClosed", err)
	}
}
