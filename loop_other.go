//go:build !linux

package porta

// eventLoop is unused where connections wait on their goroutines.
type eventLoop struct{}

// startLoops does nothing: connections wait on their goroutines.
func (s *Server) startLoops() {}

// stopLoops does nothing.
func (s *Server) stopLoops() {}

// toLoop reports false: connections wait on their goroutines.
func (c *conn) toLoop() bool { return false }

// initLoop leaves c waiting on its goroutine.
func (c *conn) initLoop() {}
