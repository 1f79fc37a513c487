package bench_test

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta/bench"
)

// fullUnixListener returns the address of a Unix socket that listens with
// a backlog of one and never accepts: once the backlog is full, connect(2)
// fails with EAGAIN.
func fullUnixListener(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "full.sock")
	fd := streamSocket(t, syscall.AF_UNIX)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	return "unix://" + path
}

// TestUnixBacklogFullTimesOut checks that connections to a Unix listener
// whose backlog stays full fail with a connect timeout after
// Config.Timeout, in both engines, instead of being retried for ever.
func TestUnixBacklogFullTimesOut(t *testing.T) {
	t.Parallel()
	addr := fullUnixListener(t)
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			start := time.Now()
			res, _ := runErr(t, bench.Config{Addr: addr, Engine: eng, Conns: 6, Duration: 200 * time.Millisecond,
				Timeout: 300 * time.Millisecond})
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the run took %v with a 300 ms timeout", d)
			}
			if res == nil || res.Errors["connect_timeout"] == 0 || res.Errors["connect_timeout"] != int64(6-res.Connect.Count) {
				t.Fatalf("result %+v, want connections that timed out connecting", res)
			}
		})
	}
}
