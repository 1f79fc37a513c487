package main

import (
	"strings"
	"testing"
)

func TestChatNotATerminal(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--mode", "upper")
	// Without a terminal, chat behaves like send: no prompt, one reply a
	// line, and "closed" ends the session.
	r := runPorta(t, "hello\nworld\nclose\nnever sent\n", "chat", s.addr())
	r.want(t, 0, "HELLO\nWORLD\nclosed\n")
	if r.stderr != "" {
		t.Errorf("stderr: %q, want none", r.stderr)
	}

	r = runPorta(t, "", "chat", freeAddr(t))
	r.want(t, 1, "")
	r.oneLine(t, "connection refused")
}

func TestChatHelpTimeout(t *testing.T) {
	t.Parallel()
	// At a terminal, replies are shown as they come, and --timeout bounds
	// the connection and the wait for the last replies after Ctrl-D.
	r := runPorta(t, "", "help", "chat")
	r.want(t, 0, r.stdout)
	if !strings.Contains(r.stdout, "after Ctrl-D") {
		t.Errorf("porta help chat does not say what --timeout bounds at a terminal:\n%s", r.stdout)
	}
}
