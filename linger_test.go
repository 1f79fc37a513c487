package porta

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestLingerIsBounded: a peer that keeps trickling input after the server
// hung up cannot keep the closing connection open past lingerMaxFactor
// times the linger timeout, although it is never silent for a timeout.
func TestLingerIsBounded(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}

	const timeout = 50 * time.Millisecond
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte every 20 ms: never silent for 50 ms
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := peer.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}
	}()
	// Without the bound the linger would last as long as the trickle; a
	// bound well above lingerMaxFactor*timeout (500 ms) tells the two
	// apart on a loaded machine.
	start := time.Now()
	done := make(chan struct{})
	go func() { closeGracefully(server, timeout); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("linger still going after 5 s with a trickling peer")
	}
	took := time.Since(start)
	if took < lingerMaxFactor*timeout/2 {
		t.Errorf("linger took %v: it should wait while the peer sends", took)
	}
}

// TestCloseNowSendsNoAlert checks that closeNow closes a TLS connection
// without its close_notify alert: tls.Conn.Close writes the alert, which
// blocks (for up to 5 s) when the peer does not read, as over a pipe
// nobody reads.
func TestCloseNowSendsNoAlert(t *testing.T) {
	t.Parallel()
	config, _, err := SelfSignedTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	serverSide, clientSide := net.Pipe()
	defer clientSide.Close()
	server := tls.Server(serverSide, config)
	client := tls.Client(clientSide, &tls.Config{InsecureSkipVerify: true})
	handshook := make(chan error, 1)
	go func() { handshook <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-handshook; err != nil {
		t.Fatal(err)
	}
	// The client reads nothing from now on: any write to it blocks.
	done := make(chan struct{})
	go func() { closeNow(server); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("closeNow blocked on a peer that does not read")
	}
}
