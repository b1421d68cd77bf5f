package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/starlingsched/starling/client"
)

// clientFlags are --addr and --token, on every command that talks to a node.
type clientFlags struct {
	addr  string
	token string
}

func (c *clientFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7070", "the node to talk to: host:port or a URL (env STARLING_ADDR)")
	fs.StringVar(&c.token, "token", "", "the API token (env STARLING_TOKEN)")
}

// withOneArg parses args for a command that takes exactly one argument (what names it
// in the usage error) and returns it with a client.
func (c *clientFlags) withOneArg(e *env, fs *pflag.FlagSet, args []string, what string) (string, *client.Client, error) {
	if err := parse(e, fs, args); err != nil {
		return "", nil, err
	}
	if fs.NArg() != 1 {
		return "", nil, usageErr("want %s", what)
	}
	cl, err := c.client()
	return fs.Arg(0), cl, err
}

func (c *clientFlags) client() (*client.Client, error) {
	cl, err := client.New(c.addr, client.WithToken(c.token))
	if err != nil {
		return nil, usageErr("--addr: %v", err)
	}
	return cl, nil
}

func runSubmit(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "submit", "submit TYPE [PAYLOAD|@FILE|-] [flags]\n       starling submit --exec [flags] -- PROGRAM [ARGS...]")
	var cf clientFlags
	cf.register(fs)
	var (
		spec     client.Spec
		deadline string
		timeout  time.Duration
		requires []string
		wait     time.Duration
		isExec   bool
		execEnv  []string
		execDir  string
		output   string
	)
	fs.IntVar(&spec.Priority, "priority", 0, "higher runs first")
	fs.StringVar(&deadline, "deadline", "", "RFC 3339 time, or a duration from now (10m): among equal priorities, earliest first")
	fs.DurationVar(&timeout, "timeout", 0, "cancel a run that lasts longer")
	fs.IntVar(&spec.Retries, "retries", 0, "retries after an application failure, with exponential backoff")
	fs.StringArrayVar(&requires, "require", nil, "a tag (gpu, zone=eu) or resource (cpu=2, mem_mb=512) the node must have; NAME=INTEGER is a resource, tag:K=V forces a tag (repeatable)")
	fs.StringVar(&spec.Name, "name", "", "a name for the task")
	fs.StringVar(&spec.IdempotencyKey, "idempotency-key", "", "a second submission with the same key returns the first task")
	fs.DurationVar(&wait, "wait", 0, "wait up to this long for the task to finish and print its record")
	fs.Lookup("wait").NoOptDefVal = "24h"
	fs.BoolVar(&isExec, "exec", false, "run a program: the arguments after -- are its argv")
	fs.StringArrayVar(&execEnv, "env", nil, "with --exec: an environment variable K=V (repeatable)")
	fs.StringVar(&execDir, "dir", "", "with --exec: the working directory")
	fs.StringVarP(&output, "output", "o", "", "print the record as json (default with --wait) or only the id (text, default without)")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if isExec {
		if len(rest) == 0 {
			return usageErr("--exec needs a program after --: starling submit --exec -- echo hello")
		}
		p := map[string]any{"argv": rest}
		if len(execEnv) > 0 {
			envMap := map[string]string{}
			for _, kv := range execEnv {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageErr("--env %q: use K=V", kv)
				}
				envMap[k] = v
			}
			p["env"] = envMap
		}
		if execDir != "" {
			p["dir"] = execDir
		}
		spec.Type = "exec"
		spec.Payload, _ = json.Marshal(p)
	} else {
		if len(rest) == 0 || len(rest) > 2 {
			return usageErr("want TYPE and an optional PAYLOAD: starling submit echo '{\"hello\": 1}'")
		}
		spec.Type = rest[0]
		if len(rest) == 2 {
			payload, err := readPayload(rest[1], os.Stdin)
			if err != nil {
				return err
			}
			spec.Payload = payload
		}
	}
	if deadline != "" {
		t, err := parseDeadline(deadline, time.Now())
		if err != nil {
			return err
		}
		spec.Deadline = &t
	}
	spec.Timeout = client.Duration(timeout)
	req, err := parseRequires(requires)
	if err != nil {
		return err
	}
	spec.Requires = req
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var t client.Task
	if wait > 0 {
		// The node answers a submission's wait within a minute; Wait covers the rest
		// of a longer one.
		t, err = cl.SubmitAndWait(ctx, spec, min(wait, time.Minute))
		if err == nil && !t.State.Terminal() && wait > time.Minute {
			t, err = cl.Wait(ctx, t.ID, wait-time.Minute)
		}
	} else {
		t, err = cl.Submit(ctx, spec)
	}
	if err != nil {
		return err
	}
	if output == "json" || (output == "" && wait > 0) {
		if err := printJSON(e.stdout, t); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(e.stdout, t.ID)
	}
	if wait > 0 && t.State != client.Succeeded {
		return errSilent
	}
	return nil
}

