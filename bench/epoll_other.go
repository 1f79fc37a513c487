//go:build !linux

package bench

// newEpollEngine reports that the epoll engine is not available here.
func newEpollEngine(p *plan) (engine, bool, error) { return nil, false, nil }
