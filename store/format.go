package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The on-disk format, version formatVersion.
//
// A segment file NNNNNN.log starts with a 16-byte header: the magic "starling", the
// format version, the segment's kind (segAppend: written by Append, the last one
// being the one appended to; segCompact: written whole by compaction, renamed into
// place once synced), two zero bytes, and the CRC-32C of those 12 bytes.
//
// Entries follow, each framed as
//
//	length uint32 LE | crc uint32 LE | body (length bytes)
//
// where crc is the CRC-32C (Castagnoli) of the length's four bytes and the body,
// and the body is
//
//	kind byte | lsn uvarint | (put, tombstone) id: uvarint length, bytes | value
//
// The value is a record's codec bytes for a put, nothing for a tombstone, and the
// encoded State for a state entry. The kind's high bit (flagEnd) marks the last
// entry of an Append's batch. The lsn (log sequence number) grows with every
// entry Append writes and is kept when compaction copies an entry: of the entries
// of one id, the one with the highest lsn wins, wherever it is.
const (
	formatVersion = 1

	headerSize  = 16
	frameHeader = 8
	// maxLSN bounds a log sequence number, far above any real count of entries,
	// so that adding to one never wraps.
	maxLSN = 1 << 62
	// maxBody bounds one entry; segments stay under 4 GiB (offsets are uint32).
	maxBody = 1 << 30

	kindPut   = 1
	kindTomb  = 2
	kindState = 3
	flagEnd   = 0x80

	segAppend  = 'a'
	segCompact = 'c'
)

var (
	magic    = [8]byte{'s', 't', 'a', 'r', 'l', 'i', 'n', 'g'}
	crcTable = crc32.MakeTable(crc32.Castagnoli)
)

func appendHeader(b []byte, kind byte) []byte {
	start := len(b)
	b = append(b, magic[:]...)
	b = append(b, formatVersion, kind, 0, 0)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], crcTable))
}

// errBadHeader: the file does not start with a whole, valid segment header.
var errBadHeader = errors.New("bad segment header")

// readHeader returns the kind of the segment data starts.
func readHeader(data []byte) (byte, error) {
	if len(data) < headerSize || [8]byte(data[:8]) != magic ||
		binary.LittleEndian.Uint32(data[12:]) != crc32.Checksum(data[:12], crcTable) {
		return 0, errBadHeader
	}
	if v := data[8]; v != formatVersion {
		return 0, fmt.Errorf("%w: segment of format %d (this build reads %d)", ErrFormat, v, formatVersion)
	}
	if k := data[9]; k == segAppend || k == segCompact {
		return k, nil
	}
	return 0, errBadHeader
}

// beginFrame reserves room for a frame header at the end of b.
func beginFrame(b []byte) ([]byte, int) {
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0), len(b)
}

// endFrame fills in the header of the frame that starts at start and runs to the
// end of b.
func endFrame(b []byte, start int) {
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start-frameHeader))
	crc := crc32.Update(crc32.Checksum(b[start:start+4], crcTable), crcTable, b[start+frameHeader:])
	binary.LittleEndian.PutUint32(b[start+4:], crc)
}

func appendBodyHead(b []byte, kind byte, lsn uint64, id string) []byte {
	b = append(b, kind)
	b = binary.AppendUvarint(b, lsn)
	if kind&^flagEnd != kindState {
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
	}
	return b
}

// frame is one entry in a segment; id and val alias the segment's bytes.
type frame struct {
	off, size int // where the frame starts, and its size with its header
	kind      byte
	end       bool // last entry of a batch
	lsn       uint64
	id        []byte
	val       []byte
}

// The ways a frame can be bad. errTruncated and errChecksum are damage (a torn
// write, or bytes gone bad); errMalformed is an entry that passed its checksum but
// that this build cannot read.
var (
	errTruncated = errors.New("truncated entry")
	errLength    = errors.New("bad entry length")
	errChecksum  = errors.New("checksum mismatch")
	errMalformed = errors.New("malformed entry")
)

// parseFrame reads the frame at off. With verify it checks the CRC; without, the
// frame must have been verified before.
func parseFrame(data []byte, off int, verify bool) (frame, error) {
	fr := frame{off: off}
	if len(data)-off < frameHeader {
		return fr, errTruncated
	}
	n := binary.LittleEndian.Uint32(data[off:])
	if n < 3 || n > maxBody { // a kind, an lsn and (put, tombstone) an id length at least
		return fr, errLength
	}
	if int64(n) > int64(len(data)-off-frameHeader) {
		return fr, errTruncated
	}
	body := data[off+frameHeader : off+frameHeader+int(n)]
	if verify {
		crc := crc32.Update(crc32.Checksum(data[off:off+4], crcTable), crcTable, body)
		if crc != binary.LittleEndian.Uint32(data[off+4:]) {
			return fr, errChecksum
		}
	}
	fr.size = frameHeader + int(n)
	fr.kind, fr.end = body[0]&^flagEnd, body[0]&flagEnd != 0
	lsn, k := binary.Uvarint(body[1:])
	if k <= 0 || lsn == 0 || lsn > maxLSN {
		return fr, errMalformed
	}
	fr.lsn = lsn
	rest := body[1+k:]
	switch fr.kind {
	case kindPut, kindTomb:
		idLen, k := binary.Uvarint(rest)
		if k <= 0 || idLen > uint64(len(rest)-k) {
			return fr, errMalformed
		}
		fr.id, fr.val = rest[k:k+int(idLen)], rest[k+int(idLen):]
		if fr.kind == kindTomb && len(fr.val) != 0 {
			return fr, errMalformed
		}
	case kindState:
		fr.val = rest
	default:
		return fr, errMalformed
	}
	return fr, nil
}

