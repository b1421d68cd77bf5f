package record

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/starlingsched/starling/internal/api"
)

// sample is a record as a finished task of a small graph leaves it: about 400 bytes
// encoded.
func sample() *Record {
	dl := time.Date(2031, 5, 6, 7, 8, 9, 10, time.UTC)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	return &Record{
		ID: "n7f3a9c2e-2bq1", Seq: 123456, Graph: "n7f3a9c2e-g2bq0", GIdx: 3,
		Spec: &api.Spec{
			Type:     "resize",
			Payload:  json.RawMessage(`{"src":"s3://bucket/images/2030/01/02/photo-000123.jpg","width":1024,"height":768,"format":"webp"}`),
			Name:     "resize-3",
			Priority: 5, Deadline: &dl, Timeout: api.Duration(30 * time.Second), Retries: 3,
			Requires: &api.Requires{Tags: []string{"gpu"}, Resources: map[string]int64{"cpu": 2, "mem_mb": 512}},
			Deps:     []string{"fetch", "probe"},
		},
		State: api.Succeeded, Attempt: 2, Failures: 1, Epoch: 4, Node: "worker-3",
		Created: t0, Queued: t0.Add(time.Millisecond), Started: t0.Add(2 * time.Millisecond),
		Finished: t0.Add(40 * time.Millisecond),
		Deps: map[string]json.RawMessage{
			"n7f3a9c2e-2bpy": json.RawMessage(`{"bytes":123456}`),
			"n7f3a9c2e-2bpz": json.RawMessage(`{"w":4000,"h":3000}`),
		},
		Result:  json.RawMessage(`{"dst":"s3://bucket/thumbs/photo-000123.webp","bytes":48213}`),
		Version: 7,
	}
}

// normal is r with its times in UTC and without monotonic readings, and empty dep
// results nil, for reflect.DeepEqual: the codec keeps instants, not locations.
func normal(r *Record) *Record {
	c := *r
	for _, t := range []*time.Time{&c.Created, &c.Queued, &c.Started, &c.Finished, &c.RetryAt} {
		*t = t.UTC()
	}
	if r.Spec != nil {
		s := *r.Spec
		if s.Deadline != nil {
			d := s.Deadline.UTC()
			s.Deadline = &d
		}
		c.Spec = &s
	}
	if r.Deps != nil {
		c.Deps = make(map[string]json.RawMessage, len(r.Deps))
		for k, v := range r.Deps {
			if len(v) == 0 {
				v = nil // the codec keeps no empty dep results
			}
			c.Deps[k] = v
		}
	}
	return &c
}

func roundTrip(t testing.TB, r *Record) *Record {
	t.Helper()
	b, err := r.AppendBinary(nil)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return got
}

func TestCodecRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rec  *Record
	}{
		{"zero", &Record{}},
		{"sample", sample()},
		{"created", &Record{ID: "a-1", Seq: 1, Spec: &api.Spec{Type: "noop"}, State: api.Pending, Created: time.Now(), Version: 1}},
		{"empty but not nil", &Record{Spec: &api.Spec{Payload: json.RawMessage{}, Requires: &api.Requires{Tags: []string{}, Resources: map[string]int64{}}, Deps: []string{}},
			Deps: map[string]json.RawMessage{}, Result: json.RawMessage{}}},
		{"unknown state", &Record{State: "paused"}},
		{"negatives", &Record{GIdx: -1, Attempt: -2, Spec: &api.Spec{Priority: -100, Timeout: -1, Retries: -3,
			Requires: &api.Requires{Resources: map[string]int64{"x": -5}}}}},
		{"extreme times", &Record{Created: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), Finished: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			Spec: &api.Spec{Deadline: &time.Time{}}}},
		{"many deps", &Record{Deps: func() map[string]json.RawMessage {
			m := map[string]json.RawMessage{}
			for i := range 40 {
				m[strconv.Itoa(i)] = json.RawMessage(strconv.Itoa(i * i))
			}
			return m
		}()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := roundTrip(t, tt.rec)
			if want := normal(tt.rec); !reflect.DeepEqual(normal(got), want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", normal(got), want)
			}
			if got.Spec != nil && tt.rec.Spec != nil && tt.rec.Spec.Deadline != nil && !got.Spec.Deadline.Equal(*tt.rec.Spec.Deadline) {
				t.Fatalf("deadline %v, want %v", got.Spec.Deadline, tt.rec.Spec.Deadline)
			}
		})
	}
}

// TestCodecProperty: random records survive a round trip and encode to the same
// bytes every time (map keys in order).
func TestCodecProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		r := randomRecord(rng)
		b1, err := r.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b1)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !reflect.DeepEqual(normal(got), normal(r)) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, normal(got), normal(r))
		}
		b2, _ := got.AppendBinary(nil)
		if string(b1) != string(b2) {
			t.Fatalf("record %d encodes differently after a round trip", i)
		}
	}
}

