package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestServePermissionDenied binds a port below 1024 without privilege:
// one clear line on stderr, exit 1. As root it runs the binary as the
// user nobody, which has no CAP_NET_BIND_SERVICE.
func TestServePermissionDenied(t *testing.T) {
	t.Parallel()
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if start, _ := strconv.Atoi(strings.TrimSpace(string(b))); start < 1024 {
			t.Skipf("ports from %d up need no privilege on this machine", start)
		}
	}
	port := freeLowPort(t)
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// TestMain's build directory is open to everyone.
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, portaBin, "serve", addr)
	cmd.Env = portaEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := result{code: exitCode(t, cmd.Run())}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	r.want(t, 1, "")
	r.oneLine(t, "permission denied", "tcp://"+addr, "ports below 1024")
}

// freeLowPort returns a port below 1024 that is free on 127.0.0.1 (as far
// as root can tell; as another user any low port does).
func freeLowPort(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		return 1000
	}
	for port := 1000; port > 600; port-- {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Skip("no free port below 1024")
	return 0
}
