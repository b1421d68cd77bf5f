package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/runner"
)

// Limits on spec fields that are not configurable.
const (
	maxNameLen    = 256
	maxKeyLen     = 256
	maxRetries    = 100
	maxRequireLen = 64
)

// specErr is a 400 naming the spec field at fault.
func specErr(field, format string, args ...any) *api.Error {
	return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidSpec, Field: field,
		Message: field + ": " + fmt.Sprintf(format, args...)}
}

// prefixField puts a batch position in front of a spec error's field.
func prefixField(err error, prefix string) {
	var e *api.Error
	if !errors.As(err, &e) {
		return
	}
	if e.Field == "" {
		e.Field = prefix
		e.Message = prefix + ": " + e.Message
		return
	}
	e.Message = prefix + "." + e.Message
	e.Field = prefix + "." + e.Field
}

// submission is the body of POST /v1/tasks: one spec, or {"tasks": [...]}.
type submission struct {
	api.Spec
	Tasks []api.Spec `json:"tasks"`
}

// decodeSubmission reads one spec or a batch. The error names the field at fault.
func decodeSubmission(body []byte) (specs []api.Spec, batch bool, err error) {
	var s submission
	if err := decodeStrict(body, &s); err != nil {
		if bytes.Contains(body, []byte(`"tasks"`)) {
			if e := locateBatchError(body); e != nil {
				return nil, true, e
			}
		}
		return nil, false, err
	}
	if s.Tasks != nil {
		if !isZeroSpec(&s.Spec) {
			return nil, true, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest,
				Message: `a submission is either one spec or {"tasks": [...]}, not both`}
		}
		return s.Tasks, true, nil
	}
	return []api.Spec{s.Spec}, false, nil
}

func isZeroSpec(s *api.Spec) bool {
	return s.Type == "" && s.Payload == nil && s.Name == "" && s.Priority == 0 && s.Deadline == nil &&
		s.Timeout == 0 && s.Retries == 0 && s.Requires == nil && s.Deps == nil && s.Trigger == "" && s.IdempotencyKey == ""
}

// locateBatchError decodes a failing batch spec by spec to name the one at fault.
func locateBatchError(body []byte) error {
	var raw struct {
		Tasks []json.RawMessage `json:"tasks"`
	}
	if json.Unmarshal(body, &raw) != nil {
		return nil
	}
	for i, r := range raw.Tasks {
		var s api.Spec
		if err := decodeStrict(r, &s); err != nil {
			prefixField(err, fmt.Sprintf("tasks[%d]", i))
			return err
		}
	}
	return nil
}

// decodeStrict decodes JSON refusing unknown fields and trailing data, and turns the
// decoder's errors into API errors that name the field.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Message: "the body holds more than one JSON value"}
		}
		return nil
	}
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		dur    *api.DurationError
		tm     *time.ParseError
	)
	switch {
	case errors.Is(err, io.EOF):
		return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Message: "the body is empty; send a task spec as JSON"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest,
			Message: fmt.Sprintf("the body is not valid JSON: it ends after %d bytes, in the middle of a value", len(body))}
	case errors.As(err, &syntax):
		return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest,
			Message: fmt.Sprintf("the body is not valid JSON: %v (at byte %d)", syntax, syntax.Offset)}
	case errors.As(err, &typ) && typ.Field == "":
		return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest,
			Message: fmt.Sprintf(`expected a JSON object (a task spec, or {"tasks": [...]}), got a JSON %s`, typ.Value)}
	case errors.As(err, &typ):
		field := typ.Field
		if f, ok := strings.CutPrefix(field, "Spec."); ok {
			field = f
		}
		return specErr(field, "expected %s, got a JSON %s", jsonKind(typ.Type.String()), typ.Value)
	case errors.As(err, &dur):
		return specErr("timeout", "%v", dur)
	case errors.As(err, &tm):
		return specErr("deadline", "%q is not an RFC 3339 time (such as 2026-11-24T18:00:00Z)", tm.Value)
	case strings.HasPrefix(err.Error(), "Time.UnmarshalJSON: "):
		// A deadline that is not a JSON string: time.Time says so without a type.
		return specErr("deadline", "expected an RFC 3339 time as a string (such as \"2026-11-24T18:00:00Z\")")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return specErr(strings.Trim(name, `"`), "unknown field (a spec has type, payload, name, priority, deadline, timeout, retries, requires, deps, trigger, idempotency_key)")
	}
	return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidRequest, Message: "cannot read the body: " + err.Error()}
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case goType == "string":
		return "a string"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "*api."), strings.HasPrefix(goType, "api."):
		return "an object"
	}
	return goType
}

