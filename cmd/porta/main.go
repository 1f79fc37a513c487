// Command porta is a message server, client and load generator for TCP,
// Unix and UDP sockets.
//
//	porta serve [flags] [ADDR...]   serve messages (default 127.0.0.1:8000)
//	porta send  [flags] ADDR [MESSAGE...]
//	porta chat  [flags] ADDR
//	porta bench [flags] ADDR        load a server and report throughput and latency
//
// Run "porta help COMMAND" for a command's flags; docs/cli.md has them all.
// Exit status: 0 success, 1 failure, 2 usage error.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// A command is one of porta's subcommands.
type command struct {
	name    string
	summary string
	run     func(env *env, args []string) int
}

// commands is the table of subcommands, in the order help lists them.
var commands = []command{
	{"serve", "serve messages on one or more addresses", runServe},
	{"send", "send messages and print the replies", runSend},
	{"chat", "talk to a server interactively", runChat},
	{"bench", "generate load and check every reply", runBench},
}

// env is what a command may touch of the process: its streams, so that
// tests can run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func main() {
	os.Exit(run(&env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

func run(e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			return run(e, []string{args[1], "-h"})
		}
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "porta: unknown command %q\n", name)
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: porta COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'porta help COMMAND' for a command's flags.")
}
