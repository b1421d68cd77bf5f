package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/starlingsched/starling/client"
)

func runGraph(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageErr("want a subcommand: submit FILE, status ID or cancel ID")
	}
	switch args[0] {
	case "submit":
		return runGraphSubmit(ctx, e, args[1:])
	case "status":
		return runGraphStatus(ctx, e, args[1:])
	case "cancel":
		return runGraphCancel(ctx, e, args[1:])
	}
	return usageErr("unknown subcommand %q: use submit, status or cancel", args[0])
}

// readGraph reads a graph file: {"tasks": [...]} or a bare array of specs, in JSON or
// YAML (a .yaml or .yml file, or anything that is not JSON). Unknown fields are errors,
// so a misspelt one is not dropped on the way.
func readGraph(path string) ([]client.Spec, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	ext := strings.ToLower(filepath.Ext(path))
	if ext == ".yaml" || ext == ".yml" || !json.Valid(b) {
		if b, err = yaml.YAMLToJSON(b); err != nil {
			return nil, usageErr("%s: want {\"tasks\": [...]} or an array of task specs, in JSON or YAML: %v", path, err)
		}
	}
	strict := func(v any) error {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		return dec.Decode(v)
	}
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("[")) {
		var specs []client.Spec
		if err := strict(&specs); err != nil {
			return nil, usageErr("%s: %v", path, err)
		}
		return specs, nil
	}
	var batch struct {
		Tasks []client.Spec `json:"tasks"`
	}
	if err := strict(&batch); err != nil || batch.Tasks == nil {
		if err == nil {
			err = errors.New("no \"tasks\"")
		}
		return nil, usageErr("%s: want {\"tasks\": [...]} or an array of task specs: %v", path, err)
	}
	return batch.Tasks, nil
}

// graphFlags registers --wait and -o for the graph commands.
func graphFlags(fs *pflag.FlagSet, waitHelp string) (*time.Duration, *string) {
	wait := fs.Duration("wait", 0, waitHelp)
	fs.Lookup("wait").NoOptDefVal = "24h"
	output := fs.StringP("output", "o", "text", "text or json")
	return wait, output
}

func runGraphSubmit(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "graph submit", "graph submit FILE [flags]")
	var cf clientFlags
	cf.register(fs)
	wait, output := graphFlags(fs, "wait up to this long for the graph to finish and print its results")
	path, cl, err := cf.withOneArg(e, fs, args, "one graph file (JSON or YAML), or - for standard input")
	if err != nil {
		return err
	}
	specs, err := readGraph(path)
	if err != nil {
		return err
	}
	s, err := cl.SubmitBatch(ctx, specs)
	if err != nil {
		return err
	}
	if s.Graph == "" {
		return fmt.Errorf("the batch has no deps, so it is no graph; its tasks are %v", s.IDs)
	}
	if *wait == 0 {
		if *output == "json" {
			return printJSON(e.stdout, s)
		}
		fmt.Fprintln(e.stdout, s.Graph)
		return nil
	}
	fmt.Fprintf(e.stderr, "graph %s: %d tasks\n", s.Graph, len(s.IDs))
	return followGraph(ctx, e, cl, s.Graph, *wait, *output)
}

func runGraphStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "graph status", "graph status ID [flags]")
	var cf clientFlags
	cf.register(fs)
	wait, output := graphFlags(fs, "wait up to this long for the graph to finish")
	id, cl, err := cf.withOneArg(e, fs, args, "one graph id")
	if err != nil {
		return err
	}
	return followGraph(ctx, e, cl, id, *wait, *output)
}

