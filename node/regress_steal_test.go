package node

import (
	"context"
	"testing"
	"time"

	"github.com/starlingsched/starling/internal/api"
	"github.com/starlingsched/starling/steal"
)

// A thief that still holds an old-epoch copy of a task accepts a new grant of it, so the
// victim records it as running there at the new epoch, but the thief keeps only the old one.
func TestSteal_regrantWhileAnOldCopyRuns(t *testing.T) {
	cfg := LocalConfig()
	cfg.Slots = 2
	cfg.Cluster = FastClusterConfig()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	block := make(chan struct{})
	mustHandle(t, n, "block", func(ctx context.Context, in *Input) (any, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, nil
	})
	t.Cleanup(func() {
		close(block)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	c := n.cluster
	victim := steal.NodeID("victimnode")
	cls := steal.Class{Type: "block"}
	// Drive onGrantLocked through the thief properly.
	grant := func(epoch uint64) {
		n.mu.Lock()
		defer n.mu.Unlock()
		now := time.Now()
		req, ok := c.thief.Next(now, steal.Local{FreeSlots: 1, Cap: c.capability},
			[]steal.PeerLoad{{ID: victim, Version: epoch, Backlog: []steal.Backlog{{Class: cls, Count: 4}}}})
		if !ok {
			t.Fatalf("no request")
		}
		g := steal.Grant{Victim: victim, VictimInc: 1, Thief: req.Thief, ThiefInc: req.ThiefInc, ReqID: req.ReqID,
			Tasks: []steal.GrantedTask{{ID: "x", Epoch: epoch}}}
		n.onGrantLocked(&grantMsg{Grant: g, Tasks: []grantedRun{{ID: "x", Spec: api.Spec{Type: "block"}}}}, now)
		n.dispatchLocked()
	}
	grant(1)
	waitFor(t, 5*time.Second, "x running", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return c.foreign["x"] != nil && c.foreign["x"].state == api.Running
	})
	// The owner declared us dead by mistake, re-queued x at epoch 2 and grants it again at 3.
	grant(3)
	n.mu.Lock()
	ep := c.foreign["x"].epoch
	st := c.thief.Stats()
	n.mu.Unlock()
	t.Logf("thief accepted %d grants; foreign x epoch now %d", st.Grants, ep)
	if st.Grants == 2 && ep != 3 {
		t.Errorf("second grant (epoch 3) acknowledged but the thief only holds epoch %d: the epoch-3 run never happens", ep)
	}
}
