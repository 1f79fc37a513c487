//go:build unix

package main

import (
	"os"
	"syscall"
)

// stopSignals end an interactive chat, which catches them to restore the
// terminal before it exits 1. Ctrl-C sends none: the terminal is raw.
var stopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGINT}

// resizeSignals tell an interactive chat that the terminal's size has
// changed.
var resizeSignals = []os.Signal{syscall.SIGWINCH}
