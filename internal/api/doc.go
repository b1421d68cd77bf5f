// Package api holds the types of Starling's public HTTP API (v1): task specs, task
// records, submission answers, listings, cluster views and errors.
//
// They live here, below both node and client, so that the server and the Go client
// share one definition; both re-export them under their own names (node.Spec,
// client.Spec are the same type). The JSON field names are the API contract.
package api
