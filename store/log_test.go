package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/record"
)

// helperEnv makes the test binary a helper process that opens the directory it
// names (see TestLockAcrossProcesses).
const helperEnv = "STARLING_STORE_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(lockHelper(dir))
	}
	goleak.VerifyTestMain(m)
}

// lockHelper opens dir, says what happened on stdout, and holds the directory
// until its stdin closes or it is killed.
func lockHelper(dir string) int {
	l, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("error:", err)
		if errors.Is(err, ErrLocked) {
			return 3
		}
		return 1
	}
	fmt.Println("opened")
	io.Copy(io.Discard, os.Stdin)
	l.Close()
	return 0
}

// rec is a realistic record version: about 400 bytes.
func rec(id string, version uint64) *record.Record {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	return &record.Record{
		ID: id, Seq: version,
		Spec: &api.Spec{
			Type:    "resize",
			Payload: json.RawMessage(`{"src":"s3://bucket/images/2030/01/02/photo-` + id + `.jpg","width":1024,"height":768,"format":"webp","quality":80}`),
			Timeout: api.Duration(30 * time.Second), Retries: 3,
		},
		State: api.Succeeded, Attempt: 1, Epoch: 2, Node: "worker-3",
		Created: t0, Queued: t0.Add(time.Millisecond), Started: t0.Add(2 * time.Millisecond),
		Finished: t0.Add(40 * time.Millisecond),
		Result:   json.RawMessage(`{"dst":"s3://bucket/thumbs/photo-` + id + `.webp","bytes":48213,"width":1024,"height":768}`),
		Version:  version,
	}
}

// warnings collects what a Log logs.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

