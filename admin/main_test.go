package admin_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves goroutines behind: an event
// stream that outlives its client, a connection, or a browser's reader.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
