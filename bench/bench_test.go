package bench_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/bench"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/portatest"
)

// runTimeout bounds every run of the tests, so that a generator that
// hangs fails its test instead of the whole suite.
const runTimeout = 20 * time.Second

// engines returns the engines to test on this system.
func engines() []string {
	if runtime.GOOS == "linux" {
		return []string{bench.EngineEpoll, bench.EngineGoroutine}
	}
	return []string{bench.EngineGoroutine}
}

// run runs cfg, with a short reply timeout unless cfg sets one, and fails
// the test if Run returns an error.
func run(t *testing.T, cfg bench.Config) *bench.Result {
	t.Helper()
	res, err := runErr(t, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func runErr(t *testing.T, cfg bench.Config) (*bench.Result, error) {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	res, err := bench.Run(ctx, cfg, nil)
	if ctx.Err() != nil {
		t.Fatalf("Run did not finish within %v", runTimeout)
	}
	return res, err
}

// wantOK fails the test if res counts any error or not exactly n
// messages.
func wantOK(t *testing.T, res *bench.Result, n int64) {
	t.Helper()
	if !res.OK() || res.Messages != n {
		var b strings.Builder
		res.WriteText(&b)
		t.Fatalf("got %d messages and %d errors, want %d and none:\n%s", res.Messages, res.ErrorCount, n, b.String())
	}
}

func TestEchoFramingsTransports(t *testing.T) {
	t.Parallel()
	for _, eng := range engines() {
		for _, f := range []frame.Framing{frame.Line, frame.Length, frame.Raw} {
			for _, network := range []string{"tcp", "unix"} {
				t.Run(eng+"/"+f.String()+"/"+network, func(t *testing.T) {
					t.Parallel()
					srv := portatest.Start(t, &porta.Server{Framing: f, ReadSize: 64 << 10}, network)
					res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Framing: f, Conns: 3, Pipeline: 4, Size: 100, Messages: 300})
					wantOK(t, res, 300)
					if res.Engine != eng || res.Connect.Count != 3 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
						t.Errorf("engine %q, %d connections, p50 %v, p99 %v, max %v", res.Engine, res.Connect.Count, res.Latency.P50, res.Latency.P99, res.Latency.Max)
					}
				})
			}
		}
	}
}

// TestAddrWithoutHost checks that ":PORT" reaches a server on the local
// system's IPv4 loopback, as net.Dial has it, with every engine.
func TestAddrWithoutHost(t *testing.T) {
	t.Parallel()
	srv := portatest.Start(t, &porta.Server{}, "tcp")
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Addr: ":" + port(t, srv.Addr), Engine: eng, Conns: 2, Messages: 20})
			wantOK(t, res, 20)
		})
	}
}

// port returns the port of a host:port address, with or without a
// scheme.
func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr[strings.LastIndex(addr, "/")+1:])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMessagesExact(t *testing.T) {
	t.Parallel()
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			srv := portatest.NewServer(t, nil)
			// 1001 does not divide by 7 connections: the quotas differ by one.
			res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 7, Pipeline: 3, Messages: 1001})
			wantOK(t, res, 1001)
			if got := srv.Stats().MessagesIn; got != 1001 {
				t.Errorf("the server received %d messages, want exactly 1001", got)
			}
		})
	}
}

func TestWarmupNotCounted(t *testing.T) {
	t.Parallel()
	srv := portatest.NewServer(t, nil)
	res := run(t, bench.Config{Addr: srv.Addr, Conns: 2, Messages: 50, Warmup: 100 * time.Millisecond})
	wantOK(t, res, 50)
	if got := srv.Stats().MessagesIn; got <= 50 {
		t.Errorf("the server received %d messages; the warmup should have sent more than the 50 measured", got)
	}
}