func (w *warnings) has(substr string) bool {
	for _, m := range w.all() {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

// open opens dir and closes the Log when the test ends.
func open(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// load returns the version of every record Load finds, and the state.
func load(t testing.TB, l *Log) (map[string]uint64, State) {
	t.Helper()
	got := map[string]uint64{}
	st, err := l.Load(func(r *record.Record) error {
		if _, dup := got[r.ID]; dup {
			t.Errorf("Load gave %s twice", r.ID)
		}
		got[r.ID] = r.Version
		return nil
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return got, st
}

// reopen closes l and opens its directory again.
func reopen(t testing.TB, l *Log) *Log {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return open(t, l.dir, l.opts)
}

func appendOK(t testing.TB, l *Log, b *Batch) {
	t.Helper()
	if err := l.Append(b); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func TestAppendReopen(t *testing.T) {
	st1 := &State{NodeID: "n1", Seq: 10, Inc: 1}
	st2 := &State{NodeID: "n1", Seq: 42, Inc: 2}
	tests := []struct {
		name      string
		opts      Options
		batches   []Batch
		want      map[string]uint64
		wantState State
	}{
		{name: "nothing", want: map[string]uint64{}},
		{
			name: "latest version wins",
			batches: []Batch{
				{Records: []*record.Record{rec("a", 1), rec("b", 1)}},
				{Records: []*record.Record{rec("a", 2)}},
				{Records: []*record.Record{rec("a", 3)}},
			},
			want: map[string]uint64{"a": 3, "b": 1},
		},
		{
			name:    "last of one id in a batch wins",
			batches: []Batch{{Records: []*record.Record{rec("a", 1), rec("a", 5), rec("a", 2)}}},
			want:    map[string]uint64{"a": 2},
		},
		{
			name: "expired ids are gone",
			batches: []Batch{
				{Records: []*record.Record{rec("a", 1), rec("b", 1), rec("c", 1)}},
				{Records: []*record.Record{rec("a", 2)}, Expired: []string{"b"}},
				{Expired: []string{"a", "never-seen"}},
			},
			want: map[string]uint64{"c": 1},
		},
		{
			name:    "expired applies after records",
			batches: []Batch{{Records: []*record.Record{rec("a", 1)}, Expired: []string{"a"}}},
			want:    map[string]uint64{},
		},
		{
			name: "state round-trips, the last one wins",
			batches: []Batch{
				{State: st1},
				{Records: []*record.Record{rec("a", 1)}},
				{State: st2},
				{Records: []*record.Record{rec("a", 2)}},
			},
			want:      map[string]uint64{"a": 2},
			wantState: *st2,
		},
		{
			name: "many segments",
			opts: Options{SegmentBytes: 2048, CompactMinBytes: 1 << 40},
			batches: func() []Batch {
				var bs []Batch
				for i := range 50 {
					bs = append(bs, Batch{Records: []*record.Record{rec(fmt.Sprint("r", i%7), uint64(i+1))}, State: &State{NodeID: "n", Seq: uint64(i)}})
				}
				return bs
			}(),
			want:      map[string]uint64{"r0": 50, "r1": 44, "r2": 45, "r3": 46, "r4": 47, "r5": 48, "r6": 49},
			wantState: State{NodeID: "n", Seq: 49},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := open(t, t.TempDir(), tt.opts)
			if got, st := load(t, l); len(got) != 0 || st != (State{}) {
				t.Fatalf("a new directory has %v, %+v", got, st)
			}
			for i := range tt.batches {
				appendOK(t, l, &tt.batches[i])
			}
			l = reopen(t, l)
			got, st := load(t, l)
			if !reflect.DeepEqual(got, tt.want) || st != tt.wantState {
				t.Fatalf("after reopen: %v, %+v; want %v, %+v", got, st, tt.want, tt.wantState)
			}
			// And once more, after an Append on the reopened log.
			appendOK(t, l, &Batch{Records: []*record.Record{rec("z", 9)}})
			l = reopen(t, l)
			got, _ = load(t, l)
			want := maps(tt.want, map[string]uint64{"z": 9})
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("after a second reopen: %v; want %v", got, want)
			}
		})
	}
}

func maps(ms ...map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestLoadRecords: what Load gives is the record appended, field for field.
func TestLoadRecords(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	want := rec("x", 3)
	want.Deps = map[string]json.RawMessage{"d": json.RawMessage(`1`)}
	appendOK(t, l, &Batch{Records: []*record.Record{want}})
	l = reopen(t, l)
	var got *record.Record
	if _, err := l.Load(func(r *record.Record) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if got == nil || !got.Created.Equal(want.Created) || got.Spec.Type != want.Spec.Type ||
		string(got.Result) != string(want.Result) || string(got.Deps["d"]) != "1" {
		t.Fatalf("Load gave %+v; want %+v", got, want)
	}
	if err := l.Append(&Batch{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Load(func(*record.Record) error { return nil }); err != nil {
		t.Fatalf("Load again before any Append: %v", err)
	}
	appendOK(t, l, &Batch{Records: []*record.Record{want}})
	if _, err := l.Load(func(*record.Record) error { return nil }); err == nil {
		t.Fatal("Load after Append succeeded")
	}
}

func TestLoadStopsOnCallerError(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	appendOK(t, l, &Batch{Records: []*record.Record{rec("a", 1), rec("b", 1)}})
	l = reopen(t, l)
	boom := errors.New("boom")
	if _, err := l.Load(func(*record.Record) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Load = %v; want the callback's error", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	// flock locks belong to an open file description: a second Open in the same
	// process opens the lock file again and is refused like another process.
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v; want ErrLocked", err)
	}
	for _, want := range []string{dir, "another starling process", fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, dir, Options{}) // free again
}

// TestLockAcrossProcesses runs this test binary as a helper that opens the same
// directory.
func TestLockAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	helper := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir)
		return cmd
	}

	t.Run("held here, refused there", func(t *testing.T) {
		l := open(t, dir, Options{})
		out, err := helper().Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "another starling process") {
			t.Fatalf("helper: %v, %q; want exit 3 and ErrLocked", err, out)
		}
		l.Close()
	})

	t.Run("held there, refused here, free after kill -9", func(t *testing.T) {
		cmd := helper()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		pr, pw := io.Pipe()
		cmd.Stdout = io.MultiWriter(&out, pw)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		line := make(chan string, 1)
		go func() {
			b := make([]byte, 64)
			n, _ := pr.Read(b)
			line <- string(b[:n])
			io.Copy(io.Discard, pr)
		}()
		select {
		case s := <-line:
			if !strings.Contains(s, "opened") {
				t.Fatalf("helper said %q", s)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("helper did not open the directory")
		}
		if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
			t.Fatalf("Open while the helper holds it = %v; want ErrLocked naming its pid", err)
		}
		cmd.Process.Kill() // no Close: the kernel releases the lock
		cmd.Wait()
		pw.Close()
		l := open(t, dir, Options{})
		l.Close()
	})
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // in the error
	}{
		{"newer format", map[string]string{"VERSION": versionLine(formatVersion + 1)}, "newer starling"},
		{"older format", map[string]string{"VERSION": versionLine(0)}, "no longer reads"},
		{"not ours", map[string]string{"VERSION": "1.2.3\n"}, "not Starling's"},
		{"not empty", map[string]string{"notes.txt": "hello"}, "not a starling data directory"},
		{"a segment of a newer format", map[string]string{"VERSION": versionLine(formatVersion),
			"000001.log": string(func() []byte {
				h := appendHeader(nil, segAppend)
				h[8] = formatVersion + 1
				binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(h[:12], crcTable))
				return append(h, 1, 2, 3)
			}())}, "segment of format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Open(dir, Options{})
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %v; want ErrFormat saying %q", err, tt.want)
			}
			// And it left the directory as it was, unlocked.
			for name, content := range tt.files {
				if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != content {
					t.Errorf("%s changed", name)
				}
			}
			if _, ok := tt.files[versionName]; !ok {
				if _, err := os.Stat(filepath.Join(dir, lockName)); !os.IsNotExist(err) {
					t.Errorf("Open left a lock file in a directory that is not Starling's: %v", err)
				}
			}
		})
	}
	t.Run("new directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		open(t, dir, Options{})
		if b, err := os.ReadFile(filepath.Join(dir, "VERSION")); err != nil || string(b) != versionLine(formatVersion) {
			t.Fatalf("VERSION = %q, %v", b, err)
		}
	})
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{SegmentBytes: 10}, {SegmentBytes: 2 << 30}, {CompactMinBytes: -1}} {
		if _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
}