// readPayload reads a payload argument: JSON text, @FILE, or - for standard input.
// Text that is not JSON is sent as a JSON string.
func readPayload(arg string, stdin io.Reader) (json.RawMessage, error) {
	var b []byte
	switch {
	case arg == "-":
		var err error
		if b, err = io.ReadAll(stdin); err != nil {
			return nil, fmt.Errorf("read payload from standard input: %w", err)
		}
	case strings.HasPrefix(arg, "@"):
		var err error
		if b, err = os.ReadFile(arg[1:]); err != nil {
			return nil, fmt.Errorf("read payload: %w", err)
		}
		if !json.Valid(b) {
			return nil, usageErr("%s is not valid JSON", arg[1:])
		}
		return b, nil
	default:
		b = []byte(arg)
	}
	if json.Valid(b) {
		return b, nil
	}
	s, _ := json.Marshal(string(b))
	return s, nil
}

func parseDeadline(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d).UTC(), nil
	}
	return time.Time{}, usageErr("--deadline %q: use an RFC 3339 time (2026-11-24T18:00:00Z) or a duration from now (10m)", s)
}

// parseRequires turns --require flags into requirements: NAME=INTEGER is a resource,
// anything else a tag; tag:K=V forces a tag.
func parseRequires(flags []string) (*client.Requires, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	r := &client.Requires{}
	for _, f := range flags {
		if tag, ok := strings.CutPrefix(f, "tag:"); ok {
			r.Tags = append(r.Tags, tag)
			continue
		}
		if k, v, ok := strings.Cut(f, "="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				if n < 0 || k == "" {
					return nil, usageErr("--require %q: a resource amount is NAME=N with N >= 0", f)
				}
				if r.Resources == nil {
					r.Resources = map[string]int64{}
				}
				r.Resources[k] = n
				continue
			}
		}
		if f == "" {
			return nil, usageErr("--require: empty")
		}
		r.Tags = append(r.Tags, f)
	}
	return r, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "status", "status ID [flags]")
	var cf clientFlags
	cf.register(fs)
	id, cl, err := cf.withOneArg(e, fs, args, "one task id")
	if err != nil {
		return err
	}
	t, err := cl.Get(ctx, id)
	if err != nil {
		return err
	}
	return printJSON(e.stdout, t)
}

func runCancel(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "cancel", "cancel ID... [flags]")
	var cf clientFlags
	cf.register(fs)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("want at least one task id")
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	var failed bool
	for _, id := range fs.Args() {
		t, err := cl.Cancel(ctx, id)
		if err != nil {
			fmt.Fprintf(e.stderr, "%s: %v\n", id, err)
			failed = true
			continue
		}
		fmt.Fprintf(e.stdout, "%s\t%s\n", t.ID, t.State)
	}
	if failed {
		return errSilent
	}
	return nil
}

func runWait(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "wait", "wait ID... [flags]")
	var cf clientFlags
	cf.register(fs)
	var timeout time.Duration
	var output string
	fs.DurationVar(&timeout, "timeout", 0, "give up after this long (default: wait until they finish)")
	fs.StringVarP(&output, "output", "o", "text", "text (id, state, error a line) or json (the records)")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("want at least one task id")
	}
	if output != "text" && output != "json" {
		return usageErr("-o %q: use text or json", output)
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	// --timeout bounds the node's long polls rather than the requests, so that each
	// task's last record arrives even when it is not finished.
	end := time.Now().Add(timeout)
	ids := fs.Args()
	bar := newProgress(e.stdout, len(ids))
	records := make([]client.Task, len(ids))
	done := make(chan int, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, 32)
	for i, id := range ids {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var left time.Duration // 0: until the task is finished
			if timeout > 0 {
				left = max(time.Until(end), time.Millisecond) // at least one look
			}
			records[i], errs[i] = cl.Wait(ctx, id, left)
			done <- i
		}()
	}
	for range ids {
		i := <-done
		bar.add(records[i].State)
	}
	bar.finish()
	ok := true
	for i, id := range ids {
		t := records[i]
		if errs[i] != nil && !(errors.Is(errs[i], context.DeadlineExceeded) && t.ID != "") {
			fmt.Fprintf(e.stderr, "%s: %v\n", id, errs[i])
			ok = false
			continue
		}
		if t.State != client.Succeeded {
			ok = false
		}
		if output == "json" {
			if err := printJSON(e.stdout, t); err != nil {
				return err
			}
			continue
		}
		line := fmt.Sprintf("%s\t%s", id, t.State)
		if t.Error != "" {
			line += "\t" + t.Error
		}
		fmt.Fprintln(e.stdout, line)
	}
	if !ok {
		return errSilent
	}
	return nil
}