func TestExpectUpperAndText(t *testing.T) {
	t.Parallel()
	upper := portatest.NewServer(t, porta.Upper)
	text := portatest.NewServer(t, porta.Reply("accepted"))
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			wantOK(t, run(t, bench.Config{Addr: upper.Addr, Engine: eng, Conns: 2, Pipeline: 2, Messages: 100, Expect: "upper"}), 100)
			wantOK(t, run(t, bench.Config{Addr: text.Addr, Engine: eng, Conns: 2, Pipeline: 2, Messages: 100, Expect: "text:accepted"}), 100)

			// Expecting an echo from an upper-casing server: every reply is wrong.
			res := run(t, bench.Config{Addr: upper.Addr, Engine: eng, Conns: 2, Messages: 20})
			if res.Errors["wrong"] != 20 || res.Messages != 0 || len(res.Examples) == 0 {
				t.Fatalf("errors %v, %d messages, want 20 wrong and no messages", res.Errors, res.Messages)
			}
			ex := res.Examples[0]
			if ex.Kind != "wrong" || !strings.Contains(ex.Got, "ABC") || !strings.Contains(ex.Want, "abc") {
				t.Errorf("example %+v, want a wrong reply with its upper-case text and the expected lower-case one", ex)
			}
		})
	}
}

// perConn returns a handler whose replies depend on the connection's own
// history: serve gets the message's index on its connection.
func perConn(serve func(w porta.ResponseWriter, m *porta.Message, i int, state *[]byte)) porta.Handler {
	var mu sync.Mutex
	counts := map[string]int{}
	states := map[string]*[]byte{}
	return porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		key := m.RemoteAddr.String()
		mu.Lock()
		i := counts[key]
		counts[key]++
		st := states[key]
		if st == nil {
			st = new([]byte)
			states[key] = st
		}
		mu.Unlock()
		serve(w, m, i, st)
	})
}

func TestDetectsWrongReplies(t *testing.T) {
	t.Parallel()
	// Every 7th message of a connection gets its first byte changed.
	srv := portatest.NewServer(t, perConn(func(w porta.ResponseWriter, m *porta.Message, i int, _ *[]byte) {
		reply := bytes.Clone(m.Body)
		if i%7 == 6 {
			reply[0] = '#'
		}
		w.Write(reply)
	}))
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 2, Pipeline: 3, Messages: 70})
			if res.Errors["wrong"] != 10 || res.ErrorCount != 10 || res.Messages != 60 {
				t.Fatalf("errors %v, %d messages; want 10 wrong and 60 messages", res.Errors, res.Messages)
			}
			if ex := res.Examples[0]; ex.Seq%7 != 6 || !strings.HasPrefix(ex.Got, `"#`) {
				t.Errorf("first example %+v, want message 6 (mod 7) with a reply starting with '#'", ex)
			}
		})
	}
}

func TestDetectsReorderedReplies(t *testing.T) {
	t.Parallel()
	// Each pair of messages is answered in reverse order.
	srv := portatest.NewServer(t, perConn(func(w porta.ResponseWriter, m *porta.Message, i int, held *[]byte) {
		if i%2 == 0 {
			*held = bytes.Clone(m.Body)
			return
		}
		w.Write(m.Body)
		w.Write(*held)
	}))
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 2, Pipeline: 2, Messages: 40})
			if res.Errors["reordered"] != 40 || res.ErrorCount != 40 {
				t.Fatalf("errors %v, want 40 reordered", res.Errors)
			}
			if ex := res.Examples[0]; ex.Kind != "reordered" || !strings.Contains(ex.Err, "message 1") {
				t.Errorf("first example %+v, want the reply of message 1 where message 0's was due", ex)
			}
		})
	}
}

