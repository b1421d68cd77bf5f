package testcluster_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/invariant"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

func TestFaults_thiefKilledMidSteal(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 4, Slots: 1})
	victim := c.Node(3).Name()
	var ids []string
	ids = append(ids, submit(t, c, 0, works(40, 15)...)...)
	rec.waitRun(t, 10*time.Second, "on the thief", func(ru invariant.Run) bool { return ru.Node == victim })
	// Kill it while work keeps coming: grants to it are parked, acknowledged or
	// running.
	ids = append(ids, submit(t, c, 0, works(40, 15)...)...)
	c.Kill(3)
	ids = append(ids, submit(t, c, 0, works(40, 15)...)...)
	recs := await(t, c, ids, 40*time.Second)
	checkInvariants(t, c, rec, ids, recs, invariant.Options{Want: client.Succeeded, Died: []string{victim}})
	lost := 0
	for i, r := range recs {
		for _, ru := range rec.of(ids[i]) {
			if ru.Node == victim && ru.Err != nil {
				lost++
				if r.NodeLosses < 1 {
					t.Errorf("task %s lost its run on %s, but node_losses is %d", r.ID, victim, r.NodeLosses)
				}
			}
		}
	}
	t.Logf("%d runs lost with the thief", lost)
}

func TestFaults_executorKilledMidRun(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 3, Slots: 1})
	executor := c.Node(2).Name()
	ids := submit(t, c, 0, works(6, 500)...)
	rec.waitRun(t, 10*time.Second, "on node 2", func(ru invariant.Run) bool { return ru.Node == executor })
	c.Kill(2)
	recs := await(t, c, ids, 30*time.Second)
	checkInvariants(t, c, rec, ids, recs, invariant.Options{Want: client.Succeeded, Died: []string{executor}})
	rerun := 0
	for i, r := range recs {
		runs := rec.of(ids[i])
		if runs[0].Node != executor {
			continue
		}
		rerun++
		if r.Node == executor || r.NodeLosses < 1 || len(runs) < 2 {
			t.Errorf("task %s started on the killed %s: it ended %s on %s with node_losses %d after %d runs; want it finished elsewhere with node_losses >= 1",
				r.ID, executor, r.State, r.Node, r.NodeLosses, len(runs))
		}
	}
	if rerun == 0 {
		t.Fatalf("no task had started on %s: %s", executor, rec)
	}
}

func TestFaults_ownerKilled(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 3, Slots: 1})
	defer rec.open("owner")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner := c.Node(0).Name()
	// One task running on the owner, one stolen and running on node 1, one that
	// no node can run, queued on the owner.
	ids := submit(t, c, 0, gateSpec("owner"))
	rec.waitRun(t, 5*time.Second, "on the owner", func(ru invariant.Run) bool { return ru.Node == owner })
	stolen := submit(t, c, 0, workSpec(60_000))[0]
	stuck := workSpec(10)
	stuck.Requires = &client.Requires{Tags: []string{"nowhere"}}
	ids = append(ids, stolen, submit(t, c, 0, stuck)[0])
	rec.waitRun(t, 10*time.Second, "of the stolen task", func(ru invariant.Run) bool { return ru.ID == stolen })

	c.Kill(0)
	for k := 1; k < 3; k++ {
		for _, id := range ids {
			// A long poll must end with the answer, not hang or say "unknown".
			got, err := c.Client(k).Wait(ctx, id, 15*time.Second)
			if err != nil {
				t.Fatalf("node %d: wait for %s: %v", k, id, err)
			}
			if got.State != client.Failed || !strings.Contains(got.Error, "owner lost") || got.Owner != owner {
				t.Errorf("node %d: task %s of the killed owner: %s %q (owner %q); want failed: owner lost", k, id, got.State, got.Error, got.Owner)
			}
			if _, err := c.Client(k).Cancel(ctx, id); apiStatus(err) != http.StatusConflict {
				t.Errorf("node %d: cancel %s of the killed owner: %v, want 409", k, id, err)
			}
		}
	}
	// The run the owner can no longer hear of stops, and frees its slot.
	waitFor(t, 5*time.Second, "the stolen run ends", func() error {
		for _, ru := range rec.of(stolen) {
			if ru.End.IsZero() {
				return fmt.Errorf("still running on %s", ru.Node)
			}
		}
		return nil
	})
	more := submit(t, c, 1, works(4, 10)...)
	checkInvariants(t, c, rec, more, await(t, c, more, 10*time.Second), invariant.Options{Want: client.Succeeded})
}

