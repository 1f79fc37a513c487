//go:build !race

package bench

import (
	"testing"

	"github.com/porta-project/porta/frame"
)

// exchange sends what the session may send into out and feeds the echo
// back: through dec if it is set, else as the epoll engine's stream. It is
// one round of the engines' steady state.
func exchange(ss *session, out []byte, dec *frame.Decoder, in *replayReader) []byte {
	now := ss.p.now()
	out = ss.appendMessages(out[:0], now)
	if dec == nil {
		ss.stream(out, now)
		return out
	}
	in.b = out
	dec.Fill()
	for {
		msg, ok, _ := dec.Decode()
		if !ok {
			return out
		}
		ss.reply(msg, now)
	}
}

// replayReader returns b on every read: the echo of what was sent.
type replayReader struct{ b []byte }

func (r *replayReader) Read(p []byte) (int, error) {
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestNoAllocationsPerMessage checks that building, checking and recording
// messages allocates nothing once running: the generator's own cost stays
// flat however long it runs.
func TestNoAllocationsPerMessage(t *testing.T) {
	for _, f := range []frame.Framing{frame.Line, frame.Length, frame.Raw} {
		for _, decoded := range []bool{false, true} {
			if decoded && f == frame.Raw {
				continue
			}
			ss := newTestSession(t, Config{Addr: "127.0.0.1:1", Framing: f, Pipeline: 16, Size: 63})
			in := &replayReader{}
			var dec *frame.Decoder
			if decoded {
				dec = frame.NewDecoder(in, f, 0)
			}
			out := exchange(ss, nil, dec, in) // warm the buffers
			allocs := testing.AllocsPerRun(1000, func() { out = exchange(ss, out, dec, in) })
			if allocs != 0 {
				t.Errorf("%v (decoder %v): %v allocations per round of 16 messages, want 0", f, decoded, allocs)
			}
			if ss.rec.counts != [numKinds]int64{} || ss.rec.messages < 16000 {
				t.Errorf("%v (decoder %v): %d messages, errors %v", f, decoded, ss.rec.messages, ss.rec.counts)
			}
		}
	}
}

// BenchmarkMessage measures the generator's own work per message: build,
// frame, check the echo and record its latency, as the epoll engine does
// for correct replies and through a decoder.
func BenchmarkMessage(b *testing.B) {
	for _, decoded := range []bool{false, true} {
		name := "stream"
		if decoded {
			name = "decoder"
		}
		b.Run(name, func(b *testing.B) {
			ss := newTestSession(b, Config{Addr: "127.0.0.1:1", Pipeline: 16, Size: 63})
			in := &replayReader{}
			var dec *frame.Decoder
			if decoded {
				dec = frame.NewDecoder(in, frame.Line, 0)
			}
			var out []byte
			b.ReportAllocs()
			for b.Loop() {
				out = exchange(ss, out, dec, in)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*16), "ns/msg")
		})
	}
}
