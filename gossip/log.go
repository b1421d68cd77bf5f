package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// logWriter adapts memberlist's *log.Logger output ("[WARN] memberlist:
// message") to slog, at the level the line's tag names.
type logWriter struct {
	logger *slog.Logger
}

// newStdLogger returns a *log.Logger for memberlist and its transport that
// writes into logger.
func newStdLogger(logger *slog.Logger) *log.Logger {
	return log.New(logWriter{logger: logger.With(slog.String("component", "memberlist"))}, "", 0)
}

var logLevels = []struct {
	tag   string
	level slog.Level
}{
	{"[TRACE]", slog.LevelDebug - 4},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// Write logs each line of p. It never fails.
func (w logWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		w.writeLine(bytes.TrimSpace(line))
	}
	return len(p), nil
}

func (w logWriter) writeLine(line []byte) {
	if len(line) == 0 {
		return
	}
	level := slog.LevelInfo
	for _, l := range logLevels {
		if rest, ok := bytes.CutPrefix(line, []byte(l.tag)); ok {
			level, line = l.level, bytes.TrimSpace(rest)
			break
		}
	}
	ctx := context.Background()
	if !w.logger.Enabled(ctx, level) {
		return
	}
	line, _ = bytes.CutPrefix(line, []byte("memberlist: "))
	w.logger.Log(ctx, level, string(line))
}
