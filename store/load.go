package store

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/starlingsched/starling/record"
)

// loadChunk is how many records a Load worker decodes at a time.
const loadChunk = 1024

// chunk is a run of live entries of one segment, and what decoding them gave.
type chunk struct {
	path string
	data []byte   // the whole segment, shared by its chunks
	offs []uint32 // of the entries to decode
	recs []*record.Record
	err  error
}

// Load calls f with the latest version of every record and returns the last State.
// It must come before the first Append. f is called from the caller's goroutine,
// one record at a time, in no particular order.
//
// Open has found where every live record is; Load reads the segments that hold
// them once more, in order, and decodes their records on every CPU while f runs.
func (l *Log) Load(f func(*record.Record) error) (State, error) {
	if l.closed {
		return State{}, ErrClosed
	}
	if l.appended {
		return State{}, errors.New("store: Load after Append")
	}
	l.loadBuf = nil
	bySeg := make(map[uint32][]uint32)
	for _, at := range l.index {
		bySeg[at.seg] = append(bySeg[at.seg], at.off)
	}
	nums := make([]uint32, 0, len(bySeg))
	for num, offs := range bySeg {
		nums = append(nums, num)
		slices.Sort(offs) // read each segment front to back
	}
	slices.Sort(nums)

	quit := make(chan struct{})
	work := make(chan *chunk, 2)
	done := make(chan *chunk, 2)
	var wg sync.WaitGroup
	// The reader hands out the live entries of one segment after another; its
	// buffer for a segment is dropped once the segment's chunks are decoded.
	wg.Go(func() {
		defer close(work)
		for _, num := range nums {
			path := l.segPath(num)
			data, err := readSegment(path, nil)
			if err != nil {
				select {
				case done <- &chunk{err: fmt.Errorf("store: %w", err)}:
				case <-quit:
				}
				return
			}
			for offs := range slices.Chunk(bySeg[num], loadChunk) {
				select {
				case work <- &chunk{path: path, data: data, offs: offs}:
				case <-quit:
					return
				}
			}
		}
	})
	var workers sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		workers.Go(func() {
			for c := range work {
				c.decode()
				c.data = nil
				select {
				case done <- c:
				case <-quit:
					return
				}
			}
		})
	}
	go func() {
		workers.Wait()
		wg.Wait()
		close(done)
	}()

	var err error
	for c := range done {
		if err != nil {
			continue // draining: every goroutine sees quit and ends
		}
		if err = c.err; err == nil {
			for _, r := range c.recs {
				if err = f(r); err != nil {
					break
				}
			}
		}
		if err != nil {
			close(quit)
		}
	}
	if err != nil {
		return State{}, err
	}
	return l.state, nil
}

// decode decodes the records of c.
func (c *chunk) decode() {
	c.recs = make([]*record.Record, 0, len(c.offs))
	for _, off := range c.offs {
		fr, err := parseFrame(c.data, int(off), false)
		if err == nil && fr.kind != kindPut {
			err = errMalformed
		}
		if err != nil {
			c.err = fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, c.path, off, err)
			return
		}
		r, err := record.Decode(fr.val)
		if err != nil {
			c.err = fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, c.path, off, err)
			return
		}
		if r.ID != string(fr.id) {
			c.err = fmt.Errorf("%w: %s at offset %d: record %q filed under %q", ErrCorrupt, c.path, off, r.ID, fr.id)
			return
		}
		c.recs = append(c.recs, r)
	}
}
