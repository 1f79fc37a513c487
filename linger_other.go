//go:build !linux

package porta

import "net"

// unacked reports whether tc's socket holds bytes the peer has not
// acknowledged; elsewhere than on Linux it does not know, and says no.
func unacked(tc *net.TCPConn) bool { return false }