func runTasks(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "tasks", "tasks [flags]")
	var cf clientFlags
	cf.register(fs)
	var (
		state, typ, output string
		limit              int
		all, cluster       bool
	)
	fs.StringVar(&state, "state", "", "only these states, comma-separated (queued,running)")
	fs.StringVar(&typ, "type", "", "only this task type")
	fs.IntVar(&limit, "limit", 50, "at most this many (newest first)")
	fs.BoolVar(&all, "all", false, "every task, page after page")
	fs.BoolVar(&cluster, "cluster", false, "the tasks of every live member, not only of the node at --addr")
	fs.StringVarP(&output, "output", "o", "table", "table or json")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if output != "table" && output != "json" {
		return usageErr("-o %q: use table or json", output)
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	opts := client.ListOptions{Type: typ, Limit: limit}
	if state != "" {
		for _, s := range strings.Split(state, ",") {
			opts.States = append(opts.States, client.State(strings.TrimSpace(s)))
		}
	}
	clients := []*client.Client{cl}
	if cluster {
		// Each node lists the tasks it owns: ask every live member and merge.
		c, err := cl.Cluster(ctx)
		if err != nil {
			return err
		}
		clients = clients[:0]
		for _, m := range c.Members {
			if m.State != "alive" || m.HTTP == "" {
				continue
			}
			mc, err := client.New(m.HTTP, client.WithToken(cf.token))
			if err != nil {
				return err
			}
			clients = append(clients, mc)
		}
	}
	var tasks []client.Task
	for _, mc := range clients {
		got, err := listAll(ctx, mc, opts, all)
		if err != nil {
			return err
		}
		tasks = append(tasks, got...)
	}
	if len(clients) > 1 {
		sort.SliceStable(tasks, func(i, j int) bool { return tasks[i].CreatedAt.After(tasks[j].CreatedAt) })
		if !all && len(tasks) > limit {
			tasks = tasks[:limit]
		}
	}
	if output == "json" {
		return printJSON(e.stdout, tasks)
	}
	tw := newTable(e.stdout, "ID", "TYPE", "STATE", "PRI", "ATTEMPT", "OWNER", "NODE", "AGE", "ERROR / WAITING")
	now := time.Now()
	for _, t := range tasks {
		tw.row(t.ID, t.Type, string(t.State), strconv.Itoa(t.Priority), strconv.Itoa(t.Attempt), t.Owner, t.Node,
			age(now.Sub(t.CreatedAt)), truncate(firstNonEmpty(t.Error, t.Waiting), 60))
	}
	return tw.flush()
}

// listAll lists one node's tasks: one page, or with all every page.
func listAll(ctx context.Context, cl *client.Client, opts client.ListOptions, all bool) ([]client.Task, error) {
	var tasks []client.Task
	for {
		page, err := cl.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, page.Tasks...)
		if !all || page.NextCursor == "" {
			return tasks, nil
		}
		opts.Cursor = page.NextCursor
	}
}

func runMembers(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "members", "members [flags]")
	var cf clientFlags
	cf.register(fs)
	var output string
	fs.StringVarP(&output, "output", "o", "table", "table or json")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	c, err := cl.Cluster(ctx)
	if err != nil {
		return err
	}
	if output == "json" {
		return printJSON(e.stdout, c)
	}
	tw := newTable(e.stdout, "NAME", "STATE", "HTTP", "SLOTS", "RUNNING", "QUEUED", "TAGS")
	for _, m := range c.Members {
		name := m.Name
		if m.Self {
			name += " *"
		}
		running, queued := "-", "-"
		if m.Load != nil {
			running, queued = strconv.Itoa(m.Load.Running), strconv.Itoa(m.Load.Queued)
		}
		tw.row(name, m.State, m.HTTP, strconv.Itoa(m.Slots), running, queued, strings.Join(m.Tags, ","))
	}
	return tw.flush()
}
