package node

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/starlingsched/starling/internal/api"
)

// TestValidationOverHTTP: every spec field a user can get wrong is refused with the
// right status and code, names the field, and says what is wrong.
func TestValidationOverHTTP(t *testing.T) {
	plain := newTestNode(t, func(c *Config) { c.MaxPayloadBytes = 64 })
	withExec := newTestNode(t, func(c *Config) { c.AllowExec = true; c.ExecAllow = []string{"true"} })
	long := strings.Repeat("x", 300)
	tests := []struct {
		name   string
		node   *Node
		path   string // default /v1/tasks
		body   string
		status int
		code   string
		field  string
		msg    string // a part of the message
	}{
		{"missing type", plain, "", `{"payload":1}`, 400, api.CodeInvalidSpec, "type", "missing"},
		{"unknown type", plain, "", `{"type":"nope"}`, 400, api.CodeInvalidSpec, "type", `unknown task type "nope"`},
		{"exec disabled", plain, "", `{"type":"exec","payload":{"argv":["true"]}}`, 403, api.CodeForbidden, "type", "--allow-exec"},
		{"exec not in the allowlist", withExec, "", `{"type":"exec","payload":{"argv":["ls"]}}`, 403, api.CodeForbidden, "payload.argv", "not in the exec allowlist"},
		{"exec without argv", withExec, "", `{"type":"exec","payload":{"argv":[]}}`, 400, api.CodeInvalidSpec, "payload", "argv must name a program"},
		{"exec unknown payload field", withExec, "", `{"type":"exec","payload":{"args":["true"]}}`, 400, api.CodeInvalidSpec, "payload", "args"},
		{"bad duration", plain, "", `{"type":"noop","timeout":"soon"}`, 400, api.CodeInvalidSpec, "timeout", `"soon" is not a duration`},
		{"negative timeout", plain, "", `{"type":"noop","timeout":"-1s"}`, 400, api.CodeInvalidSpec, "timeout", "must not be negative"},
		{"negative retries", plain, "", `{"type":"noop","retries":-1}`, 400, api.CodeInvalidSpec, "retries", "must not be negative"},
		{"too many retries", plain, "", `{"type":"noop","retries":101}`, 400, api.CodeInvalidSpec, "retries", "at most 100"},
		{"deadline not RFC 3339", plain, "", `{"type":"noop","deadline":"tomorrow"}`, 400, api.CodeInvalidSpec, "deadline", "RFC 3339"},
		{"deadline a date only", plain, "", `{"type":"noop","deadline":"2026-11-24"}`, 400, api.CodeInvalidSpec, "deadline", "RFC 3339"},
		{"deadline a number", plain, "", `{"type":"noop","deadline":1700000000}`, 400, api.CodeInvalidSpec, "deadline", "RFC 3339"},
		{"payload over the cap", plain, "", `{"type":"echo","payload":"` + strings.Repeat("p", 100) + `"}`, 400, api.CodeInvalidSpec, "payload", "over the 64-byte limit"},
		{"sleep payload", plain, "", `{"type":"sleep","payload":{"ms":-5}}`, 400, api.CodeInvalidSpec, "payload", "ms must not be negative"},
		{"unknown field", plain, "", `{"type":"noop","prio":1}`, 400, api.CodeInvalidSpec, "prio", "unknown field"},
		{"wrong JSON type", plain, "", `{"type":"noop","priority":"high"}`, 400, api.CodeInvalidSpec, "priority", "expected an integer, got a JSON string"},
		{"wrong JSON type nested", plain, "", `{"type":"noop","requires":{"tags":"gpu"}}`, 400, api.CodeInvalidSpec, "requires.tags", "expected an array"},
		{"name too long", plain, "", `{"type":"noop","name":"` + long + `"}`, 400, api.CodeInvalidSpec, "name", "at most 256"},
		{"idempotency key too long", plain, "", `{"type":"noop","idempotency_key":"` + long + `"}`, 400, api.CodeInvalidSpec, "idempotency_key", "at most 256"},
		{"bad tag", plain, "", `{"type":"noop","requires":{"tags":["gpu","a b"]}}`, 400, api.CodeInvalidSpec, "requires.tags[1]", "no spaces"},
		{"negative resource", plain, "", `{"type":"noop","requires":{"resources":{"gpu":-1}}}`, 400, api.CodeInvalidSpec, "requires.resources.gpu", "must not be negative"},
		{"bad trigger", plain, "", `{"type":"noop","trigger":"sometimes"}`, 400, api.CodeInvalidSpec, "trigger", `"sometimes" is not a trigger rule`},
		{"unknown dep", plain, "", `{"type":"noop","deps":["x"]}`, 400, api.CodeInvalidGraph, "deps", `deps: unknown dep "x"`},
		{"empty dep", plain, "", `{"type":"noop","deps":[""]}`, 400, api.CodeInvalidSpec, "deps[0]", "empty"},
		{"graph cycle", plain, "", `{"tasks":[{"name":"a","type":"noop","deps":["b"]},{"name":"b","type":"noop","deps":["a"]}]}`, 400, api.CodeInvalidGraph, "tasks[0].deps", "cycle: a -> b -> a"},
		{"batch: decode error names the index", plain, "", `{"tasks":[{"type":"noop"},{"type":"noop","priority":"high"}]}`, 400, api.CodeInvalidSpec, "tasks[1].priority", "tasks[1].priority: expected an integer"},
		{"batch: validation error names the index", plain, "", `{"tasks":[{"type":"noop"},{"type":"noop","retries":-1}]}`, 400, api.CodeInvalidSpec, "tasks[1].retries", "tasks[1].retries: must not be negative"},
		{"batch: unknown field names the index", plain, "", `{"tasks":[{"type":"noop","when":1}]}`, 400, api.CodeInvalidSpec, "tasks[0].when", "unknown field"},
		{"batch of one names the index", plain, "", `{"tasks":[{"type":"nope"}]}`, 400, api.CodeInvalidSpec, "tasks[0].type", "unknown task type"},
		{"empty batch", plain, "", `{"tasks":[]}`, 400, api.CodeInvalidRequest, "", "no tasks"},
		{"both spec and tasks", plain, "", `{"type":"noop","tasks":[{"type":"noop"}]}`, 400, api.CodeInvalidRequest, "", "not both"},
		{"empty body", plain, "", ``, 400, api.CodeInvalidRequest, "", "the body is empty"},
		{"not JSON", plain, "", `{"type":`, 400, api.CodeInvalidRequest, "", "not valid JSON"},
		{"two JSON values", plain, "", `{"type":"noop"} {"type":"noop"}`, 400, api.CodeInvalidRequest, "", "more than one JSON value"},
		{"a JSON array", plain, "", `[{"type":"noop"}]`, 400, api.CodeInvalidRequest, "", "expected a JSON object"},
		{"batch: a spec not an object", plain, "", `{"tasks":[{"type":"noop"},5]}`, 400, api.CodeInvalidRequest, "tasks[1]", "tasks[1]: expected a JSON object"},
		{"batch: tasks not an array", plain, "", `{"tasks":{"type":"noop"}}`, 400, api.CodeInvalidSpec, "tasks", "expected an array"},
		{"bad wait", plain, "/v1/tasks?wait=soon", `{"type":"noop"}`, 400, api.CodeInvalidRequest, "wait", `"soon" is not a duration`},
		{"negative wait", plain, "/v1/tasks?wait=-1s", `{"type":"noop"}`, 400, api.CodeInvalidRequest, "wait", "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/v1/tasks"
			}
			e := do(t, tt.node, http.MethodPost, path, tt.body).apiErr(t, tt.status)
			if e.Code != tt.code || e.Field != tt.field || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("got code %q field %q message %q; want code %q field %q, message with %q",
					e.Code, e.Field, e.Message, tt.code, tt.field, tt.msg)
			}
			if tt.field != "" && !strings.HasPrefix(e.Message, tt.field) {
				t.Errorf("message %q does not start with the field %q", e.Message, tt.field)
			}
		})
	}
	// Nothing refused was stored.
	for _, n := range []*Node{plain, withExec} {
		var list api.TaskList
		do(t, n, http.MethodGet, "/v1/tasks", "").decode(t, &list)
		if len(list.Tasks) != 0 {
			t.Errorf("refused submissions left %d tasks behind", len(list.Tasks))
		}
	}
	// The allowed program, and a batch with good specs, go through.
	if r := waitTerminal(t, withExec, submit(t, withExec, `{"type":"exec","payload":{"argv":["true"]}}`).ID); r.State != api.Succeeded {
		t.Errorf("an allowlisted program: %s %s", r.State, r.Error)
	}
}

