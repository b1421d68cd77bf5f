package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func noop(context.Context, *Input) (any, error) { return nil, nil }

func TestRegistry_register(t *testing.T) {
	for _, c := range []struct {
		name    string
		typ     string
		h       Handler
		wantErr string // "" means registered
		exists  bool   // the error wraps ErrHandlerExists
	}{
		{name: "plain", typ: "resize", h: noop},
		{name: "every allowed character", typ: "img/resize:v2.1-b_x", h: noop},
		{name: "128 characters", typ: strings.Repeat("a", 128), h: noop},
		{name: "starts with a digit", typ: "3d", h: noop},
		{name: "empty", typ: "", h: noop, wantErr: "bad task type"},
		{name: "starts with a dash", typ: "-x", h: noop, wantErr: "bad task type"},
		{name: "space", typ: "has space", h: noop, wantErr: "bad task type"},
		{name: "129 characters", typ: strings.Repeat("a", 129), h: noop, wantErr: "bad task type"},
		{name: "nil handler", typ: "ok-name", h: nil, wantErr: "nil handler"},
		{name: "a built-in", typ: "noop", h: noop, wantErr: `runner: handler already registered: "noop"`, exists: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewRegistry()
			err := r.Register(c.typ, c.h)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Register(%q): %v", c.typ, err)
				}
				if !r.Has(c.typ) || !slices.Contains(r.Types(), c.typ) {
					t.Errorf("Register(%q) succeeded but Has/Types do not show it: %v", c.typ, r.Types())
				}
				if h, ok := r.Lookup(c.typ); !ok || h == nil {
					t.Errorf("Lookup(%q) = %v, %v", c.typ, h, ok)
				}
				if err := r.Register(c.typ, noop); !errors.Is(err, ErrHandlerExists) {
					t.Errorf("registering %q twice: %v, want ErrHandlerExists", c.typ, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Register(%q): %v, want an error containing %q", c.typ, err, c.wantErr)
			}
			if errors.Is(err, ErrHandlerExists) != c.exists {
				t.Errorf("Register(%q): errors.Is(err, ErrHandlerExists) = %v, want %v", c.typ, !c.exists, c.exists)
			}
			if c.exists {
				return
			}
			if r.Has(c.typ) {
				t.Errorf("a refused type %q is registered", c.typ)
			}
		})
	}
}

func TestRegistry_builtins(t *testing.T) {
	if got, want := NewRegistry().Types(), []string{"echo", "noop", "sleep", "sum"}; !slices.Equal(got, want) {
		t.Errorf("NewRegistry().Types() = %v, want %v", got, want)
	}
	var zero Registry
	if got := zero.Types(); len(got) != 0 || zero.Has("noop") || zero.Validate("sleep", nil) != nil {
		t.Errorf("the zero Registry is not empty: types %v", got)
	}
	if err := zero.Register("x", noop); err != nil || !zero.Has("x") {
		t.Errorf("Register on the zero Registry: %v", err)
	}
}

func TestRegistry_validate(t *testing.T) {
	r := NewRegistry()
	for _, c := range []struct {
		name    string
		typ     string
		payload string
		wantErr string // "" means valid
	}{
		{"sleep", "sleep", `{"ms":5}`, ""},
		{"sleep without payload", "sleep", ``, `sleep needs {"ms": N}`},
		{"sleep with a bad payload", "sleep", `{"ms":"x"}`, `sleep needs {"ms": N}: json: cannot unmarshal`},
		{"sleep negative", "sleep", `{"ms":-1}`, "ms must not be negative"},
		{"a type without a validator", "echo", `anything`, ""},
		{"an unknown type", "nosuch", `{}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := r.Validate(c.typ, []byte(c.payload))
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("Validate(%q, %s) = %v, want %q", c.typ, c.payload, err, c.wantErr)
			}
		})
	}

	// A validator can be set for a type with no handler here, replaced and removed.
	r.SetValidator("remote", func([]byte) error { return errors.New("first") })
	r.SetValidator("remote", func([]byte) error { return errors.New("second") })
	if err := r.Validate("remote", nil); err == nil || err.Error() != "second" {
		t.Errorf("after replacing the validator: %v, want second", err)
	}
	if r.Has("remote") {
		t.Error("a validator made the type runnable")
	}
	r.SetValidator("remote", nil)
	if err := r.Validate("remote", nil); err != nil {
		t.Errorf("after removing the validator: %v", err)
	}
}

// TestRegistry_concurrent: readers see a consistent registry while writers add to it
// (run with -race).
func TestRegistry_concurrent(t *testing.T) {
	r := NewRegistry()
	const writers, each = 4, 50
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				typ := fmt.Sprintf("t%d-%d", w, i)
				if err := r.Register(typ, noop); err != nil {
					t.Errorf("Register(%q): %v", typ, err)
				}
				r.SetValidator(typ, func([]byte) error { return nil })
			}
		})
	}
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				types := r.Types()
				if !slices.IsSorted(types) {
					t.Errorf("Types not sorted: %v", types)
					return
				}
				for _, typ := range types {
					if _, ok := r.Lookup(typ); !ok {
						t.Errorf("Types lists %q but Lookup misses it", typ)
						return
					}
				}
				_ = r.Validate("sleep", []byte(`{"ms":1}`))
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if got, want := len(r.Types()), 4+writers*each; got != want {
		t.Errorf("%d types, want %d", got, want)
	}
}
