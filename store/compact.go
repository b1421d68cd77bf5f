package store

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
)

// Compaction rewrites every sealed segment (all but the one Append writes to) at
// once, as Bitcask merges its immutable files: the entries the index still points
// to are copied, verbatim and with their lsn, into new segments of kind segCompact;
// superseded versions, tombstones and old states are left behind; then the sealed
// segments are removed. The log starts it in the background when the sealed
// segments hold more dead bytes than live ones (and at least CompactMinBytes), so
// the bytes it copies are never more than the bytes it frees, and the directory
// stays within about twice the live bytes plus a segment or two.
//
// Why this is safe while Append goes on and whenever the process dies:
//
//   - An output is written to NNNNNN.log.tmp, synced, and renamed into place; Open
//     removes a leftover .tmp. Until an input is removed, an entry may be in two
//     files with the same lsn: either is the same entry.
//   - The index moves an id to its copy only if it still points at the entry that
//     was copied: a newer version appended meanwhile wins, in memory as on disk
//     (higher lsn).
//   - Dropping the tombstones of the inputs is safe: a tombstone only hides older
//     puts of its id, and those are in the inputs too (a put in an Append segment
//     newer than every input cannot be older than it; a put copied by an earlier
//     compaction was live when copied, so its tombstone came later and is not in
//     a segment sealed before that compaction's output). They are not live, so
//     they are not copied.
//   - Inputs are removed in order of their highest lsn, the directory synced after
//     each: a put is always removed before the tombstone that hides it (the
//     tombstone's lsn is above every lsn of the put's segment), so a crash between
//     two removals never brings an expired record back.
//   - A damaged input (something in it could not be read) is renamed *.corrupt
//     instead of removed, for inspection.

// errStopped: Close stopped a compaction.
var errStopped = errors.New("store: compaction stopped")

// compact runs a compaction in the background, started by Append.
func (l *Log) compact() {
	err := l.compactSealed()
	l.indexLock.Lock()
	l.compacting = false
	l.retryDead = 0
	if err != nil && !errors.Is(err, errStopped) {
		// Do not retry at once: wait for more dead bytes.
		var size, live int64
		for _, seg := range l.segs {
			if seg != l.tail {
				size += seg.size
				live += seg.live
			}
		}
		l.retryDead = size - live + l.opts.CompactMinBytes
	}
	l.indexLock.Unlock()
	if err != nil && !errors.Is(err, errStopped) {
		l.log.Warn("store: compaction failed; it will be tried again later", slog.String("dir", l.dir), slog.Any("err", err))
	}
}

// Compact seals the segment Append writes to and rewrites every sealed segment now,
// however few dead bytes they hold; it waits for a running compaction first. Call
// it from the goroutine that calls Append (for an operator's command, or tests).
func (l *Log) Compact() error {
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return l.err
	}
	l.wg.Wait() // only Append starts compactions, and it is not running
	if l.tail.size > headerSize {
		if err := l.newTail(); err != nil {
			l.err = fmt.Errorf("store: the log failed, restart to recover: %w", err)
			return l.err
		}
	}
	l.indexLock.Lock()
	l.compacting = true
	l.indexLock.Unlock()
	err := l.compactSealed()
	l.indexLock.Lock()
	l.compacting = false
	l.indexLock.Unlock()
	return err
}

// compaction is one run: its current output and the entries copied there.
type compaction struct {
	l     *Log
	out   *output
	count int // frames seen, to check for a stop now and then
}

type output struct {
	num    uint32
	f      *os.File
	w      *bufio.Writer
	size   int64
	maxLSN uint64
	moves  []move
}

// move is an entry copied: from where, to which offset of the output.
type move struct {
	id    string // "" for the state
	state bool
	from  loc
	to    uint32
}

func (l *Log) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *Log) compactSealed() (err error) {
	l.indexLock.Lock()
	var inputs []*segment
	for _, seg := range l.segs {
		if seg != l.tail {
			inputs = append(inputs, seg)
		}
	}
	l.indexLock.Unlock()
	if len(inputs) == 0 {
		return nil
	}
	sortSegs(inputs)
	c := &compaction{l: l}
	defer func() {
		if c.out != nil { // unfinished: its inputs stay
			c.out.f.Close()
			os.Remove(c.out.f.Name())
		}
	}()
	var buf []byte
	for _, in := range inputs {
		if l.stopped() {
			return errStopped
		}
		path := l.segPath(in.num)
		data, err := readSegment(path, buf)
		buf = data[:0]
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		lay, err := scanLayout(data, false)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if lay.damaged() {
			in.damaged = true
		}
		err = walkFrames(data, &lay, func(fr *frame) error {
			return c.copy(in, data, fr)
		})
		if err != nil {
			return err
		}
	}
	if err := c.finish(); err != nil {
		return err
	}
	return l.removeInputs(inputs)
}

