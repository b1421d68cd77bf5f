package gossip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/memberlist"
)

// Load reports are opaque bytes with a version stamp. The stamp orders
// reports from one origin: first by incarnation (the origin's start time in
// Unix nanoseconds, so a restarted member with the same name supersedes its
// previous life), then by a counter the origin bumps on every send. A
// receiver keeps only the highest stamp per origin, only for members it
// sees alive, and only for LoadTTL after the origin produced it.

// Delegate message types: the first byte of every NotifyMsg / LocalState
// buffer this package produces.
const (
	msgLoad  byte = 1 // one load report (broadcast and relayed)
	msgState byte = 2 // push/pull state: all known load reports
	msgLeave byte = 3 // leave intent (see leave.go)
)

var errMalformed = errors.New("gossip: malformed message")

// loadReport is one member's load report.
type loadReport struct {
	origin      string
	incarnation int64
	version     uint64
	payload     []byte
	produced    time.Time // local clock: receive time minus the age it carried
}

// newer reports whether r supersedes old.
func (r *loadReport) newer(old *loadReport) bool {
	if old == nil {
		return true
	}
	if r.incarnation != old.incarnation {
		return r.incarnation > old.incarnation
	}
	return r.version > old.version
}

// appendReport encodes r with its age at now:
// name | incarnation | version | age ms | payload, lengths as uvarints.
func appendReport(b []byte, r *loadReport, now time.Time) []byte {
	age := max(now.Sub(r.produced).Milliseconds(), 0)
	b = appendString(b, r.origin)
	b = appendVarint(b, r.incarnation)
	b = binary.AppendUvarint(b, r.version)
	b = binary.AppendUvarint(b, uint64(age))
	b = binary.AppendUvarint(b, uint64(len(r.payload)))
	return append(b, r.payload...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// reader decodes the fields appendReport writes; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (d *reader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errMalformed
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errMalformed
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errMalformed
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b)
	d.b = d.b[n:]
	return out
}

func (d *reader) report(now time.Time) *loadReport {
	r := &loadReport{}
	r.origin = string(d.bytes())
	r.incarnation = d.varint()
	r.version = d.uvarint()
	age := d.uvarint()
	r.payload = d.bytes()
	if d.err != nil {
		return nil
	}
	if age > math.MaxInt64/uint64(time.Millisecond) {
		age = math.MaxInt64 / uint64(time.Millisecond)
	}
	r.produced = now.Add(-time.Duration(age) * time.Millisecond)
	return r
}

// encodeLoad frames one report as a msgLoad message.
func encodeLoad(r *loadReport, now time.Time) []byte {
	return appendReport([]byte{msgLoad}, r, now)
}

// decodeLoad parses a msgLoad message (type byte included).
func decodeLoad(buf []byte, now time.Time) (*loadReport, error) {
	if len(buf) == 0 || buf[0] != msgLoad {
		return nil, errMalformed
	}
	d := reader{b: buf[1:]}
	r := d.report(now)
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// encodeState frames reports as a msgState message: count, then reports.
func encodeState(reports []*loadReport, now time.Time) []byte {
	b := []byte{msgState}
	b = binary.AppendUvarint(b, uint64(len(reports)))
	for _, r := range reports {
		b = appendReport(b, r, now)
	}
	return b
}

// decodeState parses a msgState message (type byte included).
func decodeState(buf []byte, now time.Time) ([]*loadReport, error) {
	if len(buf) == 0 || buf[0] != msgState {
		return nil, errMalformed
	}
	d := reader{b: buf[1:]}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) { // every report takes at least a byte
		return nil, errMalformed
	}
	reports := make([]*loadReport, 0, n)
	for range n {
		r := d.report(now)
		if d.err != nil {
			return nil, d.err
		}
		reports = append(reports, r)
	}
	return reports, nil
}

// loadBroadcast is a load report queued in the TransmitLimitedQueue. It is
// named after its origin, so a newer report from the same origin replaces an
// older one still waiting in the queue.
type loadBroadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*loadBroadcast)(nil)

func newLoadBroadcast(r *loadReport, now time.Time) *loadBroadcast {
	return &loadBroadcast{name: "load/" + r.origin, msg: encodeLoad(r, now)}
}

// Invalidates reports whether b replaces other (same origin).
func (b *loadBroadcast) Invalidates(other memberlist.Broadcast) bool {
	nb, ok := other.(memberlist.NamedBroadcast)
	return ok && nb.Name() == b.name
}

// Name identifies the origin.
func (b *loadBroadcast) Name() string { return b.name }

// Message returns the encoded report.
func (b *loadBroadcast) Message() []byte { return b.msg }

// Finished does nothing: nobody waits for load broadcasts.
func (b *loadBroadcast) Finished() {}

