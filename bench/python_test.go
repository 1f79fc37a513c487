package bench_test

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/porta-project/porta/bench"
)

// startPythonEcho runs testdata/echo_server.py, a plain Python line echo
// server, and returns its address. The test is skipped without python3.
func startPythonEcho(t *testing.T) string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	cmd := exec.Command(python, "testdata/echo_server.py")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	port := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		port <- strings.TrimSpace(line)
	}()
	select {
	case p := <-port:
		if p == "" {
			t.Fatal("the Python echo server printed no port")
		}
		return "127.0.0.1:" + p
	case <-time.After(10 * time.Second):
		t.Fatal("the Python echo server did not start within 10s")
	}
	return ""
}

func TestPythonEchoServer(t *testing.T) {
	t.Parallel()
	addr := startPythonEcho(t)
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			res := run(t, bench.Config{Addr: addr, Engine: eng, Conns: 4, Pipeline: 4, Messages: 400})
			wantOK(t, res, 400)
			res = run(t, bench.Config{Addr: addr, Engine: eng, Conns: 2, Duration: 200 * time.Millisecond})
			if !res.OK() || res.Messages == 0 {
				t.Errorf("200ms against Python: %d messages, errors %v", res.Messages, res.Errors)
			}
		})
	}
}
