package node

import (
	"errors"
	"testing"

	"github.com/starlingsched/starling/internal/api"
)

// FuzzDecodeSubmission: whatever a client posts, decoding answers specs or an API
// error (a 4xx naming what is wrong), never a panic or a bare error.
func FuzzDecodeSubmission(f *testing.F) {
	for _, s := range []string{
		`{"type":"echo","payload":{"a":1}}`,
		`{"tasks":[{"type":"noop"},{"type":"sleep","payload":{"ms":5},"deps":["x"]}]}`,
		`{"type":"noop","timeout":"1s","deadline":"2026-11-24T18:00:00Z","requires":{"tags":["gpu"],"resources":{"gpu":1}}}`,
		`{"tasks":[{"type":"noop","bogus":1}]}`,
		`[1,2]`, `{"type":"x","timeout":12}`, `{"tasks":[]}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		specs, _, err := decodeSubmission(body)
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 || e.Message == "" {
				t.Fatalf("decoding %q: %v is not a client error with a message", body, err)
			}
			return
		}
		if specs == nil {
			t.Fatalf("decoding %q: no specs and no error", body)
		}
	})
}
