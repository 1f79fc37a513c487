package reliability_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// T2: framing under fragmentation. TCP is a byte stream: a read can return
// half a frame or ten. Random message sequences are delivered (i) in one
// write, (ii) byte by byte, (iii) split at random points, and end to end
// also (iv) through toxiproxy's slicer toxic (1-byte slices, 0.5 ms apart,
// in process); the messages, and the server's reply streams, must be
// byte-identical in every mode.
const (
	t2Sequences    = 10000                  // decoder level, per framing
	t2AllSplits    = 50                     // of which this many are split at every offset too
	t2DecoderMax   = 256                    // the decoder-level limit: small, so sequences reach it
	t2E2EBudget    = 3 * time.Second        // end to end, per framing
	t2E2EMinimum   = 50                     // sequences end to end, per framing, at the least
	t2E2EMaxBytes  = 600                    // the slicer takes 0.5 ms a byte: keep sequences short
	t2Workers      = 48                     // end-to-end sequences in flight
	t2SlicerDelay  = 500 * time.Microsecond // between slices: the middle of the plan's 0-1 ms
	t2MaxSeqLength = 16                     // messages per sequence, at most
)

var t2Framings = []frame.Framing{frame.Line, frame.Length}

// t2Sequence returns random sequence number i for framing f: its messages,
// their encoding, and whether one of them is over limit (then the
// messages are those before it, and decoding must end with ErrTooLong).
// Line messages never hold '\n' but may hold and end in '\r'.
func t2Sequence(i int, f frame.Framing, limit int) (msgs [][]byte, stream []byte, tooLong bool) {
	rng := rand.New(rand.NewPCG(uint64(i), uint64(f)))
	n := rng.IntN(t2MaxSeqLength + 1)
	for range n {
		var size int
		switch r := rng.IntN(100); {
		case r < 70:
			size = rng.IntN(41)
		case r < 95:
			size = 41 + rng.IntN(min(260, limit-41))
		case r < 98:
			size = limit - rng.IntN(3) // at or just under the limit
		default:
			size = limit + 1 + rng.IntN(8) // over it
		}
		m := make([]byte, size)
		for j := range m {
			switch rng.IntN(8) {
			case 0:
				m[j] = '\r'
			case 1:
				m[j] = byte(rng.IntN(256))
			default:
				m[j] = 'a' + byte(rng.IntN(26))
			}
			if f == frame.Line && m[j] == '\n' {
				m[j] = 'n'
			}
		}
		stream = frame.Append(stream, f, m)
		if size > limit {
			return msgs, stream, true
		}
		msgs = append(msgs, m)
	}
	return msgs, stream, false
}

// chunkReader delivers data in the pieces that cuts (increasing offsets)
// delimit, one piece (or as much of it as fits) per Read; with step > 0,
// in pieces of step bytes instead.
type chunkReader struct {
	data []byte
	cuts []int
	step int
	off  int
	next int // the index in cuts of the end of the current piece
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	end := len(r.data)
	if r.step > 0 {
		end = min(end, r.off+r.step)
	} else {
		for r.next < len(r.cuts) && r.cuts[r.next] <= r.off {
			r.next++
		}
		if r.next < len(r.cuts) {
			end = r.cuts[r.next]
		}
	}
	n := copy(p, r.data[r.off:end])
	r.off += n
	return n, nil
}

// decodeAll decodes data delivered in the pieces cuts delimit and returns
// the messages and the error that ended decoding.
func decodeAll(f frame.Framing, limit int, data []byte, cuts []int, step int) ([][]byte, error) {
	d := frame.NewDecoder(&chunkReader{data: data, cuts: cuts, step: step}, f, limit)
	var msgs [][]byte
	for {
		m, err := d.Next()
		if err != nil {
			return msgs, err
		}
		msgs = append(msgs, bytes.Clone(m))
	}
}

// randomCuts returns up to 8 random cut offsets inside a stream of n bytes.
func randomCuts(rng *rand.Rand, n int) []int {
	if n < 2 {
		return nil
	}
	cuts := make([]int, 1+rng.IntN(8))
	for i := range cuts {
		cuts[i] = 1 + rng.IntN(n-1)
	}
	slices.Sort(cuts)
	return slices.Compact(cuts)
}

