package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/starlingsched/starling/client"
)

type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }
func (t *table) flush() error        { return t.tw.Flush() }

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress draws a one-line progress bar on a terminal, and nothing elsewhere.
type progress struct {
	w      io.Writer
	on     bool
	total  int
	done   int
	failed int
	start  time.Time
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, on: isTerminal(w), total: total, start: time.Now()}
	p.draw()
	return p
}

func (p *progress) add(s client.State) {
	p.done++
	if s != client.Succeeded {
		p.failed++
	}
	p.draw()
}

func (p *progress) set(done, failed int) {
	p.done, p.failed = done, failed
	p.draw()
}

func (p *progress) draw() {
	if !p.on {
		return
	}
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = p.done * width / p.total
	}
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	fmt.Fprintf(p.w, "\r%s %d/%d done", bar, p.done, p.total)
	if p.failed > 0 {
		fmt.Fprintf(p.w, ", %d not succeeded", p.failed)
	}
	fmt.Fprintf(p.w, "  %s ", time.Since(p.start).Round(100*time.Millisecond))
}

func (p *progress) finish() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}
