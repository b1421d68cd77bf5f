package gossip

import (
	"log/slog"
	"testing"
)

func TestMemberlistLogLevels(t *testing.T) {
	logger, records := newCapture()
	std := newStdLogger(logger)
	std.Printf("[DEBUG] memberlist: Initiating push/pull sync with: %s", "a")
	std.Printf("[INFO] memberlist: Suspect %s has failed", "b")
	std.Printf("[WARN] memberlist: Refuting a dead message")
	std.Printf("[ERR] memberlist: Failed to send ping")
	std.Printf("no tag at all")
	want := []struct {
		level slog.Level
		msg   string
	}{
		{slog.LevelDebug, "Initiating push/pull sync with: a"},
		{slog.LevelInfo, "Suspect b has failed"},
		{slog.LevelWarn, "Refuting a dead message"},
		{slog.LevelError, "Failed to send ping"},
		{slog.LevelInfo, "no tag at all"},
	}
	got := records()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Level != w.level || got[i].Message != w.msg {
			t.Errorf("record %d = %v %q, want %v %q", i, got[i].Level, got[i].Message, w.level, w.msg)
		}
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateAlive: "alive", StateSuspect: "suspect", StateDead: "dead", StateLeft: "left", 9: "state(9)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}
