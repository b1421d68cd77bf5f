package engine

import "time"

// Routing: any node answers for any task. A question about a task owned elsewhere
// goes to its owner while the owner is alive; while it is declared dead but may come
// back, the answer is "unreachable" (503), never a terminal state a client could see
// change; once the owner left, restarted or stayed dead past the confirmation window,
// the task is lost with it. The node's HTTP layer and the simulator's clients both
// decide with Route.

// RouteKind is how to answer for a task owned by another node.
type RouteKind uint8

// The answers Route gives.
const (
	RouteUnknown     RouteKind = iota // no such owner known: 404
	RouteForward                      // ask the owner (Peer.Meta.HTTP)
	RouteUnreachable                  // 503 owner_unreachable: retry later
	RouteOwnerLost                    // the owner is gone for good: failed, owner lost
)

// Route decides how to answer for a task whose owner is node id, at now, when a
// death is confirmed confirm after gossip declared it. A durable owner (it keeps its
// records on disk) is unreachable, never lost, until it is forgotten.
func (v *ClusterView) Route(owner string, now time.Time, confirm time.Duration) (RouteKind, PeerView) {
	for _, p := range v.Peers {
		if p.ID != owner {
			continue
		}
		switch {
		case !p.Gone:
			return RouteForward, p
		case p.Meta.Durable && !p.Final:
			return RouteUnreachable, p // it comes back with its records
		case p.Final || now.Sub(p.GoneAt) > confirm:
			return RouteOwnerLost, p
		default:
			return RouteUnreachable, p
		}
	}
	for _, p := range v.Gone {
		if p.ID == owner {
			return RouteOwnerLost, p
		}
	}
	return RouteUnknown, PeerView{}
}
