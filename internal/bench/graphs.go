package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/node"
)

// chain: tasks each depending on the one before, one graph; how long does one hop
// (a task finishing, its dependent being released, queued and run) take?
func chain(ctx context.Context, cl *client.Client, o Options) (Result, []client.Task, error) {
	length := or(o.Tasks, 500)
	specs := make([]client.Spec, length)
	for i := range specs {
		specs[i] = client.Spec{Type: "sum", Name: fmt.Sprintf("t%d", i), Payload: json.RawMessage("1")}
		if i > 0 {
			specs[i].Deps = []string{fmt.Sprintf("t%d", i-1)}
		}
	}
	recs, wall, err := runGraph(ctx, cl, specs)
	if err != nil {
		return nil, nil, err
	}
	first, last := *recs[0].StartedAt, *recs[length-1].FinishedAt
	perHop := last.Sub(first).Seconds() * 1000 / float64(length-1)
	ok := string(recs[length-1].Result) == fmt.Sprint(length)
	r := Result{"tasks": length, "per_hop_ms": perHop, "wall_s": wall.Seconds(), "result_ok": ok}
	fmt.Fprintf(o.Summary, "chain: %d tasks each on the one before: %.3f ms a hop (%.3f s in all), result ok: %v\n", length, perHop, wall.Seconds(), ok)
	if !ok {
		return nil, nil, fmt.Errorf("bench: the chain's last task holds %s, want %d", recs[length-1].Result, length)
	}
	return r, recs, nil
}

// leaf is fanin's leaf task: it sleeps a millisecond and returns its payload, an
// integer.
func leaf(ctx context.Context, in *node.Input) (any, error) {
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return in.Payload, nil
}

// fanin: 1,000 one-millisecond leaves reduced by a tree of sums with fan-in 10.
func fanin(ctx context.Context, cl *client.Client, o Options) (Result, []client.Task, error) {
	leaves := or(o.Tasks, 1000)
	const fan = 10
	var specs []client.Spec
	level := make([]string, leaves)
	want := 0
	for i := range leaves {
		level[i] = fmt.Sprintf("leaf-%d", i)
		specs = append(specs, client.Spec{Type: "bench.leaf", Name: level[i], Payload: json.RawMessage(fmt.Sprint(i))})
		want += i
	}
	for depth := 1; len(level) > 1; depth++ {
		var next []string
		for i := 0; i < len(level); i += fan {
			name := fmt.Sprintf("sum-%d-%d", depth, i/fan)
			specs = append(specs, client.Spec{Type: "sum", Name: name, Deps: level[i:min(i+fan, len(level))]})
			next = append(next, name)
		}
		level = next
	}
	recs, wall, err := runGraph(ctx, cl, specs)
	if err != nil {
		return nil, nil, err
	}
	root := recs[len(recs)-1]
	var leafRun time.Duration
	for _, t := range recs[:leaves] {
		if t.StartedAt != nil && t.FinishedAt != nil {
			leafRun += t.FinishedAt.Sub(*t.StartedAt)
		}
	}
	ok := string(root.Result) == fmt.Sprint(want)
	slots := o.Nodes * or(o.Slots, 1)
	r := Result{"tasks": len(specs), "leaves": leaves, "wall_s": wall.Seconds(), "sum_ok": ok,
		"ideal_s": float64(leaves) * 0.001 / float64(slots),
		// How long a leaf really ran, as its owner saw it (timer overshoot, the report's
		// trip back from a thief).
		"mean_leaf_ms": leafRun.Seconds() * 1000 / float64(leaves)}
	fmt.Fprintf(o.Summary, "fanin: %d 1ms leaves, a sum tree of fan-in %d on %d slots: %.3f s (ideal %.3f s), sum ok: %v\n",
		leaves, fan, slots, wall.Seconds(), r["ideal_s"], ok)
	if !ok {
		return nil, nil, fmt.Errorf("bench: the root sum is %s, want %d", root.Result, want)
	}
	return r, recs, nil
}

// runGraph submits specs as one graph, waits for it, and returns the records in spec
// order and the wall time from submission to the last task's end.
func runGraph(ctx context.Context, cl *client.Client, specs []client.Spec) ([]client.Task, time.Duration, error) {
	start := time.Now()
	s, err := cl.SubmitBatch(ctx, specs)
	if err != nil {
		return nil, 0, err
	}
	g, err := cl.WaitGraph(ctx, s.Graph, 10*time.Minute, false)
	if err != nil {
		return nil, 0, err
	}
	if g.State != client.Succeeded {
		return nil, 0, fmt.Errorf("bench: graph %s ended %s: %v", g.ID, g.State, g.Counts)
	}
	if g, err = cl.Graph(ctx, s.Graph); err != nil {
		return nil, 0, err
	}
	byID := make(map[string]client.Task, len(g.Tasks))
	for _, t := range g.Tasks {
		byID[t.ID] = t
	}
	recs := make([]client.Task, len(s.IDs))
	var last time.Time
	for i, id := range s.IDs {
		recs[i] = byID[id]
		if f := recs[i].FinishedAt; f != nil && f.After(last) {
			last = *f
		}
	}
	return recs, last.Sub(start), nil
}