// segments lists the segment files of dir in order.
func segments(t testing.TB, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	return paths
}

// copyDir copies the files of src into a new directory, the segment at last
// replaced by data.
func copyDir(t testing.TB, src string, last string, data []byte) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == lockName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Join(src, e.Name()) == last {
			b = data
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestTornTail cuts the last segment at every offset of its last record entry and
// the state entry after it, and at
// the edges and middle of the other entries of its last batch: Load keeps
// everything before that batch and nothing of it, and the next Append works.
func TestTornTail(t *testing.T) {
	for _, n := range []int{1, 3} { // records in the last batch
		t.Run(fmt.Sprintf("last batch of %d", n), func(t *testing.T) {
			src := t.TempDir()
			l := open(t, src, Options{})
			appendOK(t, l, &Batch{Records: []*record.Record{rec("a", 1), rec("b", 1)}, State: &State{NodeID: "n", Seq: 1}})
			appendOK(t, l, &Batch{Records: []*record.Record{rec("a", 2)}})
			before := int(l.tail.size)
			var last Batch
			for i := range n {
				last.Records = append(last.Records, rec(fmt.Sprint("c", i), 1), rec("a", 3))
			}
			last.State = &State{NodeID: "n", Seq: 2}
			appendOK(t, l, &last)
			l.Close()
			seg := segments(t, src)[0]
			full, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			var cuts []int
			offs := entryOffsets(t, full)
			lastEntry := offs[len(offs)-2] // the last record; the state entry follows it
			for _, off := range offs {
				if off > before && off < lastEntry {
					next := offs[slices.Index(offs, off)+1]
					cuts = append(cuts, off, off+1, off+frameHeader-1, off+frameHeader, (off+next)/2, next-1)
				}
			}
			for cut := lastEntry; cut < len(full); cut++ {
				cuts = append(cuts, cut)
			}
			cuts = append(cuts, before)
			want := map[string]uint64{"a": 2, "b": 1}
			dir := t.TempDir()
			name := filepath.Join(dir, filepath.Base(seg))
			version, _ := os.ReadFile(filepath.Join(src, versionName))
			for _, cut := range cuts {
				for _, f := range []struct {
					name string
					data []byte
				}{{filepath.Join(dir, versionName), version}, {name, full[:cut]}} {
					if err := os.WriteFile(f.name, f.data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				w := &warnings{}
				l := open(t, dir, Options{Logger: slog.New(w), noSync: true})
				got, st := load(t, l)
				if !reflect.DeepEqual(got, want) || st.Seq != 1 {
					t.Fatalf("cut at %d: %v, %+v; want %v, seq 1", cut, got, st, want)
				}
				if cut > before && !w.has("torn write") {
					t.Fatalf("cut at %d: no warning, only %q", cut, w.all())
				}
				if fi, err := os.Stat(name); err != nil || fi.Size() != int64(before) {
					t.Fatalf("cut at %d: the segment is not truncated to %d bytes: %v, %v", cut, before, fi, err)
				}
				appendOK(t, l, &Batch{Records: []*record.Record{rec("d", 1)}})
				l = reopen(t, l)
				got, _ = load(t, l)
				if !reflect.DeepEqual(got, maps(want, map[string]uint64{"d": 1})) {
					t.Fatalf("cut at %d, then an Append: %v", cut, got)
				}
				l.Close()
			}
		})
	}
}

// entryOffsets returns where each entry of a segment file starts.
func entryOffsets(t testing.TB, data []byte) []int {
	t.Helper()
	var offs []int
	for off := headerSize; off < len(data); {
		fr, err := parseFrame(data, off, true)
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		offs = append(offs, off)
		off += fr.size
	}
	return offs
}

// TestDamage flips bytes in segments and checks what survives.
func TestDamage(t *testing.T) {
	// Five batches in one segment: a@1 b@1 | a@2 | c@1 | d@1 | e@1.
	build := func(t *testing.T, opts Options) (string, []byte) {
		src := t.TempDir()
		l := open(t, src, opts)
		appendOK(t, l, &Batch{Records: []*record.Record{rec("a", 1), rec("b", 1)}})
		for _, r := range []*record.Record{rec("a", 2), rec("c", 1), rec("d", 1), rec("e", 1)} {
			appendOK(t, l, &Batch{Records: []*record.Record{r}})
		}
		l.Close()
		segs := segments(t, src)
		data, _ := os.ReadFile(segs[0])
		return src, data
	}
	all := map[string]uint64{"a": 2, "b": 1, "c": 1, "d": 1, "e": 1}
	tests := []struct {
		name  string
		entry int  // which entry (0: a@1, 1: b@1, 2: a@2, 3: c, 4: d, 5: e)
		inLen bool // damage its length, not its payload
		want  map[string]uint64
		warn  string
	}{
		// Two whole batches follow: damage in the middle, the entry alone is skipped.
		{"payload of the newest a", 2, false, map[string]uint64{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}, "skipped a damaged entry"},
		{"payload of b", 1, false, map[string]uint64{"a": 2, "c": 1, "d": 1, "e": 1}, "skipped a damaged entry"},
		// In the last two batches it cannot be told from a torn write: cut there.
		{"payload of d", 4, false, map[string]uint64{"a": 2, "b": 1, "c": 1}, "torn write"},
		{"payload of e", 5, false, map[string]uint64{"a": 2, "b": 1, "c": 1, "d": 1}, "torn write"},
		// A bad length frames nothing after it.
		{"length of c", 3, true, map[string]uint64{"a": 2, "b": 1}, "torn write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, data := build(t, Options{})
			offs := entryOffsets(t, data)
			bad := slices.Clone(data)
			if tt.inLen {
				bad[offs[tt.entry]+2] ^= 0x40
			} else {
				bad[offs[tt.entry]+frameHeader+20] ^= 0x01
			}
			w := &warnings{}
			dir := copyDir(t, src, segments(t, src)[0], bad)
			l := open(t, dir, Options{Logger: slog.New(w)})
			got, _ := load(t, l)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v; want %v", got, tt.want)
			}
			if !w.has(tt.warn) {
				t.Fatalf("warnings %q do not say %q", w.all(), tt.warn)
			}
			appendOK(t, l, &Batch{Records: []*record.Record{rec("z", 1)}})
			l = reopen(t, l)
			if got, _ := load(t, l); !reflect.DeepEqual(got, maps(tt.want, map[string]uint64{"z": 1})) {
				t.Fatalf("after an Append and a reopen: %v", got)
			}
		})
	}

	// In a sealed segment: a damaged length loses the rest of that segment only,
	// and the segment is set aside, not removed, when compacted.
	t.Run("rest of a sealed segment", func(t *testing.T) {
		// Two segments: the damage is in the first, sealed one.
		src := t.TempDir()
		l := open(t, src, Options{})
		appendOK(t, l, &Batch{Records: []*record.Record{rec("a", 1), rec("b", 1), rec("c", 1)}})
		if err := l.newTail(); err != nil {
			t.Fatal(err)
		}
		appendOK(t, l, &Batch{Records: []*record.Record{rec("d", 1)}})
		l.Close()
		segs := segments(t, src)
		data, _ := os.ReadFile(segs[0])
		offs := entryOffsets(t, data)
		bad := slices.Clone(data)
		bad[offs[1]+1] ^= 0x40 // b's length
		dir := copyDir(t, src, segs[0], bad)
		w := &warnings{}
		l = open(t, dir, Options{Logger: slog.New(w)})
		got, _ := load(t, l)
		if want := map[string]uint64{"a": 1, "d": 1}; !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v; want %v", got, want)
		}
		if !w.has("rest of a segment cannot be read") {
			t.Fatalf("warnings: %q", w.all())
		}
		if err := l.Compact(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, filepath.Base(segs[0])+corruptExt)); err != nil {
			t.Fatalf("the damaged segment was not set aside: %v", err)
		}
		l = reopen(t, l)
		if got, _ := load(t, l); !reflect.DeepEqual(got, map[string]uint64{"a": 1, "d": 1}) {
			t.Fatalf("after compaction: %v", got)
		}
	})
	t.Run("checksum right, content unreadable", func(t *testing.T) {
		src, data := build(t, Options{})
		offs := entryOffsets(t, data)
		bad := slices.Clone(data)
		// Make c's record bytes undecodable and fix the checksum.
		fr, _ := parseFrame(bad, offs[3], true)
		valOff := offs[3] + fr.size - len(fr.val)
		bad[valOff] = 99 // the codec version
		endFrame(bad[:offs[3]+fr.size], offs[3])
		dir := copyDir(t, src, segments(t, src)[0], bad)
		l := open(t, dir, Options{})
		if _, err := l.Load(func(*record.Record) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load = %v; want ErrCorrupt", err)
		}
	})
	t.Run("torn header of a new segment", func(t *testing.T) {
		src, _ := build(t, Options{})
		if err := os.WriteFile(filepath.Join(src, segName(2)), []byte("star"), 0o644); err != nil {
			t.Fatal(err)
		}
		w := &warnings{}
		l := open(t, src, Options{Logger: slog.New(w)})
		if got, _ := load(t, l); !reflect.DeepEqual(got, all) {
			t.Fatalf("got %v", got)
		}
		if !w.has("cut short") {
			t.Fatalf("warnings: %q", w.all())
		}
		appendOK(t, l, &Batch{Records: []*record.Record{rec("z", 1)}})
	})
}

