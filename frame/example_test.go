package frame_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/porta-project/porta/frame"
)

// A Decoder finds the messages of a stream however its bytes are split
// between reads. Here "hello\r\nworld\n" arrives in four pieces that do not
// line up with its two lines.
func ExampleDecoder() {
	stream := io.MultiReader( // each Read returns at most one piece
		strings.NewReader("hel"),
		strings.NewReader("lo\r"),
		strings.NewReader("\nwo"),
		strings.NewReader("rld\n"),
	)
	d := frame.NewDecoder(stream, frame.Line, 0)
	for {
		msg, ok, err := d.Decode()
		if ok {
			fmt.Printf("message %q\n", msg)
			continue
		}
		if err != nil {
			fmt.Println("end:", err)
			return
		}
		// No complete message is buffered: read once more. A read error
		// is kept and reported by Decode after the buffered messages.
		_ = d.Fill()
	}
	// Output:
	// message "hello"
	// message "world"
	// end: EOF
}

// Append frames a message for writing; decoding gives it back.
func ExampleAppend() {
	var out []byte
	out = frame.Append(out, frame.Length, []byte("hi"))
	out = frame.Append(out, frame.Length, []byte("a\nb"))
	fmt.Printf("%q\n", out)

	d := frame.NewDecoder(strings.NewReader(string(out)), frame.Length, 0)
	for {
		msg, err := d.Next()
		if err != nil {
			fmt.Println("end:", err)
			return
		}
		fmt.Printf("%q\n", msg)
	}
	// Output:
	// "\x00\x00\x00\x02hi\x00\x00\x00\x03a\nb"
	// "hi"
	// "a\nb"
	// end: EOF
}