// followGraph shows a graph's progress (a bar on a terminal) until it is done or wait
// passes, then prints it. Without wait it prints the graph as it is.
func followGraph(ctx context.Context, e *env, cl *client.Client, id string, wait time.Duration, output string) error {
	if wait > 0 {
		deadline := time.Now().Add(wait)
		on := isTerminal(e.stdout)
		var bar *progress
		for {
			step := time.Until(deadline)
			if on {
				step = min(step, 250*time.Millisecond) // redraw the bar between polls
			}
			g, err := cl.WaitGraph(ctx, id, max(step, time.Millisecond), false)
			if err != nil {
				return err
			}
			if bar == nil {
				bar = newProgress(e.stdout, total(g))
			}
			bar.set(finished(g), notSucceeded(g))
			if graphDone(g) || !time.Now().Before(deadline) {
				break
			}
		}
		bar.finish()
	}
	g, err := cl.Graph(ctx, id)
	if err != nil {
		return err
	}
	if output == "json" {
		err = printJSON(e.stdout, g)
	} else {
		printGraph(e, g)
	}
	// Like submit --wait: exit 1 unless it succeeded, or, without --wait, once it
	// ended otherwise.
	if err == nil && ((wait > 0 || graphDone(g)) && g.State != client.Succeeded) {
		return errSilent
	}
	return err
}

func graphDone(g client.Graph) bool { return g.State != client.Running && g.State != client.Pending }

func total(g client.Graph) int {
	k := 0
	for _, v := range g.Counts {
		k += v
	}
	return k
}

func finished(g client.Graph) int {
	k := 0
	for s, v := range g.Counts {
		if s.Terminal() {
			k += v
		}
	}
	return k
}

func notSucceeded(g client.Graph) int {
	return finished(g) - g.Counts[client.Succeeded]
}

// printGraph prints a graph's state, counts and its tasks, the final ones (that no
// task depends on) with their results.
func printGraph(e *env, g client.Graph) {
	fmt.Fprintf(e.stdout, "graph %s: %s", g.ID, g.State)
	for _, s := range []client.State{client.Pending, client.Queued, client.Running, client.Succeeded, client.Failed, client.Cancelled, client.UpstreamFailed} {
		if g.Counts[s] > 0 {
			fmt.Fprintf(e.stdout, ", %d %s", g.Counts[s], s)
		}
	}
	fmt.Fprintln(e.stdout)
	depended := map[string]bool{}
	for _, t := range g.Tasks {
		for _, d := range t.Deps {
			depended[d] = true
		}
	}
	tasks := append([]client.Task(nil), g.Tasks...)
	sort.SliceStable(tasks, func(i, j int) bool { return tasks[i].CreatedAt.Before(tasks[j].CreatedAt) })
	tw := newTable(e.stdout, "NAME", "ID", "STATE", "NODE", "RESULT / ERROR")
	for _, t := range tasks {
		out := truncate(firstNonEmpty(t.Error, string(t.Result)), 70)
		if t.Error == "" && (depended[t.Name] || depended[t.ID]) && len(g.Tasks) > 20 {
			continue // big graphs: only the final tasks and the failures
		}
		tw.row(firstNonEmpty(t.Name, "-"), t.ID, string(t.State), t.Node, out)
	}
	tw.flush()
	var finals []string
	for _, t := range tasks {
		if !depended[t.Name] && !depended[t.ID] && t.State == client.Succeeded {
			finals = append(finals, firstNonEmpty(t.Name, t.ID)+" = "+string(t.Result))
		}
	}
	if len(finals) > 0 && len(finals) <= 10 {
		fmt.Fprintln(e.stdout, "result:")
		for _, f := range finals {
			fmt.Fprintln(e.stdout, "  "+f)
		}
	} else if len(finals) > 10 {
		fmt.Fprintf(e.stdout, "%s final tasks succeeded\n", strconv.Itoa(len(finals)))
	}
}

func runGraphCancel(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "graph cancel", "graph cancel ID [flags]")
	var cf clientFlags
	cf.register(fs)
	id, cl, err := cf.withOneArg(e, fs, args, "one graph id")
	if err != nil {
		return err
	}
	g, err := cl.CancelGraph(ctx, id)
	if err != nil {
		return err
	}
	printGraph(e, g)
	return nil
}
