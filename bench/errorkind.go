package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// An ErrorKind is a kind of error that a run counts. Its String is the key
// in Result.Errors.
type ErrorKind uint8

// The kinds of error. The first four are wrong replies; the others are
// connection errors.
const (
	// KindWrong is a reply that is not the expected one (nor another
	// message's reply), or one too long to be a reply.
	KindWrong ErrorKind = iota
	// KindReordered is the reply of another message of the same
	// connection where the next one's was expected.
	KindReordered
	// KindMissing is a message whose reply never came: its connection
	// ended or timed out first.
	KindMissing
	// KindExtra is a reply that came when no message was waiting for one.
	KindExtra
	// KindRefused is a connection attempt that nothing listened to.
	KindRefused
	// KindConnectTimeout is a connection attempt that took longer than
	// Config.Timeout.
	KindConnectTimeout
	// KindConnect is a connection attempt that failed otherwise.
	KindConnect
	// KindClosed is a connection that the server closed before the run
	// ended.
	KindClosed
	// KindReset is a connection that the server reset.
	KindReset
	// KindTimeout is a connection that waited longer than Config.Timeout
	// for a reply.
	KindTimeout
	// KindIO is a connection that failed with another read or write
	// error.
	KindIO

	numKinds
)

var kindNames = [numKinds]string{
	KindWrong:          "wrong",
	KindReordered:      "reordered",
	KindMissing:        "missing",
	KindExtra:          "extra",
	KindRefused:        "connect_refused",
	KindConnectTimeout: "connect_timeout",
	KindConnect:        "connect_error",
	KindClosed:         "closed",
	KindReset:          "reset",
	KindTimeout:        "timeout",
	KindIO:             "io_error",
}

// String returns the kind's name, such as "wrong" or "connect_refused".
func (k ErrorKind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// IsReply reports whether k is a kind of wrong reply rather than a
// connection error.
func (k ErrorKind) IsReply() bool { return k <= KindExtra }

// connectKind classifies a failed connection attempt.
func connectKind(err error) ErrorKind {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENOENT):
		return KindRefused
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return KindConnectTimeout
	}
	return KindConnect
}

// ioKind classifies the error that ended an established connection.
func ioKind(err error) ErrorKind {
	switch {
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return KindClosed
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return KindReset
	case errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return KindTimeout
	}
	return KindIO
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
