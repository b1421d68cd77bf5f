package engine

import (
	"testing"
	"time"
)

// A peer that restarts under the same name (a new node id) is gone for good: it
// leaves the member list at once, but routing still answers "owner lost" for its
// tasks, never "unknown".
func TestRestartedOwnerIsLostNotUnknown(t *testing.T) {
	e, err := New(clusterTestConfig("self0000"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	step(e, t0, MemberUp{Name: "b", State: "alive", Alive: true, Meta: Meta{ID: "oldb0000", RPC: "b:1"}})
	rd := step(e, t0.Add(time.Second), MemberUp{Name: "b", State: "alive", Alive: true, Meta: Meta{ID: "newb0000", RPC: "b:2"}})
	if rd.Cluster == nil {
		t.Fatal("no cluster view published after the restart")
	}
	kind, p := rd.Cluster.Route("oldb0000", t0.Add(2*time.Second), 30*time.Second)
	if kind != RouteOwnerLost {
		t.Fatalf("route for a task of the restarted owner: %d (%+v); want RouteOwnerLost (%d)", kind, p, RouteOwnerLost)
	}
}
