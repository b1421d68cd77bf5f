// Package cli is the starling command line: the subcommands, their flags (pflag, each
// agent flag also read from a STARLING_* environment variable) and their output.
// main.go only calls Main.
package cli