func TestDetectsMissingReplies(t *testing.T) {
	t.Parallel()
	// The 5th message of each connection gets no reply: the server hangs up.
	hangUp := portatest.NewServer(t, perConn(func(w porta.ResponseWriter, m *porta.Message, i int, _ *[]byte) {
		if i == 4 {
			w.Close()
			return
		}
		w.Write(m.Body)
	}))
	// The 3rd message of each connection gets no reply, ever.
	silent := portatest.NewServer(t, perConn(func(w porta.ResponseWriter, m *porta.Message, i int, _ *[]byte) {
		if i != 2 {
			w.Write(m.Body)
		}
	}))
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Addr: hangUp.Addr, Engine: eng, Conns: 3, Messages: 30})
			if res.Errors["closed"] != 3 || res.Errors["missing"] != 3 || res.Messages != 12 {
				t.Errorf("hang-up: errors %v, %d messages; want 3 closed connections, 3 missing replies and 12 messages", res.Errors, res.Messages)
			}
			start := time.Now()
			res = run(t, bench.Config{Addr: silent.Addr, Engine: eng, Conns: 2, Messages: 20, Timeout: 200 * time.Millisecond})
			if res.Errors["timeout"] != 2 || res.Errors["missing"] != 2 || res.Messages != 4 {
				t.Errorf("silence: errors %v, %d messages; want 2 timeouts, 2 missing replies and 4 messages", res.Errors, res.Messages)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("a 200ms reply timeout took %v to end the run", d)
			}
		})
	}
}

func TestDetectsExtraReplies(t *testing.T) {
	t.Parallel()
	// Every message is answered twice; the second reply of the last one
	// arrives when nothing is outstanding, during the hold.
	srv := portatest.NewServer(t, porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		w.Write(m.Body)
		w.Write(m.Body)
	}))
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 1, Messages: 1, Hold: 300 * time.Millisecond})
			if res.Errors["extra"] != 1 || res.ErrorCount != 1 {
				t.Errorf("errors %v, want 1 extra reply", res.Errors)
			}
		})
	}
}

func TestRatePaced(t *testing.T) {
	t.Parallel()
	srv := portatest.NewServer(t, nil)
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 4, Rate: 400, Duration: time.Second})
			elapsed := time.Since(start)
			// 400 messages are due; allow for a loaded machine, but not
			// for an unpaced generator, which would send thousands.
			if !res.OK() || res.Messages < 250 || res.Messages > 410 {
				t.Errorf("%d messages and %v errors in 1s at 400/s, want about 400 and none", res.Messages, res.Errors)
			}
			if elapsed < time.Second || elapsed > 10*time.Second {
				t.Errorf("a 1s run took %v", elapsed)
			}
			if res.Rate != 400 {
				t.Errorf("result rate %v, want 400", res.Rate)
			}
		})
	}
}

func TestRateLatencyFromSchedule(t *testing.T) {
	t.Parallel()
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			// The server stalls for 300ms once. In the open model, the
			// messages scheduled during the stall count their wait from
			// their scheduled time, so many have latencies near the stall,
			// not just one.
			var once sync.Once
			srv := portatest.NewServer(t, porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
				once.Do(func() { time.Sleep(300 * time.Millisecond) })
				w.Write(m.Body)
			}))
			res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 1, Rate: 200, Duration: time.Second})
			// About 60 of the ~200 messages were due during the stall, with
			// waits from 300ms down to nothing: the 90th percentile must
			// show it. A closed model would show one slow message and a
			// fast 90th percentile.
			if res.Latency.P90 < 50_000 {
				t.Errorf("p90 = %vµs after a 300ms stall at 200/s; want the stall counted for every message due in it", res.Latency.P90)
			}
			if res.Latency.Max < 250_000 {
				t.Errorf("max = %vµs, want the 300ms stall", res.Latency.Max)
			}
		})
	}
}

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	addr := refusingAddr(t)
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res, err := runErr(t, bench.Config{Addr: addr, Engine: eng, Conns: 3, Duration: time.Second})
			if !errors.Is(err, bench.ErrNoConnection) || !strings.Contains(err.Error(), "refused") {
				t.Fatalf("Run: %v, want ErrNoConnection saying refused", err)
			}
			if res == nil || res.Errors["connect_refused"] != 3 {
				t.Fatalf("result %+v, want 3 refused connections", res)
			}
		})
	}
}