func appendState(b []byte, s *State) []byte {
	b = append(b, 1) // the state encoding's version
	b = binary.AppendUvarint(b, uint64(len(s.NodeID)))
	b = append(b, s.NodeID...)
	b = binary.AppendUvarint(b, s.Seq)
	return binary.AppendUvarint(b, s.Inc)
}

func decodeState(b []byte) (State, error) {
	var s State
	if len(b) == 0 || b[0] != 1 {
		return s, errMalformed
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return s, errMalformed
	}
	s.NodeID, b = string(b[k:k+int(n)]), b[k+int(n):]
	if s.Seq, k = binary.Uvarint(b); k <= 0 {
		return s, errMalformed
	}
	b = b[k:]
	if s.Inc, k = binary.Uvarint(b); k <= 0 || k != len(b) {
		return s, errMalformed
	}
	return s, nil
}

// span is a run of bytes in a segment.
type span struct{ off, n int }

// layout is what a segment holds that can be read: the frames from the header to
// end, but for the damaged ones in skips.
type layout struct {
	end   int
	skips []span
	// cut says why the bytes past end cannot be read (nil: there are none); cutOff
	// is where they start. For the last Append segment, end may be before cutOff:
	// an unfinished batch is dropped whole.
	cut    error
	cutOff int
}

// damaged reports whether anything in the segment could not be read.
func (l *layout) damaged() bool { return l.cut != nil || len(l.skips) > 0 }

// scanLayout checks every frame of a segment and decides what can be read.
//
// A bad frame (torn, or failing its checksum) whose length still leads to a valid
// frame is skipped alone: its length was right, so the rest is framed. A bad frame
// that does not ends what can be read of the segment: past a bad length nothing
// can be framed safely (a search for the next frame would sooner or later take
// bytes of a payload for a frame).
//
// The last Append segment (tail) is where a crash tears writes, and only its last
// batch can be torn, since a batch is written only after the previous one was
// synced. So there a skipped frame must be followed by two ends of batches (its
// own and a later, complete one) to count as damage in the middle; otherwise the
// batch that holds it is the torn one, and end moves back to where that batch
// began, as it does for a batch left without its end. Batches stay whole.
//
// An entry that passes its checksum but does not parse is an error: the Log
// refuses to misread it.
func scanLayout(data []byte, tail bool) (layout, error) {
	type bad struct {
		span
		boundary int // where the batch that holds it began
		ends     int // ends of batches seen before it
	}
	var bads []bad
	lay := layout{cutOff: len(data)}
	off, boundary, ends := headerSize, headerSize, 0
	for off < len(data) {
		fr, err := parseFrame(data, off, true)
		if err == nil {
			off += fr.size
			if fr.end {
				boundary, ends = off, ends+1
			}
			continue
		}
		if errors.Is(err, errMalformed) {
			return lay, fmt.Errorf("%w at offset %d: %v", ErrCorrupt, off, err)
		}
		if n := skippable(data, off); n > 0 {
			bads = append(bads, bad{span{off, n}, boundary, ends})
			off += n
			continue
		}
		lay.cut, lay.cutOff = err, off
		break
	}
	lay.end = lay.cutOff
	if tail {
		lay.end = boundary
		for _, b := range bads {
			if ends-b.ends < 2 {
				lay.end = b.boundary
				break
			}
		}
	}
	for _, b := range bads {
		if b.off < lay.end {
			lay.skips = append(lay.skips, b.span)
		}
	}
	return lay, nil
}

// skippable returns the size of the bad frame at off when the length in its
// header leads to a valid frame, or 0.
func skippable(data []byte, off int) int {
	if len(data)-off < frameHeader {
		return 0
	}
	n := int64(binary.LittleEndian.Uint32(data[off:]))
	if n < 3 || n > maxBody || n >= int64(len(data)-off-frameHeader) {
		return 0
	}
	next := off + frameHeader + int(n)
	if _, err := parseFrame(data, next, true); err != nil {
		return 0
	}
	return frameHeader + int(n)
}

// walkFrames calls fn with every frame of lay, in order.
func walkFrames(data []byte, lay *layout, fn func(fr *frame) error) error {
	si := 0
	for off := headerSize; off < lay.end; {
		if si < len(lay.skips) && lay.skips[si].off == off {
			off += lay.skips[si].n
			si++
			continue
		}
		fr, err := parseFrame(data, off, false)
		if err != nil {
			return fmt.Errorf("%w at offset %d: %v", ErrCorrupt, off, err)
		}
		if err := fn(&fr); err != nil {
			return err
		}
		off += fr.size
	}
	return nil
}
