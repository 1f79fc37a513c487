package main

import (
	"fmt"
	"strings"
	"testing"
)

// The tests of the command line as such: usage errors, bad addresses,
// help and unknown commands.

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string // in the one line on stderr
	}{
		{[]string{"serve", "--bogus"}, "-bogus"},
		{[]string{"send", "--bogus", "127.0.0.1:1"}, "-bogus"},
		{[]string{"chat", "--bogus", "127.0.0.1:1"}, "-bogus"},
		{[]string{"serve", "--mode", "shout"}, "--mode"},
		{[]string{"serve", "--log-format", "xml"}, "--log-format"},
		{[]string{"serve", "--max-msg", "lots"}, "-max-msg"},
		// 17592186044432 MiB is 2^64 + 16 MiB: it must not wrap to 16 MiB.
		{[]string{"serve", "--max-msg", "17592186044432M"}, "too large"},
		{[]string{"send", "--framing", "auto", "127.0.0.1:1"}, "framing"},
		{[]string{"send", "--timeout", "soon", "127.0.0.1:1"}, "-timeout"},
		{[]string{"send"}, "missing ADDR"},
		{[]string{"send", "--timeout", "1s"}, "missing ADDR"},
		{[]string{"chat"}, "ADDR"},
		{[]string{"chat", "127.0.0.1:1", "127.0.0.1:2"}, "ADDR"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runPorta(t, "", tt.args...)
			r.want(t, 2, "")
			r.oneLine(t, "porta "+tt.args[0]+":", tt.want)
		})
	}
}

func TestBadAddress(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"serve", "send"} {
		for _, addr := range []string{"8000", "foo://x", "127.0.0.1:99999", "unix://"} {
			t.Run(cmd+" "+addr, func(t *testing.T) {
				t.Parallel()
				args := []string{cmd, addr}
				if cmd == "send" {
					args = append(args, "hello")
				}
				r := runPorta(t, "", args...)
				r.want(t, 1, "")
				r.oneLine(t, "bad address", fmt.Sprintf("%q", addr))
			})
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := runPorta(t, "", "help")
	if r.code != 0 || r.stderr != "" {
		t.Errorf("porta help: %v\nwant exit status 0 and no stderr", r)
	}
	for _, want := range []string{"usage: porta", "serve", "send", "chat"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("porta help: stdout does not mention %q:\n%s", want, r.stdout)
		}
	}
	tests := map[string][]string{
		"serve": {"usage: porta serve", "-mode", "-text", "-close-word", "-shutdown-word", "-once", "-framing", "-max-msg", "-max-conns", "-idle-timeout", "-drain-timeout", "-log-format"},
		"send":  {"usage: porta send", "ADDR [MESSAGE...]", "-framing", "-timeout", "-wait"},
		"chat":  {"usage: porta chat", "-timeout"},
	}
	for cmd, wants := range tests {
		for _, args := range [][]string{{"help", cmd}, {cmd, "-h"}, {cmd, "--help"}} {
			r := runPorta(t, "", args...)
			if r.code != 0 || r.stderr != "" {
				t.Errorf("porta %s: %v\nwant exit status 0 and no stderr", strings.Join(args, " "), r)
			}
			for _, want := range wants {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("porta %s: stdout does not mention %q:\n%s", strings.Join(args, " "), want, r.stdout)
				}
			}
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	r := runPorta(t, "", "frob")
	r.want(t, 2, "")
	if !strings.HasPrefix(r.stderr, "porta: unknown command \"frob\"\n") {
		t.Errorf("stderr: %q, want it to start with the unknown command", r.stderr)
	}
	r = runPorta(t, "")
	r.want(t, 2, "")
	if !strings.Contains(r.stderr, "usage: porta") {
		t.Errorf("stderr: %q, want the usage", r.stderr)
	}
}
