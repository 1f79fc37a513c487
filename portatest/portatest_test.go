package portatest_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/portatest"
)

// TestMain fails the run if a server started by the package outlives its
// test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNewServer(t *testing.T) {
	t.Parallel()
	s := portatest.NewServer(t, nil) // nil: echo
	if !strings.HasPrefix(s.Addr, "tcp://127.0.0.1:") {
		t.Errorf("Addr = %q, want tcp://127.0.0.1:PORT", s.Addr)
	}
	c := s.Dial(frame.Auto)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, msg := range []string{"hello", "", "again"} {
		got, err := c.Exchange([]byte(msg))
		if err != nil || string(got) != msg {
			t.Fatalf("Exchange(%q) = %q, %v", msg, got, err)
		}
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"tcp", "tcp4", "tcp6", "unix", "udp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			s := portatest.Start(t, &porta.Server{Handler: porta.Upper, Framing: frame.Line}, network)
			scheme := network
			if strings.HasPrefix(network, "tcp") {
				scheme = "tcp" // a TCP listener's address names its network "tcp"
			}
			if !strings.HasPrefix(s.Addr, scheme+"://") {
				t.Errorf("Addr = %q, want a %s:// address", s.Addr, scheme)
			}
			c := s.Dial(frame.Line)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if got, err := c.Exchange([]byte("shout")); err != nil || string(got) != "SHOUT" {
				t.Fatalf("Exchange = %q, %v; want SHOUT", got, err)
			}
		})
	}
}

func TestDialRaw(t *testing.T) {
	t.Parallel()
	s := portatest.Start(t, &porta.Server{Handler: porta.Once(porta.Echo), Framing: frame.Line}, "tcp")
	nc := s.DialRaw()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte("one\ntwo\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(nc)
	if err != nil || string(got) != "one\n" {
		t.Fatalf("read %q, %v; want %q then EOF", got, err, "one\n")
	}
}
