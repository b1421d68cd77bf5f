package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// Version is the binary's version; main may set it at build time.
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"agent", "run a node", runAgent},
		{"submit", "submit a task: starling submit TYPE [PAYLOAD|@FILE]", runSubmit},
		{"status", "print a task's record: starling status ID", runStatus},
		{"wait", "wait for tasks to finish: starling wait ID...", runWait},
		{"cancel", "cancel tasks: starling cancel ID...", runCancel},
		{"tasks", "list tasks", runTasks},
		{"graph", "task graphs: graph submit FILE, graph status ID, graph cancel ID", runGraph},
		{"members", "list the cluster's members", runMembers},
		{"dev", "run a local cluster of several nodes in this process", runDev},
		{"keygen", "print a new cluster key for --gossip-key", runKeygen},
		{"drain", "take a node out of service: it stops taking work, finishes what it owns, leaves", runDrain},
		{"bench", "run a benchmark workload and print JSON", runBench},
		{"version", "print the version", runVersion},
	}
}

// errUsage marks an error the user made on the command line (exit code 2).
var errUsage = errors.New("usage")

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, e, args)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			switch {
			case err == nil:
				return 0
			case errors.Is(err, pflag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(e.stderr, "starling %s: %v\n", c.name, err)
				return 2
			case errors.Is(err, errSilent):
				return 1
			}
			fmt.Fprintf(e.stderr, "starling %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(e.stderr, "starling: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return 2
}

// errSilent is returned by commands that already told the user what went wrong.
var errSilent = errors.New("failed")

func usage(w io.Writer) {
	fmt.Fprint(w, "starling: a decentralized work-stealing task cluster\n\nUsage: starling COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'starling COMMAND --help' for a command's flags.\n")
}

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(e *env, name, synopsis string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: starling %s\n\nFlags:\n%s", synopsis, fs.FlagUsages())
	}
	return fs
}

// noEnv annotates a flag that parse does not fill from the environment.
const noEnv = "starling/no-env"

// withoutEnv marks flag name as one its STARLING_* variable does not set: one that
// shares an agent flag's name but not its meaning (bench's and dev's --data-dir must
// not take an agent's STARLING_DATA_DIR and write into its directory).
func withoutEnv(fs *pflag.FlagSet, name string) {
	fs.SetAnnotation(name, noEnv, []string{"true"}) // fails only for a flag not defined
}

// parse parses args, then fills every flag not given on the command line from its
// STARLING_* environment variable (--max-queue ← STARLING_MAX_QUEUE; lists are
// comma-separated), but for those marked withoutEnv.
func parse(e *env, fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Annotations[noEnv] != nil {
			return
		}
		name := "STARLING_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := e.getenv(name)
		if v == "" {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if err := sv.Replace(strings.Split(v, ",")); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
		}
	})
	if len(errs) > 0 {
		return usageErr("%v", errors.Join(errs...))
	}
	return nil
}

// newLogger builds the slog logger the --log-format and --log-level flags ask for.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format %q: use text or json", format)
}

func runVersion(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "version", "version")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "starling %s\n", version())
	return nil
}