// validate checks one decoded spec against this node's handlers and limits.
func (n *Node) validate(s *api.Spec) error {
	if s.Type == "" {
		return specErr("type", "missing; name a task type (%s)", strings.Join(n.Types(), ", "))
	}
	if !n.reg.Has(s.Type) && !n.peerHasType(s.Type) {
		if s.Type == "exec" {
			return &api.Error{Status: http.StatusForbidden, Code: api.CodeForbidden, Field: "type",
				Message: "type: exec is disabled on this node (start the agent with --allow-exec)"}
		}
		return specErr("type", "unknown task type %q (this node runs %s)", s.Type, strings.Join(n.Types(), ", "))
	}

	if len(s.Payload) > n.cfg.MaxPayloadBytes {
		return specErr("payload", "%d bytes, over the %d-byte limit (--max-payload)", len(s.Payload), n.cfg.MaxPayloadBytes)
	}
	if string(s.Payload) == "null" {
		s.Payload = nil
	}
	if n.reg.Has(s.Type) {
		if err := n.reg.Validate(s.Type, s.Payload); err != nil {
			if errors.Is(err, runner.ErrExecNotAllowed) {
				return &api.Error{Status: http.StatusForbidden, Code: api.CodeForbidden, Field: "payload.argv", Message: "payload.argv: " + err.Error()}
			}
			return specErr("payload", "%v", err)
		}
	}
	if len(s.Name) > maxNameLen {
		return specErr("name", "%d characters; at most %d", len(s.Name), maxNameLen)
	}
	if s.Timeout < 0 {
		return specErr("timeout", "must not be negative")
	}
	if s.Retries < 0 {
		return specErr("retries", "must not be negative, got %d", s.Retries)
	}
	if s.Retries > maxRetries {
		return specErr("retries", "at most %d, got %d", maxRetries, s.Retries)
	}
	if len(s.IdempotencyKey) > maxKeyLen {
		return specErr("idempotency_key", "%d characters; at most %d", len(s.IdempotencyKey), maxKeyLen)
	}
	if r := s.Requires; r != nil {
		if len(r.Tags)+len(r.Resources) > maxRequireLen {
			return specErr("requires", "at most %d tags and resources", maxRequireLen)
		}
		for i, t := range r.Tags {
			if t == "" || strings.ContainsAny(t, " \t\n,") {
				return specErr(fmt.Sprintf("requires.tags[%d]", i), "%q: a tag is non-empty and has no spaces or commas", t)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(r.Resources)) {
			if k == "" {
				return specErr("requires.resources", "a resource name is empty")
			}
			if r.Resources[k] < 0 {
				return specErr("requires.resources."+k, "must not be negative, got %d", r.Resources[k])
			}
		}
	}
	switch s.Trigger {
	case "", api.TriggerAllSuccess, api.TriggerAllDone:
	default:
		return specErr("trigger", "%q is not a trigger rule (all_success or all_done)", s.Trigger)
	}
	for i, d := range s.Deps {
		if d == "" {
			return specErr(fmt.Sprintf("deps[%d]", i), "empty: name a task of the submission or an existing task id")
		}
	}
	return nil
}

// peerHasType reports whether a live peer has a handler for typ: such a task is
// accepted here and waits in the queue for that peer to steal it.
func (n *Node) peerHasType(typ string) bool {
	if n.cluster == nil {
		return false
	}
	n.view.mu.RLock()
	defer n.view.mu.RUnlock()
	for _, p := range n.view.cluster.Peers {
		if !p.Gone && slices.Contains(p.Meta.Types, typ) {
			return true
		}
	}
	return false
}
