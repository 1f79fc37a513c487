package bench_test

import (
	"errors"
	"testing"
	"time"

	"github.com/porta-project/porta/bench"
	"github.com/porta-project/porta/portatest"
)

// TestRateExtremes checks that the open model keeps to its duration at
// the slowest and fastest rates: a rate so low that a connection's second
// message falls past the range of the clock, and the highest rate
// accepted, far more than any server answers, where the messages due
// pile up faster than they can be sent.
func TestRateExtremes(t *testing.T) {
	t.Parallel()
	srv := portatest.NewServer(t, nil)
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 2, Rate: 1e-12, Duration: 300 * time.Millisecond})
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("a 300 ms run at 1e-12 msgs/s took %v", d)
			}
			// Only the first connection's first message is due in time.
			wantOK(t, res, 1)

			start = time.Now()
			res = run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 2, Rate: bench.MaxRate, Duration: 500 * time.Millisecond})
			if d := time.Since(start); d > 2500*time.Millisecond {
				t.Errorf("a 500 ms run at %g msgs/s took %v", bench.MaxRate, d)
			}
			if !res.OK() || res.MsgsPerSec < 1000 {
				t.Errorf("%v msgs/s and errors %v at %g msgs/s; want as many as the server answers, and no error", res.MsgsPerSec, res.Errors, bench.MaxRate)
			}
		})
	}
	if _, err := runErr(t, bench.Config{Addr: srv.Addr, Rate: bench.MaxRate * 10}); !errors.Is(err, bench.ErrBadConfig) {
		t.Errorf("Run at %g msgs/s: %v, want ErrBadConfig", bench.MaxRate*10, err)
	}
}