// dirBytes is the size of the segment files in dir.
func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, p := range segments(t, dir) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestCompaction writes 100,000 versions of 1,000 ids, expiring and recreating
// some on the way: the directory stays near its live size, and a reopen finds
// exactly the live records.
func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 256 << 10, CompactMinBytes: 256 << 10}
	l := open(t, dir, opts)
	want := map[string]uint64{}
	var maxDir int64
	const ids, versions, perBatch = 1000, 100_000, 100
	for v := 0; v < versions; v += perBatch {
		var b Batch
		for i := v; i < v+perBatch; i++ {
			id := fmt.Sprintf("n1-%d", i%ids)
			r := rec(id, uint64(i/ids+1))
			b.Records = append(b.Records, r)
			want[id] = r.Version
		}
		// Expire a few ids for good; the engine never reuses an id.
		if v%10_000 == 0 {
			for i := range 10 {
				id := fmt.Sprintf("gone-%d-%d", v, i)
				appendOK(t, l, &Batch{Records: []*record.Record{rec(id, 1)}})
				b.Expired = append(b.Expired, id)
			}
		}
		appendOK(t, l, &b)
		maxDir = max(maxDir, l.Stats().Bytes)
	}
	l.wg.Wait()
	s := l.Stats()
	t.Logf("live %d bytes, directory %d bytes at the end, %d at most, %d segments", s.LiveBytes, s.Bytes, maxDir, s.Segments)
	// Sealed segments hold at most twice the live bytes and the floor dead (past
	// that Append waits for the compaction), and the segment appended to and the
	// last batch a segment each.
	bound := 3*s.LiveBytes + 2*opts.CompactMinBytes + 2*opts.SegmentBytes
	if maxDir > bound {
		t.Fatalf("the directory reached %d bytes; live %d, bound %d", maxDir, s.LiveBytes, bound)
	}
	if s.Records != ids {
		t.Fatalf("Stats says %d records; want %d", s.Records, ids)
	}
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	if got := dirBytes(t, dir); got > s.LiveBytes+64*headerSize {
		t.Fatalf("after Compact the directory is %d bytes; live %d", got, s.LiveBytes)
	}
	l = reopen(t, l)
	got, _ := load(t, l)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after compaction and reopen: %d records, want %d", len(got), len(want))
	}
}

