//go:build race

package sim

// raceEnabled: the race detector slows the simulation about tenfold, and the
// simulation shares nothing between goroutines but its results; fewer seeds do.
const raceEnabled = true
