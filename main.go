// Command starling runs a Starling node or cluster and talks to one.
// See the README for the commands.
package main

import (
	"os"

	"github.com/starlingsched/starling/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
