package reliability_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// T8: panic isolation. A handler that panics on a magic message must cost
// only that connection: it is closed (after the replies written before
// the panic), Stats().Panics counts it, its stack is logged exactly once,
// the other connections never notice, and a thousand panics in a row leave
// no goroutine, descriptor or heap behind.
const (
	t8Magic     = "boom"
	t8Others    = 100                   // well-behaved connections throughout
	t8Interval  = 50 * time.Millisecond // between their requests: 2,000 requests/s in all
	t8Panics    = 1000
	t8HeapBound = 5 * sizeMiB
)

// t8Handler echoes, and panics on the magic message.
// t8Handler never blocks, and is marked so: in the first pass of the
// suite its panics are recovered by the server's event loops, in the
// parking pass (loops off) by the connections' goroutines.
var t8Handler = porta.NonBlocking(porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
	if string(m.Body) == t8Magic {
		panic("t8: the handler panics on " + t8Magic)
	}
	w.Write(m.Body)
}))

func TestT8PanicIsolation(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) { t8PanicIsolation(t, network) })
	}
}

func t8PanicIsolation(t *testing.T, network string) {
	// Keep the first few panic records; count every record.
	logs := newLogCapture(5, "handler panic")
	srv := &porta.Server{Handler: t8Handler, Framing: frame.Line, Logger: logs.logger()}
	s := startServer(t, srv, network)

	others := startT8Others(t, s.Addr)
	time.Sleep(100 * time.Millisecond) // every other connection is open and busy
	res := baseline(t)
	heap0 := heapAfterGC()
	before := srv.Stats()

	// One panic, after a reply: the reply arrives, then the end of stream.
	nc := dialRaw(t, s.Addr)
	nc.Write([]byte("hello\n" + t8Magic + "\nnever served\n"))
	sent := time.Now()
	got, err := io.ReadAll(nc)
	if err != nil || string(got) != "hello\n" {
		t.Errorf("panicking connection got %q, %v; want \"hello\\n\" and a clean end of stream", got, err)
	}
	if d := time.Since(sent); d > time.Second {
		t.Errorf("panicking connection closed after %v, want within 1 s", d)
	}
	peer := nc.LocalAddr().String()
	nc.Close()
	waitOpen(t, srv, before.ConnsOpen)
	st := srv.Stats()
	if st.Panics-before.Panics != 1 || st.Closed[porta.ClosePanic]-before.Closed[porta.ClosePanic] != 1 {
		t.Errorf("after one panic: Stats().Panics grew by %d, Closed[panic] by %d; want 1 and 1",
			st.Panics-before.Panics, st.Closed[porta.ClosePanic]-before.Closed[porta.ClosePanic])
	}
	if st.MessagesIn-before.MessagesIn < 2 {
		t.Errorf("Stats().MessagesIn grew by %d, want the two messages served", st.MessagesIn-before.MessagesIn)
	}
	recs := logs.since(0, "handler panic")
	if len(recs) != 1 {
		t.Fatalf("%d panic records logged, want 1", len(recs))
	}
	checkPanicRecord(t, recs[0], network, peer)

	// A thousand panics in a row.
	start := time.Now()
	a, _ := porta.ParseAddr(s.Addr)
	for i := range t8Panics {
		// Not dialRaw: its cleanup would keep every connection on the heap.
		nc, err := net.DialTimeout(a.Network, a.Address, 5*time.Second)
		if err != nil {
			t.Fatalf("panic %d: %v", i, err)
		}
		nc.SetDeadline(time.Now().Add(ioTimeout))
		nc.Write([]byte(t8Magic + "\n"))
		got, err := io.ReadAll(nc)
		nc.Close()
		if err != nil || len(got) > 0 {
			t.Fatalf("panic %d: got %q, %v; want a clean end of stream", i, got, err)
		}
	}
	elapsed := time.Since(start)
	waitOpen(t, srv, before.ConnsOpen)
	now := res.waitBack(t, 2*time.Second, fmt.Sprintf("goroutines and descriptors after %d panics", t8Panics+1))
	heapGrowth := growth(heap0, heapAfterGC())
	st = srv.Stats()
	t.Logf("%s: %d panics in %v; goroutines %d (baseline %d), fds %d (baseline %d), heap growth %.2f MiB",
		network, t8Panics+1, elapsed.Round(time.Millisecond), now.goroutines, res.goroutines, now.fds, res.fds, float64(heapGrowth)/sizeMiB)
	if heapGrowth >= t8HeapBound {
		t.Errorf("heap grew by %d bytes after %d panics, want < %d", heapGrowth, t8Panics+1, t8HeapBound)
	}
	want := uint64(t8Panics + 1)
	if p, c, l := st.Panics-before.Panics, st.Closed[porta.ClosePanic]-before.Closed[porta.ClosePanic], logs.count("handler panic"); p != want || c != want || l != int(want) {
		t.Errorf("Stats().Panics grew by %d, Closed[panic] by %d, panic records %d; want %d each", p, c, l, want)
	}
	for _, r := range porta.CloseReasons() {
		if r != porta.ClosePanic && r != porta.ClosePeer && st.Closed[r] != before.Closed[r] {
			t.Errorf("Stats().Closed[%v] grew by %d", r, st.Closed[r]-before.Closed[r])
		}
	}
	for _, msg := range []string{"accept error; retrying", "connection refused"} {
		if n := logs.count(msg); n > 0 {
			t.Errorf("%d %q records", n, msg)
		}
	}
	if st.Closed[porta.ClosePeer] != before.Closed[porta.ClosePeer] {
		t.Errorf("%d other connections closed", st.Closed[porta.ClosePeer]-before.Closed[porta.ClosePeer])
	}
	others.stop(t)
}