// TestStalledServerTimesOut checks that a server that accepts and then
// reads nothing fails the connection with a timeout, even when the
// message outgrows every socket buffer, so that the write itself blocks,
// instead of holding the run past its duration and timeout.
func TestStalledServerTimesOut(t *testing.T) {
	t.Parallel()
	// A small receive buffer on the listener, which its connections
	// inherit: an 8 MiB message is far more than both ends hold.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return err
	}}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			res, _ := runErr(t, bench.Config{Addr: l.Addr().String(), Engine: eng, Conns: 1, Size: 8 << 20,
				Duration: time.Second, Timeout: 500 * time.Millisecond})
			if res == nil || res.Errors["timeout"] != 1 || res.Messages != 0 {
				t.Fatalf("result %+v, want the one connection timed out and no message answered", res)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("the run took %v against a stalled server, with a 1 s duration and a 500 ms timeout", d)
			}
		})
	}
}

// TestConnectRefusedEngineDoneFirst checks that a run whose connections
// all fail reports ErrNoConnection even when the engine is done before
// Run first looks at the connections' outcome, so that both are ready to
// Run's select at once. (The goroutine engine is then done; the epoll
// engine waits for Run's start signal, and the hook gives up waiting.)
// Not parallel: it sets a package hook.
func TestConnectRefusedEngineDoneFirst(t *testing.T) {
	bench.SetEngineStartedHook(t, func(done <-chan struct{}) {
		select {
		case <-done:
		case <-time.After(100 * time.Millisecond):
		}
	})
	addr := refusingAddr(t)
	for _, eng := range engines() {
		for i := range 20 { // select picks at random: 20 runs miss a wrong pick 1 time in 10^6
			res, err := runErr(t, bench.Config{Addr: addr, Engine: eng, Conns: 3, Duration: time.Second})
			if !errors.Is(err, bench.ErrNoConnection) || res == nil || res.Errors["connect_refused"] != 3 {
				t.Fatalf("%s, run %d: Run = %v, result %+v; want ErrNoConnection and 3 refused connections", eng, i, err, res)
			}
		}
	}
}

// TestOpenModelEndsOnTime: an open-model run ends when its duration is
// over, even when the writer's last wake-up of the reader comes just
// after the reader checked for the end (the reader must not then wait for
// a reply that will never come, for the whole reply timeout).
func TestOpenModelEndsOnTime(t *testing.T) {
	bench.HoldOpenReaderAtStop(t)
	srv := portatest.NewServer(t, nil)
	start := time.Now()
	res := run(t, bench.Config{Addr: srv.Addr, Engine: bench.EngineGoroutine, Conns: 1, Rate: 50,
		Duration: 300 * time.Millisecond, Timeout: 30 * time.Second})
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a 300 ms run with a 30 s reply timeout took %v", d)
	}
	if !res.OK() || res.Messages == 0 {
		t.Errorf("%d messages and %v errors, want some and none", res.Messages, res.Errors)
	}
}

