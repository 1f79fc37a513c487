// Package parkdelay holds how long porta's connections wait for input
// before they park (Linux: the goroutine ends and the server's poller
// watches the socket; see docs/concurrency.md).
//
// It is internal so that programs that import porta cannot change it. Test
// binaries can, for a whole run, through the environment variable EnvVar:
// every test that leaves a connection idle for a moment then goes through
// parking and resuming. Other binaries never read the variable.
package parkdelay

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// EnvVar names the environment variable that FromEnv reads.
const EnvVar = "PORTA_TEST_PARK_AFTER"

// Default is how long a connection waits for input before it parks.
// Change it only before any server starts.
var Default = time.Second

// LoopsOff, set with Default from EnvVar, turns the servers' event loops
// off for the run: the connections of handlers that never block then wait
// on goroutines and park too, so that every test goes through parking.
var LoopsOff = false

// In a test binary (testing.Testing), before any test starts, Default
// comes from EnvVar if it is set; an invalid value stops the run.
func init() {
	if !testing.Testing() {
		return
	}
	if err := FromEnv(); err != nil {
		panic(err)
	}
}

// FromEnv sets Default from the environment variable EnvVar, a positive
// duration such as "1ms", and LoopsOff, if it is set. .ci/run runs the
// tests a second time with it set.
func FromEnv() error {
	v := os.Getenv(EnvVar)
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%s=%q: want a positive duration such as 1ms", EnvVar, v)
	}
	Default, LoopsOff = d, true
	return nil
}
