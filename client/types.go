package client

import "github.com/starlingsched/starling/internal/api"

// The API's types. See the README for their JSON form.
type (
	Spec      = api.Spec
	Requires  = api.Requires
	Task      = api.Task
	State     = api.State
	Submitted = api.Submitted
	TaskList  = api.TaskList
	Graph     = api.Graph
	// Drain answers a drain request.
	Drain    = api.Drain
	Cluster  = api.Cluster
	Member   = api.Member
	Load     = api.Load
	Event    = api.Event
	Duration = api.Duration
	// Error is an error answer of the API: Status, a stable Code, a Message and, for
	// a bad spec, the Field at fault.
	Error = api.Error
)

// The task states.
const (
	Pending        = api.Pending
	Queued         = api.Queued
	Running        = api.Running
	Succeeded      = api.Succeeded
	Failed         = api.Failed
	Cancelled      = api.Cancelled
	UpstreamFailed = api.UpstreamFailed
)
