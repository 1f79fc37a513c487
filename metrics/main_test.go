package metrics_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves goroutines behind, such as a
// connection of a server that was not shut down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
