package wire

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Errors returned by Send.
var (
	ErrClosed    = errors.New("wire: transport closed")
	ErrQueueFull = errors.New("wire: send queue to the peer is full")
)

const (
	magic            = "STRL1"
	nonceSize        = 16
	handshakeTimeout = 5 * time.Second
	writeTimeout     = 10 * time.Second
	dialTimeout      = 3 * time.Second
)

// Config configures a Transport of messages of type M.
type Config[M any] struct {
	// ID names this node to its peers in the handshake.
	ID string
	// Key authenticates peers; nil accepts any peer.
	Key []byte
	// Listener accepts peer connections; the transport owns it.
	Listener net.Listener
	// Dial opens a connection to a peer (default: net.Dialer). Tests inject faults here.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Handle is called for each message received, from the connection's reader
	// goroutine, in the order sent. It must not block for long. m is not reused.
	Handle func(from string, m *M)
	// QueueLimit bounds the messages queued for one peer (default 100,000).
	QueueLimit int
	// Logger receives the transport's logs (default: discard).
	Logger *slog.Logger
}

// Transport sends and receives messages of type M. It is safe for concurrent use.
type Transport[M any] struct {
	cfg Config[M]
	log *slog.Logger

	mu     sync.Mutex // guards peers, conns, closed
	peers  map[string]*peer[M]
	conns  map[net.Conn]struct{}
	closed bool

	done chan struct{}
	// ctx ends with done: dials in progress give up when the transport closes.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a transport: it accepts on cfg.Listener at once.
func New[M any](cfg Config[M]) (*Transport[M], error) {
	if cfg.ID == "" {
		return nil, errors.New("wire: Config.ID is empty")
	}
	if cfg.Listener == nil {
		return nil, errors.New("wire: Config.Listener is nil")
	}
	if cfg.Handle == nil {
		return nil, errors.New("wire: Config.Handle is nil")
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if cfg.QueueLimit <= 0 {
		cfg.QueueLimit = 100_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Transport[M]{
		cfg:   cfg,
		log:   cfg.Logger,
		peers: make(map[string]*peer[M]),
		conns: make(map[net.Conn]struct{}),
		done:  make(chan struct{}),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

// Addr is the address peers dial.
func (t *Transport[M]) Addr() string { return t.cfg.Listener.Addr().String() }

// Send queues m for the peer at addr, dialing it if needed. It does not block on the
// network. m must not be changed afterwards.
func (t *Transport[M]) Send(addr string, m *M) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	p := t.peers[addr]
	if p == nil {
		p = &peer[M]{addr: addr, wake: make(chan struct{}, 1), stop: make(chan struct{})}
		t.peers[addr] = p
		t.wg.Add(1)
		go t.write(p)
	}
	t.mu.Unlock()
	return p.enqueue(m, t.cfg.QueueLimit)
}

// Drop closes the connection to addr and discards what is queued for it (the peer
// died or left).
func (t *Transport[M]) Drop(addr string) {
	t.mu.Lock()
	p := t.peers[addr]
	delete(t.peers, addr)
	t.mu.Unlock()
	if p != nil {
		close(p.stop)
	}
}

// Close stops accepting, closes every connection and waits for the transport's
// goroutines. It is idempotent.
func (t *Transport[M]) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	t.cancel()
	for addr, p := range t.peers {
		close(p.stop)
		delete(t.peers, addr)
	}
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	err := t.cfg.Listener.Close()
	t.wg.Wait()
	return err
}

func (t *Transport[M]) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Transport[M]) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

// peer is the outgoing side towards one address.
type peer[M any] struct {
	addr string
	wake chan struct{}
	stop chan struct{}

	mu    sync.Mutex
	queue []*M
}

func (p *peer[M]) enqueue(m *M, limit int) error {
	p.mu.Lock()
	if len(p.queue) >= limit {
		p.mu.Unlock()
		return ErrQueueFull
	}
	p.queue = append(p.queue, m)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

func (p *peer[M]) take() []*M {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queue
	p.queue = nil
	return q
}

// write owns the connection to one peer: it dials when there is something to send and
// writes everything queued, flushing once per batch. A message that cannot be written
// is dropped with its batch.
func (t *Transport[M]) write(p *peer[M]) {
	defer t.wg.Done()
	var (
		conn net.Conn
		bw   *bufio.Writer
		enc  *msgpack.Encoder
	)
	closeConn := func() {
		if conn != nil {
			t.untrack(conn)
			conn = nil
		}
	}
	defer closeConn()
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-p.stop:
			return
		case <-t.done:
			return
		case <-p.wake:
		}
		batch := p.take()
		if len(batch) == 0 {
			continue
		}
		if conn == nil {
			c, err := t.dial(p.addr)
			if err != nil {
				t.log.Debug("peer unreachable; messages dropped", slog.String("peer", p.addr), slog.Int("dropped", len(batch)), slog.Any("err", err))
				select { // do not spin on a dead address
				case <-time.After(backoff):
				case <-p.stop:
					return
				case <-t.done:
					return
				}
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			conn = c
			bw = bufio.NewWriterSize(conn, 64<<10)
			enc = msgpack.NewEncoder(bw)
			enc.UseCompactInts(true)
		}
		if err := t.writeBatch(conn, bw, enc, batch); err != nil {
			t.log.Debug("write to peer failed; batch dropped", slog.String("peer", p.addr), slog.Int("dropped", len(batch)), slog.Any("err", err))
			closeConn()
		}
	}
}

func (t *Transport[M]) writeBatch(conn net.Conn, bw *bufio.Writer, enc *msgpack.Encoder, batch []*M) error {
	if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	for _, m := range batch {
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// dial connects to a peer and authenticates to it.
func (t *Transport[M]) dial(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, dialTimeout)
	defer cancel()
	c, err := t.cfg.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if !t.track(c) {
		return nil, ErrClosed
	}
	if err := t.clientHandshake(c); err != nil {
		t.untrack(c)
		return nil, err
	}
	return c, nil
}

type hello struct {
	ID  string `msgpack:"id"`
	MAC []byte `msgpack:"mac"`
}

func (t *Transport[M]) mac(nonce []byte, id string) []byte {
	if t.cfg.Key == nil {
		return nil
	}
	h := hmac.New(sha256.New, t.cfg.Key)
	h.Write(nonce)
	h.Write([]byte(id))
	return h.Sum(nil)
}

func (t *Transport[M]) clientHandshake(c net.Conn) error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	buf := make([]byte, len(magic)+nonceSize)
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("wire: handshake: %w", err)
	}
	if string(buf[:len(magic)]) != magic {
		return errors.New("wire: handshake: the peer does not speak the Starling peer protocol")
	}
	b, err := msgpack.Marshal(&hello{ID: t.cfg.ID, MAC: t.mac(buf[len(magic):], t.cfg.ID)})
	if err != nil {
		return err
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("wire: handshake: %w", err)
	}
	var ok [1]byte
	if _, err := io.ReadFull(c, ok[:]); err != nil || ok[0] != 1 {
		return errors.New("wire: handshake: the peer refused us (is the cluster key the same on both nodes?)")
	}
	return nil
}

func (t *Transport[M]) accept() {
	defer t.wg.Done()
	for {
		c, err := t.cfg.Listener.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("accept failed", slog.Any("err", err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !t.track(c) {
			return
		}
		t.wg.Add(1)
		go t.read(c)
	}
}

// read authenticates an accepted connection, then hands each message to Handle.
func (t *Transport[M]) read(c net.Conn) {
	defer t.wg.Done()
	defer t.untrack(c)
	br := bufio.NewReaderSize(c, 64<<10)
	from, err := t.serverHandshake(c, br)
	if err != nil {
		t.log.Warn("peer connection refused", slog.String("remote", c.RemoteAddr().String()), slog.Any("err", err))
		return
	}
	dec := msgpack.NewDecoder(br)
	for {
		m := new(M)
		if err := dec.Decode(m); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.log.Debug("peer connection ended", slog.String("peer", from), slog.Any("err", err))
			}
			return
		}
		t.cfg.Handle(from, m)
	}
}

func (t *Transport[M]) serverHandshake(c net.Conn, br *bufio.Reader) (string, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	if _, err := c.Write(append([]byte(magic), nonce...)); err != nil {
		return "", err
	}
	var h hello
	if err := msgpack.NewDecoder(br).Decode(&h); err != nil {
		return "", fmt.Errorf("read hello: %w", err)
	}
	if t.cfg.Key != nil && !hmac.Equal(h.MAC, t.mac(nonce, h.ID)) {
		c.Write([]byte{0})
		return "", fmt.Errorf("peer %q failed authentication (wrong cluster key)", h.ID)
	}
	if _, err := c.Write([]byte{1}); err != nil {
		return "", err
	}
	return h.ID, nil
}