// copy copies the frame fr of segment in to the output when it is live.
func (c *compaction) copy(in *segment, data []byte, fr *frame) error {
	l := c.l
	if c.count++; c.count%4096 == 0 && l.stopped() {
		return errStopped
	}
	if fr.kind == kindTomb {
		return nil
	}
	l.indexLock.Lock()
	var live bool
	if fr.kind == kindState {
		live = l.stateLoc.seg == in.num && l.stateLoc.off == uint32(fr.off)
	} else {
		at, ok := l.index[string(fr.id)]
		live = ok && at.seg == in.num && at.off == uint32(fr.off)
	}
	l.indexLock.Unlock()
	if !live {
		return nil
	}
	if c.out != nil && c.out.size > headerSize && c.out.size+int64(fr.size) > l.opts.SegmentBytes {
		if err := c.finish(); err != nil {
			return err
		}
	}
	if c.out == nil {
		if err := c.start(); err != nil {
			return err
		}
	}
	o := c.out
	m := move{state: fr.kind == kindState, from: loc{seg: in.num, off: uint32(fr.off), size: uint32(fr.size), lsn: fr.lsn}, to: uint32(o.size)}
	if !m.state {
		m.id = string(fr.id)
	}
	if _, err := o.w.Write(data[fr.off : fr.off+fr.size]); err != nil {
		return fmt.Errorf("write %s: %w", o.f.Name(), err)
	}
	o.size += int64(fr.size)
	o.maxLSN = max(o.maxLSN, fr.lsn)
	o.moves = append(o.moves, m)
	return nil
}

// start begins a new output.
func (c *compaction) start() error {
	l := c.l
	l.indexLock.Lock()
	num := l.nextNum
	l.nextNum++
	l.indexLock.Unlock()
	path := l.segPath(num) + tmpExt
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	o := &output{num: num, f: f, w: bufio.NewWriterSize(f, 1<<20), size: headerSize}
	if _, err := o.w.Write(appendHeader(nil, segCompact)); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	c.out = o
	return nil
}

// finish makes the current output durable, puts it in place, and moves the index
// to it.
func (c *compaction) finish() error {
	o, l := c.out, c.l
	if o == nil {
		return nil
	}
	tmp := o.f.Name()
	err := o.w.Flush()
	if err == nil {
		err = l.sync(o.f)
	}
	if err == nil {
		err = o.f.Close()
	} else {
		o.f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, l.segPath(o.num))
	}
	if err == nil {
		err = l.syncDir()
	}
	c.out = nil
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	seg := &segment{num: o.num, kind: segCompact, size: o.size, maxLSN: o.maxLSN}
	l.indexLock.Lock()
	defer l.indexLock.Unlock()
	l.segs[o.num] = seg
	for _, m := range o.moves {
		to := loc{seg: o.num, off: m.to, size: m.from.size, lsn: m.from.lsn}
		if m.state {
			if l.stateLoc == m.from {
				l.stateLoc = to
			} else {
				continue
			}
		} else if at, ok := l.index[m.id]; ok && at == m.from {
			l.index[m.id] = to
		} else {
			continue // superseded or expired meanwhile
		}
		l.unlive(m.from)
		seg.live += int64(m.from.size)
	}
	return nil
}

// removeInputs removes the compacted segments, in order of their highest lsn.
func (l *Log) removeInputs(inputs []*segment) error {
	l.indexLock.Lock()
	done := inputs[:0:0]
	for _, in := range inputs {
		if in.live != 0 {
			// Something live was not copied: the segment changed since it was
			// read. Keep it.
			l.log.Warn("store: a compacted segment still holds live entries; keeping it",
				slog.String("file", l.segPath(in.num)), slog.Int64("live_bytes", in.live))
			continue
		}
		delete(l.segs, in.num)
		done = append(done, in)
	}
	l.indexLock.Unlock()
	slices.SortFunc(done, func(a, b *segment) int {
		switch {
		case a.maxLSN < b.maxLSN:
			return -1
		case a.maxLSN > b.maxLSN:
			return 1
		}
		return 0
	})
	for _, in := range done {
		path := l.segPath(in.num)
		var err error
		if in.damaged {
			l.log.Warn("store: setting aside a damaged segment after compaction", slog.String("file", path+corruptExt))
			err = os.Rename(path, path+corruptExt)
		} else {
			err = os.Remove(path)
		}
		if err == nil {
			err = l.syncDir()
		}
		if err != nil {
			return err
		}
	}
	return nil
}
