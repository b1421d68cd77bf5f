package store

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/starlingsched/starling/record"
)

// Options configures a Log. The zero value is the default.
type Options struct {
	// SegmentBytes is the size at which the Log starts a new segment file
	// (default 64 MiB; at most 1 GiB). A batch larger than it gets a segment of
	// its own.
	SegmentBytes int64
	// CompactMinBytes is how many dead bytes (superseded versions, expired records)
	// the sealed segments must hold, besides more dead than live bytes, before
	// compaction rewrites them (default SegmentBytes).
	CompactMinBytes int64
	// Logger receives warnings about torn and damaged entries and compaction
	// failures. Default: discard.
	Logger *slog.Logger

	// noSync skips fsyncs, for fuzzing (tests only).
	noSync bool
}

const (
	defaultSegmentBytes = 64 << 20
	maxSegmentBytes     = 1 << 30
	minSegmentBytes     = 1 << 10
)

func (o *Options) validate() error {
	if o.SegmentBytes == 0 {
		o.SegmentBytes = defaultSegmentBytes
	}
	if o.SegmentBytes < minSegmentBytes || o.SegmentBytes > maxSegmentBytes {
		return fmt.Errorf("store: SegmentBytes %d is outside [%d, %d]", o.SegmentBytes, minSegmentBytes, maxSegmentBytes)
	}
	if o.CompactMinBytes == 0 {
		o.CompactMinBytes = o.SegmentBytes
	}
	if o.CompactMinBytes < 0 {
		return fmt.Errorf("store: CompactMinBytes %d is negative", o.CompactMinBytes)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Log is the file-backed Store: a Bitcask-style log of record versions in a data
// directory it owns while it is open. See the package documentation. One goroutine
// calls Load, Append, Compact and Close; compaction runs in a goroutine of its own,
// which Close stops and waits for.
type Log struct {
	dir  string
	opts Options
	log  *slog.Logger
	lock *os.File

	// Owned by the caller's goroutine (Load, Append, Close).
	active   *os.File
	tail     *segment // the segment appended to
	lsn      uint64   // the last lsn written
	buf      []byte
	pend     []pending
	err      error // a failed write: every later Append fails
	loadBuf  []byte
	appended bool
	closed   bool

	// indexLock guards the index, the segments' sizes and live bytes, the state
	// entry and the compaction's bookkeeping: Append and the compactor share them.
	indexLock  sync.Mutex
	index      map[string]loc
	state      State
	stateLoc   loc // lsn 0: no state entry
	segs       map[uint32]*segment
	nextNum    uint32
	compacting bool
	retryDead  int64 // after a failed compaction, the dead bytes to wait for

	stop chan struct{} // closed by Close: a compaction gives up
	wg   sync.WaitGroup
}

var _ Store = (*Log)(nil)

// loc is where the entry of an id (or the state) is: the index's value, like
// Bitcask's keydir.
type loc struct {
	seg, off, size uint32
	lsn            uint64
}

// segment is one segment file.
type segment struct {
	num     uint32
	kind    byte
	size    int64 // bytes, the header included
	live    int64 // bytes of the entries the index points to
	maxLSN  uint64
	damaged bool // some of it could not be read: set aside, not removed, once compacted
}

// pending is an entry of the batch being appended.
type pending struct {
	id   string
	kind byte
	off  int // in the batch
	size int
	lsn  uint64
}

// Open opens the data directory dir, creating it when it does not exist, and
// reads its segments: what Load will return is known when Open returns, and a torn
// write at the end of the log is cut off. The directory is locked until Close; a
// second Open fails with ErrLocked, and a directory of a newer format with
// ErrFormat.
func Open(dir string, opts Options) (*Log, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := makeDir(dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		dir: dir, opts: opts, log: opts.Logger, lock: lock,
		index: make(map[string]loc), segs: make(map[uint32]*segment), nextNum: 1,
		stop: make(chan struct{}),
	}
	if err := l.open(); err != nil {
		l.closeFiles()
		return nil, err
	}
	return l, nil
}

func (l *Log) open() error {
	if err := checkVersion(l.dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var nums []uint32
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, tmpExt) && name != versionName+tmpExt {
			// An unfinished compaction output: its sources are still here.
			if err := os.Remove(filepath.Join(l.dir, name)); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			continue
		}
		if n, ok := parseSegName(name); ok {
			nums = append(nums, n)
			l.nextNum = max(l.nextNum, n+1)
		}
	}
	slices.Sort(nums)

	// The kinds first: the last Append segment is the one where a crash can tear
	// a write.
	kinds := make(map[uint32]byte, len(nums))
	var tailNum uint32
	for _, num := range nums {
		kind, err := l.segKind(num)
		if err != nil {
			return err
		}
		kinds[num] = kind
		if kind == segAppend {
			tailNum = num
		}
	}
	tombs := make(map[string]uint64) // expired ids, while reading: an older put may come later
	for _, num := range nums {
		if kinds[num] == 0 {
			continue
		}
		if err := l.scanSegment(num, kinds[num], num == tailNum, tombs); err != nil {
			return err
		}
	}
	if err := l.syncDir(); err != nil {
		return err
	}
	if tailNum == 0 {
		return l.newTail()
	}
	f, err := os.OpenFile(l.segPath(tailNum), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	l.active, l.tail = f, l.segs[tailNum]
	return nil
}

func (l *Log) segPath(num uint32) string { return filepath.Join(l.dir, segName(num)) }

// segKind reads the header of segment num. A file too short to hold one is a
// segment whose creation was cut short: it held nothing, and it is removed. A
// longer file with a bad header is damage: it is set aside, and its kind is 0.
func (l *Log) segKind(num uint32) (byte, error) {
	path := l.segPath(num)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	var h [headerSize]byte
	n, _ := f.ReadAt(h[:], 0)
	st, err := f.Stat()
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	kind, err := readHeader(h[:n])
	switch {
	case err == nil:
		return kind, nil
	case !errors.Is(err, errBadHeader):
		return 0, fmt.Errorf("%s: %w", path, err)
	case st.Size() <= headerSize:
		l.log.Warn("store: removing a segment whose creation was cut short", slog.String("file", path), slog.Int64("bytes", st.Size()))
		if err := os.Remove(path); err != nil {
			return 0, fmt.Errorf("store: %w", err)
		}
		return 0, nil
	default:
		l.log.Warn("store: setting aside a segment whose header is damaged; its records are lost",
			slog.String("file", path+corruptExt), slog.Int64("bytes", st.Size()))
		if err := os.Rename(path, path+corruptExt); err != nil {
			return 0, fmt.Errorf("store: %w", err)
		}
		return 0, nil
	}
}

// scanSegment reads segment num into the index, and warns of what it cannot read.
func (l *Log) scanSegment(num uint32, kind byte, tail bool, tombs map[string]uint64) error {
	path := l.segPath(num)
	data, err := readSegment(path, l.loadBuf)
	l.loadBuf = data[:0]
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if _, err := readHeader(data); err != nil { // changed since segKind read it
		return fmt.Errorf("store: %s: %w", path, err)
	}
	lay, err := scanLayout(data, tail)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	// A torn tail is cut off below, which is no damage; anything else is.
	seg := &segment{num: num, kind: kind, size: int64(len(data)), damaged: len(lay.skips) > 0 || !tail && lay.cut != nil}
	for _, sk := range lay.skips {
		l.log.Warn("store: skipped a damaged entry; the record it held may be an older version or gone",
			slog.String("file", path), slog.Int("offset", sk.off), slog.Int("bytes", sk.n))
	}
	switch {
	case tail && lay.end < len(data):
		why := "an unfinished batch"
		if lay.cut != nil && lay.cutOff < len(data) {
			why = lay.cut.Error()
		}
		l.log.Warn("store: cutting off a torn write at the end of the log (a batch that was never acknowledged)",
			slog.String("file", path), slog.Int("offset", lay.end), slog.Int("bytes", len(data)-lay.end), slog.String("reason", why))
	case lay.cut != nil:
		l.log.Warn("store: the rest of a segment cannot be read; the records it held may be older versions or gone",
			slog.String("file", path), slog.Int("offset", lay.cutOff), slog.Int("bytes", len(data)-lay.cutOff), slog.String("reason", lay.cut.Error()))
	}
	l.segs[num] = seg
	if err := l.indexSegment(seg, data, &lay, tombs); err != nil {
		return err
	}
	if tail && lay.end < len(data) {
		return l.truncateTail(seg, lay.end)
	}
	return nil
}

// indexSegment adds the entries of seg to the index.
func (l *Log) indexSegment(seg *segment, data []byte, lay *layout, tombs map[string]uint64) error {
	return walkFrames(data, lay, func(fr *frame) error {
		seg.maxLSN = max(seg.maxLSN, fr.lsn)
		l.lsn = max(l.lsn, fr.lsn)
		at := loc{seg: seg.num, off: uint32(fr.off), size: uint32(fr.size), lsn: fr.lsn}
		switch fr.kind {
		case kindPut:
			if t, ok := tombs[string(fr.id)]; ok && t > fr.lsn {
				return nil
			}
			old, ok := l.index[string(fr.id)]
			if ok && old.lsn >= fr.lsn {
				return nil
			}
			if ok {
				l.segs[old.seg].live -= int64(old.size)
			}
			l.index[string(fr.id)] = at
			seg.live += int64(fr.size)
		case kindTomb:
			id := string(fr.id)
			if t, ok := tombs[id]; !ok || t < fr.lsn {
				tombs[id] = fr.lsn
			}
			if old, ok := l.index[id]; ok && old.lsn < fr.lsn {
				l.segs[old.seg].live -= int64(old.size)
				delete(l.index, id)
			}
		case kindState:
			if fr.lsn <= l.stateLoc.lsn {
				return nil
			}
			st, err := decodeState(fr.val)
			if err != nil {
				return fmt.Errorf("%w: %s at offset %d: state: %v", ErrCorrupt, l.segPath(seg.num), fr.off, err)
			}
			if l.stateLoc.lsn != 0 {
				l.segs[l.stateLoc.seg].live -= int64(l.stateLoc.size)
			}
			l.state, l.stateLoc = st, at
			seg.live += int64(fr.size)
		}
		return nil
	})
}

// truncateTail cuts a torn write off the last Append segment at end.
func (l *Log) truncateTail(tail *segment, end int) error {
	path := l.segPath(tail.num)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	err = f.Truncate(int64(end))
	if err == nil {
		err = l.sync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: truncate %s: %w", path, err)
	}
	tail.size = int64(end)
	return nil
}

// newTail starts a new Append segment and makes it the one appended to.
func (l *Log) newTail() error {
	l.indexLock.Lock()
	num := l.nextNum
	l.nextNum++
	l.indexLock.Unlock()

	path := l.segPath(num)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	_, err = f.Write(appendHeader(nil, segAppend))
	if err == nil {
		err = l.sync(f)
	}
	if err == nil {
		err = l.syncDir()
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("store: create %s: %w", path, err)
	}
	seg := &segment{num: num, kind: segAppend, size: headerSize}
	if l.active != nil {
		l.active.Close() // synced by the last Append
	}
	l.indexLock.Lock()
	l.segs[num] = seg
	l.active, l.tail = f, seg
	l.indexLock.Unlock()
	return nil
}

func (l *Log) sync(f *os.File) error {
	if l.opts.noSync {
		return nil
	}
	return datasync(f)
}

func (l *Log) syncDir() error {
	if l.opts.noSync {
		return nil
	}
	return syncDir(l.dir)
}

// Append writes b with one write and one fdatasync, then updates the index. A
// record that cannot be encoded fails it before anything is written; a failed
// write or sync fails it and every later Append (an fsync that failed once cannot
// be trusted to have kept anything: restart, and Open reads what is there).
func (l *Log) Append(b *Batch) error {
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return l.err
	}
	if b.Empty() {
		return nil
	}
	n := len(b.Records) + len(b.Expired)
	if b.State != nil {
		n++
	}
	buf, pend := l.buf[:0], l.pend[:0]
	lsn := l.lsn
	add := func(kind byte, id string, rec *record.Record, st *State) error {
		lsn++
		var start int
		buf, start = beginFrame(buf)
		k := kind
		if len(pend) == n-1 {
			k |= flagEnd
		}
		buf = appendBodyHead(buf, k, lsn, id)
		switch kind {
		case kindPut:
			var err error
			if buf, err = rec.AppendBinary(buf); err != nil {
				return fmt.Errorf("store: record %s: %w", id, err)
			}
		case kindState:
			buf = appendState(buf, st)
		}
		if len(buf)-start-frameHeader > maxBody {
			return fmt.Errorf("store: record %s: %d bytes is too large", id, len(buf)-start)
		}
		endFrame(buf, start)
		pend = append(pend, pending{id: id, kind: kind, off: start, size: len(buf) - start, lsn: lsn})
		return nil
	}
	var err error
	for _, r := range b.Records {
		if err = add(kindPut, r.ID, r, nil); err != nil {
			break
		}
	}
	for _, id := range b.Expired {
		if err == nil {
			err = add(kindTomb, id, nil, nil)
		}
	}
	if b.State != nil && err == nil {
		err = add(kindState, "", nil, b.State)
	}
	l.buf, l.pend = buf[:0], pend[:0]
	if cap(buf) > 4<<20 {
		l.buf = nil // do not keep a huge batch's buffer
	}
	if err != nil {
		return err
	}
	if int64(len(buf)) > maxSegmentBytes {
		return fmt.Errorf("store: a batch of %d bytes is too large (at most %d)", len(buf), maxSegmentBytes)
	}
	if l.tail.size > headerSize && l.tail.size+int64(len(buf)) > l.opts.SegmentBytes {
		if err := l.newTail(); err != nil {
			l.err = fmt.Errorf("store: the log failed, restart to recover: %w", err)
			return l.err
		}
	}
	base := l.tail.size
	if _, err := l.active.WriteAt(buf, base); err != nil {
		l.err = fmt.Errorf("store: the log failed, restart to recover: %w", err)
		return l.err
	}
	if err := l.sync(l.active); err != nil {
		l.err = fmt.Errorf("store: the log failed, restart to recover: fdatasync %s: %w", l.active.Name(), err)
		return l.err
	}
	l.lsn = lsn
	l.appended = true

	l.indexLock.Lock()
	tail := l.tail
	for _, p := range pend {
		at := loc{seg: tail.num, off: uint32(base) + uint32(p.off), size: uint32(p.size), lsn: p.lsn}
		switch p.kind {
		case kindPut:
			if old, ok := l.index[p.id]; ok {
				l.unlive(old)
			}
			l.index[p.id] = at
			tail.live += int64(p.size)
		case kindTomb:
			if old, ok := l.index[p.id]; ok {
				l.unlive(old)
				delete(l.index, p.id)
			}
		case kindState:
			if l.stateLoc.lsn != 0 {
				l.unlive(l.stateLoc)
			}
			l.state, l.stateLoc = *b.State, at
			tail.live += int64(p.size)
		}
		tail.maxLSN = p.lsn
	}
	tail.size += int64(len(buf))
	start, wait := l.compactionDue()
	l.indexLock.Unlock()
	if wait {
		l.log.Info("store: appends wait for compaction to catch up", slog.String("dir", l.dir))
		l.wg.Wait()
		l.indexLock.Lock()
		start, _ = l.compactionDue()
		l.indexLock.Unlock()
	}
	if start {
		l.wg.Go(l.compact)
	}
	return nil
}

// unlive notes that the entry at no longer counts as live. indexLock is held.
func (l *Log) unlive(at loc) {
	if seg := l.segs[at.seg]; seg != nil { // always, unless the books are wrong
		seg.live -= int64(at.size)
	}
}

// compactionDue reports whether the sealed segments hold enough dead bytes to
// rewrite them (and if so marks a compaction as running), or, while one runs,
// whether they hold so many that Append must wait for it: the directory stays
// bounded even when appends outrun compaction. indexLock is held.
func (l *Log) compactionDue() (start, wait bool) {
	var size, live int64
	for _, seg := range l.segs {
		if seg != l.tail {
			size += seg.size
			live += seg.live
		}
	}
	dead := size - live
	if l.compacting {
		return false, dead > 2*live+2*l.opts.CompactMinBytes
	}
	if dead > live && dead >= l.opts.CompactMinBytes && dead >= l.retryDead {
		l.compacting = true
		return true, false
	}
	return false, false
}

// Close stops a running compaction, waits for it, syncs the log and releases the
// directory.
func (l *Log) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.stop)
	l.wg.Wait()
	var err error
	if l.active != nil && l.err == nil {
		err = l.sync(l.active)
	}
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

func (l *Log) closeFiles() error {
	var err error
	if l.active != nil {
		err = l.active.Close()
		l.active = nil
	}
	if l.lock != nil {
		if cerr := l.lock.Close(); err == nil { // closing the file releases the flock
			err = cerr
		}
		l.lock = nil
	}
	return err
}

// Stats describes a Log's directory.
type Stats struct {
	Records   int   // live records
	Segments  int   // segment files
	Bytes     int64 // in segment files
	LiveBytes int64 // of entries that are the latest of their id (and the state)
}

// Stats returns the Log's current figures. Unlike the other methods it may be
// called from any goroutine, while Append runs (for metrics).
func (l *Log) Stats() Stats {
	l.indexLock.Lock()
	defer l.indexLock.Unlock()
	s := Stats{Records: len(l.index), Segments: len(l.segs)}
	for _, seg := range l.segs {
		s.Bytes += seg.size
		s.LiveBytes += seg.live
	}
	return s
}

// sortSegs sorts segments by number.
func sortSegs(segs []*segment) {
	slices.SortFunc(segs, func(a, b *segment) int { return cmp.Compare(a.num, b.num) })
}
