package dag_test

import (
	"errors"
	"fmt"

	"github.com/starlingsched/starling/dag"
)

func ExampleBuild() {
	specs := []dag.Spec{
		{Name: "fetch"},
		{Name: "resize", Deps: []string{"fetch"}},
		{Name: "thumbnail", Deps: []string{"fetch"}},
		{Name: "publish", Deps: []string{"resize", "thumbnail"}},
		{Name: "cleanup", Deps: []string{"publish"}, Trigger: dag.AllDone},
	}
	g, err := dag.Build(specs, nil, dag.Limits{})
	if err != nil {
		fmt.Println(err)
		return
	}
	show := func(what string, s dag.Step) {
		fmt.Printf("%-18s ready=%v upstream_failed=%v\n", what, label(specs, s.Ready), label(specs, s.UpstreamFailed))
	}
	show("start", g.Start())
	show("fetch succeeded", g.Complete(0, dag.Succeeded))
	show("resize failed", g.Complete(1, dag.Failed))
	show("thumbnail succeeded", g.Complete(2, dag.Succeeded))
	show("cleanup succeeded", g.Complete(4, dag.Succeeded))
	fmt.Printf("done=%v %+v\n", g.Done(), g.Counts())

	_, err = dag.Build([]dag.Spec{
		{Name: "a", Deps: []string{"b"}},
		{Name: "b", Deps: []string{"a"}},
	}, nil, dag.Limits{})
	fmt.Println(err, errors.Is(err, dag.ErrCycle))
	// Output:
	// start              ready=[fetch] upstream_failed=[]
	// fetch succeeded    ready=[resize thumbnail] upstream_failed=[]
	// resize failed      ready=[cleanup] upstream_failed=[publish]
	// thumbnail succeeded ready=[] upstream_failed=[]
	// cleanup succeeded  ready=[] upstream_failed=[]
	// done=true {Pending:0 Ready:0 Succeeded:3 Failed:1 Cancelled:0 UpstreamFailed:1}
	// tasks[0].deps: cycle: a -> b -> a true
}

func label(specs []dag.Spec, idx []int) []string {
	out := []string{}
	for _, i := range idx {
		out = append(out, specs[i].Name)
	}
	return out
}
