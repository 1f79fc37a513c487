package porta_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
)

// TestPacketCloseCancelsContext: Close cancels the context of a datagram
// being served, as it does a connection's, so that a handler waiting on
// it returns, and a Shutdown that gives up waiting returns too.
func TestPacketCloseCancelsContext(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	h := porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		started <- struct{}{}
		<-m.Context().Done()
	})
	srv := &porta.Server{Handler: h}
	r := serve(t, srv, "udp")
	uc := r.dialUDP(t)
	if _, err := uc.Write([]byte("wait")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(waitTimeout):
		t.Fatal("the handler did not start")
	}
	result := shutdownAsync(srv, 200*time.Millisecond)
	select {
	case err := <-result:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Shutdown did not return after its context ended: the datagram's context was not cancelled")
	}
	if err := r.serveErr(t); !errors.Is(err, porta.ErrServerClosed) {
		t.Errorf("ServePacket = %v, want ErrServerClosed", err)
	}
}

// TestPacketShutdownAnswersQueued: Shutdown answers the datagrams already
// waiting in the socket's receive queue, not only the one being served.
func TestPacketShutdownAnswersQueued(t *testing.T) {
	t.Parallel()
	first := make(chan struct{}, 1)
	release := make(chan struct{})
	h := porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		select {
		case first <- struct{}{}:
			<-release // hold the first until the rest are queued and Shutdown has begun
		default:
		}
		w.Write(m.Body)
	})
	srv := &porta.Server{Handler: h}
	r := serve(t, srv, "udp")
	uc := r.dialUDP(t)
	const n = 20
	for i := range n {
		if _, err := fmt.Fprintf(uc, "m%d", i); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-first
		}
	}
	result := shutdownAsync(srv, 10*time.Second)
	waitFor(t, waitTimeout, "the shutdown to begin", func() bool { return !srv.Ready() })
	time.Sleep(20 * time.Millisecond) // and to wake the socket
	close(release)
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for i := range n {
		k, err := uc.Read(buf)
		if want := fmt.Sprintf("m%d", i); err != nil || string(buf[:k]) != want {
			t.Fatalf("reply %d: %q, %v; want %q (%d of %d queued datagrams answered)", i, buf[:k], err, want, i, n)
		}
	}
	if err := <-result; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

// TestPacketFilters: Allow and Deny apply to datagrams too: a denied
// sender's datagrams are dropped unanswered and counted.
func TestPacketFilters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		allow, deny []netip.Prefix
		answered    bool
	}{
		{"no filters", nil, nil, true},
		{"denied", nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, false},
		{"denied, mapped", nil, []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.1/128")}, false},
		{"not allowed", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil, false},
		{"allowed", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := &porta.Server{Handler: porta.Upper, Allow: tc.allow, Deny: tc.deny}
			r := serve(t, srv, "udp")
			uc := r.dialUDP(t)
			if _, err := uc.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			wait := 5 * time.Second // for a reply that must come
			if !tc.answered {
				wait = 300 * time.Millisecond // a wrong one would come at once
			}
			uc.SetReadDeadline(time.Now().Add(wait))
			buf := make([]byte, 16)
			k, err := uc.Read(buf)
			if got := err == nil && string(buf[:k]) == "HI"; got != tc.answered {
				t.Fatalf("reply %q, %v; answered %v, want %v", buf[:k], err, got, tc.answered)
			}
			st := srv.Stats()
			if want := uint64(0); !tc.answered {
				want = 1
				if st.DatagramsDenied != want || st.MessagesIn != 0 {
					t.Errorf("DatagramsDenied = %d, MessagesIn = %d; want 1 and 0", st.DatagramsDenied, st.MessagesIn)
				}
			} else if st.DatagramsDenied != want {
				t.Errorf("DatagramsDenied = %d, want 0", st.DatagramsDenied)
			}
		})
	}
}

// TestPacketPanicLogLimited: a sender that makes the handler panic with
// every datagram gets at most one stack logged a second, and the records
// count the panics they leave out, so that every panic is accounted for.
func TestPacketPanicLogLimited(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	srv := &porta.Server{
		Logger:  slog.New(slog.NewJSONHandler(&logs, nil)),
		Handler: porta.HandlerFunc(func(porta.ResponseWriter, *porta.Message) { panic("boom") }),
	}
	r := serve(t, srv, "udp")
	uc := r.dialUDP(t)
	const n = 200
	start := time.Now()
	for i := range n {
		if _, err := uc.Write([]byte("boom")); err != nil {
			t.Fatal(err)
		}
		// One at a time, so that none is dropped from a full socket buffer.
		waitFor(t, waitTimeout, "the panic", func() bool { return srv.Stats().Panics > uint64(i) })
	}
	elapsed := time.Since(start)
	srv.Close()
	r.serveErr(t)

	stacks, counted := 0, 0
	for line := range strings.Lines(logs.String()) {
		var rec struct {
			Msg        string
			Stack      string
			Suppressed int
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch rec.Msg {
		case "handler panic":
			if !strings.Contains(rec.Stack, "packet_test.go") {
				t.Errorf("record without the handler's stack: %s", line)
			}
			stacks++
			counted += 1 + rec.Suppressed
		case "handler panics not logged":
			counted += rec.Suppressed
		}
	}
	if most := 1 + int(elapsed/time.Second); stacks < 1 || stacks > most {
		t.Errorf("%d panics in %v logged %d stacks, want 1 to %d", n, elapsed.Round(time.Millisecond), stacks, most)
	}
	if counted != n {
		t.Errorf("the records account for %d panics, want %d:\n%s", counted, n, logs.String())
	}
}

// tooLargeOnce is a PacketConn whose first read fails as Windows fails
// the read of a datagram larger than the buffer.
type tooLargeOnce struct {
	net.PacketConn
	failed bool
}

func (c *tooLargeOnce) ReadFrom(p []byte) (int, net.Addr, error) {
	if !c.failed {
		c.failed = true
		const wsaemsgsize = syscall.Errno(10040)
		return len(p), nil, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("wsarecvfrom", wsaemsgsize)}
	}
	return c.PacketConn.ReadFrom(p)
}

// TestPacketTooLargeForBuffer: a datagram whose read fails for its size
// (Windows' WSAEMSGSIZE) is dropped, and the socket goes on serving.
func TestPacketTooLargeForBuffer(t *testing.T) {
	t.Parallel()
	pc, err := porta.ListenPacket("udp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &porta.Server{}
	done := make(chan error, 1)
	go func() { done <- srv.ServePacket(&tooLargeOnce{PacketConn: pc}) }()
	uc, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.Write([]byte("after"))
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	k, err := uc.Read(buf)
	srv.Close()
	if serr := <-done; !errors.Is(serr, porta.ErrServerClosed) {
		t.Errorf("ServePacket = %v, want ErrServerClosed", serr)
	}
	if err != nil || string(buf[:k]) != "after" {
		t.Fatalf("reply %q, %v; want %q", buf[:k], err, "after")
	}
	if st := srv.Stats(); st.MessagesIn != 2 {
		t.Errorf("MessagesIn = %d, want 2 (the dropped datagram and the answered one)", st.MessagesIn)
	}
}

// dialUDP returns a UDP socket connected to the server, closed when the
// test ends.
func (r *running) dialUDP(t *testing.T) net.Conn {
	t.Helper()
	uc, err := net.Dial("udp", strings.TrimPrefix(r.addr, "udp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	return uc
}
