package frame

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// fuzzMax is the message limit of the fuzz targets: small, so that random
// inputs reach it.
const fuzzMax = 64

// The fuzz targets decode each input twice: delivered whole (as much per
// read as the decoder asks for, then io.EOF on a read of its own), and in
// two reads split at a fuzzed offset (io.EOF with the last bytes, an empty
// first read when the offset is 0), releasing the buffer whenever it is
// empty. Both must give the same messages and the same final error, as in
// nats-server's parser_fuzz_test.go. decodeAll checks on every call that the
// decoder never holds more than one maximal frame of an unfinished message
// (fuzzMax plus "\r\n" or the 4-byte prefix) and that its buffer stays the
// initial one.

// wholeSteps delivers data in one step.
func wholeSteps(data []byte) []step { return []step{{b: string(data)}} }

// splitSteps delivers data in two steps split at k, with io.EOF.
func splitSteps(data []byte, k int) []step {
	return []step{{b: string(data[:k])}, {b: string(data[k:]), err: io.EOF}}
}

// fuzzDecode decodes the steps with framing f and returns the messages, the
// final error and the framing the decoder ended with.
func fuzzDecode(t *testing.T, f Framing, readSize int, steps []step, release bool) ([]string, error, Framing) {
	t.Helper()
	d := NewDecoder(&scriptReader{steps: steps}, f, fuzzMax)
	d.SetReadSize(readSize)
	msgs, err := decode(t, d, release)
	return msgs, err, d.Framing()
}

// checkSplit decodes data whole and split at k with framing f and fails
// unless both give the same messages and error. It returns them.
func checkSplit(t *testing.T, f Framing, data []byte, k int) ([]string, error) {
	t.Helper()
	m1, e1, _ := fuzzDecode(t, f, DefaultReadSize, wholeSteps(data), false)
	m2, e2, _ := fuzzDecode(t, f, DefaultReadSize, splitSteps(data, k), true)
	if !sameResult(m1, e1, m2, e2) {
		t.Fatalf("%v, split at %d: one read gave %q, %v; two reads gave %q, %v", f, k, m1, e1, m2, e2)
	}
	return m1, e1
}

// checkReencode fails unless msgs, framed with Append and decoded again,
// come back unchanged.
func checkReencode(t *testing.T, f Framing, msgs []string) {
	t.Helper()
	var enc []byte
	for _, m := range msgs {
		enc = Append(enc, f, []byte(m))
	}
	got, err, _ := fuzzDecode(t, f, DefaultReadSize, wholeSteps(enc), false)
	if !slices.Equal(got, msgs) || err != io.EOF {
		t.Fatalf("%v: decode(Append(%q)) = %q, %v", f, msgs, got, err)
	}
}

func FuzzLineDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		k := int(split) % (len(data) + 1)
		msgs, err := checkSplit(t, Line, data, k)
		if err != io.EOF && !errors.Is(err, ErrTooLong) {
			t.Fatalf("final error %v, want EOF or ErrTooLong", err)
		}
		for _, m := range msgs {
			if strings.IndexByte(m, '\n') >= 0 {
				t.Fatalf("message %q holds a '\\n'", m)
			}
		}
		checkReencode(t, Line, msgs)
	})
}

func FuzzLengthDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		k := int(split) % (len(data) + 1)
		msgs, err := checkSplit(t, Length, data, k)
		var enc []byte
		for _, m := range msgs {
			enc = Append(enc, Length, []byte(m))
		}
		switch {
		case err == io.EOF:
			// The stream was exactly these frames: Append gives it back.
			if !bytes.Equal(enc, data) {
				t.Fatalf("re-encoded %q, want the input %q", enc, data)
			}
		case err == io.ErrUnexpectedEOF || errors.Is(err, ErrTooLong):
			if !bytes.HasPrefix(data, enc) || len(enc) == len(data) {
				t.Fatalf("%v after %q, input %q", err, enc, data)
			}
		default:
			t.Fatalf("final error %v", err)
		}
		checkReencode(t, Length, msgs)
	})
}

func FuzzRawDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint16, readSize uint8) {
		k := int(split) % (len(data) + 1)
		rs := int(readSize) % (fuzzMax + 8) // 0 and over fuzzMax are clamped
		size := max(1, min(rs, fuzzMax))
		// Each read is one message, of at most the read size.
		want := func(reads ...[]byte) []string {
			var msgs []string
			for _, r := range reads {
				for len(r) > 0 {
					n := min(len(r), size)
					msgs = append(msgs, string(r[:n]))
					r = r[n:]
				}
			}
			return msgs
		}
		for _, c := range []struct {
			steps []step
			want  []string
		}{
			{wholeSteps(data), want(data)},
			{splitSteps(data, k), want(data[:k], data[k:])},
		} {
			for _, release := range []bool{false, true} {
				msgs, err, _ := fuzzDecode(t, Raw, rs, slices.Clone(c.steps), release)
				if !slices.Equal(msgs, c.want) || err != io.EOF {
					t.Fatalf("read size %d, split at %d: got %q, %v; want %q, EOF", rs, k, msgs, err, c.want)
				}
			}
		}
	})
}

func FuzzAutoDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint16, readSize uint8) {
		k := int(split) % (len(data) + 1)
		rs := int(readSize) % (fuzzMax + 8)
		size := max(1, min(rs, fuzzMax))
		// The first non-empty read decides. It takes at least the read
		// size, and at least one maximal line (limit + "\r\n").
		firstRead := max(size, fuzzMax+2)
		chosen := func(first []byte) Framing {
			switch {
			case len(first) == 0:
				return Auto
			case bytes.IndexByte(first[:min(len(first), firstRead)], '\n') >= 0:
				return Line
			}
			return Raw
		}
		first := data[:k]
		if k == 0 {
			first = data
		}
		type result struct {
			msgs    []string
			err     error
			framing Framing
		}
		var results []result
		for _, c := range []struct {
			steps []step
			want  Framing
		}{
			{wholeSteps(data), chosen(data)},
			{splitSteps(data, k), chosen(first)},
		} {
			msgs, err, framing := fuzzDecode(t, Auto, rs, slices.Clone(c.steps), false)
			if framing != c.want {
				t.Fatalf("split at %d, read size %d: chose %v, want %v", k, rs, framing, c.want)
			}
			// Auto then behaves as the framing it chose, given the same reads.
			like := c.want
			if like == Auto {
				like = Raw
			}
			wmsgs, werr, _ := fuzzDecode(t, like, rs, slices.Clone(c.steps), true)
			same := sameResult(msgs, err, wmsgs, werr)
			if like == Raw {
				// Auto's deciding read may end elsewhere than Raw's
				// capped reads, so the pieces may differ; the bytes may
				// not (decode checks each piece against the read size).
				same = strings.Join(msgs, "") == strings.Join(wmsgs, "") && err == werr
			}
			if !same {
				t.Fatalf("Auto as %v: got %q, %v; %v gave %q, %v", like, msgs, err, like, wmsgs, werr)
			}
			results = append(results, result{msgs, err, framing})
		}
		// Line gives the same messages however the stream is split; Raw
		// the same bytes.
		r1, r2 := results[0], results[1]
		if r1.framing == r2.framing {
			same := sameResult(r1.msgs, r1.err, r2.msgs, r2.err)
			if r1.framing == Raw {
				same = strings.Join(r1.msgs, "") == strings.Join(r2.msgs, "") && r1.err == r2.err
			}
			if !same {
				t.Fatalf("%v, split at %d: one read gave %q, %v; two reads %q, %v", r1.framing, k, r1.msgs, r1.err, r2.msgs, r2.err)
			}
		}
	})
}
