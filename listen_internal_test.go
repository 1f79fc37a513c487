package porta

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestListenErrorPermission checks the words of a permission error: the
// hint about privileged ports only for a port that is one, and for a Unix
// socket, the directory the file could not be created in.
func TestListenErrorPermission(t *testing.T) {
	t.Parallel()
	const portHint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
	tests := []struct {
		a    Addr
		want string
	}{
		{Addr{Network: "tcp", Address: "127.0.0.1:80"}, "porta: permission denied: tcp://127.0.0.1:80" + portHint},
		{Addr{Network: "tcp", Address: ":1"}, "porta: permission denied: tcp://:1" + portHint},
		{Addr{Network: "tcp", Address: "127.0.0.1:1023"}, "porta: permission denied: tcp://127.0.0.1:1023" + portHint},
		{Addr{Network: "tcp6", Address: "[::1]:443"}, "porta: permission denied: tcp6://[::1]:443" + portHint},
		{Addr{Network: "udp", Address: "127.0.0.1:53"}, "porta: permission denied: udp://127.0.0.1:53" + portHint},
		{Addr{Network: "tcp", Address: "127.0.0.1:443", TLS: true}, "porta: permission denied: tls://127.0.0.1:443" + portHint},
		// No privilege is needed for these ports: something else denied it.
		{Addr{Network: "tcp", Address: "127.0.0.1:1024"}, "porta: permission denied: tcp://127.0.0.1:1024"},
		{Addr{Network: "tcp", Address: "127.0.0.1:8000"}, "porta: permission denied: tcp://127.0.0.1:8000"},
		{Addr{Network: "tcp", Address: "127.0.0.1:0"}, "porta: permission denied: tcp://127.0.0.1:0"},
		{Addr{Network: "unix", Address: "porta.sock"}, "porta: permission denied: unix://porta.sock (cannot create the socket file: directory . is not writable by this user, or a directory on its path is not searchable)"},
		{Addr{Network: "unix", Address: "/srv/porta/x.sock"}, "porta: permission denied: unix:///srv/porta/x.sock (cannot create the socket file: directory /srv/porta is not writable by this user, or a directory on its path is not searchable)"},
	}
	for _, tt := range tests {
		cause := &net.OpError{Op: "listen", Net: tt.a.Network, Err: os.NewSyscallError("bind", syscall.EACCES)}
		err := listenError(tt.a, cause)
		if err.Error() != tt.want {
			t.Errorf("listenError(%v, EACCES) = %q, want %q", tt.a, err, tt.want)
		}
		if !errors.Is(err, os.ErrPermission) || !errors.Is(err, syscall.EACCES) {
			t.Errorf("listenError(%v, EACCES) = %v, which does not wrap EACCES", tt.a, err)
		}
		if tt.a.Network == "unix" && strings.Contains(err.Error(), "ports below") {
			t.Errorf("listenError(%v, EACCES) = %q: a Unix socket has no port", tt.a, err)
		}
	}
}
