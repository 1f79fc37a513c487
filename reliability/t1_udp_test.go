package reliability_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/porta-project/porta"
)

// TestT1BadInputUDP is the UDP subset of T1: an oversize datagram gets the
// ERR naming the limit, a 0-byte datagram is a 0-byte message (Echo
// answers it with a 0-byte datagram), random binary is answered datagram
// by datagram, and no reply is larger than its request, except where the
// handler makes it so (documented below for Upper).
//
// The servers use a 4 KiB limit: with the default 64 KiB one, no oversize
// datagram can be sent over IPv4, whose largest UDP payload is 65,507
// bytes (checked too: such a datagram is echoed whole).
func TestT1BadInputUDP(t *testing.T) {
	const limit = 4096
	tooLong := fmt.Sprintf("ERR message too long (limit %d bytes)", limit)
	echo := startServer(t, &porta.Server{MaxMessageSize: limit}, "udp")
	upper := startServer(t, &porta.Server{MaxMessageSize: limit, Handler: porta.Upper}, "udp")
	dflt := startServer(t, &porta.Server{}, "udp")
	res := baseline(t)
	before := echo.Stats().MessagesIn

	ec, uc, dc := dialUDP(t, echo.Addr), dialUDP(t, upper.Addr), dialUDP(t, dflt.Addr)
	sent := 0
	exchange := func(c net.Conn, req []byte) []byte {
		t.Helper()
		if c == ec {
			sent++
		}
		return udpExchange(t, c, req)
	}

	// Oversize: the ERR, smaller than the request.
	for _, n := range []int{limit + 1, 65507} {
		got := exchange(ec, bytes.Repeat([]byte{'x'}, n))
		checkBytes(t, fmt.Sprintf("reply to a %d-byte datagram", n), got, []byte(tooLong))
	}
	// Exactly the limit, and empty: echoed.
	for _, n := range []int{limit, 0} {
		req := bytes.Repeat([]byte{'y'}, n)
		checkBytes(t, fmt.Sprintf("reply to a %d-byte datagram", n), exchange(ec, req), req)
	}
	// The default limit is above the largest IPv4 datagram.
	big := randomBytes(65507, 65507)
	checkBytes(t, "default server, 65,507-byte datagram", udpExchange(t, dc, big), big)

	// Random binary, random sizes: Echo answers each with itself.
	rng := rand.New(rand.NewPCG(1, 2))
	var reqs [][]byte
	for i := range 200 {
		req := randomBytes(uint64(i), 1+rng.IntN(limit))
		reqs = append(reqs, req)
		got := exchange(ec, req)
		if len(got) > len(req) {
			t.Errorf("Echo: %d-byte reply to a %d-byte datagram", len(got), len(req))
		}
		checkBytes(t, fmt.Sprintf("Echo reply to random datagram %d", i), got, req)
	}

	// Upper answers invalid UTF-8 with "ERR invalid UTF-8" (17 bytes), so a
	// shorter invalid datagram gets a larger reply: up to 17x for one
	// byte. Case mapping can also grow valid text (U+0250, 2 bytes, has a
	// 3-byte upper case). Checked against the model and reported.
	reqs = append(reqs, []byte{0xff}, []byte("\u0250\u0250"))
	larger, worst := 0, 0.0
	for i, req := range reqs {
		got := udpExchange(t, uc, req)
		checkBytes(t, fmt.Sprintf("Upper reply to datagram %d", i), got, upperReply(req))
		if len(got) > len(req) {
			larger++
			worst = max(worst, float64(len(got))/float64(len(req)))
		}
	}
	t.Logf("UDP: Echo never replied with more than it got; Upper replied with more than it got to %d of %d datagrams, at worst %.1fx (a 1-byte invalid datagram gets the 17-byte ERR)",
		larger, len(reqs), worst)

	if got := echo.Stats().MessagesIn - before; got != uint64(sent) {
		t.Errorf("Stats().MessagesIn grew by %d, want %d (one per datagram)", got, sent)
	}
	for _, c := range []net.Conn{ec, uc, dc} {
		c.Close()
	}
	res.waitBack(t, t1Settle, "goroutines and descriptors after the UDP cases")
}

func dialUDP(t testing.TB, addr string) net.Conn {
	t.Helper()
	a, err := porta.ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial(a.Network, a.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpExchange sends req as one datagram and returns the one reply.
func udpExchange(t testing.TB, c net.Conn, req []byte) []byte {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("sending a %d-byte datagram: %v", len(req), err)
	}
	buf := make([]byte, 70*sizeKiB)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reply to a %d-byte datagram: %v", len(req), err)
	}
	return buf[:n]
}
