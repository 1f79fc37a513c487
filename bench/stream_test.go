package bench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/porta-project/porta/frame"
)

// newTestSession returns a started session for cfg, as an engine makes
// one, with its plan begun.
func newTestSession(t testing.TB, cfg Config) *session {
	t.Helper()
	s, err := cfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	p := newPlan(s)
	p.begin()
	ss := newSession(p, newRecorder(false), 0)
	ss.started = true
	return ss
}

func TestCounter(t *testing.T) {
	for _, size := range []int{1, 3, 12, 64} {
		c := newCounter(size)
		n := min(size, seqDigits)
		wrap := 1
		for range n {
			wrap *= 10
		}
		for k := range 2345 {
			got := make([]byte, n)
			c.put(got)
			if want := fmt.Sprintf("%0*d", n, k%wrap); string(got) != want {
				t.Fatalf("size %d: message %d has digits %q, want %q", size, k, got, want)
			}
			c.next()
		}
	}
	// The last carry: 999999999999 wraps to zero.
	c := newCounter(seqDigits)
	c.load([]byte("999999999998"))
	c.next()
	c.next()
	got := make([]byte, seqDigits)
	c.put(got)
	if string(got) != zeros {
		t.Fatalf("after 999999999999 the counter shows %q, want %q", got, zeros)
	}
}

// replyTo returns what a server that answers as s expects sends for
// sent, whole framed messages of s.
func replyTo(s *settings, sent []byte) []byte {
	var out []byte
	at := 0
	if s.Framing == frame.Length {
		at = frame.HeaderLen
	}
	for ; len(sent) > 0; sent = sent[s.wireSize:] {
		body := sent[at : at+s.Size]
		switch s.expect {
		case expectUpper:
			body = bytes.ToUpper(body)
		case expectText:
			body = s.text
		}
		out = frame.Append(out, s.Framing, body)
	}
	return out
}

// TestStreamChunks feeds a session the replies to what it sends, cut into
// reads of every size, with the pipeline's ring wrapping at every offset,
// and checks that every reply is counted; then the same with one byte
// changed, which must stop the stream at the reply that holds it, with
// the replies before it counted and the bytes of that reply handed on
// whole (the bytes matched of it, then the rest of the read).
func TestStreamChunks(t *testing.T) {
	for _, f := range []frame.Framing{frame.Line, frame.Length, frame.Raw} {
		for _, expect := range []string{"echo", "upper", "text:accepted"} {
			for _, bad := range []int{-1, 0, 1, 13, 20, 21, 22, 100, 333, 1000} {
				name := fmt.Sprintf("%v/%s/bad=%d", f, expect, bad)
				cfg := Config{Addr: "127.0.0.1:1", Framing: f, Expect: expect, Pipeline: 3, Size: 20}
				ss := newTestSession(t, cfg)
				rng := rand.New(rand.NewPCG(1, uint64(bad+2)))
				var all []byte    // the replies to all messages sent, one byte changed
				fed, sent := 0, 0 // bytes of all fed; messages sent
				hit := false
				r := ss.p.tmpl.replyLen
				for round := 0; round < 400 && ss.recvd < 200; round++ {
					now := ss.p.now()
					out := ss.appendMessages(nil, now)
					sent += len(out) / ss.p.wireSize
					all = append(all, replyTo(ss.p.settings, out)...)
					if bad >= 0 && bad < len(all) && !hit {
						all[bad] ^= 0x40
						hit = true
					}
					end := fed + rng.IntN(len(all)-fed) + 1
					chunk := all[fed:end]
					wasMatched := ss.rawMatched
					n, ok := ss.stream(chunk, now)
					if bad >= fed && bad < end {
						// The chunk holds the changed byte.
						if ok {
							t.Fatalf("%s: the changed byte %d went unnoticed", name, bad)
						}
						start := bad / r * r // the changed reply's
						if got := fed + n - ss.rawMatched; got != start {
							t.Fatalf("%s: handed on the bytes from %d, want %d (the start of the changed reply)", name, got, start)
						}
						if handed := append(bytes.Clone(ss.partial()), chunk[n:]...); !bytes.Equal(handed, all[start:end]) {
							t.Fatalf("%s: handed on %q, want %q", name, handed, all[start:end])
						}
						if got := ss.rec.messages; got != int64(bad/r) {
							t.Fatalf("%s: %d replies counted before the changed one, want %d", name, got, bad/r)
						}
						break
					}
					if !ok || n != len(chunk) {
						t.Fatalf("%s: round %d: stream matched %d of %d bytes (%v), %d of a reply matched before", name, round, n, len(chunk), ok, wasMatched)
					}
					fed = end
					if got, want := ss.rec.messages, int64(fed/r); got != want {
						t.Fatalf("%s: %d replies counted after %d bytes, want %d", name, got, fed, want)
					}
				}
				if bad >= 0 && !hit {
					t.Fatalf("%s: the run ended before byte %d", name, bad)
				}
				if bad < 0 && (ss.recvd < 200 || ss.rec.counts != [numKinds]int64{}) {
					t.Fatalf("%s: %d replies of %d messages, errors %v", name, ss.recvd, sent, ss.rec.counts)
				}
			}
		}
	}
}

// TestWarmupRepliesInMeasuredRead checks, in Messages mode, that a read
// that brings the replies of warmup messages together with measured ones
// counts only the measured ones, where the two meet inside one stretch of
// the ring: warmup messages 0 to 6 go out in two batches and 0 to 4 are
// answered, measuring starts, messages 7 and 8 go out, and the replies
// of 5 to 8 come in one read (5, 6 and 7 in ring slots 1 to 3, then 8 in
// slot 0).
func TestWarmupRepliesInMeasuredRead(t *testing.T) {
	ss := newTestSession(t, Config{Addr: "127.0.0.1:1", Conns: 1, Pipeline: 4, Size: 20, Messages: 6, Warmup: time.Hour})
	w := ss.p.wireSize
	var pending []byte // replies not fed yet
	send := func(now int64, want int) {
		t.Helper()
		out := ss.appendMessages(nil, now)
		if len(out) != want*w {
			t.Fatalf("sent %d bytes, want %d messages", len(out), want)
		}
		pending = append(pending, replyTo(ss.p.settings, out)...)
	}
	feed := func(now int64, replies int) {
		t.Helper()
		p := pending[:replies*w]
		pending = pending[len(p):]
		if n, ok := ss.stream(p, now); !ok || n != len(p) {
			t.Fatalf("matched %d of %d bytes (%v)", n, len(p), ok)
		}
	}
	warm, measuring := ss.p.t0, ss.p.mStart
	send(warm, 4) // messages 0 to 3
	feed(warm, 3)
	send(warm, 3) // 4 to 6
	feed(warm, 2)
	if ss.rec.messages != 0 {
		t.Fatalf("%d warmup replies counted", ss.rec.messages)
	}
	send(measuring, 2) // 7 and 8
	feed(measuring, 4)
	if ss.rec.messages != 2 || ss.recvd != 9 || ss.out != 0 {
		t.Fatalf("%d replies counted, %d received, %d outstanding; want the 2 measured counted, 9 received, none outstanding",
			ss.rec.messages, ss.recvd, ss.out)
	}
}
