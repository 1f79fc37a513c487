package bench_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves goroutines behind: a connection,
// an event loop or a writer that outlives its run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