// TestCompactionLeftovers: a crash during compaction leaves an unfinished .tmp
// output and inputs not yet removed; Open removes the first and reads duplicates
// of one entry as one.
func TestCompactionLeftovers(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	appendOK(t, l, &Batch{Records: []*record.Record{rec("a", 1), rec("b", 1)}, State: &State{NodeID: "n", Seq: 3}})
	appendOK(t, l, &Batch{Records: []*record.Record{rec("a", 2)}, Expired: []string{"b"}})
	l.Close()
	old, _ := os.ReadFile(segments(t, dir)[0])

	l = open(t, dir, Options{})
	load(t, l)
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// Put the input back, as if the crash came before its removal, and leave a
	// half-written output.
	if err := os.WriteFile(filepath.Join(dir, segName(1)), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segName(99)+tmpExt), old[:40], 0o644); err != nil {
		t.Fatal(err)
	}
	l = open(t, dir, Options{})
	got, st := load(t, l)
	if want := map[string]uint64{"a": 2}; !reflect.DeepEqual(got, want) || st.Seq != 3 {
		t.Fatalf("got %v, %+v; want %v, seq 3", got, st, want)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(99)+tmpExt)); !os.IsNotExist(err) {
		t.Fatalf("the unfinished output is still there: %v", err)
	}
}

