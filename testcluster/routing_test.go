package testcluster_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/invariant"
	"github.com/starlingsched/starling/testcluster"
)

func TestRouting_anyNodeAnswersForAnyTask(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 3, Slots: 1})
	defer rec.open("g")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner := c.Node(0).Name()

	// A gate keeps node 0's slot, so that the next tasks wait or run elsewhere.
	gate := submit(t, c, 0, gateSpec("g"))[0]
	for k := 1; k < 3; k++ {
		got := waitState(t, c, k, gate, client.Running, 5*time.Second)
		if got.Owner != owner || got.Node != owner || got.Spec.Type != "gate" {
			t.Errorf("node %d: record of %s: owner %q node %q type %q; want owner and node %s, type gate", k, gate, got.Owner, got.Node, got.Spec.Type, owner)
		}
	}

	// GET ?wait= from a non-owner long-polls until the task ends.
	done := make(chan client.Task, 1)
	go func() {
		got, err := c.Client(2).Wait(ctx, gate, 20*time.Second)
		if err != nil {
			t.Errorf("wait from node 2: %v", err)
		}
		done <- got
	}()
	select {
	case got := <-done:
		t.Fatalf("the long poll on node 2 returned before the task ended: %s", got.State)
	case <-time.After(200 * time.Millisecond):
	}
	rec.open("g")
	select {
	case got := <-done:
		if got.State != client.Succeeded || got.Owner != owner {
			t.Errorf("the long poll on node 2 answered %s (owner %q), want succeeded (owner %s)", got.State, got.Owner, owner)
		}
	case <-ctx.Done():
		t.Fatal("the long poll on node 2 did not return")
	}

	// DELETE from a non-owner cancels a queued task on its owner; every node agrees.
	stuckSpec := workSpec(10)
	stuckSpec.Requires = &client.Requires{Tags: []string{"nowhere"}}
	stuck := submit(t, c, 0, stuckSpec)[0]
	got, err := c.Client(1).Cancel(ctx, stuck)
	if err != nil {
		t.Fatalf("cancel from node 1: %v", err)
	}
	if got.State != client.Cancelled {
		t.Fatalf("cancel from node 1 answered %s", got.State)
	}
	for k := range c.Len() {
		waitState(t, c, k, stuck, client.Cancelled, 5*time.Second)
	}
	// A second cancel, from yet another node, is a conflict, as on the owner.
	if _, err := c.Client(2).Cancel(ctx, stuck); apiStatus(err) != http.StatusConflict {
		t.Errorf("cancelling a cancelled task from node 2: %v, want 409", err)
	}

	// Ids no node knows are 404 everywhere, whether or not they name a node.
	for k := range c.Len() {
		for _, id := range []string{"zzzzzzzz-1", strings.Split(stuck, "-")[0] + "-zz", "nonsense"} {
			if _, err := c.Client(k).Get(ctx, id); apiStatus(err) != http.StatusNotFound {
				t.Errorf("node %d: GET %s: %v, want 404", k, id, err)
			}
		}
	}
}

func TestRouting_cancelReachesTheThief(t *testing.T) {
	rec := newRecorder()
	c := start(t, rec, testcluster.Options{Nodes: 2, Slots: 1})
	defer rec.open("owner")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	thief := c.Node(1).Name()
	submit(t, c, 0, gateSpec("owner"))
	rec.waitRun(t, 5*time.Second, "of the owner's gate", func(ru invariant.Run) bool { return ru.Node == c.Node(0).Name() })

	long := submit(t, c, 0, workSpec(60_000))[0]
	rec.waitRun(t, 10*time.Second, "of the long task on the thief", func(ru invariant.Run) bool { return ru.ID == long && ru.Node == thief })
	waitState(t, c, 0, long, client.Running, 5*time.Second)

	// Cancel through the thief itself, which does not own the task.
	got, err := c.Client(1).Cancel(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != client.Cancelled {
		t.Fatalf("cancel answered %s", got.State)
	}
	// The run on the thief ends...
	waitFor(t, 5*time.Second, "the thief's run ends", func() error {
		for _, ru := range rec.of(long) {
			if ru.End.IsZero() {
				return errors.New("still running")
			}
		}
		return nil
	})
	// ...its slot takes the next task (node 0 is still held by its gate)...
	next := submit(t, c, 0, workSpec(10))[0]
	recs := await(t, c, []string{next}, 10*time.Second)
	if recs[0].State != client.Succeeded || recs[0].Node != thief {
		t.Errorf("the next task: %s on %s, want succeeded on %s", recs[0].State, recs[0].Node, thief)
	}
	// ...and the record stays cancelled, whoever is asked.
	for k := range c.Len() {
		got, err := c.Client(k).Get(ctx, long)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != client.Cancelled || got.Error != "cancelled by request" {
			t.Errorf("node %d: the cancelled task is %s (%q)", k, got.State, got.Error)
		}
	}
	if runs := rec.of(long); len(runs) != 1 {
		t.Errorf("the cancelled task ran %d times: %v", len(runs), runs)
	}
}
