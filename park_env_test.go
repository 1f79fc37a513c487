package porta

import "github.com/porta-project/porta/internal/parkdelay"

// PORTA_TEST_PARK_AFTER sets how long connections wait before they park,
// for a whole run of this package's tests (.ci/run runs the suite once
// more with 1ms, so that every test also exercises parking and resuming).
func init() {
	if err := parkdelay.FromEnv(); err != nil {
		panic(err)
	}
}