// TestT2DecoderProperty decodes t2Sequences random sequences per framing
// delivered whole, byte by byte and at random cuts, and the first
// t2AllSplits also cut at every offset k (decode(a[:k]) then decode(a[k:])
// equals decode(a)): every delivery must give the sequence's messages and
// end the same way.
func TestT2DecoderProperty(t *testing.T) {
	for _, f := range t2Framings {
		t.Run(f.String(), func(t *testing.T) {
			var tooLong, msgs, splits atomic.Int64
			var next atomic.Int64
			var wg sync.WaitGroup
			for w := range runtime.GOMAXPROCS(0) {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(2, uint64(w)))
					for {
						i := int(next.Add(1)) - 1
						if i >= t2Sequences {
							return
						}
						n, ok := t2CheckSequence(t, f, i, rng)
						if !ok {
							return
						}
						splits.Add(int64(n.deliveries))
						msgs.Add(int64(n.msgs))
						if n.tooLong {
							tooLong.Add(1)
						}
					}
				})
			}
			wg.Wait()
			t.Logf("%v: %d sequences (%d messages, %d over the limit), %d deliveries decoded identically",
				f, t2Sequences, msgs.Load(), tooLong.Load(), splits.Load())
		})
	}
}

type t2Checked struct {
	deliveries, msgs int
	tooLong          bool
}

// t2CheckSequence decodes sequence i in every delivery and reports
// whether all gave its messages and end.
func t2CheckSequence(t *testing.T, f frame.Framing, i int, rng *rand.Rand) (t2Checked, bool) {
	want, stream, over := t2Sequence(i, f, t2DecoderMax)
	wantErr := io.EOF
	if over {
		wantErr = frame.ErrTooLong
	}
	type delivery struct {
		how  string
		cuts []int
		step int
	}
	deliveries := []delivery{
		{how: "one read"},
		{how: "byte by byte", step: 1},
		{how: "random cuts", cuts: randomCuts(rng, len(stream))},
	}
	if i < t2AllSplits {
		for k := 1; k < len(stream); k++ {
			deliveries = append(deliveries, delivery{how: "cut at " + strconv.Itoa(k), cuts: []int{k}})
		}
	}
	for _, d := range deliveries {
		got, err := decodeAll(f, t2DecoderMax, stream, d.cuts, d.step)
		if !errors.Is(err, wantErr) || !slices.EqualFunc(got, want, bytes.Equal) {
			t.Errorf("sequence %d (%d bytes), %s: %d messages and %v, want %d and %v",
				i, len(stream), d.how, len(got), err, len(want), wantErr)
			return t2Checked{}, false
		}
	}
	return t2Checked{deliveries: len(deliveries), msgs: len(want), tooLong: over}, true
}

// t2Handler answers each message with its length, a colon and the message,
// so that a message split or joined in the wrong place changes the reply
// stream, not just its framing. It never blocks, and is marked so: the
// first pass of the suite serves it from event loops, the parking pass
// from goroutines.
var t2Handler = porta.NonBlocking(porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
	w.Write(append(strconv.AppendInt(nil, int64(len(m.Body)), 10), append([]byte{':'}, m.Body...)...))
}))

// t2Replies is the reply stream the server owes a sequence.
func t2Replies(f frame.Framing, msgs [][]byte) []byte {
	var out []byte
	for _, m := range msgs {
		out = frame.Append(out, f, append(strconv.AppendInt(nil, int64(len(m)), 10), append([]byte{':'}, m...)...))
	}
	return out
}

