//go:build !race

package porta

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
