//go:build race

package porta

// raceEnabled reports whether the race detector is on: under it,
// sync.Pool drops a share of what it is given, on purpose.
const raceEnabled = true
