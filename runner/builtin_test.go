package runner

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestBuiltins(t *testing.T) {
	reg := NewRegistry()
	for _, c := range []struct {
		name    string
		typ     string
		payload string
		deps    map[string]string
		want    string // the result as JSON
		wantErr string
	}{
		{name: "noop", typ: "noop", want: "null"},
		{name: "echo", typ: "echo", payload: `{"a":[1,2]}`, want: `{"a":[1,2]}`},
		{name: "echo nothing", typ: "echo", want: "null"},
		{name: "sleep", typ: "sleep", payload: `{"ms":1}`, want: `{"slept_ms":1}`},
		{name: "sleep bad payload", typ: "sleep", payload: `[1]`, wantErr: "payload: json: cannot unmarshal"},
		{name: "sum of a number", typ: "sum", payload: `7`, want: `7`},
		{name: "sum of payload and deps", typ: "sum", payload: `[1,2]`,
			deps: map[string]string{"a": `3`, "b": `[4,5]`, "c": `null`}, want: `15`},
		{name: "sum stays exact", typ: "sum", payload: `[9007199254740993, 1]`, want: `9007199254740994`},
		{name: "sum of floats", typ: "sum", payload: `[1, 0.5]`, deps: map[string]string{"a": `2.25`}, want: `3.75`},
		{name: "sum of nothing", typ: "sum", want: `0`},
		{name: "sum of a bad dep", typ: "sum", deps: map[string]string{"x": `{"a":1}`},
			wantErr: `dep x: want a number or an array of numbers, got {"a":1}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, ok := reg.Lookup(c.typ)
			if !ok {
				t.Fatalf("no built-in %q", c.typ)
			}
			in := &Input{ID: "t-1", Attempt: 1, Type: c.typ}
			if c.payload != "" {
				in.Payload = json.RawMessage(c.payload)
			}
			if c.deps != nil {
				in.Deps = map[string]json.RawMessage{}
				for k, v := range c.deps {
					in.Deps[k] = json.RawMessage(v)
				}
			}
			v, err := h(context.Background(), in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("%s: error %v, want %q", c.typ, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", c.typ, err)
			}
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("%s: result %#v is not JSON-able: %v", c.typ, v, err)
			}
			if got := compact(b); got != c.want {
				t.Errorf("%s: result %s, want %s", c.typ, got, c.want)
			}
		})
	}
}

// TestSleepEndsWithItsContext: sleep returns its context's cause when cut short.
func TestSleepEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(ErrCancelled)
	h, _ := NewRegistry().Lookup("sleep")
	start := time.Now()
	_, err := h(ctx, &Input{Payload: json.RawMessage(`{"ms":30000}`)})
	if err != ErrCancelled {
		t.Errorf("sleep with an ended context: %v, want ErrCancelled", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("sleep took %v to notice its context", el)
	}
}

func TestInputDecode(t *testing.T) {
	type p struct {
		N int `json:"n"`
	}
	for _, c := range []struct {
		name    string
		payload string
		want    int
		wantErr string
	}{
		{"fits", `{"n":3}`, 3, ""},
		{"empty leaves the value", ``, 42, ""},
		{"does not fit", `{"n":"x"}`, 42, "payload: json: cannot unmarshal"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := p{N: 42}
			err := (&Input{Payload: json.RawMessage(c.payload)}).Decode(&v)
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("Decode(%s): %v, want %q", c.payload, err, c.wantErr)
			}
			if c.wantErr == "" && v.N != c.want {
				t.Errorf("Decode(%s): n = %d, want %d", c.payload, v.N, c.want)
			}
		})
	}
}