func TestListParametersValidated(t *testing.T) {
	n := newTestNode(t, nil)
	for _, c := range []struct{ query, field, msg string }{
		{"state=done", "state", `unknown state "done"`},
		{"state=queued,nope", "state", `unknown state "nope"`},
		{"limit=0", "limit", "not a positive integer"},
		{"limit=ten", "limit", "not a positive integer"},
		{"cursor=!!", "cursor", "not one this node handed out"},
	} {
		e := do(t, n, http.MethodGet, "/v1/tasks?"+c.query, "").apiErr(t, http.StatusBadRequest)
		if e.Code != api.CodeInvalidRequest || e.Field != c.field || !strings.Contains(e.Message, c.msg) {
			t.Errorf("?%s: %+v; want field %q and %q", c.query, e, c.field, c.msg)
		}
	}
}

// TestSubmitValidatesInGo: the Go API refuses the same specs, as *api.Error.
func TestSubmitValidatesInGo(t *testing.T) {
	n := newTestNode(t, nil)
	_, err := n.Submit([]api.Spec{{Type: "noop"}, {Type: "noop", Retries: -2}})
	var e *api.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Field != "tasks[1].retries" {
		t.Fatalf("Submit with a bad second spec: %v; want a 400 naming tasks[1].retries", err)
	}
	ids, err := n.Submit([]api.Spec{{Type: "noop"}, {Type: "echo", Payload: []byte(`"hi"`)}})
	if err != nil || len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("Submit of two good specs: %v %v", ids, err)
	}
	for _, id := range ids {
		if owner, ok := OwnerOf(id); !ok || owner != n.ID() {
			t.Errorf("id %q: OwnerOf = %q, %v; want this node's id %q", id, owner, ok, n.ID())
		}
	}
}