func randomRecord(rng *rand.Rand) *Record {
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		b := make([]byte, rng.IntN(20))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	raw := func() json.RawMessage {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return json.RawMessage{}
		}
		return json.RawMessage(strconv.Quote(str()))
	}
	tm := func() time.Time {
		if rng.IntN(3) == 0 {
			return time.Time{}
		}
		return time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(1e9))
	}
	r := &Record{
		ID: str(), Seq: rng.Uint64(), Graph: str(), GIdx: rng.IntN(100) - 50,
		State:   api.States[rng.IntN(len(api.States))],
		Attempt: rng.IntN(5), Failures: rng.IntN(3), NodeLosses: rng.IntN(2), Epoch: rng.Uint64N(10),
		Exec: str(), Node: str(),
		Created: tm(), Queued: tm(), Started: tm(), Finished: tm(), RetryAt: tm(),
		Waiting: str(), Result: raw(), Error: str(), Version: rng.Uint64(),
	}
	if rng.IntN(5) == 0 {
		r.State = api.State(str())
	}
	if rng.IntN(2) == 0 {
		r.Deps = map[string]json.RawMessage{}
		for range rng.IntN(20) {
			r.Deps[str()] = raw()
		}
	}
	if rng.IntN(5) != 0 {
		s := &api.Spec{Type: str(), Payload: raw(), Name: str(), Priority: rng.IntN(20) - 10,
			Timeout: api.Duration(rng.Int64()), Retries: rng.IntN(4), Trigger: str(), IdempotencyKey: str()}
		if rng.IntN(2) == 0 {
			d := tm()
			s.Deadline = &d
		}
		if rng.IntN(2) == 0 {
			s.Requires = &api.Requires{}
			if rng.IntN(2) == 0 {
				s.Requires.Tags = []string{}
				for range rng.IntN(4) {
					s.Requires.Tags = append(s.Requires.Tags, str())
				}
			}
			if rng.IntN(2) == 0 {
				s.Requires.Resources = map[string]int64{}
				for range rng.IntN(4) {
					s.Requires.Resources[str()] = rng.Int64() - 1<<62
				}
			}
		}
		if rng.IntN(2) == 0 {
			s.Deps = []string{}
			for range rng.IntN(5) {
				s.Deps = append(s.Deps, str())
			}
		}
		r.Spec = s
	}
	return r
}

func TestDecodeRejects(t *testing.T) {
	good, _ := sample().AppendBinary(nil)
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"newer version", append([]byte{CodecVersion + 1}, good[1:]...)},
		{"unknown field", []byte{CodecVersion, 0x80, 0x80, 0x80, 0x80, 0x01}},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte{}, good...), 0)},
		{"huge string", []byte{CodecVersion, fID, 0xff, 0xff, 0xff, 0xff, 0x0f, 'a'}},
		{"huge deps", []byte{CodecVersion, 0x80, 0x80, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"bad state", []byte{CodecVersion, fState, 99}},
		{"bad nanos", binary.AppendUvarint(binary.AppendUvarint([]byte{CodecVersion}, fQueued), 0)[:3:3]},
		{"nanos past a second", binary.AppendUvarint(binary.AppendVarint(binary.AppendUvarint([]byte{CodecVersion}, fQueued), 0), 1e9)},
		{"time out of range", binary.AppendUvarint(binary.AppendVarint(binary.AppendUvarint([]byte{CodecVersion}, fQueued), 1<<62+1), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decode(tt.b)
			if !errors.Is(err, ErrCorrupt) || r != nil {
				t.Fatalf("Decode = %v, %v; want ErrCorrupt", r, err)
			}
		})
	}
}

// TestDecodeBudget: a count or length that the input cannot back is refused before
// anything is allocated for it.
func TestDecodeBudget(t *testing.T) {
	// fDeps with a count of 2^28 entries and nothing after it.
	b := []byte{CodecVersion, 0x80, 0x80, 0x10, 0x80, 0x80, 0x80, 0x80, 0x01}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := Decode(b); err == nil {
			t.Fatal("decoded")
		}
	}
	runtime.ReadMemStats(&after)
	// The record and the error; a map of 2^28 entries would be gigabytes.
	if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 4096 {
		t.Fatalf("%d bytes allocated for a %d-byte input", per, len(b))
	}
}

func FuzzDecode(f *testing.F) {
	for _, r := range []*Record{{}, sample(), randomRecord(rand.New(rand.NewPCG(3, 4)))} {
		b, _ := r.AppendBinary(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		b2, err := r.AppendBinary(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := Decode(b2)
		if err != nil {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		if !reflect.DeepEqual(normal(r), normal(r2)) {
			t.Fatalf("re-encoding changed the record:\n%+v\n%+v", normal(r), normal(r2))
		}
	})
}

// plain is a record of a lone task, finished: about 400 bytes encoded.
func plain() *Record {
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	return &Record{
		ID: "n7f3a9c2e-2bq1", Seq: 123456,
		Spec: &api.Spec{
			Type:    "resize",
			Payload: json.RawMessage(`{"src":"s3://bucket/images/2030/01/02/photo-000123.jpg","width":1024,"height":768,"format":"webp","quality":80,"strip":true,"callback":"https://example.com/hooks/resize?id=000123"}`),
			Timeout: api.Duration(30 * time.Second), Retries: 3,
		},
		State: api.Succeeded, Attempt: 1, Epoch: 2, Node: "worker-3",
		Created: t0, Queued: t0.Add(time.Millisecond), Started: t0.Add(2 * time.Millisecond),
		Finished: t0.Add(40 * time.Millisecond),
		Result:   json.RawMessage(`{"dst":"s3://bucket/thumbs/2030/01/02/photo-000123.webp","bytes":48213,"width":1024,"height":768,"took_ms":37}`),
		Version:  5,
	}
}

func BenchmarkCodec(b *testing.B) {
	for _, rc := range []struct {
		name string
		r    *Record
	}{{"plain", plain()}, {"graph", sample()}} {
		r := rc.r
		enc, _ := r.AppendBinary(nil)
		mp, err := msgpack.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%s: binary %d bytes, msgpack %d bytes", rc.name, len(enc), len(mp))
		b.Run(rc.name+"/encode/binary", func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = r.AppendBinary(buf[:0])
			}
		})
		b.Run(rc.name+"/encode/msgpack", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = msgpack.Marshal(r)
			}
		})
		b.Run(rc.name+"/decode/binary", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(rc.name+"/decode/msgpack", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var got Record
				if err := msgpack.Unmarshal(mp, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
