package portatest_test

import "github.com/porta-project/porta/internal/parkdelay"

// PORTA_TEST_PARK_AFTER shortens how long the servers these tests start
// wait before their idle connections park (.ci/run runs the suite once
// more with 1ms).
func init() {
	if err := parkdelay.FromEnv(); err != nil {
		panic(err)
	}
}
