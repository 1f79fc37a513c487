package frame

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestNewDecoderLimits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ max, wantMax, wantReadSize int }{
		{0, DefaultMaxSize, DefaultReadSize},
		{-1, DefaultMaxSize, DefaultReadSize},
		{1, 1, 1},
		{100, 100, 100},
		{MaxSizeLimit, MaxSizeLimit, DefaultReadSize},
		{MaxSizeLimit + 1, MaxSizeLimit, DefaultReadSize},
	} {
		d := NewDecoder(strings.NewReader(""), Line, c.max)
		if d.MaxSize() != c.wantMax || d.readSize != c.wantReadSize {
			t.Errorf("NewDecoder(max %d): MaxSize %d, read size %d; want %d, %d",
				c.max, d.MaxSize(), d.readSize, c.wantMax, c.wantReadSize)
		}
	}
}

// TestLengthTooLongBeforeBody checks that an oversized length prefix is
// rejected once its 4 bytes are in, without reading the body and without
// growing the buffer towards the announced size.
func TestLengthTooLongBeforeBody(t *testing.T) {
	t.Parallel()
	for _, n := range []uint32{testMax + 1, 1 << 20, 0xFFFFFFFF} {
		r := &scriptReader{steps: chunks(hdr(n)), end: errReadPastEnd}
		d := NewDecoder(iotest.OneByteReader(r), Length, testMax)
		_, err := decodeAll(t, d)
		if !errors.Is(err, ErrTooLong) {
			t.Fatalf("prefix %#x: err %v, want ErrTooLong", n, err)
		}
		if r.reads != HeaderLen || d.Buffered() != HeaderLen {
			t.Errorf("prefix %#x: %d reads, %d bytes buffered; want %d and %d", n, r.reads, d.Buffered(), HeaderLen, HeaderLen)
		}
		if len(d.buf) != initialBufSize {
			t.Errorf("prefix %#x: buffer grew to %d bytes", n, len(d.buf))
		}
		if err := d.Fill(); !errors.Is(err, ErrTooLong) || r.reads != HeaderLen {
			t.Errorf("Fill after ErrTooLong: %v after %d reads; want ErrTooLong and no read", err, r.reads)
		}
	}
}

