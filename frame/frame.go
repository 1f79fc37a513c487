// Package frame turns a byte stream into messages and messages into bytes.
//
// TCP and Unix stream sockets carry bytes, not messages: one read can return
// half a message or ten of them. A Framing says where one message ends and
// the next begins:
//
//   - Line: a message ends at '\n'; a '\r' right before it is dropped.
//   - Length: a 4-byte big-endian length, then that many bytes.
//   - Raw: whatever one read returns (at most the read size) is one message.
//   - Auto: Line if the first read of a stream holds a '\n', Raw otherwise.
//
// A Decoder never holds more than one maximal frame in memory, whatever its
// peer sends, and rejects a length prefix over the limit before allocating.
// The package uses only the standard library and never imports porta.
package frame

import (
	"errors"
	"fmt"
)

// Framing is a way of delimiting messages in a byte stream.
// The zero value is Auto.
type Framing uint8

// The framings. The wire format of each is described in docs/protocol.md.
const (
	// Auto picks Line or Raw per stream from its first read: Line if that
	// read holds a '\n', Raw otherwise. The first read takes up to 4 KiB
	// (or one maximal line, if smaller; at least the read size), and if
	// Raw is chosen it is handed out in read-size messages. Auto applies
	// to decoding only; a Decoder reports its choice through Framing.
	Auto Framing = iota
	// Line ends each message at '\n' and drops a '\r' just before it.
	Line
	// Length prefixes each message with its length as 4 big-endian bytes.
	Length
	// Raw takes each read as one message and writes replies as they are.
	Raw
)

// HeaderLen is the size in bytes of the Length framing's prefix.
const HeaderLen = 4

// DefaultMaxSize is the default largest message, in bytes: 64 KiB, the size
// of bufio.MaxScanTokenSize, large enough for any interactive use and small
// enough that ten thousand connections cannot exhaust memory.
const DefaultMaxSize = 64 << 10

// MaxSizeLimit is the largest accepted maximum message size: 16 MiB.
const MaxSizeLimit = 16 << 20

// DefaultReadSize is the default size in bytes of one Raw read, the
// recv(1024) of the socket tutorials.
const DefaultReadSize = 1024

// Errors returned by Decoder. Match them with errors.Is.
var (
	// ErrTooLong means a message exceeded the decoder's maximum size. The
	// stream cannot be resynchronised after it.
	ErrTooLong = errors.New("frame: message too long")
)

var framingNames = [...]string{Auto: "auto", Line: "line", Length: "len", Raw: "raw"}

// String returns the framing's name as used on the command line:
// "auto", "line", "len" or "raw".
func (f Framing) String() string {
	if int(f) < len(framingNames) {
		return framingNames[f]
	}
	return fmt.Sprintf("framing(%d)", uint8(f))
}

// Parse returns the Framing named s: "auto", "line", "len" (or "length")
// or "raw".
func Parse(s string) (Framing, error) {
	switch s {
	case "auto":
		return Auto, nil
	case "line":
		return Line, nil
	case "len", "length":
		return Length, nil
	case "raw":
		return Raw, nil
	}
	return 0, fmt.Errorf("frame: unknown framing %q (want auto, line, len or raw)", s)
}

// Append appends msg framed with f to dst and returns the extended slice.
// Line appends msg and '\n', or "\r\n" when msg ends in '\r' so that the
// decoder, which drops one '\r' before '\n', returns msg whole; it does not
// escape newlines inside msg. Length prepends the 4-byte length. Raw and
// Auto append msg unchanged. For Line, Raw and Auto, msg may share dst's
// array, even lie in its spare capacity (a message built in place after
// dst's bytes); for Length it must not overlap the 4 bytes after dst's
// end, where the length is written first. (Append stays small enough for
// the compiler to inline on the reply path.)
func Append(dst []byte, f Framing, msg []byte) []byte {
	switch f {
	case Line:
		cr := len(msg) > 0 && msg[len(msg)-1] == '\r' // before msg is moved
		dst = append(dst, msg...)
		if cr {
			dst = append(dst, '\r')
		}
		return append(dst, '\n')
	case Length:
		n := uint32(len(msg))
		dst = append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		return append(dst, msg...)
	}
	return append(dst, msg...)
}

// Overhead returns the number of bytes f adds to each message; Line adds
// one more to a message that ends in '\r' (see Append).
func Overhead(f Framing) int {
	switch f {
	case Line:
		return 1
	case Length:
		return HeaderLen
	}
	return 0
}
