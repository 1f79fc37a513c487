package porta

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/porta-project/porta/frame"
)

// TestHotPathAllocs checks the issue's "0 allocations per message in
// steady state" through a real socket, with the connection waiting in the
// poller between batches (lock step) or not (pipelined), for line and len
// framing: the whole process, client included, allocates less than one
// object per hundred messages.
func TestHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers on purpose; .ci/run runs this test without it")
	}
	for _, f := range []frame.Framing{frame.Line, frame.Length} {
		for _, depth := range []int{1, 16} {
			t.Run(f.String()+"/"+map[int]string{1: "lockstep", 16: "pipelined"}[depth], func(t *testing.T) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := &Server{Framing: f}
				done := make(chan struct{})
				go func() { srv.Serve(l); close(done) }()
				defer func() { srv.Close(); <-done }()
				c, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))

				var batch []byte
				for range depth {
					batch = frame.Append(batch, f, bytes.Repeat([]byte("m"), 63))
				}
				reply := make([]byte, len(batch))
				exchange := func() {
					if _, err := c.Write(batch); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(c, reply); err != nil || !bytes.Equal(reply, batch) {
						t.Fatalf("reply %q, %v; want the batch back", reply, err)
					}
				}
				for range 100 { // warm up: pools, buffers, the connection's state
					exchange()
				}
				const batches = 2000
				allocs := testing.AllocsPerRun(1, func() {
					for range batches {
						exchange()
					}
				})
				if perMsg := allocs / (batches * float64(depth)); perMsg >= 0.01 {
					t.Errorf("%.0f allocations in %d messages (%.3f per message), want 0 in steady state", allocs, batches*depth, perMsg)
				}
			})
		}
	}
}
