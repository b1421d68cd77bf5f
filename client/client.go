package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one Starling node. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	hc      *http.Client
	retries int
	backoff time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends the API token as a bearer token.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient replaces the HTTP client (its Timeout must leave room for waits).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetry sets how often a call is retried on 429 and 503 (default 5) and the first
// backoff (default 100ms, doubling, with jitter; a Retry-After answer wins).
func WithRetry(retries int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = retries, backoff }
}

// New returns a client for the node at addr: "host:port" or a URL such as
// "http://10.0.0.5:7070".
func New(addr string, opts ...Option) (*Client, error) {
	base, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base: base,
		hc: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}},
		retries: 5,
		backoff: 100 * time.Millisecond,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// ParseAddr turns "host:port", ":port" or a URL into the API's base URL.
func ParseAddr(addr string) (*url.URL, error) {
	if addr == "" {
		return nil, errors.New("client: empty address")
	}
	if !strings.Contains(addr, "://") {
		if strings.HasPrefix(addr, ":") {
			addr = "127.0.0.1" + addr
		}
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("client: bad address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("client: bad address %q: the scheme must be http or https", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("client: bad address %q: no host", addr)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// Addr is the base URL the client talks to.
func (c *Client) Addr() string { return c.base.String() }

// Submit submits one task and returns its record as accepted.
func (c *Client) Submit(ctx context.Context, spec Spec) (Task, error) {
	var t Task
	err := c.do(ctx, http.MethodPost, "/v1/tasks", nil, spec, &t)
	return t, err
}

// SubmitAndWait submits one task and waits up to wait for it to finish, in one call.
// The record may still be unfinished when wait passes.
func (c *Client) SubmitAndWait(ctx context.Context, spec Spec, wait time.Duration) (Task, error) {
	var t Task
	err := c.do(ctx, http.MethodPost, "/v1/tasks", waitQuery(wait), spec, &t)
	return t, err
}

// SubmitBatch submits tasks as one submission: all are accepted or none. Specs whose
// deps name each other make a graph.
func (c *Client) SubmitBatch(ctx context.Context, specs []Spec) (Submitted, error) {
	var s Submitted
	err := c.do(ctx, http.MethodPost, "/v1/tasks", nil, batch{specs}, &s)
	return s, err
}

// SubmitBatchAndWait submits a batch and waits up to wait for all of it; the answer
// holds the records.
func (c *Client) SubmitBatchAndWait(ctx context.Context, specs []Spec, wait time.Duration) (Submitted, error) {
	var s Submitted
	err := c.do(ctx, http.MethodPost, "/v1/tasks", waitQuery(wait), batch{specs}, &s)
	return s, err
}

type batch struct {
	Tasks []Spec `json:"tasks"`
}

// Get returns a task's record.
func (c *Client) Get(ctx context.Context, id string) (Task, error) {
	var t Task
	err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id), nil, nil, &t)
	return t, err
}

// Wait long-polls until the task is terminal or timeout passes (0: until ctx ends) and
// returns the last record seen: when timeout passes first, the unfinished record and no
// error; when ctx ends first, the last record and ctx's error.
func (c *Client) Wait(ctx context.Context, id string, timeout time.Duration) (Task, error) {
	end := endOf(timeout)
	var last Task
	for {
		poll, ok := longPoll(ctx, end)
		if !ok {
			return last, nil
		}
		var t Task
		if err := c.do(ctx, http.MethodGet, "/v1/tasks/"+url.PathEscape(id), waitQuery(poll), nil, &t); err != nil {
			return last, err
		}
		last = t
		if t.State.Terminal() {
			return t, nil
		}
	}
}

// endOf is when a wait of timeout from now ends; zero for no timeout.
func endOf(timeout time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(timeout)
}

// longPoll is how long the next long poll may ask the node to wait: at most a minute,
// no later than end (when set), and a little short of ctx's deadline so that the answer
// arrives before ctx ends. ok is false once end has passed. The request itself runs
// under ctx alone: a timeout bounds the node's wait, not the answer's trip back, so
// the record the node answers with at the end of the wait is never lost to a race
// with the deadline.
func longPoll(ctx context.Context, end time.Time) (poll time.Duration, ok bool) {
	poll = time.Minute
	if !end.IsZero() {
		left := time.Until(end)
		if left <= 0 {
			return 0, false
		}
		poll = min(poll, left)
	}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		poll = min(poll, left-min(left/4, time.Second))
	}
	return poll, true
}

// Cancel cancels a task that has not finished and returns its record.
func (c *Client) Cancel(ctx context.Context, id string) (Task, error) {
	var t Task
	err := c.do(ctx, http.MethodDelete, "/v1/tasks/"+url.PathEscape(id), nil, nil, &t)
	return t, err
}