// localLoad is this member's own report. Guarded by Cluster.stateLock.
type localLoad struct {
	payload []byte      // latest SetLoad
	setAt   time.Time   // when SetLoad was last called
	set     bool        // SetLoad was called at least once
	dirty   bool        // payload changed since the last send
	sent    *loadReport // the last report broadcast
}

// SetLoad sets this member's load report, an opaque blob of at most
// MaxLoadSize bytes. It is broadcast within Config.LoadInterval, re-sent
// every LoadTTL/3 while unchanged, and carried in push/pull state so new
// members learn it. Load is a hint: peers may see it late, or not at all.
func (c *Cluster) SetLoad(report []byte) error {
	if len(report) > MaxLoadSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrLoadTooLarge, len(report), MaxLoadSize)
	}
	c.stateLock.Lock()
	defer c.stateLock.Unlock()
	ll := &c.localLoad
	ll.dirty = ll.dirty || !ll.set || !bytes.Equal(ll.payload, report)
	ll.payload = bytes.Clone(report)
	if ll.payload == nil {
		ll.payload = []byte{}
	}
	ll.setAt = time.Now()
	ll.set = true
	return nil
}

// Load returns the named member's latest load report and roughly how long
// ago its origin produced it. ok is false when no report is known, it went
// stale (older than Config.LoadTTL), or the member is not alive. For the
// local member it returns the last SetLoad.
func (c *Cluster) Load(name string) (report []byte, age time.Duration, ok bool) {
	c.stateLock.Lock()
	defer c.stateLock.Unlock()
	return c.loadLocked(name, time.Now())
}

func (c *Cluster) loadLocked(name string, now time.Time) ([]byte, time.Duration, bool) {
	if name == c.cfg.Name {
		ll := &c.localLoad
		if !ll.set {
			return nil, 0, false
		}
		return bytes.Clone(ll.payload), now.Sub(ll.setAt), true
	}
	r := c.loads[name]
	if r == nil {
		return nil, 0, false
	}
	age := now.Sub(r.produced)
	if age >= c.cfg.LoadTTL {
		return nil, 0, false
	}
	return bytes.Clone(r.payload), max(age, 0), true
}

// loadLoop broadcasts the local report when it changed (or is due for a
// refresh) and drops stale remote reports, every LoadInterval.
func (c *Cluster) loadLoop() {
	t := time.NewTicker(c.cfg.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		var b *loadBroadcast
		c.stateLock.Lock()
		for name, r := range c.loads {
			if now.Sub(r.produced) >= c.cfg.LoadTTL {
				delete(c.loads, name)
			}
		}
		c.sweepIntentsLocked(now)
		ll := &c.localLoad
		if ll.set && !c.left.Load() && (ll.dirty || ll.sent == nil || now.Sub(ll.sent.produced) >= c.cfg.LoadTTL/3) {
			var version uint64 = 1
			if ll.sent != nil {
				version = ll.sent.version + 1
			}
			ll.sent = &loadReport{
				origin:      c.cfg.Name,
				incarnation: c.incarnation,
				version:     version,
				payload:     ll.payload,
				produced:    now,
			}
			ll.dirty = false
			b = newLoadBroadcast(ll.sent, now)
		}
		c.stateLock.Unlock()
		if b != nil {
			c.broadcasts.QueueBroadcast(b)
		}
	}
}

// acceptLoad stores r if it is fresh, from an alive remote member, and newer
// than what we hold. Reports that arrived by broadcast are relayed, so they
// spread epidemically; the queue keeps only the newest per origin.
func (c *Cluster) acceptLoad(r *loadReport, relay bool, now time.Time) bool {
	if r.origin == c.cfg.Name || now.Sub(r.produced) >= c.cfg.LoadTTL {
		return false
	}
	c.stateLock.Lock()
	e := c.members[r.origin]
	if e == nil || e.state != StateAlive || !r.newer(c.loads[r.origin]) {
		c.stateLock.Unlock()
		return false
	}
	c.loads[r.origin] = r
	c.latestInc[r.origin] = max(c.latestInc[r.origin], r.incarnation)
	c.stateLock.Unlock()
	if relay {
		c.broadcasts.QueueBroadcast(newLoadBroadcast(r, now))
	}
	return true
}

// loadState encodes every fresh report we hold, ours included, for push/pull.
func (c *Cluster) loadState(now time.Time) []byte {
	c.stateLock.Lock()
	reports := make([]*loadReport, 0, len(c.loads)+1)
	if c.localLoad.sent != nil && !c.left.Load() {
		reports = append(reports, c.localLoad.sent)
	}
	for name, r := range c.loads {
		if e := c.members[name]; e != nil && e.state == StateAlive && now.Sub(r.produced) < c.cfg.LoadTTL {
			reports = append(reports, r)
		}
	}
	c.stateLock.Unlock()
	return encodeState(reports, now)
}
