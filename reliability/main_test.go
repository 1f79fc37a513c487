package reliability_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves goroutines behind (a connection
// loop, a lingering close, a control client, a proxy link), then removes
// the porta binary built for the process-level tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		procCleanup()
		os.Exit(code)
	}))
}
