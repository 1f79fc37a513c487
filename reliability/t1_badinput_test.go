package reliability_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// T1: the bad-input matrix. Every case of the plan's table runs against a
// server per framing (line, len, raw, where the case means something for
// it) and transport (tcp, unix), while a control client exchanges 200
// messages/s with the same server. Per case:
//
//	(a) the reply is exact: the specific ERR naming the limit, or what the
//	    framing and handler define; the server closes within 1 s of the
//	    offending input (idle case: idle timeout + 1 s);
//	(b) case 3 with 100 parallel connections: heap growth, after GC, below
//	    100 x 2 x 64 KiB while they are held and while they stream;
//	(c) the control client sees 0 errors (and its p99 is reported);
//	(d) goroutines back to baseline +2 and descriptors to baseline +0
//	    within 2 s of the case's connections closing;
//	(e) Stats().Closed grows by exactly the expected amount per reason,
//	    and the server logs one "connection closed" per connection with
//	    that reason and the expected message and byte counts.
//
// In (a), a server that hangs up on a peer still sending (cases 2-3) sends
// the ERR and its end of stream within 1 s, then lingers up to t1Linger
// more, reading, before its own close: closing with unread input would
// reset the connection and could destroy the ERR before the peer reads it.
//
// The server answers with HangUpOn("close", "bye", Upper), so that invalid
// UTF-8 (case 9) and the close word (case 18) mean something. Case 3's
// hundred connections run on a server of their own with a 10 s idle
// timeout (held mid-frame while the heap is measured, they would hit the
// shared server's 1 s one), and case 20 on a TLS listener (TCP only; Line
// only, as no framing applies before the handshake). Cases 22 and 23 wait
// for PROXY protocol support (T10); case 21 checks meanwhile that a PROXY
// header is plain data.
const (
	t1Max         = frame.DefaultMaxSize // the message limit: the default, 64 KiB
	t1Idle        = time.Second          // the server's idle timeout
	t1CloseWithin = time.Second          // (a)
	t1Settle      = settleTimeout        // (d)
	t1StreamMax   = 100 * sizeMiB        // case 3's stream, if nothing stops it
	t1Parallel    = 100                  // (b)'s connections
	// t1Linger is how much later than the end of stream the client sees
	// the server may finish closing a connection it hung up on while the
	// peer kept sending: it reads and discards up to 1 MiB more first, so
	// that the peer can read its last replies (see closeGracefully).
	t1Linger = time.Second
)

var (
	t1TooLong = fmt.Sprintf("ERR message too long (limit %d bytes)", t1Max)
	t1Framing = []frame.Framing{frame.Line, frame.Length, frame.Raw}
)

func t1Handler() porta.Handler { return porta.HangUpOn("close", "bye", porta.Upper) }

// A t1Case is one row of the table. run performs it and declares the
// connections it expects to end, and why, with t1Env.expect.
type t1Case struct {
	num      int
	name     string
	framings []frame.Framing // where the case is meaningful; nil: all three
	skip     string          // why the case cannot run yet
	ownIdle  time.Duration   // if set, run on a server of its own with this idle timeout
	tls      bool            // run on a TLS server of its own (TCP only)
	run      func(e *t1Env)
}

func TestT1BadInput(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		for _, f := range t1Framing {
			t.Run(network+"/"+f.String(), func(t *testing.T) { t1Matrix(t, network, f) })
		}
	}
}

// t1Matrix runs every case meaningful for framing f on one server, or on
// a server of its own for a case that needs other timeouts or TLS.
func t1Matrix(t *testing.T, network string, f frame.Framing) {
	shared := startT1Server(t, network, f, t1Idle, false)
	for _, c := range t1Cases() {
		if c.framings != nil && !slices.Contains(c.framings, f) {
			continue
		}
		t.Run(fmt.Sprintf("%02d_%s", c.num, c.name), func(t *testing.T) {
			if c.skip != "" {
				t.Skip(c.skip)
			}
			if c.tls && network != "tcp" {
				t.Skip("TLS is served over TCP only")
			}
			s := shared
			if c.ownIdle > 0 || c.tls {
				s = startT1Server(t, network, f, max(c.ownIdle, t1Idle), c.tls)
			}
			e := &t1Env{t: t, srv: s.srv, addr: s.addr, f: f, network: network, logs: s.logs, openBase: s.openBase}
			e.runCase(c)
			if s != shared {
				checkControl(t, c.name, s.base, s.ctl.stop())
			}
		})
	}
	checkControl(t, network+"/"+f.String(), shared.base, shared.ctl.stop())
}

// t1Server is a server of the matrix with its control client.
type t1Server struct {
	srv      *porta.Server
	addr     string
	logs     *logCapture
	ctl      *controlClient
	base     controlStats // the control client's baseline
	openBase int64        // open connections: the control client's
}

