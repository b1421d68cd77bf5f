package record

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/starlingsched/starling/internal/api"
)

// The binary codec of a Record, for the write-ahead log: a version byte, then a
// bit mask of the fields present, then those fields in the order of their bits.
// Integers are varints (zigzag for signed ones), strings and bytes carry a varint
// length, a time is its Unix seconds and nanoseconds. A field absent from the mask
// has its zero value; a nil slice or map is absent and a non-nil empty one is
// present with length 0, so every Record decodes to one that encodes the same way.
//
// The codec is not msgpack's: Record does not implement encoding.BinaryMarshaler
// or BinaryUnmarshaler, which msgpack would otherwise use for the peer messages.

// CodecVersion is the version byte that starts every encoded record.
const CodecVersion = 1

// ErrCorrupt says bytes are not a record encoding this codec reads.
var ErrCorrupt = errors.New("record: corrupt encoding")

// The bits of a record's field mask, in encoding order.
const (
	fID = 1 << iota
	fSeq
	fGraph
	fGIdx
	fSpec
	fState
	fAttempt
	fFailures
	fNodeLosses
	fEpoch
	fExec
	fNode
	fCreated
	fQueued
	fStarted
	fFinished
	fRetryAt
	fWaiting
	fDeps
	fResult
	fError
	fVersion
	fAll = 1<<iota - 1
)

// The bits of a spec's field mask, in encoding order.
const (
	sType = 1 << iota
	sPayload
	sName
	sPriority
	sDeadline
	sTimeout
	sRetries
	sRequires
	sDeps
	sTrigger
	sIdem
	sAll = 1<<iota - 1
)

// The bits of a Requires' mask.
const (
	rTags = 1 << iota
	rResources
	rAll = 1<<iota - 1
)

// stateCodes maps the known states to one byte; 0 is followed by the state's string.
var stateCodes = [...]api.State{"", api.Pending, api.Queued, api.Running, api.Succeeded, api.Failed, api.Cancelled, api.UpstreamFailed}

func stateCode(s api.State) byte {
	for i := 1; i < len(stateCodes); i++ {
		if stateCodes[i] == s {
			return byte(i)
		}
	}
	return 0
}

// The range of Unix seconds a time may have: far beyond any RFC 3339 time, and far
// enough from the int64 limits that time.Unix(s, 0).Unix() == s.
const (
	minUnix = -1 << 62
	maxUnix = 1 << 62
)

// AppendBinary appends r's binary encoding to b. It implements
// encoding.BinaryAppender; Decode reads it back. Times keep their instant, not
// their location or monotonic reading (decoded times are in time.Local).
func (r *Record) AppendBinary(b []byte) ([]byte, error) {
	m := bit(fID, r.ID != "") |
		bit(fSeq, r.Seq != 0) |
		bit(fGraph, r.Graph != "") |
		bit(fGIdx, r.GIdx != 0) |
		bit(fSpec, r.Spec != nil) |
		bit(fState, r.State != "") |
		bit(fAttempt, r.Attempt != 0) |
		bit(fFailures, r.Failures != 0) |
		bit(fNodeLosses, r.NodeLosses != 0) |
		bit(fEpoch, r.Epoch != 0) |
		bit(fExec, r.Exec != "") |
		bit(fNode, r.Node != "") |
		bit(fCreated, !r.Created.IsZero()) |
		bit(fQueued, !r.Queued.IsZero()) |
		bit(fStarted, !r.Started.IsZero()) |
		bit(fFinished, !r.Finished.IsZero()) |
		bit(fRetryAt, !r.RetryAt.IsZero()) |
		bit(fWaiting, r.Waiting != "") |
		bit(fDeps, r.Deps != nil) |
		bit(fResult, r.Result != nil) |
		bit(fError, r.Error != "") |
		bit(fVersion, r.Version != 0)
	b = append(b, CodecVersion)
	b = binary.AppendUvarint(b, m)
	if m&fID != 0 {
		b = appendString(b, r.ID)
	}
	if m&fSeq != 0 {
		b = binary.AppendUvarint(b, r.Seq)
	}
	if m&fGraph != 0 {
		b = appendString(b, r.Graph)
	}
	if m&fGIdx != 0 {
		b = binary.AppendVarint(b, int64(r.GIdx))
	}
	if m&fSpec != 0 {
		var err error
		if b, err = appendSpec(b, r.Spec); err != nil {
			return b, err
		}
	}
	if m&fState != 0 {
		c := stateCode(r.State)
		b = append(b, c)
		if c == 0 {
			b = appendString(b, string(r.State))
		}
	}
	if m&fAttempt != 0 {
		b = binary.AppendVarint(b, int64(r.Attempt))
	}
	if m&fFailures != 0 {
		b = binary.AppendVarint(b, int64(r.Failures))
	}
	if m&fNodeLosses != 0 {
		b = binary.AppendVarint(b, int64(r.NodeLosses))
	}
	if m&fEpoch != 0 {
		b = binary.AppendUvarint(b, r.Epoch)
	}
	if m&fExec != 0 {
		b = appendString(b, r.Exec)
	}
	if m&fNode != 0 {
		b = appendString(b, r.Node)
	}
	for _, t := range [...]struct {
		bit uint64
		t   time.Time
	}{{fCreated, r.Created}, {fQueued, r.Queued}, {fStarted, r.Started}, {fFinished, r.Finished}, {fRetryAt, r.RetryAt}} {
		if m&t.bit != 0 {
			var err error
			if b, err = appendTime(b, t.t); err != nil {
				return b, err
			}
		}
	}
	if m&fWaiting != 0 {
		b = appendString(b, r.Waiting)
	}
	if m&fDeps != 0 {
		b = binary.AppendUvarint(b, uint64(len(r.Deps)))
		b = appendRawMap(b, r.Deps)
	}
	if m&fResult != 0 {
		b = appendBytes(b, r.Result)
	}
	if m&fError != 0 {
		b = appendString(b, r.Error)
	}
	if m&fVersion != 0 {
		b = binary.AppendUvarint(b, r.Version)
	}
	return b, nil
}

