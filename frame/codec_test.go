package frame

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// testMax is the message limit of the table tests: small, so that the
// limit cases stay readable.
const testMax = 8

// codecCase is one row of the codec tables.
type codecCase struct {
	name string
	// in is the whole stream. Line and Length must give the same result
	// however it is split, so it is also delivered byte by byte, in one
	// read, and with the end of stream in the same read as the last byte.
	in string
	// steps, when set, is the exact sequence of reads instead of in, for
	// Raw and Auto (where reads are messages) and for read errors.
	steps []step
	// end is what the reader returns after the stream: io.EOF when nil.
	// errReadPastEnd checks that the decoder stops before reading it.
	end      error
	readSize int // SetReadSize before decoding when not 0
	want     []string
	err      error
	framing  Framing // Auto: the framing chosen from the first read
}

func runCodecTable(t *testing.T, f Framing, cases []codecCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			deliveries := map[string]func() io.Reader{}
			if c.steps != nil {
				deliveries["script"] = func() io.Reader {
					return &scriptReader{steps: slices.Clone(c.steps), end: c.end}
				}
			} else {
				whole := func() io.Reader { return &scriptReader{steps: chunks(c.in), end: c.end} }
				deliveries["one read"] = whole
				deliveries["byte by byte"] = func() io.Reader { return iotest.OneByteReader(whole()) }
				if c.end == nil {
					deliveries["data with EOF"] = func() io.Reader {
						return iotest.DataErrReader(strings.NewReader(c.in))
					}
				}
			}
			for name, r := range deliveries {
				// Releasing the buffer whenever it is empty changes nothing.
				for _, release := range []bool{false, true} {
					d := NewDecoder(r(), f, testMax)
					if c.readSize != 0 {
						d.SetReadSize(c.readSize)
					}
					got, err := decode(t, d, release)
					if !slices.Equal(got, c.want) || !errors.Is(err, c.err) {
						t.Errorf("%s (release %v): got %q, %v; want %q, %v", name, release, got, err, c.want, c.err)
					}
					want := f
					if f == Auto {
						want = c.framing
					}
					if d.Framing() != want {
						t.Errorf("%s: Framing() = %v, want %v", name, d.Framing(), want)
					}
				}
			}
		})
	}
}

func TestLineCodec(t *testing.T) {
	t.Parallel()
	runCodecTable(t, Line, []codecCase{
		{name: "clean EOF", in: "", err: io.EOF},
		{name: "empty message", in: "\n", want: []string{""}, err: io.EOF},
		{name: "empty message CRLF", in: "\r\n", want: []string{""}, err: io.EOF},
		{name: "empty messages", in: "\n\r\n\n", want: []string{"", "", ""}, err: io.EOF},
		{name: "exactly the limit", in: "12345678\n", want: []string{"12345678"}, err: io.EOF},
		{name: "exactly the limit CRLF", in: "12345678\r\n", want: []string{"12345678"}, err: io.EOF},
		{name: "exactly the limit at EOF", in: "12345678", want: []string{"12345678"}, err: io.EOF},
		{name: "limit+1", in: "123456789\n", err: ErrTooLong},
		{name: "limit+1 CRLF", in: "123456789\r\n", err: ErrTooLong},
		{name: "limit+1 at EOF", in: "123456789", err: ErrTooLong},
		// The ninth byte is enough to know: no need to wait for the '\n'.
		{name: "limit+1 before the newline", in: "123456789", end: errReadPastEnd, err: ErrTooLong},
		// At the limit, a trailing '\r' may still be the start of "\r\n".
		{name: "limit then CR", in: "12345678\r", end: errReadPastEnd, err: errReadPastEnd},
		{name: "limit then CR not LF", in: "12345678\rx\n", err: ErrTooLong},
		{name: "limit+1 ending in CR", in: "12345678\r\r\n", err: ErrTooLong},
		{name: "messages before limit+1", in: "a\nb\r\n123456789\nc\n", want: []string{"a", "b"}, err: ErrTooLong},
		{name: "LF only", in: "ab\ncd\n", want: []string{"ab", "cd"}, err: io.EOF},
		{name: "CRLF", in: "ab\r\ncd\r\n", want: []string{"ab", "cd"}, err: io.EOF},
		{name: "mixed endings", in: "ab\r\ncd\nef\r\n", want: []string{"ab", "cd", "ef"}, err: io.EOF},
		{name: "CR only is not a delimiter", in: "a\rb\rc\n", want: []string{"a\rb\rc"}, err: io.EOF},
		{name: "only one CR dropped", in: "ab\r\r\n", want: []string{"ab\r"}, err: io.EOF},
		{name: "CR after LF starts the next line", in: "ab\n\rcd\n", want: []string{"ab", "\rcd"}, err: io.EOF},
		{name: "EOF mid-line", in: "ab\ncd", want: []string{"ab", "cd"}, err: io.EOF},
		{name: "EOF after CR", in: "ab\ncd\r", want: []string{"ab", "cd"}, err: io.EOF},
		{name: "EOF after lone CR", in: "ab\n\r", want: []string{"ab", ""}, err: io.EOF},
		{name: "many messages", in: strings.Repeat("msg\r\n", 100), want: slices.Repeat([]string{"msg"}, 100), err: io.EOF},
		{name: "NUL bytes", in: "a\x00b\n\x00\n\x00\x00\x00\x00\x00\x00\x00\x00\n",
			want: []string{"a\x00b", "\x00", "\x00\x00\x00\x00\x00\x00\x00\x00"}, err: io.EOF},
		{name: "invalid UTF-8", in: "\xff\xfe\n\xc3\x28\r\n\xed\xa0\x80\n",
			want: []string{"\xff\xfe", "\xc3\x28", "\xed\xa0\x80"}, err: io.EOF},
		{name: "read error mid-line", steps: []step{{b: "ab\ncd", err: errBoom}}, want: []string{"ab"}, err: errBoom},
		{name: "read error alone", steps: []step{{b: "ab\n"}, {err: errBoom}}, want: []string{"ab"}, err: errBoom},
	})
}