// TestOpenModelServerGone: when the server closes the connection, the
// goroutine engine's open-model writer, asleep until its next scheduled
// message, stops at once and does not hold the run until then.
func TestOpenModelServerGone(t *testing.T) {
	t.Parallel()
	addr := lineServer(t, func(w net.Conn, _ []byte, _ int) { w.Close() })
	start := time.Now()
	res, err := runErr(t, bench.Config{Addr: addr, Engine: bench.EngineGoroutine, Conns: 1, Rate: 0.1, Messages: 10})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a run whose server closed at its first message took %v; its next message was due at 10 s", d)
	}
	if res.OK() {
		t.Errorf("the closed connection was not counted: errors %v", res.Errors)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	srv := portatest.NewServer(t, nil)
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
			defer cancel()
			start := time.Now()
			var phases []bench.Phase
			res, err := bench.Run(ctx, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 4, Duration: time.Minute},
				func(p bench.Progress) { phases = append(phases, p.Phase) })
			if !errors.Is(err, context.DeadlineExceeded) || res == nil || !res.Interrupted {
				t.Fatalf("Run: %v, want the context's error and an interrupted result", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("cancelled run took %v to return", d)
			}
			if res.ErrorCount != 0 || res.Messages == 0 || res.Seconds <= 0 || res.Seconds > 2 {
				t.Errorf("interrupted result: %d messages, errors %v, %vs", res.Messages, res.Errors, res.Seconds)
			}
			if !slices.Contains(phases, bench.PhaseRun) {
				t.Errorf("progress phases %v, want reports during the run", phases)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []bench.Config{
		{Addr: "127.0.0.1:1", Conns: -1},
		{Addr: "127.0.0.1:1", Pipeline: -2},
		{Addr: "127.0.0.1:1", Size: frame.MaxSizeLimit + 1},
		{Addr: "127.0.0.1:1", Rate: -1},
		{Addr: "127.0.0.1:1", Expect: "shout"},
		{Addr: "127.0.0.1:1", Engine: "threads"},
		{Addr: "udp://127.0.0.1:1"},
		{Addr: "127.0.0.1:1", Duration: -time.Second},
		{Addr: "127.0.0.1:1", Conns: bench.MaxConns + 1},
		{Addr: "127.0.0.1:1", Loops: bench.MaxLoops + 1},
		{Addr: "127.0.0.1:1", Conns: 1, Pipeline: 1 << 62},
		{Addr: "127.0.0.1:1", Conns: 1024, Pipeline: 1024, Size: 1 << 20},
		{Addr: "127.0.0.1:1", Rate: bench.MaxRate * 2},
	} {
		if _, err := bench.Run(context.Background(), cfg, nil); !errors.Is(err, bench.ErrBadConfig) {
			t.Errorf("Run(%+v) = %v, want ErrBadConfig", cfg, err)
		}
	}
	if _, err := bench.Run(context.Background(), bench.Config{Addr: "8000"}, nil); !errors.Is(err, porta.ErrBadAddress) {
		t.Errorf("Run with address 8000 = %v, want ErrBadAddress", err)
	}
}

func TestWriteText(t *testing.T) {
	t.Parallel()
	srv := portatest.NewServer(t, porta.Upper)
	res := run(t, bench.Config{Addr: srv.Addr, Conns: 2, Messages: 10, Label: "upper server"})
	var b strings.Builder
	if err := res.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"upper server", "2 connections", "pipeline 1", "64-byte line messages",
		"messages    0", "10 errors", "msgs/s", "MB/s", "p50", "p99.9", "connect", "wrong 10", "got  \"0000", "want \"0000"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report does not contain %q:\n%s", want, b.String())
		}
	}
}

// lineServer serves each connection with reply, which gets each line
// received (without its '\n') and its index on the connection and writes
// what the server sends back, in as many writes as it likes.
func lineServer(t *testing.T, reply func(w net.Conn, line []byte, i int)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				dec := frame.NewDecoder(c, frame.Line, 0)
				for i := 0; ; i++ {
					line, err := dec.Next()
					if err != nil {
						return
					}
					reply(c, line, i)
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestRepliesSplitAndCRLF(t *testing.T) {
	t.Parallel()
	// Message 3 of each connection comes back in two writes, with its last
	// byte changed: the check must see the change after half a reply.
	split := lineServer(t, func(w net.Conn, line []byte, i int) {
		if i != 3 {
			w.Write(append(bytes.Clone(line), '\n'))
			return
		}
		half := len(line) / 2
		w.Write(line[:half])
		time.Sleep(20 * time.Millisecond)
		rest := append(bytes.Clone(line[half:]), '\n')
		rest[len(rest)-2] = '#'
		w.Write(rest)
	})
	// Every reply ends in "\r\n", which line framing accepts.
	crlf := lineServer(t, func(w net.Conn, line []byte, _ int) {
		w.Write(append(bytes.Clone(line), '\r', '\n'))
	})
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Addr: split, Engine: eng, Conns: 2, Messages: 20})
			if res.Errors["wrong"] != 2 || res.ErrorCount != 2 || res.Messages != 18 {
				t.Errorf("split replies: errors %v, %d messages; want 2 wrong and 18 messages", res.Errors, res.Messages)
			}
			if ex := res.Examples[0]; ex.Seq != 3 || !strings.HasSuffix(ex.Got, `#"`) {
				t.Errorf("example %+v, want message 3 ending in '#'", ex)
			}
			wantOK(t, run(t, bench.Config{Addr: crlf, Engine: eng, Conns: 2, Pipeline: 4, Messages: 100}), 100)
		})
	}
}