func appendSpec(b []byte, s *api.Spec) ([]byte, error) {
	var m uint64
	if s.Type != "" {
		m |= sType
	}
	if s.Payload != nil {
		m |= sPayload
	}
	if s.Name != "" {
		m |= sName
	}
	if s.Priority != 0 {
		m |= sPriority
	}
	if s.Deadline != nil {
		m |= sDeadline
	}
	if s.Timeout != 0 {
		m |= sTimeout
	}
	if s.Retries != 0 {
		m |= sRetries
	}
	if s.Requires != nil {
		m |= sRequires
	}
	if s.Deps != nil {
		m |= sDeps
	}
	if s.Trigger != "" {
		m |= sTrigger
	}
	if s.IdempotencyKey != "" {
		m |= sIdem
	}
	b = binary.AppendUvarint(b, m)
	if m&sType != 0 {
		b = appendString(b, s.Type)
	}
	if m&sPayload != 0 {
		b = appendBytes(b, s.Payload)
	}
	if m&sName != 0 {
		b = appendString(b, s.Name)
	}
	if m&sPriority != 0 {
		b = binary.AppendVarint(b, int64(s.Priority))
	}
	if m&sDeadline != 0 {
		var err error
		if b, err = appendTime(b, *s.Deadline); err != nil {
			return b, err
		}
	}
	if m&sTimeout != 0 {
		b = binary.AppendVarint(b, int64(s.Timeout))
	}
	if m&sRetries != 0 {
		b = binary.AppendVarint(b, int64(s.Retries))
	}
	if m&sRequires != 0 {
		q := s.Requires
		var rm uint64
		if q.Tags != nil {
			rm |= rTags
		}
		if q.Resources != nil {
			rm |= rResources
		}
		b = binary.AppendUvarint(b, rm)
		if rm&rTags != 0 {
			b = appendStrings(b, q.Tags)
		}
		if rm&rResources != 0 {
			b = binary.AppendUvarint(b, uint64(len(q.Resources)))
			b = appendIntMap(b, q.Resources)
		}
	}
	if m&sDeps != 0 {
		b = appendStrings(b, s.Deps)
	}
	if m&sTrigger != 0 {
		b = appendString(b, s.Trigger)
	}
	if m&sIdem != 0 {
		b = appendString(b, s.IdempotencyKey)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func appendTime(b []byte, t time.Time) ([]byte, error) {
	s := t.Unix()
	if s < minUnix || s > maxUnix {
		return b, fmt.Errorf("record: time %v out of range", t)
	}
	b = binary.AppendVarint(b, s)
	return binary.AppendUvarint(b, uint64(t.Nanosecond())), nil
}

// appendRawMap writes m's entries in key order, so that one record always encodes to
// the same bytes (a simulated disk stays deterministic).
func appendRawMap(b []byte, m map[string]json.RawMessage) []byte {
	if len(m) == 1 {
		for k, v := range m {
			return appendBytes(appendString(b, k), v)
		}
	}
	var buf [16]string
	for _, k := range sortedKeys(buf[:0], m) {
		b = appendBytes(appendString(b, k), m[k])
	}
	return b
}

func appendIntMap(b []byte, m map[string]int64) []byte {
	var buf [16]string
	for _, k := range sortedKeys(buf[:0], m) {
		b = binary.AppendVarint(appendString(b, k), m[k])
	}
	return b
}

// sortedKeys appends m's keys to keys, sorted.
func sortedKeys[V any](keys []string, m map[string]V) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func bit(m uint64, ok bool) uint64 {
	if ok {
		return m
	}
	return 0
}

// Decode reads a record that AppendBinary wrote. It checks every length against the
// bytes that remain before it allocates, so it never allocates more than b could
// describe, and it keeps no reference to b. An error wraps ErrCorrupt.
//
// It reads b twice: once to check it and to add up the lengths of its strings and
// byte strings, then to fill the record, with all its strings in one allocation and
// all its byte strings (payload, result, dep results) in another, since they live
// and die with the record.
func Decode(b []byte) (*Record, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if b[0] != CodecVersion {
		return nil, fmt.Errorf("%w: codec version %d (this build reads %d)", ErrCorrupt, b[0], CodecVersion)
	}
	var r Record
	var spec api.Spec
	d := decoder{b: b[1:]}
	r.walk(&d, &spec)
	if d.err != nil {
		return nil, d.err
	}
	// One allocation for the record and its spec, one for the strings, one for the
	// byte strings.
	rs := new(struct {
		r Record
		s api.Spec
	})
	f := decoder{b: b[1:], fill: true, bin: make([]byte, 0, d.nbin)}
	f.str.Grow(d.nstr)
	if rs.r.walk(&f, &rs.s) {
		rs.r.Spec = &rs.s
	}
	if f.err != nil { // cannot happen: the first pass read the same bytes
		return nil, f.err
	}
	return &rs.r, nil
}

// walk reads a record from d into r, and its spec into spec, and reports whether
// it has one. Unless d.fill, it only checks the bytes and counts the lengths of
// strings and byte strings.
func (r *Record) walk(d *decoder, spec *api.Spec) (hasSpec bool) {
	m := d.uvarint()
	if m&^fAll != 0 {
		d.fail("record fields")
		return false
	}
	if m&fID != 0 {
		r.ID = d.string()
	}
	if m&fSeq != 0 {
		r.Seq = d.uvarint()
	}
	if m&fGraph != 0 {
		r.Graph = d.string()
	}
	if m&fGIdx != 0 {
		r.GIdx = d.int()
	}
	if m&fSpec != 0 {
		d.spec(spec)
	}
	if m&fState != 0 {
		c := d.byte()
		switch {
		case c == 0:
			r.State = api.State(d.string())
		case int(c) < len(stateCodes):
			r.State = stateCodes[c]
		default:
			d.fail("state code")
		}
	}
	if m&fAttempt != 0 {
		r.Attempt = d.int()
	}
	if m&fFailures != 0 {
		r.Failures = d.int()
	}
	if m&fNodeLosses != 0 {
		r.NodeLosses = d.int()
	}
	if m&fEpoch != 0 {
		r.Epoch = d.uvarint()
	}
	if m&fExec != 0 {
		r.Exec = d.string()
	}
	if m&fNode != 0 {
		r.Node = d.string()
	}
	if m&fCreated != 0 {
		r.Created = d.time()
	}
	if m&fQueued != 0 {
		r.Queued = d.time()
	}
	if m&fStarted != 0 {
		r.Started = d.time()
	}
	if m&fFinished != 0 {
		r.Finished = d.time()
	}
	if m&fRetryAt != 0 {
		r.RetryAt = d.time()
	}
	if m&fWaiting != 0 {
		r.Waiting = d.string()
	}
	if m&fDeps != 0 {
		n := d.count(2) // a key and a value: at least a length byte each
		if d.fill {
			r.Deps = make(map[string]json.RawMessage, n)
		}
		for range n {
			k := d.string()
			v := d.bytes()
			if d.fill {
				if len(v) == 0 {
					v = nil // a dep without a result
				}
				r.Deps[k] = v
			}
		}
	}
	if m&fResult != 0 {
		r.Result = d.bytes()
	}
	if m&fError != 0 {
		r.Error = d.string()
	}
	if m&fVersion != 0 {
		r.Version = d.uvarint()
	}
	if len(d.b) > 0 {
		d.fail("trailing bytes")
	}
	return m&fSpec != 0
}

func (d *decoder) spec(s *api.Spec) {
	m := d.uvarint()
	if m&^sAll != 0 {
		d.fail("spec fields")
		return
	}
	if m&sType != 0 {
		s.Type = d.string()
	}
	if m&sPayload != 0 {
		s.Payload = d.bytes()
	}
	if m&sName != 0 {
		s.Name = d.string()
	}
	if m&sPriority != 0 {
		s.Priority = d.int()
	}
	if m&sDeadline != 0 {
		t := d.time()
		if d.fill {
			s.Deadline = &t
		}
	}
	if m&sTimeout != 0 {
		s.Timeout = api.Duration(d.varint())
	}
	if m&sRetries != 0 {
		s.Retries = d.int()
	}
	if m&sRequires != 0 {
		rm := d.uvarint()
		if rm&^rAll != 0 {
			d.fail("requires fields")
			return
		}
		var q *api.Requires
		if d.fill {
			q = new(api.Requires)
			s.Requires = q
		}
		if rm&rTags != 0 {
			tags := d.strings()
			if d.fill {
				q.Tags = tags
			}
		}
		if rm&rResources != 0 {
			n := d.count(2)
			if d.fill {
				q.Resources = make(map[string]int64, n)
			}
			for range n {
				k := d.string()
				v := d.varint()
				if d.fill {
					q.Resources[k] = v
				}
			}
		}
	}
	if m&sDeps != 0 {
		s.Deps = d.strings()
	}
	if m&sTrigger != 0 {
		s.Trigger = d.string()
	}
	if m&sIdem != 0 {
		s.IdempotencyKey = d.string()
	}
}

// decoder reads the codec's primitives. The first failure sets err and empties b,
// so every later read returns a zero value; callers check err once at the end.
//
// A decoder that does not fill only checks and counts: nstr and nbin add up the
// lengths of the strings and byte strings read. One that fills copies them into
// str and bin, which hold exactly that much room, and slices them from there.
type decoder struct {
	b   []byte
	err error

	fill       bool
	nstr, nbin int
	str        strings.Builder
	bin        []byte
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("length")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int {
	v := d.varint()
	if int64(int(v)) != v {
		d.fail("int")
		return 0
	}
	return int(v)
}

// count reads an element count and checks it against the bytes left, each element
// taking at least min bytes.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail("count")
		return 0
	}
	return int(n)
}

// raw reads a length-prefixed span of b, without copying it.
func (d *decoder) raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) string() string {
	p := d.raw()
	if !d.fill || len(p) == 0 {
		d.nstr += len(p)
		return ""
	}
	start := d.str.Len()
	d.str.Write(p) // within the room grown for it: the builder never moves
	return d.str.String()[start:]
}

// bytes reads a length-prefixed byte string into a non-nil slice of its own.
func (d *decoder) bytes() []byte {
	p := d.raw()
	if !d.fill {
		d.nbin += len(p)
		return nil
	}
	start := len(d.bin)
	d.bin = append(d.bin, p...)
	return d.bin[start:len(d.bin):len(d.bin)]
}

func (d *decoder) time() time.Time {
	s := d.varint()
	ns := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if s < minUnix || s > maxUnix || ns >= 1e9 {
		d.fail("time")
		return time.Time{}
	}
	return time.Unix(s, int64(ns))
}

func (d *decoder) strings() []string {
	n := d.count(1)
	var ss []string
	if d.fill {
		ss = make([]string, n)
	}
	for i := range n {
		s := d.string()
		if d.fill {
			ss[i] = s
		}
	}
	return ss
}
