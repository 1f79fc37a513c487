package frame

import (
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

// randomStream returns up to maxMsgs random messages of up to limit+2 bytes
// (so some are over the limit) framed with f, sometimes cut short, and the
// messages when all of them fit and the stream is whole (nil otherwise).
func randomStream(rng *rand.Rand, f Framing, limit, maxMsgs int) (stream []byte, msgs []string) {
	alphabet := []byte("ab\r\x00\xff")
	if f == Length {
		alphabet = append(alphabet, '\n')
	}
	fits := true
	for range rng.IntN(maxMsgs + 1) {
		m := make([]byte, rng.IntN(limit+3))
		for i := range m {
			m[i] = alphabet[rng.IntN(len(alphabet))]
		}
		fits = fits && len(m) <= limit
		msgs = append(msgs, string(m))
		if f == Line && rng.IntN(2) == 0 {
			stream = append(append(stream, m...), "\r\n"...) // one '\r' dropped
		} else {
			stream = Append(stream, f, m)
		}
	}
	if len(stream) > 0 && rng.IntN(4) == 0 {
		stream = stream[:rng.IntN(len(stream))]
		fits = false
	}
	if !fits {
		msgs = nil
	}
	return stream, msgs
}

// checkSplits checks that decoding stream delivered in two reads, split at
// each of the offsets ks, gives the same messages and final error as
// decoding it delivered whole, and, when want is not nil, that those are
// want and io.EOF.
func checkSplits(t *testing.T, f Framing, limit int, stream []byte, want []string, ks []int) {
	t.Helper()
	m1, e1 := decodeAll(t, NewDecoder(&scriptReader{steps: chunks(string(stream))}, f, limit))
	if want != nil && (!slices.Equal(m1, want) || e1 != io.EOF) {
		t.Fatalf("%v: decoding %q gave %q, %v; want %q, EOF", f, stream, m1, e1, want)
	}
	for _, k := range ks {
		r := &scriptReader{steps: chunks(string(stream[:k]), string(stream[k:]))}
		m2, e2 := decodeAll(t, NewDecoder(r, f, limit))
		if !sameResult(m1, e1, m2, e2) {
			t.Fatalf("%v, %q split at %d: one read gave %q, %v; two reads %q, %v", f, stream, k, m1, e1, m2, e2)
		}
	}
}

// TestSplitInvariance checks that where a stream is split between reads
// never changes what Line and Length decode, at every split point of small
// random streams.
func TestSplitInvariance(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range []Framing{Line, Length} {
		for range 300 {
			stream, want := randomStream(rng, f, testMax, 8)
			ks := make([]int, len(stream)+1)
			for k := range ks {
				ks[k] = k
			}
			checkSplits(t, f, testMax, stream, want, ks)
		}
	}
}

// TestSplitInvarianceLarge is TestSplitInvariance with messages larger than
// the initial buffer, so that the buffer is compacted and grown, at random
// split points and those around the initial buffer size.
func TestSplitInvarianceLarge(t *testing.T) {
	t.Parallel()
	const limit = 2*initialBufSize + 100
	rng := rand.New(rand.NewPCG(3, 4))
	for _, f := range []Framing{Line, Length} {
		for range 12 {
			stream, want := randomStream(rng, f, limit, 4)
			var ks []int
			for _, k := range []int{1, HeaderLen, initialBufSize - 1, initialBufSize, initialBufSize + 1, len(stream) - 1} {
				if 0 <= k && k <= len(stream) {
					ks = append(ks, k)
				}
			}
			for range 30 {
				ks = append(ks, rng.IntN(len(stream)+1))
			}
			checkSplits(t, f, limit, stream, want, ks)
		}
	}
}
