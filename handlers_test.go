package porta_test

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/porta-project/porta"
)

// recorder is a ResponseWriter that keeps the replies and notes a hang-up.
type recorder struct {
	replies []string
	closed  bool
}

var _ porta.ResponseWriter = (*recorder)(nil)

func (r *recorder) Write(p []byte) (int, error) {
	if r.closed {
		return 0, porta.ErrHungUp
	}
	r.replies = append(r.replies, string(p))
	return len(p), nil
}

func (r *recorder) Close() error {
	r.closed = true
	return nil
}

var testPeer = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}

// serveOne passes body to h as one message and returns what h did.
func serveOne(h porta.Handler, body string) *recorder {
	w := new(recorder)
	h.ServeMessage(w, &porta.Message{Body: []byte(body), RemoteAddr: testPeer})
	return w
}

// checkServe checks that h answers body with exactly replies, and hangs
// up or not as closed says.
func checkServe(t *testing.T, h porta.Handler, body string, replies []string, closed bool) {
	t.Helper()
	w := serveOne(h, body)
	if !slices.Equal(w.replies, replies) || w.closed != closed {
		t.Errorf("serve %q: replies %q, hung up %v; want %q, %v", body, w.replies, w.closed, replies, closed)
	}
}

func TestEcho(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"hello", "", "héllo wörld", "\xff\xfe", "with\ttab"} {
		checkServe(t, porta.Echo, body, []string{body}, false)
	}
}

func TestUpper(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"hello, World 123", "HELLO, WORLD 123"},
		{"", ""},
		{"ALREADY", "ALREADY"},
		{"straße", "STRAßE"}, // ß has no single upper-case rune
		{"héllo", "HÉLLO"},
		{"ab ünïcödé", "AB ÜNÏCÖDÉ"},
		{"\xff\xfe", "ERR invalid UTF-8"},
		{"ok then \xc3", "ERR invalid UTF-8"},
		{"é\xff", "ERR invalid UTF-8"},
	}
	for _, tt := range tests {
		checkServe(t, porta.Upper, tt.in, []string{tt.want}, false)
	}

	// ASCII is converted in place, in the message's own buffer.
	body := []byte("in place")
	w := new(recorder)
	porta.Upper.ServeMessage(w, &porta.Message{Body: body})
	if string(body) != "IN PLACE" || !slices.Equal(w.replies, []string{"IN PLACE"}) {
		t.Errorf("after Upper: body %q, replies %q; want both IN PLACE", body, w.replies)
	}
}

func TestReply(t *testing.T) {
	t.Parallel()
	h := porta.Reply("accepted")
	for _, body := range []string{"anything", "", "\xff"} {
		checkServe(t, h, body, []string{"accepted"}, false)
	}
	checkServe(t, porta.Reply(""), "x", []string{""}, false)
}

func TestHangUpOn(t *testing.T) {
	t.Parallel()
	h := porta.HangUpOn("close", "closed", porta.Echo)
	for _, body := range []string{"close", "CLOSE", " Close\t", "\tcLoSe\r", "  close  "} {
		checkServe(t, h, body, []string{"closed"}, true)
	}
	for _, body := range []string{"closer", "clo se", "", "close it", "xclose"} {
		checkServe(t, h, body, []string{body}, false)
	}

	// The word is trimmed too, and an empty reply sends nothing.
	quiet := porta.HangUpOn(" QUIT ", "", porta.Upper)
	checkServe(t, quiet, "quit", nil, true)
	checkServe(t, quiet, "stay", []string{"STAY"}, false)

	// An empty word never matches: the handler is next itself.
	for _, word := range []string{"", "  \t"} {
		h := porta.HangUpOn(word, "bye", porta.Echo)
		for _, body := range []string{"", " ", "bye"} {
			checkServe(t, h, body, []string{body}, false)
		}
	}
}

func TestIsWord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body, word string
		want       bool
	}{
		{"quit", "quit", true},
		{"QUIT", "quit", true},
		{" Quit\r\n", "quit", true},
		{"quit!", "quit", false},
		{"qui", "quit", false},
		{"", "quit", false},
		{"q u i t", "quit", false},
		{"exit", "quit", false},
		{"ÉTÉ", "été", true},
		// Case folding across rune sizes: the Kelvin sign (3 bytes) is
		// K, the long s (2 bytes) is S.
		{"kill", "\u212Aill", true},
		{"\u212A\u212A\u212A", "kkk", true},
		{"a\u212Ab", "akb", true},
		{"\u017F", "S", true},
		{"\u212A\u212A\u212A\u212A", "k", false},
		{"\u00A0quit\u0085", "quit", true},
		{"a long message that is not the word", "quit", false},
		{"\tquit   \v", "quit", true},
	}
	for _, tt := range tests {
		if got := porta.IsWord([]byte(tt.body), []byte(tt.word)); got != tt.want {
			t.Errorf("IsWord(%q, %q) = %v, want %v", tt.body, tt.word, got, tt.want)
		}
	}
}

