//go:build !linux

package porta

import "time"

// parker is unused where connections do not park.
type parker struct{}

// canPark reports false: connections keep their goroutine while idle.
func (c *conn) canPark() bool { return false }

// park reports false: connections keep their goroutine while idle.
func (c *conn) park() bool { return false }

// stopParking does nothing.
func (s *Server) stopParking() {}

// parkDelay is never used: nothing parks.
func (s *Server) parkDelay() time.Duration { return 0 }

// parker does nothing: nothing parks.
func (s *Server) parker() *parker { return nil }
