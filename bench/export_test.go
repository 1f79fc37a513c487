package bench

import "testing"

// SetEngineStartedHook makes Run call f once its engine has started, with
// the channel closed when the engine is done, until the test ends. Tests
// that use it must not run in parallel with others.
func SetEngineStartedHook(t testing.TB, f func(done <-chan struct{})) {
	testHookEngineStarted = f
	t.Cleanup(func() { testHookEngineStarted = nil })
}
