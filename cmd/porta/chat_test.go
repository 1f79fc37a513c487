package main

import "testing"

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
