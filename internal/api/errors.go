package api

import "fmt"

// Error codes: stable strings a program can switch on.
const (
	CodeInvalidSpec        = "invalid_spec"        // 400: a task spec is wrong; Field names what
	CodeInvalidRequest     = "invalid_request"     // 400: a query parameter or body is wrong
	CodeInvalidGraph       = "invalid_graph"       // 400: the batch's deps do not make a valid graph
	CodeUnauthorized       = "unauthorized"        // 401: missing or wrong token
	CodeForbidden          = "forbidden"           // 403: not allowed on this node (exec off, not allowlisted)
	CodeNotFound           = "not_found"           // 404: unknown or expired
	CodeMethodNotAllowed   = "method_not_allowed"  // 405
	CodeConflict           = "conflict"            // 409: e.g. cancelling a finished task
	CodeTooLarge           = "too_large"           // 413: body, batch or payload over its limit
	CodeQueueFull          = "queue_full"          // 429: the node's queue is full; retry later
	CodeDraining           = "draining"            // 503: the node is shutting down or draining
	CodeUnavailable        = "unavailable"         // 503: a service this answer needs does not answer
	CodeOwnerUnreachable   = "owner_unreachable"   // 503: the task's owner is cut off, and may come back
	CodeStorageUnavailable = "storage_unavailable" // 503: the node cannot make the request durable
	CodeInternal           = "internal"            // 500
)

// ErrorBody is the JSON body of every error answer: {"error": {...}}.
type ErrorBody struct {
	Error Error `json:"error"`
}

// Error is an API error: a stable code, a sentence a user can act on, and for spec
// errors the field at fault ("timeout", "tasks[3].deps").
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}
