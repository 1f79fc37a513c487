//go:build linux

package porta_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// TestTimeoutResetsStuckPeer checks the close of a connection ended by a
// timeout. A peer that stopped reading while its replies still sit in the
// server's send buffer is reset, so that the closed socket does not stay
// in FIN-WAIT-1 behind it, holding the replies, while the kernel retries a
// peer that does not read. A peer that has read its replies gets the
// orderly close (end of stream, no reset).
func TestTimeoutResetsStuckPeer(t *testing.T) {
	const timeout = 300 * time.Millisecond
	line := append(bytes.Repeat([]byte("x"), 1023), '\n')
	echoed := bytes.Repeat(line, 64) // 64 KiB of requests, echoed
	big := bytes.Repeat([]byte("y"), 64<<10)
	for _, tc := range []struct {
		name               string
		frame, idle, write time.Duration
		requests           []byte
		handler            porta.Handler // nil: echo
		stall              string        // what the peer sends last, before it goes quiet
		reason             porta.CloseReason
	}{
		{"frame timeout", timeout, 0, time.Minute, echoed, nil, "half a line", porta.CloseFrameTimeout},
		{"idle", 0, timeout, time.Minute, echoed, nil, "", porta.CloseIdle},
		// 4 MiB of replies, twice the send buffer, to 256 bytes read at
		// once: the server's write blocks with no input left unread
		// (which would make the kernel reset the connection anyway).
		{"write timeout", 0, 0, timeout, bytes.Repeat([]byte("big\n"), 64), porta.HandlerFunc(func(w porta.ResponseWriter, _ *porta.Message) {
			w.Write(big)
		}), "", porta.CloseSlowConsumer},
	} {
		for _, reads := range []bool{false, true} {
			if reads && tc.reason == porta.CloseSlowConsumer {
				continue // a peer that reads is no slow consumer
			}
			t.Run(fmt.Sprintf("%s/reads=%v", tc.name, reads), func(t *testing.T) {
				srv := &porta.Server{
					Handler:      tc.handler,
					Framing:      frame.Line,
					FrameTimeout: tc.frame,
					IdleTimeout:  tc.idle,
					WriteTimeout: tc.write,
				}
				addr := serveBigSendBuffer(t, srv)

				// A 4 KiB receive buffer, set before connecting: the
				// server's replies cannot all reach it.
				d := net.Dialer{Timeout: ioTimeout, Control: socketOption(syscall.SO_RCVBUF, 4<<10)}
				nc, err := d.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(ioTimeout))
				if _, err := nc.Write(tc.requests); err != nil {
					t.Fatal(err)
				}
				if reads {
					readExactly(t, nc, string(tc.requests))
				}
				if _, err := nc.Write([]byte(tc.stall)); err != nil {
					t.Fatal(err)
				}
				server := nc.RemoteAddr().(*net.TCPAddr).Port
				client := nc.LocalAddr().(*net.TCPAddr).Port
				waitFor(t, waitTimeout, "the timeout to close the connection", func() bool {
					return srv.Stats().Closed[tc.reason] == 1
				})

				state := tcpState(t, server, client) // before reading lets it drain
				rest, err := io.ReadAll(nc)
				if !reads {
					if !errors.Is(err, syscall.ECONNRESET) {
						t.Errorf("the peer that did not read got %v after %d bytes, want a reset", err, len(rest))
					}
					if state != "" {
						t.Errorf("the server's socket is left in state %s, want it gone", state)
					}
					return
				}
				if err != nil || len(rest) != 0 {
					t.Errorf("the peer that read its replies got %d more bytes and %v, want the end of stream", len(rest), err)
				}
			})
		}
	}
}

// serveBigSendBuffer serves srv on a TCP loopback listener whose
// connections have a fixed send buffer, large enough for the echoes in
// TestTimeoutResetsStuckPeer, so that the server's writes block only
// where the test wants them to.
func serveBigSendBuffer(t *testing.T, srv *porta.Server) string {
	t.Helper()
	lc := net.ListenConfig{Control: socketOption(syscall.SO_SNDBUF, 1<<20)}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return l.Addr().String()
}

// socketOption is a Control function that sets one SOL_SOCKET option
// before a socket listens or connects.
func socketOption(opt, value int) func(_, _ string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, value) })
		return err
	}
}

// tcpState returns the state of the IPv4 socket on 127.0.0.1 whose local
// port is local and remote port remote, from /proc/net/tcp; "" if there
// is none.
func tcpState(t *testing.T, local, remote int) string {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	states := map[string]string{"01": "ESTABLISHED", "04": "FIN-WAIT-1", "05": "FIN-WAIT-2", "06": "TIME-WAIT", "07": "CLOSE", "08": "CLOSE-WAIT", "09": "LAST-ACK", "0B": "CLOSING"}
	want := fmt.Sprintf("0100007F:%04X 0100007F:%04X", local, remote)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && fields[1]+" "+fields[2] == want {
			if s, ok := states[fields[3]]; ok {
				return s
			}
			return fields[3]
		}
	}
	return ""
}
