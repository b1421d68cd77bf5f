package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The built-in handlers every node has: noop, echo, sleep and sum. exec is not among
// them: it runs programs, so the node adds it (Exec) only when asked to.

func builtins() map[string]Handler {
	return map[string]Handler{
		"noop":  func(context.Context, *Input) (any, error) { return nil, nil },
		"echo":  func(_ context.Context, in *Input) (any, error) { return in.Payload, nil },
		"sleep": sleepHandler,
		"sum":   sumHandler,
	}
}

func builtinValidators() map[string]func([]byte) error {
	return map[string]func([]byte) error{"sleep": validateSleep}
}

// sumHandler adds up numbers: the payload's (a number or an array of numbers) and its
// deps' results (each a number, an array of numbers, or null). The reduce step of a
// map-reduce graph, and a demo of how deps feed a task. Whole numbers stay exact.
func sumHandler(_ context.Context, in *Input) (any, error) {
	var ints int64
	var floats float64
	isFloat := false
	add := func(where string, raw json.RawMessage) error {
		if len(raw) == 0 || string(raw) == "null" {
			return nil
		}
		var one json.Number
		var many []json.Number
		dec := func(v any) error {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			return d.Decode(v)
		}
		if dec(&one) != nil {
			if err := dec(&many); err != nil {
				return fmt.Errorf("%s: want a number or an array of numbers, got %s", where, raw)
			}
		} else {
			many = []json.Number{one}
		}
		for _, x := range many {
			if i, err := x.Int64(); err == nil {
				ints += i
				continue
			}
			f, err := x.Float64()
			if err != nil {
				return fmt.Errorf("%s: %q is not a number", where, x)
			}
			floats += f
			isFloat = true
		}
		return nil
	}
	if err := add("payload", in.Payload); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(in.Deps)) {
		if err := add("dep "+name, in.Deps[name]); err != nil {
			return nil, err
		}
	}
	if isFloat {
		return float64(ints) + floats, nil
	}
	return ints, nil
}

type sleepPayload struct {
	MS float64 `json:"ms"`
}

func sleepHandler(ctx context.Context, in *Input) (any, error) {
	var p sleepPayload
	if err := in.Decode(&p); err != nil {
		return nil, err
	}
	d := time.Duration(p.MS * float64(time.Millisecond))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return map[string]float64{"slept_ms": p.MS}, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// validateSleep checks a sleep payload at submission.
func validateSleep(payload []byte) error {
	var p sleepPayload
	if len(payload) == 0 {
		return errors.New(`sleep needs {"ms": N}`)
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return fmt.Errorf(`sleep needs {"ms": N}: %v`, err)
	}
	if p.MS < 0 {
		return errors.New("ms must not be negative")
	}
	return nil
}
