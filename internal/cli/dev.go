package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/starlingsched/starling/client"
	"github.com/starlingsched/starling/gossip"
	"github.com/starlingsched/starling/node"
	"github.com/starlingsched/starling/testcluster"
)

func runKeygen(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "keygen", "keygen")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, gossip.GenerateKey())
	return nil
}

// runDev runs a whole local cluster in this process: the quickest way to try Starling.
func runDev(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "dev", "dev [--nodes N] [flags]")
	var (
		nodes, slots, port int
		allowExec          bool
		logLevel, dataDir  string
	)
	fs.IntVar(&nodes, "nodes", 3, "how many nodes")
	fs.IntVar(&slots, "slots", 2, "slots per node")
	fs.IntVar(&port, "port", 7070, "HTTP port of the first node; the others take the next ones (a free port when taken)")
	fs.BoolVar(&allowExec, "allow-exec", false, "enable the exec handler on every node")
	fs.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	fs.StringVar(&dataDir, "data-dir", "", "keep node N's tasks in ROOT/node-N, so that dev started again with it gets them back (default: a temporary directory, removed when dev stops; STARLING_DATA_DIR, an agent's, is not used)")
	withoutEnv(fs, "data-dir")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if nodes < 1 || nodes > 64 {
		return usageErr("--nodes %d: use 1 to 64", nodes)
	}
	log, err := newLogger(e.stderr, "text", logLevel)
	if err != nil {
		return err
	}
	root, kept := dataDir, dataDir != ""
	if kept {
		if root, err = filepath.Abs(root); err != nil {
			return err
		}
	} else {
		if root, err = os.MkdirTemp("", "starling-dev-"); err != nil {
			return err
		}
		defer os.RemoveAll(root)
	}
	c, err := testcluster.New(testcluster.Options{
		Nodes: nodes, Slots: slots, Logger: log, DataDir: root,
		// Not fast: a busy machine (a test suite beside it) must not make the nodes
		// declare each other dead.
		Profile: "local",
		Configure: func(i int, cfg *node.Config) {
			cfg.Version = version()
			cfg.AllowExec = allowExec
			cfg.HTTPAddr = freeOrZero(port + i)
			cfg.RetryBase = 200 * time.Millisecond
			cfg.RetryMax = time.Minute
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "starling dev: a %d-node cluster in this process (Ctrl-C stops it)\n\n", nodes)
	tw := newTable(e.stdout, "NODE", "HTTP", "GOSSIP", "SLOTS")
	for i := range nodes {
		self := c.Node(i).Members().Members[0]
		tw.row(self.Name, "http://"+self.HTTP, self.Gossip, strconv.Itoa(self.Slots))
	}
	tw.flush()
	if kept {
		fmt.Fprintf(e.stdout, "\nData: node N keeps its tasks in %s, kept when dev stops: start dev with --data-dir %s again to get them back.\n",
			filepath.Join(root, "node-N"), root)
	} else {
		fmt.Fprintf(e.stdout, "\nData: node N keeps its tasks in %s, a temporary directory removed when dev stops (--data-dir ROOT keeps them).\n",
			filepath.Join(root, "node-N"))
	}
	first := c.Node(0).HTTPAddr()
	addr := ""
	if first != "127.0.0.1:7070" {
		addr = " --addr " + first
	}
	fmt.Fprintf(e.stdout, `
Try it (go run . or a built starling binary):
  starling submit%[1]s --wait echo '{"hello": "starling"}'
  for i in $(seq 100); do starling submit%[1]s sleep '{"ms": 200}'; done
  starling tasks%[1]s --limit 20
  starling members%[1]s
  curl -s -X POST 'http://%[2]s/v1/tasks?wait=30s' -d '{"type": "echo", "payload": "hi"}'
`, addr, first)
	if nodes > 1 {
		fmt.Fprintf(e.stdout, "Any node answers for any task: try starling status --addr %s ID.\n", c.Node(1).HTTPAddr())
	}
	<-ctx.Done()
	fmt.Fprintln(e.stdout, "\nstopping…")
	c.Close()
	return nil
}

// freeOrZero returns 127.0.0.1:port when the port is free, else 127.0.0.1:0.
func freeOrZero(port int) string {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	ln.Close()
	return addr
}

func runDrain(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "drain", "drain [--addr A] [--timeout D] [--wait]")
	var cf clientFlags
	cf.register(fs)
	var timeout time.Duration
	var wait bool
	fs.DurationVar(&timeout, "timeout", time.Hour, "stop the node after this long even with tasks unfinished")
	fs.BoolVar(&wait, "wait", false, "wait until the node has stopped")
	if err := parse(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments: %v", fs.Args())
	}
	cl, err := cf.client()
	if err != nil {
		return err
	}
	d, err := cl.Drain(ctx, timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "node %s is draining: %d of its tasks unfinished\n", d.Node, d.Unfinished)
	if !wait {
		return nil
	}
	// Poll without retries: a draining node answers 503, which the client would
	// otherwise retry.
	probe, err := client.New(cf.addr, client.WithToken(cf.token), client.WithRetry(0, 0))
	if err != nil {
		return err
	}
	for {
		if err := probe.Ready(ctx); err != nil {
			var ae *client.Error
			if !errors.As(err, &ae) { // no answer at all: the node is gone
				fmt.Fprintf(e.stdout, "node %s stopped\n", d.Node)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