// ListOptions filter a listing.
type ListOptions struct {
	States []State
	Type   string
	Limit  int
	Cursor string
}

// List returns a page of the node's tasks, newest first.
func (c *Client) List(ctx context.Context, o ListOptions) (TaskList, error) {
	q := url.Values{}
	if len(o.States) > 0 {
		s := make([]string, len(o.States))
		for i, st := range o.States {
			s[i] = string(st)
		}
		q.Set("state", strings.Join(s, ","))
	}
	if o.Type != "" {
		q.Set("type", o.Type)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	var l TaskList
	err := c.do(ctx, http.MethodGet, "/v1/tasks", q, nil, &l)
	return l, err
}

// Cluster returns the members as the node sees them.
func (c *Client) Cluster(ctx context.Context) (Cluster, error) {
	var cl Cluster
	err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, nil, &cl)
	return cl, err
}

// Ready reports nil when the node answers /readyz with 200.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil)
}

func waitQuery(d time.Duration) url.Values {
	if d <= 0 {
		return nil
	}
	return url.Values{"wait": {d.String()}}
}

// do sends one API call, retrying on 429 and 503, and decodes the answer into out.
// A Retry-After answer sets the next wait, including "0": retry at once.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("client: encode request: %w", err)
		}
	}
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	backoff := max(c.backoff, 0) // rand.N panics on a negative bound
	for attempt := 0; ; attempt++ {
		retryAfter, err := c.once(ctx, method, u.String(), body, out)
		var apiErr *Error
		if err == nil || !errors.As(err, &apiErr) || attempt >= c.retries ||
			(apiErr.Status != http.StatusTooManyRequests && apiErr.Status != http.StatusServiceUnavailable) {
			return err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if retryAfter >= 0 {
			wait = retryAfter
		}
		backoff *= 2
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// once sends one request. retryAfter is the error answer's Retry-After, -1 when it gave
// none.
func (c *Client) once(ctx context.Context, method, u string, body []byte, out any) (retryAfter time.Duration, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("client: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("client: %s %s: read answer: %w", method, u, err)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error *Error `json:"error"`
		}
		if json.Unmarshal(b, &eb) != nil || eb.Error == nil {
			eb.Error = &Error{Code: "http_" + strconv.Itoa(resp.StatusCode), Message: strings.TrimSpace(string(b))}
			if eb.Error.Message == "" {
				eb.Error.Message = resp.Status
			}
		}
		eb.Error.Status = resp.StatusCode
		retryAfter = -1 // none given
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			retryAfter = time.Duration(s) * time.Second
		}
		return retryAfter, eb.Error
	}
	if out == nil {
		return 0, nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return 0, fmt.Errorf("client: %s %s: decode answer: %w", method, u, err)
	}
	return 0, nil
}

// Graph returns a graph's aggregate record with its tasks.
func (c *Client) Graph(ctx context.Context, id string) (Graph, error) {
	var g Graph
	err := c.do(ctx, http.MethodGet, "/v1/graphs/"+url.PathEscape(id), nil, nil, &g)
	return g, err
}

// WaitGraph long-polls until every task of the graph is terminal or timeout passes (0:
// until ctx ends), and returns the last record seen, as Wait does. withTasks asks for the tasks'
// records too. Each poll returns within a minute, so progress can be shown between
// calls with a short timeout.
func (c *Client) WaitGraph(ctx context.Context, id string, timeout time.Duration, withTasks bool) (Graph, error) {
	end := endOf(timeout)
	var last Graph
	for {
		poll, ok := longPoll(ctx, end)
		if !ok {
			return last, nil
		}
		q := waitQuery(poll)
		if q == nil {
			q = url.Values{}
		}
		if !withTasks {
			q.Set("tasks", "false")
		}
		var g Graph
		if err := c.do(ctx, http.MethodGet, "/v1/graphs/"+url.PathEscape(id), q, nil, &g); err != nil {
			return last, err
		}
		last = g
		if g.State != Running && g.State != Pending {
			return g, nil
		}
	}
}

// CancelGraph cancels every unfinished task of a graph.
func (c *Client) CancelGraph(ctx context.Context, id string) (Graph, error) {
	var g Graph
	err := c.do(ctx, http.MethodDelete, "/v1/graphs/"+url.PathEscape(id), nil, nil, &g)
	return g, err
}

// Drain takes the node out of service: it refuses new work, finishes what it owns
// (peers steal its queue) and then stops, after timeout at the latest.
func (c *Client) Drain(ctx context.Context, timeout time.Duration) (Drain, error) {
	var d Drain
	q := url.Values{}
	if timeout > 0 {
		q.Set("timeout", timeout.String())
	}
	err := c.do(ctx, http.MethodPost, "/v1/node/drain", q, nil, &d)
	return d, err
}
