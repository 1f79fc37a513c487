//go:build !linux

package porta

// idleWaiter is a no-op where raw socket access is not used: connections
// wait for input inside their reads, holding their read buffer.
type idleWaiter struct{}

func (w *idleWaiter) init(nc any, onIdle func()) {}

func (w *idleWaiter) wait() error { return nil }