// TestLengthHugePrefixAllocs checks that a 0xFFFFFFFF prefix, even on a
// decoder allowing the largest messages, allocates nothing.
func TestLengthHugePrefixAllocs(t *testing.T) {
	in := hdr(0xFFFFFFFF) + strings.Repeat("x", 100)
	r := strings.NewReader(in)
	d := NewDecoder(r, Length, MaxSizeLimit)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(in)
		d.Reset(r, Length)
		if err := d.Fill(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Decode(); !errors.Is(err, ErrTooLong) {
			t.Fatalf("Decode: %v, want ErrTooLong", err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per huge prefix, want 0", allocs)
	}
	if len(d.buf) != initialBufSize {
		t.Errorf("buffer grew to %d bytes", len(d.buf))
	}
}

// TestLargeMessagesGrowToOneFrame checks that a limit above the initial
// buffer grows the buffer to exactly one maximal frame, and no further.
func TestLargeMessagesGrowToOneFrame(t *testing.T) {
	t.Parallel()
	const max = 3*initialBufSize + 7
	body := strings.Repeat("x", max)
	for _, c := range []struct {
		f   Framing
		in  string
		err error
	}{
		{Line, body + "\r\n" + body + "\n", io.EOF},
		{Line, body + "y\n", ErrTooLong},
		{Length, hdr(max) + body + hdr(max) + body, io.EOF},
		{Length, hdr(max+1) + body + "y", ErrTooLong},
	} {
		for _, size := range []int{1, 1000, len(c.in)} {
			r := &scriptReader{steps: chunks(c.in)}
			d := NewDecoder(iotest.HalfReader(limitedReader{r, size}), c.f, max)
			msgs, err := decodeAll(t, d)
			if !errors.Is(err, c.err) {
				t.Fatalf("%v, reads of %d: err %v, want %v", c.f, size, err, c.err)
			}
			for _, m := range msgs {
				if m != body {
					t.Fatalf("%v: message of %d bytes, want %d", c.f, len(m), max)
				}
			}
			if len(d.buf) > d.frameCap() {
				t.Errorf("%v: buffer of %d bytes, frame cap %d", c.f, len(d.buf), d.frameCap())
			}
		}
	}
}

// limitedReader reads at most n bytes at a time from r.
type limitedReader struct {
	r io.Reader
	n int
}

func (l limitedReader) Read(p []byte) (int, error) { return l.r.Read(p[:min(len(p), l.n)]) }

// TestTimeoutNotSticky checks that a timeout is returned by the Fill that
// met it and forgotten after: the next Fill reads on, and no byte is lost,
// whether the timeout came alone or with data.
func TestTimeoutNotSticky(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		f          Framing
		p1, p2, p3 string
		want       []string
	}{
		{Line, "ab", "c\nd", "\r\n", []string{"abc", "d"}},
		{Length, hdr(3) + "a", "bc" + hdr(1), "d", []string{"abc", "d"}},
		{Raw, "ab", "c\nd", "\n", []string{"ab", "c\nd", "\n"}},
		{Auto, "ab", "c\nd", "\n", []string{"ab", "c\nd", "\n"}},
		{Auto, "a\nb", "c\nd", "\n", []string{"a", "bc", "d"}},
	} {
		r := &scriptReader{steps: []step{{b: c.p1}, {err: timeoutError{}}, {b: c.p2, err: timeoutError{}}, {b: c.p3}}}
		d := NewDecoder(r, c.f, testMax)
		var msgs []string
		var fills []error
		for {
			msg, ok, err := d.Decode()
			if ok {
				msgs = append(msgs, string(msg))
				continue
			}
			if err != nil {
				if err != io.EOF {
					t.Fatalf("%v: Decode: %v", c.f, err)
				}
				break
			}
			fills = append(fills, d.Fill())
			if len(fills) > 10 {
				t.Fatalf("%v: no end after %v", c.f, fills)
			}
		}
		if !slices.Equal(msgs, c.want) {
			t.Errorf("%v: got %q, want %q", c.f, msgs, c.want)
		}
		// Fill read p1, met the timeout, read p2 (whose timeout is not
		// reported: data came with it), read p3 and met the end.
		want := []error{nil, timeoutError{}, nil, nil, io.EOF}
		if !slices.Equal(fills, want) {
			t.Errorf("%v: Fill returned %v, want %v", c.f, fills, want)
		}
	}
}

// TestNext checks Next: messages in order, a timeout returned to the
// caller and then read past, and io.EOF at the end.
func TestNext(t *testing.T) {
	t.Parallel()
	r := &scriptReader{steps: []step{{b: "ab\ncd"}, {err: timeoutError{}}, {b: "\r\n\nef"}}}
	d := NewDecoder(r, Line, testMax)
	var got []string
	for range 20 {
		msg, err := d.Next()
		if err != nil {
			got = append(got, "error: "+err.Error())
			if err == io.EOF {
				break
			}
			continue
		}
		got = append(got, string(msg))
	}
	want := []string{"ab", "error: i/o timeout", "cd", "", "ef", "error: EOF"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if msg, err := d.Next(); msg != nil || err != io.EOF {
		t.Errorf("Next after EOF: %q, %v", msg, err)
	}

	d = NewDecoder(strings.NewReader("123456789\nab\n"), Line, testMax)
	if _, err := d.Next(); !errors.Is(err, ErrTooLong) {
		t.Errorf("Next on a long line: %v, want ErrTooLong", err)
	}
	if _, err := d.Next(); !errors.Is(err, ErrTooLong) {
		t.Errorf("Next after ErrTooLong: %v, want ErrTooLong again", err)
	}
}

// TestDecodeDoesNotRead checks that Decode never reads and that Fill
// reads exactly once, and not at all once the stream has ended.
func TestDecodeDoesNotRead(t *testing.T) {
	t.Parallel()
	for _, f := range []Framing{Auto, Line, Length, Raw} {
		r := &scriptReader{steps: chunks("\x00\x00\x00\x01a\n", "b")}
		d := NewDecoder(r, f, testMax)
		for range 5 {
			d.Decode()
			if r.reads != 0 {
				t.Fatalf("%v: Decode read", f)
			}
		}
		for want := 1; want <= 3; want++ {
			d.Fill()
			for range 3 {
				d.Decode()
			}
			if r.reads != want {
				t.Fatalf("%v: %d reads after %d Fills", f, r.reads, want)
			}
		}
		if err := d.Fill(); err != io.EOF || r.reads != 3 {
			t.Errorf("%v: Fill after EOF: %v after %d reads; want EOF and no read", f, err, r.reads)
		}
	}
}

// TestRawFillKeepsOneRead checks that with Raw framing a Fill called while
// a read is still buffered does not read: that read is the next message.
func TestRawFillKeepsOneRead(t *testing.T) {
	t.Parallel()
	r := &scriptReader{steps: chunks("ab", "cd")}
	d := NewDecoder(r, Raw, testMax)
	for range 3 {
		if err := d.Fill(); err != nil {
			t.Fatal(err)
		}
	}
	if msg, ok, _ := d.Decode(); !ok || string(msg) != "ab" || r.reads != 1 {
		t.Fatalf("got %q, %v after %d reads; want \"ab\" after 1", msg, ok, r.reads)
	}
	if msgs, err := decodeAll(t, d); !slices.Equal(msgs, []string{"cd"}) || err != io.EOF {
		t.Fatalf("then %q, %v", msgs, err)
	}
}

// TestRelease checks that Release drops the buffer only when no byte is
// buffered, and that decoding carries on across it.
func TestRelease(t *testing.T) {
	t.Parallel()
	r := &scriptReader{steps: chunks("ab\n", "c", "d\n", "ef\n")}
	d := NewDecoder(r, Line, 0)
	d.Release() // before any read: nothing to release
	if d.buf != nil {
		t.Fatal("buffer before the first read")
	}
	next := func(want string) {
		t.Helper()
		for range 10 {
			if msg, ok, err := d.Decode(); ok {
				if string(msg) != want {
					t.Fatalf("got %d bytes %.10q, want %d bytes %.10q", len(msg), msg, len(want), want)
				}
				return
			} else if err != nil {
				t.Fatal(err)
			}
			d.Fill()
		}
		t.Fatalf("no message, want %d bytes %.10q", len(want), want)
	}
	next("ab")
	d.Release()
	if d.buf != nil {
		t.Error("Release kept the buffer with nothing buffered")
	}
	d.Fill() // "c"
	if _, ok, _ := d.Decode(); ok {
		t.Fatal("message from a partial line")
	}
	buf := d.buf
	d.Release()
	if d.buf == nil || &d.buf[0] != &buf[0] || d.Buffered() != 1 {
		t.Fatal("Release dropped buffered bytes")
	}
	next("cd")
	d.Release()
	next("ef")
	if _, err := d.Next(); err != io.EOF {
		t.Errorf("end: %v, want EOF", err)
	}

	// A grown buffer is dropped too, and a new initial one is taken.
	big := strings.Repeat("x", 2*initialBufSize)
	d = NewDecoder(&scriptReader{steps: chunks(big+"\n", "ab\n")}, Line, 0)
	next(big)
	if len(d.buf) <= initialBufSize || d.Buffered() != 0 {
		t.Fatalf("buffer of %d bytes, %d buffered; want grown and empty", len(d.buf), d.Buffered())
	}
	d.Release()
	if d.buf != nil {
		t.Fatal("Release kept a grown, empty buffer")
	}
	next("ab")
	if len(d.buf) != initialBufSize {
		t.Errorf("buffer of %d bytes after Release, want %d", len(d.buf), initialBufSize)
	}
}

// TestReset checks that Reset forgets the stream, its errors and its
// buffered bytes, and keeps the limits and the buffer.
func TestReset(t *testing.T) {
	t.Parallel()
	d := NewDecoder(strings.NewReader("ab\n123456789\n"), Line, testMax)
	d.SetReadSize(3)
	if msgs, err := decodeAll(t, d); !slices.Equal(msgs, []string{"ab"}) || !errors.Is(err, ErrTooLong) {
		t.Fatalf("got %q, %v", msgs, err)
	}
	buf := d.buf

	d.Reset(strings.NewReader(hdr(2)+"cd"+hdr(1)), Length)
	if msgs, err := decodeAll(t, d); !slices.Equal(msgs, []string{"cd"}) || err != io.ErrUnexpectedEOF {
		t.Fatalf("after Reset to Length: got %q, %v", msgs, err)
	}
	if d.MaxSize() != testMax || d.readSize != 3 || &d.buf[0] != &buf[0] {
		t.Error("Reset lost the limits or the buffer")
	}

	// Bytes buffered from the old stream are dropped.
	d.Reset(strings.NewReader("ef\ngh"), Line)
	d.Fill()
	d.Reset(strings.NewReader("ij\n"), Auto)
	if d.Framing() != Auto || d.Buffered() != 0 {
		t.Fatalf("after Reset: framing %v, %d bytes buffered", d.Framing(), d.Buffered())
	}
	if msgs, err := decodeAll(t, d); !slices.Equal(msgs, []string{"ij"}) || err != io.EOF || d.Framing() != Line {
		t.Fatalf("after Reset to Auto: got %q, %v, %v", msgs, err, d.Framing())
	}

	d.Reset(bytes.NewReader([]byte("abcdefg")), Raw)
	if msgs, err := decodeAll(t, d); !slices.Equal(msgs, []string{"abc", "def", "g"}) || err != io.EOF {
		t.Fatalf("after Reset to Raw: got %q, %v", msgs, err)
	}
}

// TestSteadyStateAllocs checks that decoding allocates nothing once the
// decoder has its buffer: the benchmarks' 0 allocs/op, as a test.
func TestSteadyStateAllocs(t *testing.T) {
	for _, f := range []Framing{Line, Length, Raw, Auto} {
		var block []byte
		for range 50 {
			block = Append(block, f, []byte("a 64-byte message, give or take, of the kind a client sends"))
		}
		r := bytes.NewReader(block)
		d := NewDecoder(r, f, 0)
		run := func() {
			r.Reset(block)
			d.Reset(r, f)
			for {
				_, ok, err := d.Decode()
				if err != nil {
					return
				}
				if !ok {
					d.Fill()
				}
			}
		}
		run() // takes the buffer
		if allocs := testing.AllocsPerRun(20, run); allocs != 0 {
			t.Errorf("%v: %v allocations per stream, want 0", f, allocs)
		}
	}
}

// TestReleaseAllocs checks that giving the buffer back and taking one
// again allocates nothing: an idle connection does this before each wait,
// so at one message per wait it would be an allocation per message.
func TestReleaseAllocs(t *testing.T) {
	msg := Append(nil, Line, []byte("one message per wait"))
	r := bytes.NewReader(msg)
	d := NewDecoder(r, Line, 0)
	run := func() {
		r.Reset(msg)
		d.Reset(r, Line)
		if err := d.Fill(); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := d.Decode(); !ok || err != nil {
			t.Fatalf("Decode: %v, %v", ok, err)
		}
		d.Release()
	}
	run()
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Errorf("%v allocations per fill and release, want 0", allocs)
	}
}
