package frame

import (
	"errors"
	"io"
	"testing"
)

// TestFillFrom: FillFrom reads through the given function, once per call
// and into non-empty space, with Fill's rules for errors: a timeout is
// returned and not kept, anything else ends the stream.
func TestFillFrom(t *testing.T) {
	d := NewDecoder(nil, Line, 16) // no reader: every read goes through FillFrom
	calls := 0
	feed := func(b string, err error) func(p []byte) (int, error) {
		return func(p []byte) (int, error) {
			calls++
			if len(p) == 0 {
				t.Fatal("FillFrom offered no space")
			}
			return copy(p, b), err
		}
	}
	if err := d.FillFrom(feed("", timeoutError{})); !errors.Is(err, timeoutError{}) {
		t.Fatalf("timeout: FillFrom = %v", err)
	}
	if err := d.FillFrom(feed("hel", nil)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.Decode(); ok || err != nil {
		t.Fatalf("half a line decoded: %v, %v", ok, err)
	}
	if err := d.FillFrom(feed("lo\nbye", io.EOF)); err != nil {
		t.Fatalf("data with EOF: FillFrom = %v, want nil (kept for Decode)", err)
	}
	var got []string
	for {
		msg, ok, err := d.Decode()
		if !ok {
			if err != io.EOF {
				t.Fatalf("end: %v, want io.EOF", err)
			}
			break
		}
		got = append(got, string(msg))
	}
	if len(got) != 2 || got[0] != "hello" || got[1] != "bye" {
		t.Fatalf("messages %q, want hello, bye", got)
	}
	if err := d.FillFrom(feed("more", nil)); err != io.EOF || calls != 3 {
		t.Fatalf("after the end: FillFrom = %v after %d reads; want io.EOF without reading", err, calls)
	}
}
