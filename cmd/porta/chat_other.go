//go:build !unix

package main

import "os"

// stopSignals end an interactive chat, which catches them to restore the
// terminal before it exits 1.
var stopSignals = []os.Signal{os.Interrupt}

// resizeSignals tell an interactive chat that the terminal's size has
// changed: none outside Unix.
var resizeSignals []os.Signal