func TestLengthCodec(t *testing.T) {
	t.Parallel()
	runCodecTable(t, Length, []codecCase{
		{name: "clean EOF", in: "", err: io.EOF},
		{name: "empty message", in: hdr(0), want: []string{""}, err: io.EOF},
		{name: "empty messages", in: hdr(0) + hdr(0) + hdr(1) + "x", want: []string{"", "", "x"}, err: io.EOF},
		{name: "exactly the limit", in: hdr(8) + "12345678", want: []string{"12345678"}, err: io.EOF},
		{name: "limit+1", in: hdr(9) + "123456789", err: ErrTooLong},
		// The prefix is rejected as soon as it is read, before the body.
		{name: "limit+1 before the body", in: hdr(9), end: errReadPastEnd, err: ErrTooLong},
		{name: "0xFFFFFFFF", in: hdr(0xFFFFFFFF), end: errReadPastEnd, err: ErrTooLong},
		{name: "0x80000000", in: hdr(0x80000000) + "abc", err: ErrTooLong},
		{name: "16 MiB", in: hdr(16 << 20), end: errReadPastEnd, err: ErrTooLong},
		{name: "messages before limit+1", in: hdr(1) + "a" + hdr(2) + "bc" + hdr(100) + "d", want: []string{"a", "bc"}, err: ErrTooLong},
		{name: "EOF in the prefix", in: "\x00\x00\x00", err: io.ErrUnexpectedEOF},
		{name: "EOF in the body", in: hdr(5) + "abc", err: io.ErrUnexpectedEOF},
		{name: "EOF in the second frame", in: hdr(1) + "a" + hdr(2) + "b", want: []string{"a"}, err: io.ErrUnexpectedEOF},
		{name: "many messages", in: strings.Repeat(hdr(3)+"msg", 100), want: slices.Repeat([]string{"msg"}, 100), err: io.EOF},
		{name: "delimiters are data", in: hdr(5) + "a\r\nb\n" + hdr(1) + "\r", want: []string{"a\r\nb\n", "\r"}, err: io.EOF},
		{name: "NUL bytes", in: hdr(3) + "\x00a\x00" + hdr(0) + hdr(1) + "\x00", want: []string{"\x00a\x00", "", "\x00"}, err: io.EOF},
		{name: "invalid UTF-8", in: hdr(4) + "\xff\xfe\xc3\x28", want: []string{"\xff\xfe\xc3\x28"}, err: io.EOF},
		{name: "read error mid-frame", steps: []step{{b: hdr(1) + "a" + hdr(3) + "b", err: errBoom}}, want: []string{"a"}, err: errBoom},
		{name: "read error in the prefix", steps: []step{{b: "\x00\x00"}, {err: errBoom}}, err: errBoom},
	})
}

