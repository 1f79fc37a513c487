//go:build !race

package reliability_test

// raceEnabled reports whether the test binary was built with -race, whose
// detector slows everything down and allows at most 8,128 live goroutines.
const raceEnabled = false
