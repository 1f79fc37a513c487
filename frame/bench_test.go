package frame_test

import (
	"bytes"
	"testing"

	"github.com/porta-project/porta/frame"
)

// benchMsg is the message of the benchmarks: 64 bytes, a typical small
// request.
var benchMsg = bytes.Repeat([]byte("m"), 64)

// loopReader returns the bytes of data over and over, as a busy peer would.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

// benchDecode decodes b.N messages of 64 bytes framed with f, many per
// Fill (one Fill reads a whole buffer of them). One op is one message.
func benchDecode(b *testing.B, f frame.Framing) {
	var block []byte
	for range 100 {
		block = frame.Append(block, f, benchMsg)
	}
	d := frame.NewDecoder(&loopReader{data: block}, f, 0)
	b.SetBytes(int64(len(benchMsg) + frame.Overhead(f)))
	b.ReportAllocs()
	for b.Loop() {
		for {
			msg, ok, err := d.Decode()
			if err != nil {
				b.Fatal(err)
			}
			if ok {
				if len(msg) != len(benchMsg) {
					b.Fatalf("message of %d bytes", len(msg))
				}
				break
			}
			if err := d.Fill(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkDecodeLine(b *testing.B)   { benchDecode(b, frame.Line) }
func BenchmarkDecodeLength(b *testing.B) { benchDecode(b, frame.Length) }

func BenchmarkAppendLine(b *testing.B) {
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(len(benchMsg) + 1))
	b.ReportAllocs()
	for b.Loop() {
		dst = frame.Append(dst[:0], frame.Line, benchMsg)
	}
	if len(dst) != len(benchMsg)+1 {
		b.Fatalf("appended %d bytes", len(dst))
	}
}
