package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"time"
)

// Config configures a Node. Start from DefaultConfig (an agent) or LocalConfig (tests
// and embedding) and change what you need; New validates it.
type Config struct {
	// Name identifies the node to people and, with the cluster, to its peers. Default:
	// the host name and the HTTP port.
	Name string

	// HTTPAddr is where the public API listens. Port 0 picks a free port (see
	// Node.HTTPAddr). Default 127.0.0.1:7070.
	HTTPAddr string
	// Token, when set, is required as "Authorization: Bearer TOKEN" on every endpoint
	// but /healthz and /readyz.
	Token string
	// Insecure allows a non-loopback HTTPAddr without a Token.
	Insecure bool

	// Slots is how many tasks run at once. Default: the number of CPUs.
	Slots int
	// Tags are the node's labels that tasks can require ("gpu", "zone=eu").
	Tags []string
	// Resources are counters tasks hold while they run ("cpu": 8, "mem_mb": 16384,
	// "gpu": 1). cpu defaults to the number of CPUs and mem_mb to the machine's memory
	// when not given; set one to 0 to declare that the node has none.
	Resources map[string]int64

	// MaxQueue bounds the tasks not yet finished (pending, queued, running). A
	// submission past it is refused with 429; nothing accepted is dropped.
	MaxQueue int
	// MaxBatch bounds the tasks of one submission (and so of one graph).
	MaxBatch int
	// MaxGraphDepth bounds the longest chain of deps in a graph, in tasks.
	MaxGraphDepth int
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes int64
	// MaxPayloadBytes bounds one task's payload.
	MaxPayloadBytes int
	// MaxResultBytes bounds one task's result; a larger result fails its task.
	MaxResultBytes int
	// MaxWait bounds the ?wait= of a long poll.
	MaxWait time.Duration

	// Retain is how long finished records are kept; MaxRecords how many at most
	// (the oldest finished are dropped first).
	Retain     time.Duration
	MaxRecords int

	// RetryBase and RetryMax shape the exponential backoff between retries: attempt n
	// waits about RetryBase·2^(n-1), at most RetryMax, with jitter.
	RetryBase time.Duration
	RetryMax  time.Duration

	// AllowExec enables the exec handler. ExecAllow, when not empty, lists the only
	// programs it may start (names looked up in PATH, or absolute paths).
	AllowExec bool
	ExecAllow []string
	// ExecOutputBytes caps captured stdout and stderr, each.
	ExecOutputBytes int

	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout bound the HTTP
	// server's connections. Long polls extend their own write deadline.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration

	// DataDir, when set, keeps the node's records and identity on disk: every
	// acknowledged task survives a crash, and a node restarted with the directory is
	// the same node. Empty: the node keeps everything in memory.
	DataDir string

	// Cluster, when set, makes the node a member of a cluster (gossip, peer RPC,
	// work stealing). nil: the node runs on its own.
	Cluster *ClusterConfig

	// Logger receives the node's logs. Default: discard.
	Logger *slog.Logger
	// Version is reported by the node (the binary sets it).
	Version string
}

// DefaultConfig is the configuration of a production agent.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:          "127.0.0.1:7070",
		Slots:             runtime.NumCPU(),
		MaxQueue:          250_000,
		MaxBatch:          100_000,
		MaxGraphDepth:     100_000,
		MaxBodyBytes:      64 << 20,
		MaxPayloadBytes:   1 << 20,
		MaxResultBytes:    1 << 20,
		MaxWait:           5 * time.Minute,
		Retain:            time.Hour,
		MaxRecords:        500_000,
		RetryBase:         200 * time.Millisecond,
		RetryMax:          time.Minute,
		ExecOutputBytes:   1 << 20,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
}

// LocalConfig is DefaultConfig on a free loopback port with short retry backoff: for
// tests, benchmarks and programs that embed a node.
func LocalConfig() Config {
	c := DefaultConfig()
	c.HTTPAddr = "127.0.0.1:0"
	c.RetryBase = 10 * time.Millisecond
	c.RetryMax = time.Second
	return c
}

// ErrInsecure is returned by New for a non-loopback HTTP address without a token.
var ErrInsecure = errors.New("node: refusing to serve the API on a non-loopback address without a token")

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.HTTPAddr == "" {
		bad("HTTPAddr is empty")
	} else if host, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		bad("HTTPAddr %q: %v", c.HTTPAddr, err)
	} else if !isLoopback(host) && c.Token == "" && !c.Insecure {
		errs = append(errs, fmt.Errorf("%w: %s (set --token or STARLING_TOKEN, or pass --insecure)", ErrInsecure, c.HTTPAddr))
	}
	if c.Slots < 1 {
		bad("Slots must be at least 1, got %d", c.Slots)
	}
	for _, t := range c.Tags {
		if t == "" || strings.ContainsAny(t, " \t\n,") {
			bad("tag %q: tags are non-empty and carry no spaces or commas", t)
		}
	}
	for k, v := range c.Resources {
		if k == "" || v < 0 {
			bad("resource %q=%d: names are non-empty and amounts not negative", k, v)
		}
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"MaxQueue", int64(c.MaxQueue)}, {"MaxBatch", int64(c.MaxBatch)}, {"MaxGraphDepth", int64(c.MaxGraphDepth)},
		{"MaxBodyBytes", c.MaxBodyBytes}, {"MaxPayloadBytes", int64(c.MaxPayloadBytes)},
		{"MaxResultBytes", int64(c.MaxResultBytes)}, {"MaxWait", int64(c.MaxWait)},
		{"Retain", int64(c.Retain)}, {"MaxRecords", int64(c.MaxRecords)},
		{"RetryBase", int64(c.RetryBase)}, {"RetryMax", int64(c.RetryMax)},
		{"ExecOutputBytes", int64(c.ExecOutputBytes)},
		{"ReadHeaderTimeout", int64(c.ReadHeaderTimeout)}, {"ReadTimeout", int64(c.ReadTimeout)},
		{"WriteTimeout", int64(c.WriteTimeout)}, {"IdleTimeout", int64(c.IdleTimeout)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			bad("%s must be positive, got %d", p.name, p.v)
		}
	}
	if len(c.ExecAllow) > 0 && !c.AllowExec {
		bad("ExecAllow is set but AllowExec is off (pass --allow-exec too)")
	}
	return errors.Join(errs...)
}

// fill sets the defaults that depend on the machine.
func (c *Config) fill() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	res := make(map[string]int64, len(c.Resources)+2)
	for k, v := range c.Resources {
		res[k] = v
	}
	if _, ok := res["cpu"]; !ok {
		res["cpu"] = int64(runtime.NumCPU())
	}
	if _, ok := res["mem_mb"]; !ok {
		if mb := memoryMB(); mb > 0 {
			res["mem_mb"] = mb
		}
	}
	c.Resources = res
	if c.Name == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "starling"
		}
		_, port, _ := net.SplitHostPort(c.HTTPAddr)
		c.Name = host + ":" + port
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// memoryMB reads the machine's memory from /proc/meminfo; 0 when unknown.
func memoryMB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb); err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}
