//go:build linux

package porta

import (
	"net"

	"golang.org/x/sys/unix"
)

// unacked reports whether tc's socket holds bytes the peer has not
// acknowledged (SIOCOUTQ: sent and unacknowledged, or not yet sent).
func unacked(tc *net.TCPConn) bool {
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	raw.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = v
		}
	})
	return n > 0
}
