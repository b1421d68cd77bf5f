package api

import "time"

// Batch is the body of a batch submission: {"tasks": [...]}. Specs whose deps name
// each other make a graph.
type Batch struct {
	Tasks []Spec `json:"tasks"`
}

// Submitted answers a batch submission.
type Submitted struct {
	// IDs of the accepted tasks, in submission order.
	IDs []string `json:"ids"`
	// Graph is the graph id when the batch had deps.
	Graph string `json:"graph,omitempty"`
	// Names maps the batch's task names to their ids.
	Names map[string]string `json:"names,omitempty"`
	// Tasks holds the records when the submission waited (?wait=).
	Tasks []Task `json:"tasks,omitempty"`
}

// TaskList is one page of a listing.
type TaskList struct {
	Tasks []Task `json:"tasks"`
	// NextCursor, when set, fetches the next page (?cursor=).
	NextCursor string `json:"next_cursor,omitempty"`
}

// Graph is a graph's aggregate view.
type Graph struct {
	ID        string            `json:"id"`
	State     State             `json:"state"`
	Counts    map[State]int     `json:"counts"`
	Names     map[string]string `json:"names,omitempty"`
	Tasks     []Task            `json:"tasks,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
}

// Member is one node of the cluster as the answering node sees it.
type Member struct {
	Name      string           `json:"name"`
	ID        string           `json:"id"`
	State     string           `json:"state"`
	HTTP      string           `json:"http"`
	Gossip    string           `json:"gossip,omitempty"`
	RPC       string           `json:"rpc,omitempty"`
	Version   string           `json:"version,omitempty"`
	Slots     int              `json:"slots"`
	Tags      []string         `json:"tags,omitempty"`
	Resources map[string]int64 `json:"resources,omitempty"`
	Load      *Load            `json:"load,omitempty"`
	Self      bool             `json:"self,omitempty"`
	// Storage is where the node keeps its records: "disk" (a data directory) or
	// "memory" (lost when the node stops).
	Storage string            `json:"storage,omitempty"`
	Extra   map[string]string `json:"extra,omitempty"`
}

// Load is a node's reported load. It is a hint: it may be a moment old.
type Load struct {
	Queued int `json:"queued"`
	// ByPriority breaks the queued tasks the node owns down by priority, highest first
	// (at most 8 bands; the last one counts the lower ones too).
	ByPriority []Band           `json:"queued_by_priority,omitempty"`
	Running    int              `json:"running"`
	Free       int              `json:"free_slots"`
	FreeRes    map[string]int64 `json:"free_resources,omitempty"`
	AgeMS      int64            `json:"age_ms"`
}

// Band counts queued tasks of one priority.
type Band struct {
	Priority int `json:"priority" msgpack:"p"`
	Queued   int `json:"queued" msgpack:"q"`
}

// Cluster answers GET /v1/cluster.
type Cluster struct {
	Self    string   `json:"self"`
	Members []Member `json:"members"`
}

// Event is one state change, as streamed by GET /v1/events.
type Event struct {
	Seq     uint64    `json:"seq"`
	Task    string    `json:"task"`
	Graph   string    `json:"graph,omitempty"`
	Type    string    `json:"type"`
	State   State     `json:"state"`
	Attempt int       `json:"attempt"`
	Node    string    `json:"node,omitempty"`
	Error   string    `json:"error,omitempty"`
	Time    time.Time `json:"time"`
}

// Health answers /healthz and /readyz.
type Health struct {
	Status string `json:"status"`
	Node   string `json:"node"`
	Reason string `json:"reason,omitempty"`
}

// Drain answers POST /v1/node/drain.
type Drain struct {
	Status string `json:"status"`
	Node   string `json:"node"`
	// Unfinished counts the node's tasks not yet finished when the drain began.
	Unfinished int `json:"unfinished"`
}