// startT1Server starts a T1 server with framing f and the idle timeout,
// over TLS if asked, and its control client, whose baseline it measures.
func startT1Server(t *testing.T, network string, f frame.Framing, idle time.Duration, useTLS bool) *t1Server {
	s := &t1Server{logs: newLogCapture(0, "connection closed")}
	s.srv = &porta.Server{
		Handler:     t1Handler(),
		Framing:     f,
		IdleTimeout: idle,
		Logger:      s.logs.logger(),
	}
	var clientTLS *tls.Config
	if useTLS {
		s.addr, clientTLS = startTLSServer(t, s.srv)
	} else {
		s.addr = startServer(t, s.srv, network).Addr
	}
	s.ctl = startControlTLS(t, s.addr, f, clientTLS)
	s.base = controlBaseline(s.ctl, 500*time.Millisecond)
	s.openBase = s.srv.Stats().ConnsOpen
	return s
}

// t1Env is what a case runs against.
type t1Env struct {
	t        *testing.T
	srv      *porta.Server
	addr     string
	f        frame.Framing
	network  string
	logs     *logCapture
	logStart int   // the first "connection closed" record of the case
	openBase int64 // ConnsOpen without the case's connections
	want     []t1Close
}

// t1Close is one connection the case expects to end.
type t1Close struct {
	reason porta.CloseReason
	msgs   int // messages the server served on it; -1: not checked
	after  time.Time
	within time.Duration // the server must close it this soon after after
}

// expect declares that one connection of the case ends with reason, after
// serving msgs messages (-1: any number), within d of at.
func (e *t1Env) expect(reason porta.CloseReason, msgs int, at time.Time, d time.Duration) {
	e.want = append(e.want, t1Close{reason: reason, msgs: msgs, after: at, within: d})
}

// runCase runs c and checks criteria (a), (d) and (e) for it.
func (e *t1Env) runCase(c t1Case) {
	t := e.t
	res := baseline(t)
	before := e.srv.Stats()
	e.logStart = e.logs.kept()
	c.run(e)
	ran := time.Now()

	// The client side of every connection is closed by now: wait for the
	// server's side, then for goroutines and descriptors.
	var recs []logRecord
	deadline := ran.Add(t1Settle)
	for {
		recs = e.logs.since(e.logStart, "connection closed")
		if len(recs) >= len(e.want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	for time.Now().Before(deadline) && e.srv.Stats().ConnsOpen > e.openBase {
		time.Sleep(2 * time.Millisecond)
	}
	res.waitBack(t, max(time.Until(deadline), 0), "goroutines and descriptors after the case")
	after := e.srv.Stats()

	if len(recs) != len(e.want) {
		t.Errorf("server logged %d closed connections, want %d", len(recs), len(e.want))
	}
	// (e): the counters by reason, and each connection's log record. The
	// records come in the order the server closed them; match each to a
	// wanted close with the same reason.
	wantBy := make(map[porta.CloseReason]uint64)
	for _, w := range e.want {
		wantBy[w.reason]++
	}
	for _, r := range porta.CloseReasons() {
		if got := after.Closed[r] - before.Closed[r]; got != wantBy[r] {
			t.Errorf("Stats().Closed[%v] grew by %d, want %d", r, got, wantBy[r])
		}
	}
	if after.Panics != before.Panics {
		t.Errorf("Stats().Panics grew by %d", after.Panics-before.Panics)
	}
	used := make([]bool, len(recs))
	for _, w := range e.want {
		i := findUnused(recs, used, func(r logRecord) bool {
			return r.str("reason") == w.reason.String() && (w.msgs < 0 || r.uint("messages") == uint64(w.msgs))
		})
		if i < 0 {
			t.Errorf("no %q close serving %d messages among the logged closes %s", w.reason, w.msgs, describeCloses(recs))
			continue
		}
		used[i] = true
		if late := recs[i].Time.Sub(w.after); late > w.within {
			t.Errorf("%v close came %v after the input that caused it, want within %v", w.reason, late.Round(time.Millisecond), w.within)
		}
	}
}

func findUnused(recs []logRecord, used []bool, f func(logRecord) bool) int {
	for i, r := range recs {
		if !used[i] && f(r) {
			return i
		}
	}
	return -1
}

func describeCloses(recs []logRecord) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "[%s msgs=%d in=%d out=%d] ", r.str("reason"), r.uint("messages"), r.uint("bytes_in"), r.uint("bytes_out"))
	}
	return b.String()
}

// dial opens a plain connection to the server.
func (e *t1Env) dial() net.Conn { return dialRaw(e.t, e.addr) }

// frames frames msgs in the server's framing.
func (e *t1Env) frames(msgs ...string) []byte {
	var b []byte
	for _, m := range msgs {
		b = frame.Append(b, e.f, []byte(m))
	}
	return b
}
