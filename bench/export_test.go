package bench

import (
	"testing"
	"time"
)

// SetEngineStartedHook makes Run call f once its engine has started, with
// the channel closed when the engine is done, until the test ends. Tests
// that use it must not run in parallel with others.
func SetEngineStartedHook(t testing.TB, f func(done <-chan struct{})) {
	testHookEngineStarted = f
	t.Cleanup(func() { testHookEngineStarted = nil })
}

// HoldOpenReaderAtStop makes the goroutine engine's open-model reader,
// before each read while it has no reply to wait for, wait until a
// message goes out or the writer has stopped: so that the writer's
// wake-up at the end of the run comes between the reader's check for the
// end and its read. Tests that use it must not run in parallel with
// others.
func HoldOpenReaderAtStop(t testing.TB) {
	testHookOpenBeforeRead = func(c *gconn) {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			c.mu.Lock()
			done, out := c.ss.done(), c.ss.out
			c.mu.Unlock()
			if done || out > 0 {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	t.Cleanup(func() { testHookOpenBeforeRead = nil })
}