// TestIsWordAgreesWithDefinition checks IsWord's shortcuts against its
// definition, on bodies made of white space, letters whose folds differ
// in size, and ASCII.
func TestIsWordAgreesWithDefinition(t *testing.T) {
	t.Parallel()
	parts := []string{" ", "\t", "\r\n", "\u00A0", "\u0085", "k", "K", "\u212A", "s", "\u017F", "\u00E5", "\u212B", "\u03A9", "\u2126", "a", "\xff", "x"}
	words := []string{"", "k", "kk", "ks", "\u212As", "s\u00E5", "\u2126", "kkkkkk", "x"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var b []byte
		for range r.IntN(12) {
			b = append(b, parts[r.IntN(len(parts))]...)
		}
		word := []byte(words[r.IntN(len(words))])
		if got, want := porta.IsWord(b, word), bytes.EqualFold(bytes.TrimSpace(b), word); got != want {
			t.Fatalf("IsWord(%q, %q) = %v, want %v", b, word, got, want)
		}
	}
}

func TestOnceHandler(t *testing.T) {
	t.Parallel()
	h := porta.Once(porta.Upper)
	checkServe(t, h, "first", []string{"FIRST"}, true)

	// Once hangs up even when the handler it wraps writes nothing.
	silent := porta.Once(porta.HandlerFunc(func(porta.ResponseWriter, *porta.Message) {}))
	checkServe(t, silent, "x", nil, true)
}

func TestHandlerFunc(t *testing.T) {
	t.Parallel()
	var got *porta.Message
	h := porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		got = m
		w.Write([]byte("seen " + string(m.Body)))
	})
	checkServe(t, h, "it", []string{"seen it"}, false)
	if got == nil || got.RemoteAddr != testPeer {
		t.Errorf("handler saw message %+v", got)
	}
	if (&porta.Message{}).Context() == nil {
		t.Error("a zero Message has a nil Context")
	}
}

func TestChain(t *testing.T) {
	t.Parallel()
	var trace []string
	named := func(name string) porta.Middleware {
		return func(next porta.Handler) porta.Handler {
			return porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
				trace = append(trace, name+" in")
				next.ServeMessage(w, m)
				trace = append(trace, name+" out")
			})
		}
	}
	h := porta.Chain(porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		trace = append(trace, "handler")
		w.Write(m.Body)
	}), named("a"), named("b"), named("c"))
	checkServe(t, h, "x", []string{"x"}, false)
	want := []string{"a in", "b in", "c in", "handler", "c out", "b out", "a out"}
	if !slices.Equal(trace, want) {
		t.Errorf("Chain order %q, want %q", trace, want)
	}

	// No middleware: the handler itself.
	checkServe(t, porta.Chain(porta.Upper), "up", []string{"UP"}, false)
}

func TestLogMessages(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := porta.Chain(porta.Echo, porta.LogMessages(slog.New(slog.NewTextHandler(&buf, nil))))
	checkServe(t, h, "hello", []string{"hello"}, false)
	out := buf.String()
	if !strings.Contains(out, "Received: hello") || !strings.Contains(out, testPeer.String()) {
		t.Errorf("log %q; want it to hold %q and the peer %s", out, "Received: hello", testPeer)
	}
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("logged %d lines for one message:\n%s", n, out)
	}
}

func TestIsLocal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a    net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 1, 2, 3), Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 1}, true},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, false},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}, false},
		{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, true},
		{&net.UDPAddr{IP: net.IPv4(192, 168, 1, 1), Port: 1}, false},
		{&net.UnixAddr{Name: "/tmp/porta.sock", Net: "unix"}, true},
		{&net.UnixAddr{Name: "", Net: "unix"}, true},
		{&net.IPAddr{IP: net.IPv4(127, 0, 0, 1)}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := porta.IsLocal(tt.a); got != tt.want {
			t.Errorf("IsLocal(%v) = %v, want %v", tt.a, got, tt.want)
		}
	}
}

func TestCloseReasonString(t *testing.T) {
	t.Parallel()
	reasons := porta.CloseReasons()
	if len(reasons) == 0 || reasons[0] != porta.ClosePeer {
		t.Fatalf("CloseReasons() = %v", reasons)
	}
	named := []porta.CloseReason{
		porta.ClosePeer, porta.CloseTruncated, porta.CloseHangUp, porta.CloseIdle,
		porta.CloseFrameTimeout, porta.CloseTooLong, porta.CloseSlowConsumer,
		porta.CloseLimit, porta.CloseShutdown, porta.ClosePanic, porta.CloseError,
	}
	for _, r := range named {
		if !slices.Contains(reasons, r) {
			t.Errorf("CloseReasons() lacks %d (%s)", r, r)
		}
	}
	seen := make(map[string]porta.CloseReason)
	for i, r := range reasons {
		if int(r) != i {
			t.Errorf("CloseReasons()[%d] = %d, want them in order", i, r)
		}
		s := r.String()
		if s == "" || s == "unknown" || strings.ContainsAny(s, " \t\n\"") {
			t.Errorf("CloseReason(%d).String() = %q, want a label", r, s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("CloseReason(%d) and CloseReason(%d) are both %q", prev, r, s)
		}
		seen[s] = r
	}
	if s := porta.CloseReason(len(reasons)).String(); s != "unknown" {
		t.Errorf("CloseReason(%d).String() = %q, want unknown", len(reasons), s)
	}
	for r, want := range map[porta.CloseReason]string{
		porta.ClosePeer: "peer_closed", porta.CloseIdle: "idle_timeout", porta.ClosePanic: "panic",
	} {
		if got := r.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", r, got, want)
		}
	}
}