func TestFaults_nodeLossBudget(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 2, Slots: 1, Configure: func(i int, cfg *node.Config) {
		cfg.Cluster.NodeLosses = -1 // no node may be lost
	}})
	defer rec.open("owner")
	submit(t, c, 0, gateSpec("owner"))
	rec.waitRun(t, 5*time.Second, "on the owner", func(ru invariant.Run) bool { return ru.Node == c.Node(0).Name() })
	id := submit(t, c, 0, workSpec(60_000))[0]
	rec.waitRun(t, 10*time.Second, "on the thief", func(ru invariant.Run) bool { return ru.ID == id && ru.Node == c.Node(1).Name() })
	c.Kill(1)
	got := waitState(t, c, 0, id, client.Failed, 10*time.Second)
	if !strings.HasPrefix(got.Error, "node lost") || got.NodeLosses != 1 {
		t.Errorf("the task whose executor died: error %q, node_losses %d; want node lost, 1", got.Error, got.NodeLosses)
	}
	if runs := rec.of(id); len(runs) != 1 {
		t.Errorf("the task ran %d times, want once: %v", len(runs), runs)
	}
}

func TestFaults_partitionThenHeal(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 4, Slots: 1})
	ids := submit(t, c, 0, works(30, 30)...)
	ids = append(ids, submit(t, c, 2, works(30, 30)...)...)
	// Wait until work crossed the cut to be.
	rec.waitRun(t, 10*time.Second, "of node 0's tasks on nodes 2 or 3", func(ru invariant.Run) bool {
		return strings.HasPrefix(ru.ID, c.Node(0).ID()) && (ru.Node == c.Node(2).Name() || ru.Node == c.Node(3).Name())
	})
	c.Partition([]int{0, 1}, []int{2, 3})
	ids = append(ids, submit(t, c, 1, works(10, 30)...)...)
	for _, k := range []int{0, 1} {
		waitPeerState(t, c, k, c.Node(2).Name(), "dead", 10*time.Second)
		waitPeerState(t, c, k, c.Node(3).Name(), "dead", 10*time.Second)
	}
	waitPeerState(t, c, 2, c.Node(0).Name(), "dead", 10*time.Second)
	c.Heal()
	if err := c.WaitConverged(20 * time.Second); err != nil {
		for i := range c.Len() {
			t.Logf("node %d sees %+v", i, c.Node(i).Members().Members)
		}
		t.Fatal(err)
	}
	recs := await(t, c, ids, 30*time.Second)
	rep := checkInvariants(t, c, rec, ids, recs, invariant.Options{Want: client.Succeeded, Partitioned: true})
	t.Logf("%d duplicate runs across the partition", rep.Duplicates)

	// Healed, the two sides work together again: with nodes 0 and 1 held by
	// gates, node 0's tasks run on nodes 2 and 3.
	defer rec.open("healed")
	submit(t, c, 0, gateSpec("healed"))
	submit(t, c, 1, gateSpec("healed"))
	after := submit(t, c, 0, works(6, 10)...)
	recs = await(t, c, after, 20*time.Second)
	for _, r := range recs {
		if r.State != client.Succeeded || (r.Node != c.Node(2).Name() && r.Node != c.Node(3).Name()) {
			t.Errorf("after the heal, task %s: %s on %s; want succeeded on node 2 or 3", r.ID, r.State, r.Node)
		}
	}
}

