// Package client is the Go client for Starling's public HTTP API (v1): submit tasks and
// batches, wait for them, read, list and cancel them, and look at the cluster.
//
//	c, err := client.New("127.0.0.1:7070", client.WithToken(os.Getenv("STARLING_TOKEN")))
//	if err != nil {
//		return err
//	}
//	t, err := c.SubmitAndWait(ctx, client.Spec{Type: "echo", Payload: json.RawMessage(`"hi"`)}, time.Minute)
//	if err != nil {
//		return err // an *client.Error carries the API's code and status
//	}
//	fmt.Println(t.State, string(t.Result))
//
// Any node of a cluster answers for any task. Calls retry with backoff when a node
// answers 429 (queue full) or 503 (draining): nothing was accepted then, so a retry
// cannot submit twice.
package client
