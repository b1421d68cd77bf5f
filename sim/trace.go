package sim

import (
	"context"
	"log/slog"
	"strings"
)

// traceHandler puts an engine's log lines into the trace, on the simulated clock.
type traceHandler struct {
	s      *sim
	prefix string
	attrs  []slog.Attr
}

func (h *traceHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *traceHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		b.WriteByte(' ')
		b.WriteString(a.Key)
		b.WriteByte('=')
		b.WriteString(a.Value.String())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.s.tracef("%s: log %s: %s", h.prefix, strings.ToLower(r.Level.String()), b.String())
	return nil
}

func (h *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &traceHandler{s: h.s, prefix: h.prefix, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *traceHandler) WithGroup(string) slog.Handler { return h }