// streamSocket returns a new stream socket of domain, close-on-exec,
// closed when the test ends.
func streamSocket(t *testing.T, domain int) int {
	t.Helper()
	syscall.ForkLock.RLock() // no child may inherit fd before it is close-on-exec
	fd, err := syscall.Socket(domain, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return fd
}

// refusingAddr returns a loopback TCP address that refuses connections
// for the rest of the test: a socket bound to it that does not listen,
// so that no other test's listener can take the port meanwhile.
func refusingAddr(t *testing.T) string {
	t.Helper()
	fd := streamSocket(t, syscall.AF_INET)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}

// TestServerGoneMeasuredTime checks that when every connection ends early
// (the server closes them after 300 ms of a 3 s run), the run ends then
// and its measured time and throughput are those of the 300 ms, not of
// the 3 s that never ran.
func TestServerGoneMeasuredTime(t *testing.T) {
	t.Parallel()
	srv := portatest.NewServer(t, perConn(func(w porta.ResponseWriter, m *porta.Message, _ int, first *[]byte) {
		if *first == nil {
			*first = []byte(time.Now().Format(time.RFC3339Nano))
		}
		if start, _ := time.Parse(time.RFC3339Nano, string(*first)); time.Since(start) > 300*time.Millisecond {
			w.Close()
			return
		}
		w.Write(m.Body)
	}))
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 2, Duration: 3 * time.Second})
			if res.Errors["closed"] != 2 || res.Messages == 0 {
				t.Fatalf("errors %v, %d messages; want 2 closed connections after some messages", res.Errors, res.Messages)
			}
			if res.Seconds < 0.3 || res.Seconds > 1.5 {
				t.Errorf("measured time %vs, want the 0.3s until the server closed the connections", res.Seconds)
			}
		})
	}
}

// TestReplyTooLong checks that a reply too long to be one counts as the
// wrong reply of the message it answers, and only the messages after it
// as missing: with 3 outstanding, 1 wrong and 2 missing.
func TestReplyTooLong(t *testing.T) {
	t.Parallel()
	addr := lineServer(t, func(w net.Conn, _ []byte, i int) {
		if i == 0 {
			w.Write(bytes.Repeat([]byte("x"), 1<<20)) // no '\n' in sight
		}
	})
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Addr: addr, Engine: eng, Conns: 2, Pipeline: 3, Messages: 30})
			if res.Errors["wrong"] != 2 || res.Errors["missing"] != 4 || res.ErrorCount != 6 {
				t.Fatalf("errors %v, want 2 wrong and 4 missing", res.Errors)
			}
			if ex := res.Examples[0]; ex.Kind != "wrong" || ex.Seq != 0 || !strings.Contains(ex.Err, "longer than") {
				t.Errorf("first example %+v, want message 0's reply too long", ex)
			}
		})
	}
}

// TestLongestDurations checks that a warmup and a duration near the
// longest a time.Duration holds, whose sum is past it, still mean a run
// that goes on until cancelled, not one that has ended before it began.
func TestLongestDurations(t *testing.T) {
	t.Parallel()
	srv := portatest.NewServer(t, nil)
	for _, eng := range engines() {
		t.Run(eng, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			const years200 = 200 * 365 * 24 * time.Hour
			res, err := bench.Run(ctx, bench.Config{Addr: srv.Addr, Engine: eng, Conns: 1, Warmup: years200, Duration: years200}, nil)
			if !errors.Is(err, context.DeadlineExceeded) || res == nil || !res.Interrupted || !res.OK() {
				t.Fatalf("Run: %v, result %+v; want it interrupted by the context, without errors", err, res)
			}
		})
	}
}
