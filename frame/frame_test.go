package frame

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

var framings = []Framing{Auto, Line, Length, Raw}

func TestStringParse(t *testing.T) {
	t.Parallel()
	names := map[Framing]string{Auto: "auto", Line: "line", Length: "len", Raw: "raw"}
	for _, f := range framings {
		if f.String() != names[f] {
			t.Errorf("%d.String() = %q, want %q", f, f.String(), names[f])
		}
		got, err := Parse(f.String())
		if err != nil || got != f {
			t.Errorf("Parse(%q) = %v, %v; want %v", f.String(), got, err, f)
		}
	}
	if got, err := Parse("length"); err != nil || got != Length {
		t.Errorf(`Parse("length") = %v, %v`, got, err)
	}
	if s := Framing(9).String(); s != "framing(9)" {
		t.Errorf("Framing(9).String() = %q", s)
	}
	for _, s := range []string{"", "LINE", "Line", " line", "lines", "framing(9)", "length\x00"} {
		if f, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", s, f)
		} else if !strings.Contains(err.Error(), "unknown framing") {
			t.Errorf("Parse(%q): error %q does not say what is wrong", s, err)
		}
	}
	var zero Framing
	if zero != Auto {
		t.Error("the zero Framing is not Auto")
	}
}

func TestAppend(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		f    Framing
		msg  string
		want string
	}{
		{Line, "", "\n"},
		{Line, "abc", "abc\n"},
		{Line, "a\rb", "a\rb\n"},
		{Line, "\x00\xff", "\x00\xff\n"},
		// The decoder drops one '\r' before '\n': a message's own last '\r'
		// needs a second one to survive.
		{Line, "ab\r", "ab\r\r\n"},
		{Line, "\r", "\r\r\n"},
		{Length, "", "\x00\x00\x00\x00"},
		{Length, "abc", "\x00\x00\x00\x03abc"},
		{Length, strings.Repeat("x", 0x0102), "\x00\x00\x01\x02" + strings.Repeat("x", 0x0102)},
		{Raw, "", ""},
		{Raw, "a\nb", "a\nb"},
		{Auto, "a\nb", "a\nb"},
	} {
		got := Append(nil, c.f, []byte(c.msg))
		if string(got) != c.want {
			t.Errorf("Append(%v, %.20q) = %.30q, want %.30q", c.f, c.msg, got, c.want)
		}
		overhead := Overhead(c.f)
		if c.f == Line && strings.HasSuffix(c.msg, "\r") {
			overhead++
		}
		if len(got) != len(c.msg)+overhead {
			t.Errorf("Append(%v) added %d bytes, Overhead says %d", c.f, len(got)-len(c.msg), Overhead(c.f))
		}
		// Append extends dst and leaves its bytes alone.
		dst := make([]byte, 3, 64)
		copy(dst, "pre")
		if got := Append(dst, c.f, []byte(c.msg)); string(got) != "pre"+c.want {
			t.Errorf("Append(pre, %v, %.20q) = %.30q", c.f, c.msg, got)
		}
	}
	for f, want := range map[Framing]int{Auto: 0, Line: 1, Length: HeaderLen, Raw: 0} {
		if Overhead(f) != want {
			t.Errorf("Overhead(%v) = %d, want %d", f, Overhead(f), want)
		}
	}
}

// TestAppendDecode checks decode(Append(m)) == m for Line and Length, one
// message at a time and all in one stream, for every message Line can
// carry (any bytes but '\n') and Length can carry (any bytes).
func TestAppendDecode(t *testing.T) {
	t.Parallel()
	msgs := []string{
		"", "a", "hello", "\x00", "a\x00b", "\xff\xfe", "\xc3\x28", "\xed\xa0\x80",
		"\r", "a\rb", "\rab", "ab\r", "ab\r\r", "\r\r", "\t \x7f",
		strings.Repeat("x", testMax-1) + "\r", strings.Repeat("y", testMax),
	}
	for _, f := range []Framing{Line, Length} {
		var stream []byte
		for _, m := range msgs {
			enc := Append(nil, f, []byte(m))
			stream = append(stream, enc...)
			got, err := decodeAll(t, NewDecoder(bytes.NewReader(enc), f, testMax))
			if !slices.Equal(got, []string{m}) || err != io.EOF {
				t.Errorf("%v: decode(Append(%q)) = %q, %v", f, m, got, err)
			}
		}
		got, err := decodeAll(t, NewDecoder(bytes.NewReader(stream), f, testMax))
		if !slices.Equal(got, msgs) || err != io.EOF {
			t.Errorf("%v: decode of all messages = %q, %v", f, got, err)
		}
	}
	// Length carries '\n' too.
	m := "a\nb\r\n\n"
	got, err := decodeAll(t, NewDecoder(bytes.NewReader(Append(nil, Length, []byte(m))), Length, testMax))
	if !slices.Equal(got, []string{m}) || err != io.EOF {
		t.Errorf("Length: decode(Append(%q)) = %q, %v", m, got, err)
	}
}

// TestAppendAliased checks that Append frames msg correctly when msg lies
// in dst's array: in its spare capacity (a message built in place after
// dst's bytes, at or after len(dst)) or over dst's own bytes.
func TestAppendAliased(t *testing.T) {
	t.Parallel()
	for _, f := range []Framing{Line, Length, Raw} {
		for _, msg := range []string{"", "abc", "ab\r", "\r", "hello, world\r"} {
			for _, at := range []int{0, 1, 2, 3, 4, 7} {
				// dst is "pre" with msg placed at buf[at:]; at < 3
				// overwrites the end of "pre", which dst then is.
				if f == Length && at < 3+HeaderLen && at+len(msg) > 3 {
					continue // over the prefix's place: not allowed (see Append)
				}
				buf := make([]byte, 64)
				copy(buf, "pre")
				copy(buf[at:], msg)
				dst := buf[:3]
				pre := string(dst)
				got := Append(dst, f, buf[at:at+len(msg)])
				if want := Append([]byte(pre), f, []byte(msg)); string(got) != string(want) {
					t.Errorf("%v: Append(%q, msg %q at %d of its array) = %q, want %q", f, pre, msg, at, got, want)
				}
			}
		}
	}
}
