package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/starlingsched/starling/gossip"
	"github.com/starlingsched/starling/node"
)

// agentFlags are the flags of a node, shared by agent and dev.
type agentFlags struct {
	cfg       node.Config
	cluster   node.ClusterConfig // what the flags set; the profile gives the rest
	gossipKey string
	profile   string
	resources []string
	logFormat string
	logLevel  string
	grace     time.Duration
}

func (a *agentFlags) register(fs interface {
	StringVar(*string, string, string, string)
	BoolVar(*bool, string, bool, string)
	IntVar(*int, string, int, string)
	Int64Var(*int64, string, int64, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	StringArrayVar(*[]string, string, []string, string)
}) {
	d := node.DefaultConfig()
	a.cfg = d
	a.cluster = *node.DefaultClusterConfig()
	fs.StringVar(&a.cluster.Gossip.BindAddr, "bind", a.cluster.Gossip.BindAddr, "gossip address (UDP and TCP, host:port)")
	fs.StringVar(&a.cluster.Gossip.AdvertiseAddr, "advertise", "", "gossip address peers should use, when it differs from --bind (NAT)")
	fs.StringArrayVar(&a.cluster.Gossip.Join, "join", nil, "a member's gossip address to join (repeatable; retried until one answers)")
	fs.StringVar(&a.gossipKey, "gossip-key", "", "the cluster key (base64; make one with 'starling keygen'): encrypts gossip, authenticates peers")
	fs.StringVar(&a.cluster.RPCAddr, "rpc", "", "peer RPC address (default: the --bind host on a free port; peers learn it by gossip)")
	fs.StringVar(&a.profile, "profile", "lan", "timers of failure detection, stealing and reports: lan, local (one busy machine) or fast (loopback tests: deaths noticed in under a second)")
	fs.StringVar(&a.profile, "gossip-profile", "lan", "the old name of --profile")
	if d, ok := fs.(interface{ MarkDeprecated(string, string) error }); ok {
		d.MarkDeprecated("gossip-profile", "use --profile")
	}
	fs.IntVar(&a.cluster.NodeLosses, "node-losses", a.cluster.NodeLosses, "how many executing nodes a task may lose before it fails with \"node lost\" (0: none)")
	fs.StringVar(&a.cfg.HTTPAddr, "http", d.HTTPAddr, "address of the HTTP API (host:port)")
	fs.StringVar(&a.cfg.Name, "name", "", "node name (default: host name and HTTP port)")
	fs.StringVar(&a.cfg.Token, "token", "", "require this bearer token on the API (env STARLING_TOKEN)")
	fs.BoolVar(&a.cfg.Insecure, "insecure", false, "allow a non-loopback address without a token")
	fs.IntVar(&a.cfg.Slots, "slots", d.Slots, "tasks run at once")
	fs.StringArrayVar(&a.cfg.Tags, "tag", nil, "a tag tasks can require, e.g. gpu or zone=eu (repeatable)")
	fs.StringArrayVar(&a.resources, "resource", nil, "a resource counter NAME=N, e.g. gpu=1 (repeatable; cpu and mem_mb default to the machine's)")
	fs.IntVar(&a.cfg.MaxQueue, "max-queue", d.MaxQueue, "unfinished tasks accepted before answering 429")
	fs.IntVar(&a.cfg.MaxBatch, "max-batch", d.MaxBatch, "tasks in one submission or graph")
	fs.IntVar(&a.cfg.MaxGraphDepth, "max-graph-depth", d.MaxGraphDepth, "the longest chain of deps in a graph, in tasks")
	fs.Int64Var(&a.cfg.MaxBodyBytes, "max-body", d.MaxBodyBytes, "bytes in one request body")
	fs.IntVar(&a.cfg.MaxPayloadBytes, "max-payload", d.MaxPayloadBytes, "bytes in one task's payload")
	fs.IntVar(&a.cfg.MaxResultBytes, "max-result", d.MaxResultBytes, "bytes in one task's result")
	fs.DurationVar(&a.cfg.Retain, "retain", d.Retain, "how long finished records are kept")
	fs.IntVar(&a.cfg.MaxRecords, "max-records", d.MaxRecords, "how many finished records are kept at most")
	fs.StringVar(&a.cfg.DataDir, "data-dir", "", "keep the node's tasks and identity in this directory: they survive a crash or a restart (default: in memory, lost when the node stops)")
	fs.BoolVar(&a.cfg.AllowExec, "allow-exec", false, "enable the exec handler (runs programs)")
	fs.StringArrayVar(&a.cfg.ExecAllow, "exec-allow", nil, "with --allow-exec: the only programs exec may run (repeatable)")
	fs.DurationVar(&a.grace, "shutdown-grace", 30*time.Second, "on SIGINT/SIGTERM, how long running tasks may finish")
	fs.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// config finishes the node configuration from the parsed flags.
func (a *agentFlags) config(e *env) (node.Config, error) {
	cfg := a.cfg
	if len(a.resources) > 0 {
		cfg.Resources = make(map[string]int64)
		for _, r := range a.resources {
			k, v, ok := strings.Cut(r, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if !ok || k == "" || err != nil || n < 0 {
				return cfg, usageErr("--resource %q: use NAME=N with a whole number N >= 0", r)
			}
			cfg.Resources[k] = n
		}
	}
	log, err := newLogger(e.stderr, a.logFormat, a.logLevel)
	if err != nil {
		return cfg, err
	}
	cfg.Logger = log
	cfg.Version = version()
	pc, err := node.ClusterProfile(a.profile)
	if err != nil {
		return cfg, usageErr("--profile %q: use lan, local or fast", a.profile)
	}
	cc := *pc
	// What the flags say, on top of the profile.
	cc.Gossip.BindAddr, cc.Gossip.AdvertiseAddr, cc.Gossip.Join = a.cluster.Gossip.BindAddr, a.cluster.Gossip.AdvertiseAddr, a.cluster.Gossip.Join
	cc.RPCAddr, cc.NodeLosses = a.cluster.RPCAddr, a.cluster.NodeLosses
	if a.gossipKey != "" {
		key, err := gossip.ParseKey(a.gossipKey)
		if err != nil {
			return cfg, usageErr("--gossip-key: %v", err)
		}
		cc.Gossip.SecretKey = key
	}
	if cc.NodeLosses == 0 {
		cc.NodeLosses = -1 // the flag's 0 means none; the config's 0 means the default
	}
	cc.Gossip.Insecure = cfg.Insecure
	cfg.Cluster = &cc
	return cfg, nil
}

func runAgent(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "agent", "agent [flags]")
	var a agentFlags
	a.register(fs)
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments: %v", fs.Args())
	}
	cfg, err := a.config(e)
	if err != nil {
		return err
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(); err != nil {
		return err
	}
	self := n.Members().Members[0]
	fmt.Fprintf(e.stderr, "starling agent (version %s): node %s serving http://%s (slots %d, gossip %s, rpc %s)\n",
		version(), n.Name(), n.HTTPAddr(), cfg.Slots, self.Gossip, self.RPC)
	if cfg.DataDir != "" {
		dir := cfg.DataDir
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		fmt.Fprintf(e.stderr, "data directory %s (node id %s): accepted tasks survive a crash or a restart with the same --data-dir\n", dir, n.ID())
	} else {
		fmt.Fprintf(e.stderr, "storage: memory only, tasks are lost when the node stops (--data-dir DIR keeps them)\n")
	}
	fmt.Fprintf(e.stderr, "submit with: starling submit --addr %s --wait echo '\"hello\"'\n", n.HTTPAddr())
	fmt.Fprintf(e.stderr, "join another agent with: starling agent --join %s --bind 127.0.0.1:PORT --http 127.0.0.1:PORT\n", self.Gossip)
	select {
	case <-ctx.Done():
	case <-n.Done(): // drained (POST /v1/node/drain, starling drain)
		fmt.Fprintf(e.stderr, "starling agent: node %s drained and stopped\n", n.Name())
		return nil
	}
	cfg.Logger.Info("stopping", slog.Duration("grace", a.grace))
	sctx, cancel := context.WithTimeout(context.Background(), a.grace)
	defer cancel()
	return n.Shutdown(sctx)
}