func TestFaults_stopAndRestart(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 3, Slots: 1})
	name := c.Node(1).Name()
	oldID := c.Node(1).ID()
	ids := submit(t, c, 0, works(30, 20)...)
	rec.waitRun(t, 10*time.Second, "on node 1", func(ru invariant.Run) bool { return ru.Node == name })
	c.Stop(1)
	for _, k := range []int{0, 2} {
		waitPeerState(t, c, k, name, "left", 10*time.Second)
	}
	recs := await(t, c, ids, 30*time.Second)
	checkInvariants(t, c, rec, ids, recs, invariant.Options{Want: client.Succeeded, Died: []string{name}})

	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	if c.Node(1).ID() == oldID {
		t.Fatalf("the restarted node kept its id %s", oldID)
	}
	if err := c.WaitConverged(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Nodes 0 and 2 held by gates: the restarted node takes node 0's work.
	defer rec.open("restarted")
	submit(t, c, 0, gateSpec("restarted"))
	submit(t, c, 2, gateSpec("restarted"))
	after := submit(t, c, 0, works(5, 10)...)
	recs = await(t, c, after, 20*time.Second)
	for _, r := range recs {
		if r.State != client.Succeeded || r.Node != name {
			t.Errorf("after the restart, task %s: %s on %s; want succeeded on %s", r.ID, r.State, r.Node, name)
		}
	}
	// The restarted node answers for the tasks of the cluster, and for its own.
	own := submit(t, c, 1, workSpec(10))[0]
	recs = await(t, c, append(after[:1], own), 10*time.Second)
	got, err := c.Client(1).Get(context.Background(), after[0])
	if err != nil || got.State != client.Succeeded {
		t.Errorf("the restarted node on a task of node 0: %v %v", got.State, err)
	}
	if recs[1].State != client.Succeeded {
		t.Errorf("a task submitted to the restarted node: %s %s", recs[1].State, recs[1].Error)
	}
	// A task of its old self, which owned nothing, is answered for, not left unknown.
	got, err = c.Client(0).Get(context.Background(), oldID+"-1")
	if err != nil || got.State != client.Failed || !strings.Contains(got.Error, "owner lost") {
		t.Errorf("GET a task id of the stopped node: %s %q %v; want failed: owner lost", got.State, got.Error, err)
	}
}

func TestFaults_pauseThenResume(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 3, Slots: 1})
	defer rec.open("owner")
	paused := c.Node(2).Name()
	// Node 0 is held by a gate: nodes 1 and 2 run its tasks.
	submit(t, c, 0, gateSpec("owner"))
	ids := submit(t, c, 0, works(6, 400)...)
	rec.waitRun(t, 10*time.Second, "on node 2", func(ru invariant.Run) bool { return ru.Node == paused })
	// Node 2 stops answering, without dying: the others declare it dead and run
	// its tasks again; it declares them dead and gives up their tasks.
	c.Pause(2)
	waitPeerState(t, c, 0, paused, "dead", 10*time.Second)
	waitPeerState(t, c, 2, c.Node(0).Name(), "dead", 10*time.Second)
	recs := await(t, c, ids, 30*time.Second)
	for _, r := range recs {
		if r.Node == paused {
			t.Errorf("task %s is recorded as run on the paused node", r.ID)
		}
	}
	// Back on the network, it is a member like any other again: it answers for
	// node 0's tasks as node 0 does (checkInvariants asks every node), and takes work.
	c.Resume(2)
	if err := c.WaitConverged(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, c, rec, ids, recs, invariant.Options{Want: client.Succeeded, Died: []string{paused}})
	defer rec.open("resumed")
	submit(t, c, 1, gateSpec("resumed"))
	after := submit(t, c, 0, works(4, 10)...)
	for _, r := range await(t, c, after, 20*time.Second) {
		if r.State != client.Succeeded || r.Node != paused {
			t.Errorf("after the resume, task %s: %s on %s; want succeeded on %s", r.ID, r.State, r.Node, paused)
		}
	}
}