// TestT2FragmentationE2E sends random sequences (under the server's limit)
// to a server over TCP, each in all four delivery modes on a connection of
// its own, for t2E2EBudget per framing or t2Sequences, whichever ends
// first, and checks that every mode gets the same, exact reply stream.
func TestT2FragmentationE2E(t *testing.T) {
	for _, f := range t2Framings {
		t.Run(f.String(), func(t *testing.T) {
			srv := startServer(t, &porta.Server{Handler: t2Handler, Framing: f, IdleTimeout: ioTimeout}, "tcp")
			a, _ := porta.ParseAddr(srv.Addr)
			proxyAddr := startSlicer(t, a.Address)
			res := baseline(t)

			var next, done, skipped atomic.Int64
			deadline := time.Now().Add(t2E2EBudget)
			var wg sync.WaitGroup
			for w := range t2Workers {
				rng := rand.New(rand.NewPCG(uint64(w), 3))
				wg.Go(func() {
					for time.Now().Before(deadline) {
						i := int(next.Add(1)) - 1
						if i >= t2Sequences || t.Failed() {
							return
						}
						msgs, stream, over := t2Sequence(i, f, 300)
						if over || len(stream) > t2E2EMaxBytes {
							skipped.Add(1)
							continue
						}
						want := t2Replies(f, msgs)
						t2Deliver(t, i, "one write", a.Address, stream, nil, want)
						t2Deliver(t, i, "byte by byte", a.Address, stream, []int{-1}, want)
						t2Deliver(t, i, "random splits", a.Address, stream, randomCuts(rng, len(stream)), want)
						t2Deliver(t, i, "toxiproxy slicer", proxyAddr, stream, nil, want)
						done.Add(1)
					}
				})
			}
			wg.Wait()
			n := done.Load()
			t.Logf("%v: %d sequences, each in 4 delivery modes, got byte-identical reply streams (within %v; %d more over %d bytes or over the limit skipped)",
				f, n, t2E2EBudget, skipped.Load(), t2E2EMaxBytes)
			if n < t2E2EMinimum && !t.Failed() {
				t.Errorf("only %d sequences end to end, want at least %d", n, t2E2EMinimum)
			}
			waitOpen(t, srv.Server, 0)
			res.waitBack(t, t1Settle, "goroutines and descriptors after the sequences")
		})
	}
}

// t2Deliver sends stream to addr on a new connection, in one write (cuts
// nil), byte by byte (cuts [-1]) or split at cuts, reads the reply stream
// and fails the test unless it is want. Over a direct connection it then
// half-closes and expects the server's clean end of stream.
func t2Deliver(t *testing.T, i int, how, addr string, stream []byte, cuts []int, want []byte) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Errorf("sequence %d, %s: %v", i, how, err)
		return
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(ioTimeout))
	rerr := make(chan error, 1)
	got := make([]byte, len(want))
	go func() { _, err := io.ReadFull(nc, got); rerr <- err }()
	switch {
	case len(cuts) == 1 && cuts[0] == -1:
		for j := range stream {
			if _, err = nc.Write(stream[j : j+1]); err != nil {
				break
			}
		}
	default:
		prev := 0
		for _, c := range append(cuts, len(stream)) {
			if _, err = nc.Write(stream[prev:c]); err != nil {
				break
			}
			prev = c
		}
	}
	if err != nil {
		t.Errorf("sequence %d, %s: write: %v", i, how, err)
		return
	}
	if err := <-rerr; err != nil {
		t.Errorf("sequence %d, %s: reading %d reply bytes: %v", i, how, len(want), err)
		return
	}
	if !bytes.Equal(got, want) {
		checkBytes(t, fmt.Sprintf("sequence %d, %s", i, how), got, want)
		return
	}
	if how == "toxiproxy slicer" {
		return // the proxy does not pass a half-close on
	}
	if err := nc.(*net.TCPConn).CloseWrite(); err != nil {
		t.Errorf("sequence %d, %s: half-close: %v", i, how, err)
		return
	}
	if rest, err := io.ReadAll(nc); err != nil || len(rest) > 0 {
		t.Errorf("sequence %d, %s: after the replies: %q, %v; want a clean end of stream", i, how, rest, err)
	}
}

// startSlicer starts an in-process toxiproxy in front of upstream (a TCP
// host:port) whose slicer toxic cuts what the client sends into 1-byte
// slices t2SlicerDelay apart, and returns its address. It stops when the
// test ends.
func startSlicer(t testing.TB, upstream string) string {
	t.Helper()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(api, "t2", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	toxic, err := json.Marshal(map[string]any{
		"name":     "slicer",
		"type":     "slicer",
		"stream":   "upstream", // client to server
		"toxicity": 1.0,
		"attributes": toxics.SlicerToxic{
			AverageSize:   1,
			SizeVariation: 0,
			Delay:         int(t2SlicerDelay / time.Microsecond),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Toxics.AddToxicJson(bytes.NewReader(toxic)); err != nil {
		t.Fatalf("toxiproxy slicer: %v", err)
	}
	return p.Listen
}