// checkPanicRecord checks the log record of a panic: the peer, the panic
// value, and one stack (one goroutine) that names the handler.
func checkPanicRecord(t *testing.T, r logRecord, network, peer string) {
	t.Helper()
	if network == "tcp" && r.str("peer") != peer {
		t.Errorf("panic record peer %q, want %q", r.str("peer"), peer)
	}
	if !strings.Contains(r.str("panic"), "the handler panics on "+t8Magic) {
		t.Errorf("panic record value %q", r.str("panic"))
	}
	stack := r.str("stack")
	headers := strings.Count("\n"+stack, "\ngoroutine ") // "goroutine 7 [running]:"
	if headers != 1 || !strings.Contains(stack, "t8_panic_test.go") {
		t.Errorf("panic record stack is not one goroutine's stack through the handler:\n%s", stack)
	}
}

// t8Clients are the well-behaved connections of T8.
type t8Clients struct {
	stopc    chan struct{}
	wg       sync.WaitGroup
	requests atomic.Int64
	errs     atomic.Int64
	mu       sync.Mutex
	firstErr error
}

// startT8Others connects t8Others clients that each exchange a message
// every t8Interval until stop.
func startT8Others(t *testing.T, addr string) *t8Clients {
	c := &t8Clients{stopc: make(chan struct{})}
	d := porta.Dialer{Framing: frame.Line, Timeout: 5 * time.Second}
	for i := range t8Others {
		cc, err := d.DialContext(context.Background(), addr)
		if err != nil {
			t.Fatalf("other client %d: %v", i, err)
		}
		c.wg.Go(func() {
			defer cc.Close()
			tick := time.NewTicker(t8Interval)
			defer tick.Stop()
			for j := 0; ; j++ {
				select {
				case <-c.stopc:
					return
				case <-tick.C:
				}
				msg := []byte(fmt.Sprintf("other %d %d", i, j))
				cc.SetDeadline(time.Now().Add(controlTimeout))
				reply, err := cc.Exchange(msg)
				c.requests.Add(1)
				if err == nil && !bytes.Equal(reply, msg) {
					err = fmt.Errorf("reply %q to %q", reply, msg)
				}
				if err != nil {
					c.errs.Add(1)
					c.mu.Lock()
					if c.firstErr == nil {
						c.firstErr = err
					}
					c.mu.Unlock()
					return
				}
			}
		})
	}
	t.Cleanup(func() { c.halt() })
	return c
}

func (c *t8Clients) halt() {
	select {
	case <-c.stopc:
	default:
		close(c.stopc)
	}
	c.wg.Wait()
}

// stop ends the clients and fails the test if any saw an error.
func (c *t8Clients) stop(t *testing.T) {
	t.Helper()
	c.halt()
	t.Logf("%d other connections made %d requests, %d errors", t8Others, c.requests.Load(), c.errs.Load())
	if c.errs.Load() > 0 {
		t.Errorf("other connections saw %d errors; first: %v", c.errs.Load(), c.firstErr)
	}
	if c.requests.Load() < t8Others {
		t.Errorf("other connections made only %d requests", c.requests.Load())
	}
}

// TestT8PanicUDP: over UDP a panic costs only its datagram: no reply,
// counted, logged once, and the socket serves the next datagram.
func TestT8PanicUDP(t *testing.T) {
	logs := newLogCapture(5, "handler panic")
	srv := &porta.Server{Handler: t8Handler, Logger: logs.logger()}
	s := startServer(t, srv, "udp")
	c := dialUDP(t, s.Addr)
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	c.Write([]byte(t8Magic))
	buf := make([]byte, 64)
	if n, err := c.Read(buf); !isTimeout(err) {
		t.Errorf("reply to the panicking datagram: %q, %v; want none", buf[:n], err)
	}
	checkBytes(t, "reply after the panic", udpExchange(t, c, []byte("hello")), []byte("hello"))
	if p := srv.Stats().Panics; p != 1 {
		t.Errorf("Stats().Panics = %d, want 1", p)
	}
	recs := logs.since(0, "handler panic")
	if len(recs) != 1 {
		t.Fatalf("%d panic records, want 1", len(recs))
	}
	checkPanicRecord(t, recs[0], "udp", "")
}