func noopHandler(context.Context, *Input) (any, error) { return nil, nil }

func echoHandler(_ context.Context, in *Input) (any, error) { return in.Payload, nil }

func TestHandleRegistration(t *testing.T) {
	n := newTestNode(t, nil)
	for _, typ := range []string{"", "-x", "has space", strings.Repeat("a", 129)} {
		if err := n.Handle(typ, noopHandler); err == nil {
			t.Errorf("Handle(%q) accepted a bad type name", typ)
		}
	}
	if err := n.Handle("noop", noopHandler); !errors.Is(err, ErrHandlerExists) {
		t.Errorf("registering noop twice: %v, want ErrHandlerExists", err)
	}
	if err := n.Handle("ok-name", nil); err == nil {
		t.Error("Handle accepted a nil handler")
	}
	if err := n.Handle("img/resize:v2", echoHandler); err != nil {
		t.Fatalf("Handle(img/resize:v2): %v", err)
	}
	if r := waitTerminal(t, n, submit(t, n, `{"type":"img/resize:v2","payload":[1]}`).ID); r.State != api.Succeeded {
		t.Errorf("a registered type: %s %s", r.State, r.Error)
	}
}

// TestConfigValidated: New refuses a bad config with an error naming the setting.
func TestConfigValidated(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no slots", func(c *Config) { c.Slots = 0 }, "Slots must be at least 1"},
		{"bad tag", func(c *Config) { c.Tags = []string{"a,b"} }, `tag "a,b"`},
		{"negative resource", func(c *Config) { c.Resources = map[string]int64{"gpu": -1} }, `resource "gpu"`},
		{"zero MaxQueue", func(c *Config) { c.MaxQueue = 0 }, "MaxQueue must be positive"},
		{"allowlist without exec", func(c *Config) { c.ExecAllow = []string{"true"} }, "AllowExec is off"},
		{"bad address", func(c *Config) { c.HTTPAddr = "nowhere" }, `HTTPAddr "nowhere"`},
		{"unknown allowlisted program", func(c *Config) { c.AllowExec = true; c.ExecAllow = []string{"no-such-program-xyz"} }, "no-such-program-xyz"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := LocalConfig()
			c.mutate(&cfg)
			n, err := New(cfg)
			if err == nil {
				n.Shutdown(t.Context())
				t.Fatalf("New accepted the config")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v; want it to mention %q", err, c.want)
			}
		})
	}
}