// TestCompactionRace: Appends that supersede and expire entries while a
// compaction copies them win, in memory and after a reopen.
func TestCompactionRace(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{SegmentBytes: 8 << 10, CompactMinBytes: 1})
	want := map[string]uint64{}
	for round := range 300 {
		var b Batch
		for i := range 20 {
			id := fmt.Sprint("r", (round*7+i)%50)
			b.Records = append(b.Records, rec(id, uint64(round+1)))
			want[id] = uint64(round + 1)
		}
		// A short-lived record in each round, expired five rounds later.
		id := fmt.Sprint("x", round)
		b.Records = append(b.Records, rec(id, 1))
		want[id] = 1
		if round >= 5 {
			id := fmt.Sprint("x", round-5)
			b.Expired = []string{id}
			delete(want, id)
		}
		appendOK(t, l, &b)
	}
	l = reopen(t, l)
	got, _ := load(t, l)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %d records, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
}

// TestAppendFailureSticks: after a failed write, every Append fails.
func TestAppendFailureSticks(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	appendOK(t, l, &Batch{Records: []*record.Record{rec("a", 1)}})
	l.active.Close() // the next write fails
	if err := l.Append(&Batch{Records: []*record.Record{rec("a", 2)}}); err == nil {
		t.Fatal("Append on a closed file succeeded")
	}
	if err := l.Append(&Batch{Records: []*record.Record{rec("b", 1)}}); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("the next Append = %v; want the earlier failure", err)
	}
}

