// Package bench runs Starling's benchmark workloads against an in-process node it
// starts, or against a running node, and reports each as one JSON object. Timing goals
// are checked here, never as timed assertions in tests.
package bench