func TestRawCodec(t *testing.T) {
	t.Parallel()
	runCodecTable(t, Raw, []codecCase{
		{name: "clean EOF", steps: []step{}, err: io.EOF},
		{name: "empty read is no message", steps: chunks("", "ab", ""), want: []string{"ab"}, err: io.EOF},
		{name: "each read is a message", steps: chunks("ab", "c", "d\n"), want: []string{"ab", "c", "d\n"}, err: io.EOF},
		// The read size defaults to the limit when the limit is smaller.
		{name: "exactly the limit", steps: chunks("12345678"), want: []string{"12345678"}, err: io.EOF},
		{name: "limit+1 is two messages", steps: chunks("123456789"), want: []string{"12345678", "9"}, err: io.EOF},
		{name: "read size", readSize: 3, steps: chunks("abcdefg", "hi"), want: []string{"abc", "def", "g", "hi"}, err: io.EOF},
		{name: "read size 1", readSize: 1, steps: chunks("abc"), want: []string{"a", "b", "c"}, err: io.EOF},
		{name: "read size clamped to 1", readSize: -5, steps: chunks("ab"), want: []string{"a", "b"}, err: io.EOF},
		{name: "read size clamped to the limit", readSize: 1000, steps: chunks("123456789"), want: []string{"12345678", "9"}, err: io.EOF},
		{name: "data with EOF", steps: []step{{b: "ab", err: io.EOF}}, want: []string{"ab"}, err: io.EOF},
		{name: "data with error", steps: []step{{b: "ab", err: errBoom}}, want: []string{"ab"}, err: errBoom},
		{name: "CRLF is data", steps: chunks("a\r\nb\r\n"), want: []string{"a\r\nb\r\n"}, err: io.EOF},
		{name: "CR only is data", steps: chunks("a\rb\r"), want: []string{"a\rb\r"}, err: io.EOF},
		{name: "NUL bytes", steps: chunks("\x00", "a\x00b"), want: []string{"\x00", "a\x00b"}, err: io.EOF},
		{name: "invalid UTF-8", steps: chunks("\xff\xfe\xc3\x28"), want: []string{"\xff\xfe\xc3\x28"}, err: io.EOF},
	})
}

func TestAutoCodec(t *testing.T) {
	t.Parallel()
	runCodecTable(t, Auto, []codecCase{
		{name: "clean EOF", steps: []step{}, err: io.EOF, framing: Auto},
		{name: "error before data", steps: []step{{err: errBoom}}, err: errBoom, framing: Auto},
		{name: "LF picks line", steps: chunks("a\nb", "c\n"), want: []string{"a", "bc"}, err: io.EOF, framing: Line},
		{name: "CRLF picks line", steps: chunks("a\r\n", "b\r\n"), want: []string{"a", "b"}, err: io.EOF, framing: Line},
		{name: "empty line picks line", steps: chunks("\n"), want: []string{""}, err: io.EOF, framing: Line},
		{name: "no LF picks raw", steps: chunks("ab", "c\n"), want: []string{"ab", "c\n"}, err: io.EOF, framing: Raw},
		{name: "CR only picks raw", steps: chunks("ab\r", "c\r\n"), want: []string{"ab\r", "c\r\n"}, err: io.EOF, framing: Raw},
		{name: "empty read decides nothing", steps: chunks("", "a\n", "b"), want: []string{"a", "b"}, err: io.EOF, framing: Line},
		{name: "timeout decides nothing", steps: []step{{err: timeoutError{}}, {b: "ab"}, {b: "c\n"}}, want: []string{"ab", "c\n"}, err: io.EOF, framing: Raw},
		// Only the first read decides. It may exceed the read size, so
		// that a long first line is still seen as a line; if it picks
		// raw, it is handed out in read-size messages.
		{name: "LF past the read size picks line", readSize: 4, steps: chunks("abcdef\n"), want: []string{"abcdef"}, err: io.EOF, framing: Line},
		{name: "LF after the first read", readSize: 4, steps: chunks("abcdef", "\n"), want: []string{"abcd", "ef", "\n"}, err: io.EOF, framing: Raw},
		{name: "raw first read in read-size pieces", readSize: 4, steps: chunks("abcdefghij"), want: []string{"abcd", "efgh", "ij"}, err: io.EOF, framing: Raw},
		{name: "first line over the limit is too long", steps: chunks("123456789\n"), err: ErrTooLong, framing: Line},
		{name: "LF at the read size", readSize: 4, steps: chunks("abc\ndef\n"), want: []string{"abc", "def"}, err: io.EOF, framing: Line},
		{name: "line limit+1 after picking line", steps: chunks("a\n", "123456789\n"), want: []string{"a"}, err: ErrTooLong, framing: Line},
		{name: "line exactly the limit", steps: chunks("\n12345678", "\r\n"), want: []string{"", "12345678"}, err: io.EOF, framing: Line},
		{name: "line EOF mid-line", steps: chunks("a\nbc"), want: []string{"a", "bc"}, err: io.EOF, framing: Line},
		{name: "raw limit+1 is two messages", steps: chunks("123456789"), want: []string{"12345678", "9"}, err: io.EOF, framing: Raw},
		{name: "NUL and invalid UTF-8", steps: chunks("\x00\xff\n\xc3\x28\n"), want: []string{"\x00\xff", "\xc3\x28"}, err: io.EOF, framing: Line},
	})
}