func TestClosed(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Append(&Batch{Records: []*record.Record{rec("a", 1)}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if _, err := l.Load(func(*record.Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Load after Close = %v", err)
	}
}

func TestMem(t *testing.T) {
	s := Mem()
	if err := s.Append(&Batch{Records: []*record.Record{rec("a", 1)}, State: &State{NodeID: "n"}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	st, err := s.Load(func(*record.Record) error { n++; return nil })
	if err != nil || n != 0 || st != (State{}) {
		t.Fatalf("Mem kept something: %d records, %+v, %v", n, st, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// FuzzLoad: any bytes as a segment file (the last one, or a sealed one) never
// crash Open or Load, and after them the log takes an Append and finds it again.
func FuzzLoad(f *testing.F) {
	seed := func(batches ...Batch) []byte {
		dir := f.TempDir()
		l, err := Open(dir, Options{noSync: true})
		if err != nil {
			f.Fatal(err)
		}
		for i := range batches {
			if err := l.Append(&batches[i]); err != nil {
				f.Fatal(err)
			}
		}
		l.Close()
		b, _ := os.ReadFile(filepath.Join(dir, segName(1)))
		return b
	}
	valid := seed(Batch{Records: []*record.Record{rec("a", 1), rec("b", 1)}, State: &State{NodeID: "n", Seq: 1}},
		Batch{Records: []*record.Record{rec("a", 2)}, Expired: []string{"b"}})
	f.Add(valid, false)
	f.Add(valid, true)
	f.Add(valid[:len(valid)-7], false)
	f.Add(appendHeader(nil, segAppend), false)
	f.Add(appendHeader(nil, segCompact), true)
	f.Add([]byte("starling"), false)
	f.Fuzz(func(t *testing.T, data []byte, sealed bool) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, versionName), []byte(versionLine(formatVersion)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if sealed {
			if err := os.WriteFile(filepath.Join(dir, segName(2)), appendHeader(nil, segAppend), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		opts := Options{noSync: true, SegmentBytes: 1 << 20}
		l, err := Open(dir, opts)
		if err != nil {
			return
		}
		before := map[string]uint64{}
		if _, err := l.Load(func(r *record.Record) error { before[r.ID] = r.Version; return nil }); err != nil {
			l.Close()
			return // an entry with a right checksum that does not decode
		}
		if err := l.Append(&Batch{Records: []*record.Record{rec("fuzz", 7)}}); err != nil {
			t.Fatalf("Append after Load: %v", err)
		}
		l.Close()
		l, err = Open(dir, opts)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		after := map[string]uint64{}
		if _, err := l.Load(func(r *record.Record) error { after[r.ID] = r.Version; return nil }); err != nil {
			t.Fatalf("Load after reopen: %v", err)
		}
		before["fuzz"] = 7
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("before %v, after %v", before, after)
		}
	})
}
