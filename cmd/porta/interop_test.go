package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"testing"
)

// The interop tests talk to "porta serve" with clients that know nothing
// of porta: a socket client written as the tutorials write one, and
// netcat.

func TestTutorialPythonClient(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH; the tutorial-style client needs it")
	}
	s := startServe(t, []string{"127.0.0.1:0"})
	host, port, err := net.SplitHostPort(s.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	r := runCommand(t, "", python, filepath.Join("testdata", "tutorial_client.py"), host, port)
	r.want(t, 0, "Received: Hello\n"+
		"Received: How are you?\n"+
		"Received: porta is listening\n"+
		"Received: closed\n"+
		"After close: b''\n")
	if r.stderr != "" {
		t.Errorf("stderr: %q, want none", r.stderr)
	}
	s.stderr.waitForText(t, "serve stderr", "reason=hangup messages=4")
}

func TestNetcat(t *testing.T) {
	t.Parallel()
	nc, err := exec.LookPath("nc")
	if err != nil {
		t.Skip("nc is not on PATH; install netcat-openbsd to run this test")
	}
	s := startServe(t, []string{"127.0.0.1:0"})
	host, port, err := net.SplitHostPort(s.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	// -N: send the end of input to the server; -w: give up on a silent
	// server. nc ends when the server hangs up after "closed".
	r := runCommand(t, "hello\nclose\nnever answered\n", nc, "-N", "-w", "5", host, port)
	r.want(t, 0, "hello\nclosed\n")
	s.stderr.waitForText(t, "serve stderr", "reason=hangup messages=2")
}

func TestSendUDP(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"udp://127.0.0.1:0"}, "--mode", "upper")
	r := runPorta(t, "", "send", s.addr(), "hello", "over udp", "close", "never sent")
	r.want(t, 0, "HELLO\nOVER UDP\nclosed\n")
	if r.stderr != "" {
		t.Errorf("stderr: %q, want none", r.stderr)
	}
	r = runPorta(t, "one\ntwo\n", "send", s.addr())
	r.want(t, 0, "ONE\nTWO\n")
}
