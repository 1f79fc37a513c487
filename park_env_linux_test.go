package porta

import (
	"fmt"
	"os"
	"time"
)

// PORTA_TEST_PARK_AFTER sets how long connections wait before they park,
// for a whole run of this package's tests (.ci/run runs them once more
// with 1ms, so that every test also exercises parking and resuming).
func init() {
	v := os.Getenv("PORTA_TEST_PARK_AFTER")
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		panic(fmt.Sprintf("PORTA_TEST_PARK_AFTER=%q: want a positive duration", v))
	}
	defaultParkAfter = d
}
