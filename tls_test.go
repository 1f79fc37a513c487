package porta_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/portatest"
)

// tlsPKI is a throwaway public key infrastructure for the TLS tests: a CA
// and the certificates it issued.
type tlsPKI struct {
	caPool    *x509.CertPool
	caPEM     []byte
	server    tlsIssued // for 127.0.0.1, ::1 and localhost
	expired   tlsIssued // as server, but expired an hour ago
	wrongHost tlsIssued // valid, for example.com only
	client    tlsIssued // a client certificate, CN "porta-test-client"
}

// tlsIssued is one issued certificate with its key.
type tlsIssued struct {
	cert            tls.Certificate
	certPEM, keyPEM []byte
}

// testPKI returns the tests' PKI, made once per test binary.
var testPKI = sync.OnceValue(func() *tlsPKI {
	caKey := newTLSTestKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "porta test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER := tlsMust(x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey))
	ca := tlsMust(x509.ParseCertificate(caDER))
	p := &tlsPKI{caPool: x509.NewCertPool(), caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
	p.caPool.AddCert(ca)

	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	serverAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	now := time.Now()
	p.server = issueTestCert(ca, caKey, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: loopback, ExtKeyUsage: serverAuth,
	})
	p.expired = issueTestCert(ca, caKey, &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: loopback, ExtKeyUsage: serverAuth,
	})
	p.wrongHost = issueTestCert(ca, caKey, &x509.Certificate{
		SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "example.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"example.com"}, ExtKeyUsage: serverAuth,
	})
	p.client = issueTestCert(ca, caKey, &x509.Certificate{
		SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "porta-test-client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return p
})

func newTLSTestKey() *ecdsa.PrivateKey {
	return tlsMust(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
}

// issueTestCert signs tmpl with the CA and returns it with a fresh key.
func issueTestCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) tlsIssued {
	key := newTLSTestKey()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der := tlsMust(x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey))
	keyDER := tlsMust(x509.MarshalPKCS8PrivateKey(key))
	return tlsIssued{
		cert:    tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// tlsMust panics on an error that cannot happen with good inputs.
func tlsMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// serverConfig returns a server configuration presenting cert.
func (p *tlsPKI) serverConfig(cert tlsIssued) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert.cert}}
}

// mutualConfig returns a server configuration that requires client
// certificates issued by the test CA.
func (p *tlsPKI) mutualConfig() *tls.Config {
	c := p.serverConfig(p.server)
	c.ClientCAs = p.caPool
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c
}

// clientConfig returns a client configuration trusting the test CA.
func (p *tlsPKI) clientConfig() *tls.Config { return &tls.Config{RootCAs: p.caPool} }

// startTLS serves srv with TLS on a free port of 127.0.0.1 until the test
// ends, and returns the tls:// address.
func startTLS(t *testing.T, srv *porta.Server, config *tls.Config) string {
	t.Helper()
	l, err := porta.ListenTLS("tls://127.0.0.1:0", config)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, porta.ErrServerClosed) {
			t.Errorf("serve returned %v, want ErrServerClosed", err)
		}
	})
	return porta.FormatAddr(l.Addr())
}

// dialTLS connects to addr with config, bounding the connection's I/O.
func dialTLS(t *testing.T, addr string, config *tls.Config) (*porta.ClientConn, error) {
	t.Helper()
	d := porta.Dialer{TLSConfig: config, Timeout: 5 * time.Second}
	c, err := d.DialContext(context.Background(), addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, nil
}

// tlsExchange sends msg and checks the reply.
func tlsExchange(t *testing.T, c *porta.ClientConn, msg, want string) {
	t.Helper()
	got, err := c.Exchange([]byte(msg))
	if err != nil || string(got) != want {
		t.Fatalf("exchange %q: got %q, %v; want %q", msg, got, err, want)
	}
}

// waitTLSHandshakeFailures waits until the server has closed n connections
// for a failed handshake.
func waitTLSHandshakeFailures(t *testing.T, srv *porta.Server, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().Closed[porta.CloseTLSHandshake] < n {
		if time.Now().After(deadline) {
			t.Fatalf("closed for a failed TLS handshake: %d connections, want %d", srv.Stats().Closed[porta.CloseTLSHandshake], n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tlsLog is a log destination safe for concurrent use.
type tlsLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *tlsLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *tlsLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestTLSAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, network, address, str string
	}{
		{"tls://127.0.0.1:8443", "tcp", "127.0.0.1:8443", "tls://127.0.0.1:8443"},
		{"tls4://127.0.0.1:8443", "tcp4", "127.0.0.1:8443", "tls4://127.0.0.1:8443"},
		{"tls6://[::1]:8443", "tcp6", "[::1]:8443", "tls6://[::1]:8443"},
		{"tls://:0", "tcp", ":0", "tls://:0"},
	}
	for _, tt := range tests {
		a, err := porta.ParseAddr(tt.in)
		if err != nil {
			t.Errorf("ParseAddr(%q): %v", tt.in, err)
			continue
		}
		if a.Network != tt.network || a.Address != tt.address || !a.TLS || a.String() != tt.str {
			t.Errorf("ParseAddr(%q) = %+v (String %q), want %s %s with TLS, String %q", tt.in, a, a, tt.network, tt.address, tt.str)
		}
	}
	if a, _ := porta.ParseAddr("tcp://127.0.0.1:1"); a.TLS {
		t.Errorf("tcp:// address parsed as TLS")
	}
	for _, bad := range []string{"tls://", "tls://8443", "tls://127.0.0.1:70000"} {
		if _, err := porta.ParseAddr(bad); !errors.Is(err, porta.ErrBadAddress) {
			t.Errorf("ParseAddr(%q) = %v, want ErrBadAddress", bad, err)
		}
	}

	_, err := porta.Listen("tls://127.0.0.1:0")
	if !errors.Is(err, porta.ErrBadAddress) || !strings.Contains(err.Error(), "ListenTLS") {
		t.Errorf("Listen(tls://) = %v, want ErrBadAddress saying to use ListenTLS", err)
	}
	if _, err := porta.ListenTLS("tls://127.0.0.1:0", nil); !errors.Is(err, porta.ErrNoCertificate) {
		t.Errorf("ListenTLS without a config = %v, want ErrNoCertificate", err)
	}
	if _, err := porta.ListenTLS("tls://127.0.0.1:0", &tls.Config{}); !errors.Is(err, porta.ErrNoCertificate) {
		t.Errorf("ListenTLS without a certificate = %v, want ErrNoCertificate", err)
	}
	if _, err := porta.ListenTLS("udp://127.0.0.1:0", testPKI().serverConfig(testPKI().server)); !errors.Is(err, porta.ErrBadAddress) {
		t.Errorf("ListenTLS(udp://) = %v, want ErrBadAddress", err)
	}
	srv := &porta.Server{Addr: "tls://127.0.0.1:0"}
	if err := srv.ListenAndServe(); !errors.Is(err, porta.ErrNoCertificate) {
		t.Errorf("ListenAndServe(tls://) without TLSConfig = %v, want ErrNoCertificate", err)
	}
}

func TestTLSEcho(t *testing.T) {
	t.Parallel()
	p := testPKI()
	// "who" names the client certificate's holder and the TLS version;
	// anything else is echoed.
	h := porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		if string(m.Body) != "who" {
			w.Write(m.Body)
			return
		}
		who := "anonymous"
		if m.TLS == nil {
			who = "plaintext"
		} else if len(m.TLS.PeerCertificates) > 0 {
			who = m.TLS.PeerCertificates[0].Subject.CommonName
		}
		w.Write([]byte(who))
	})
	for _, mutual := range []bool{false, true} {
		for _, f := range []frame.Framing{frame.Line, frame.Length} {
			t.Run(fmt.Sprintf("mutual=%v/%v", mutual, f), func(t *testing.T) {
				t.Parallel()
				serverConfig, clientConfig, want := p.serverConfig(p.server), p.clientConfig(), "anonymous"
				if mutual {
					serverConfig = p.mutualConfig()
					clientConfig.Certificates = []tls.Certificate{p.client.cert}
					want = "porta-test-client"
				}
				srv := &porta.Server{Handler: porta.HangUpOn("close", "closed", h), Framing: f}
				addr := startTLS(t, srv, serverConfig)
				if !strings.HasPrefix(addr, "tls://127.0.0.1:") {
					t.Fatalf("listener address %q, want tls://127.0.0.1:PORT", addr)
				}
				d := porta.Dialer{Framing: f, TLSConfig: clientConfig, Timeout: 5 * time.Second}
				c, err := d.DialContext(context.Background(), addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				for _, msg := range []string{"hello", "", strings.Repeat("x", 40000), "hello again"} {
					tlsExchange(t, c, msg, msg)
				}
				tlsExchange(t, c, "who", want)
				tlsExchange(t, c, "close", "closed")
				if got, err := c.Receive(); err != io.EOF {
					t.Fatalf("after close: %q, %v; want io.EOF", got, err)
				}
				st := srv.Stats()
				if len(st.Listeners) != 1 || st.Listeners[0].Addr != addr {
					t.Errorf("listener stats %+v, want one for %s", st.Listeners, addr)
				}
			})
		}
	}
}

func TestTLSMutualWithoutClientCert(t *testing.T) {
	t.Parallel()
	p := testPKI()
	log := &tlsLog{}
	srv := &porta.Server{Logger: newTLSTestLogger(log)}
	addr := startTLS(t, srv, p.mutualConfig())
	for i, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		config := p.clientConfig()
		config.MaxVersion = version
		c, err := dialTLS(t, addr, config)
		if err == nil {
			// With TLS 1.3 the client's handshake ends before the server
			// has checked its certificate: the refusal comes at the first
			// read.
			var reply []byte
			reply, err = c.Exchange([]byte("hello"))
			if err == nil {
				t.Fatalf("%s without a client certificate: got reply %q", tls.VersionName(version), reply)
			}
		}
		t.Logf("%s: %v", tls.VersionName(version), err)
		waitTLSHandshakeFailures(t, srv, uint64(i+1))
	}
	if out := log.String(); !strings.Contains(out, "reason=tls_handshake") || !strings.Contains(out, "certificate") {
		t.Errorf("log does not show the handshake failure with its cause:\n%s", out)
	}
}

func TestTLSVersions(t *testing.T) {
	t.Parallel()
	p := testPKI()
	dir := t.TempDir()
	certFile, keyFile := writeTLSTestFile(t, dir, "cert.pem", p.server.certPEM), writeTLSTestFile(t, dir, "key.pem", p.server.keyPEM)
	tls13, err := porta.NewServerTLSConfig(certFile, keyFile, "", tls.VersionTLS13)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                 string
		server               *tls.Config
		clientMin, clientMax uint16
		ok                   bool
	}{
		{"TLS 1.1 client", p.serverConfig(p.server), tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2 client", p.serverConfig(p.server), tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS 1.3 client", p.serverConfig(p.server), tls.VersionTLS13, tls.VersionTLS13, true},
		{"min 1.3 server, TLS 1.2 client", tls13, tls.VersionTLS12, tls.VersionTLS12, false},
		{"min 1.3 server, TLS 1.3 client", tls13, tls.VersionTLS12, tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := &porta.Server{}
			addr := startTLS(t, srv, tt.server)
			config := p.clientConfig()
			config.MinVersion, config.MaxVersion = tt.clientMin, tt.clientMax
			c, err := dialTLS(t, addr, config)
			if !tt.ok {
				if err == nil {
					t.Fatalf("handshake succeeded with %s", tls.VersionName(c.Conn().(*tls.Conn).ConnectionState().Version))
				}
				if !errors.Is(err, porta.ErrTLSHandshake) || !strings.HasPrefix(err.Error(), "porta: TLS handshake with 127.0.0.1:") {
					t.Errorf("error %q, want a TLS handshake error naming the address", err)
				}
				waitTLSHandshakeFailures(t, srv, 1)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v := c.Conn().(*tls.Conn).ConnectionState().Version; v != tt.clientMax {
				t.Errorf("negotiated %s, want %s", tls.VersionName(v), tls.VersionName(tt.clientMax))
			}
			tlsExchange(t, c, "hello", "hello")
		})
	}
}

func TestTLSClientVerifies(t *testing.T) {
	t.Parallel()
	p := testPKI()
	server := startTLS(t, &porta.Server{}, p.serverConfig(p.server))
	expired := startTLS(t, &porta.Server{}, p.serverConfig(p.expired))
	wrongHost := startTLS(t, &porta.Server{}, p.serverConfig(p.wrongHost))

	// Each case has a target of its own: the cases run in parallel, and
	// errors.As writes to it.
	tests := []struct {
		name   string
		addr   string
		config *tls.Config
		target any    // the cause the error must hold
		text   string // in the error's text
	}{
		{"unknown CA", server, nil, new(x509.UnknownAuthorityError), "certificate signed by unknown authority"},
		{"expired", expired, p.clientConfig(), new(x509.CertificateInvalidError), "expired"},
		{"wrong host", wrongHost, p.clientConfig(), new(x509.HostnameError), "certificate is valid for example.com, not 127.0.0.1"},
		{"wrong server name", server, &tls.Config{RootCAs: p.caPool, ServerName: "example.com"}, new(x509.HostnameError), "not example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := dialTLS(t, tt.addr, tt.config)
			if err == nil {
				t.Fatal("handshake succeeded")
			}
			host := strings.TrimPrefix(tt.addr, "tls://")
			if !errors.Is(err, porta.ErrTLSHandshake) || !errors.As(err, tt.target) ||
				!strings.HasPrefix(err.Error(), "porta: TLS handshake with "+host+" failed: ") || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q (%T), want a TLS handshake error with %T saying %q", err, errors.Unwrap(err), tt.target, tt.text)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
			// Skipping verification gets through.
			c, err := dialTLS(t, tt.addr, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatalf("with InsecureSkipVerify: %v", err)
			}
			tlsExchange(t, c, "hello", "hello")
		})
	}

	t.Run("CA and host names", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"", "localhost", "127.0.0.1"} {
			config := p.clientConfig()
			config.ServerName = name
			c, err := dialTLS(t, server, config)
			if err != nil {
				t.Fatalf("ServerName %q: %v", name, err)
			}
			tlsExchange(t, c, "hello", "hello")
		}
		port := server[strings.LastIndex(server, ":")+1:]
		c, err := dialTLS(t, "tls://localhost:"+port, p.clientConfig())
		if err != nil {
			t.Skipf("localhost does not resolve to 127.0.0.1 here: %v", err)
		}
		tlsExchange(t, c, "hello", "hello")
	})
}

// tlsClientHello returns the first record a Go TLS client sends: a
// ClientHello.
func tlsClientHello(t *testing.T) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(c1, &tls.Config{ServerName: "localhost"}).Handshake()
	}()
	defer func() { c2.Close(); c1.Close(); <-done }()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	header := make([]byte, 5)
	if _, err := io.ReadFull(c2, header); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(header[3:]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	return append(header, body...)
}

// TestTLSHandshakeTimeout is T9's flood: connections that send nothing or
// half a ClientHello are closed at the handshake timeout, while ordinary
// clients keep completing handshakes.
func TestTLSHandshakeTimeout(t *testing.T) {
	const (
		abusers   = 1000
		normal    = 20
		timeout   = time.Second
		tolerance = 500 * time.Millisecond
	)
	p := testPKI()
	srv := &porta.Server{TLSHandshakeTimeout: timeout}
	addr := startTLS(t, srv, p.serverConfig(p.server))
	hostPort := strings.TrimPrefix(addr, "tls://")
	hello := tlsClientHello(t)
	half := hello[:len(hello)/2]

	// Ordinary clients, spread over the ramp of the abusers.
	handshakes := make([]time.Duration, normal)
	var normalWG sync.WaitGroup
	for i := range normal {
		normalWG.Go(func() {
			time.Sleep(time.Duration(i) * 50 * time.Millisecond)
			start := time.Now()
			d := porta.Dialer{TLSConfig: p.clientConfig(), Timeout: 5 * time.Second}
			c, err := d.DialContext(context.Background(), addr)
			handshakes[i] = time.Since(start)
			if err != nil {
				t.Errorf("ordinary client %d: %v", i, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			msg := fmt.Sprintf("hello %d", i)
			if got, err := c.Exchange([]byte(msg)); err != nil || string(got) != msg {
				t.Errorf("ordinary client %d: got %q, %v; want %q", i, got, err, msg)
			}
		})
	}

	// The abusers: connect at most about 1,000 a second, then each waits
	// for the server to close it.
	lifetimes := make([]time.Duration, 0, abusers)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range abusers {
		nc, err := net.DialTimeout("tcp", hostPort, 5*time.Second)
		if err != nil {
			t.Errorf("abuser %d: %v", i, err)
			break
		}
		connected := time.Now()
		wg.Go(func() {
			defer nc.Close()
			if i%2 == 1 {
				if _, err := nc.Write(half); err != nil {
					t.Errorf("abuser %d: writing half a ClientHello: %v", i, err)
					return
				}
			}
			nc.SetReadDeadline(connected.Add(timeout + 4*tolerance))
			_, err := io.Copy(io.Discard, nc)
			lifetime := time.Since(connected)
			if tlsIsTimeout(err) {
				t.Errorf("abuser %d: not closed within %v", i, lifetime.Round(time.Millisecond))
				return
			}
			mu.Lock()
			lifetimes = append(lifetimes, lifetime)
			mu.Unlock()
		})
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	normalWG.Wait()

	slices.Sort(lifetimes)
	early, late := 0, 0
	for _, d := range lifetimes {
		switch {
		case d < timeout-tolerance:
			early++
		case d > timeout+tolerance:
			late++
		}
	}
	if len(lifetimes) > 0 {
		t.Logf("abusers closed after: min %v, median %v, max %v", lifetimes[0].Round(time.Millisecond),
			lifetimes[len(lifetimes)/2].Round(time.Millisecond), lifetimes[len(lifetimes)-1].Round(time.Millisecond))
	}
	if early+late > 0 {
		t.Errorf("%d of %d abusers closed earlier than %v, %d later than %v", early, len(lifetimes), timeout-tolerance, late, timeout+tolerance)
	}

	slices.Sort(handshakes)
	p99 := handshakes[(len(handshakes)*99-1)/100]
	t.Logf("ordinary clients' connect and handshake: median %v, p99 %v", handshakes[normal/2].Round(time.Microsecond), p99.Round(time.Microsecond))
	if p99 >= timeout {
		t.Errorf("ordinary clients' handshake p99 %v, want under the handshake timeout %v", p99, timeout)
	}
	waitTLSHandshakeFailures(t, srv, abusers)
	if st := srv.Stats(); st.Closed[porta.CloseTLSHandshake] != abusers || st.Panics != 0 {
		t.Errorf("closed for the handshake: %d, panics %d; want %d and 0", st.Closed[porta.CloseTLSHandshake], st.Panics, abusers)
	}
}

func tlsIsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestTLSShutdownDuringHandshake(t *testing.T) {
	t.Parallel()
	p := testPKI()
	l, err := porta.ListenTLS("tls://127.0.0.1:0", p.serverConfig(p.server))
	if err != nil {
		t.Fatal(err)
	}
	srv := &porta.Server{} // the default handshake timeout, 5 s
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().ConnsOpen != 1 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a connection in its handshake: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("shutdown took %v, waiting for the handshake", d)
	}
	if err := <-done; !errors.Is(err, porta.ErrServerClosed) {
		t.Errorf("serve returned %v", err)
	}
	if n := srv.Stats().Closed[porta.CloseShutdown]; n != 1 {
		t.Errorf("closed for the shutdown: %d connections, want 1", n)
	}
}

// TestTLSProbeIsNoError: a peer that connects to a TLS listener and
// leaves without a byte (a port probe, a TCP health check) is closed as
// peer_closed, not counted as a failed handshake; one that leaves in the
// middle of its ClientHello still is.
func TestTLSProbeIsNoError(t *testing.T) {
	t.Parallel()
	p := testPKI()
	srv := &porta.Server{}
	addr := strings.TrimPrefix(startTLS(t, srv, p.serverConfig(p.server)), "tls://")
	for _, sent := range []string{"", "\x16\x03\x01\x00\x10"} { // nothing; a record header, no body
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, sent)
		nc.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().ConnsTotal < 2 || srv.Stats().ConnsOpen > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the two connections did not close: %+v", srv.Stats())
		}
		time.Sleep(2 * time.Millisecond)
	}
	st := srv.Stats()
	if st.Closed[porta.ClosePeer] != 1 || st.Closed[porta.CloseTLSHandshake] != 1 {
		t.Errorf("Closed[peer_closed] = %d, Closed[tls_handshake] = %d; want 1 each (the probe, the cut ClientHello)",
			st.Closed[porta.ClosePeer], st.Closed[porta.CloseTLSHandshake])
	}
}

func TestTLSPlaintextToTLSPort(t *testing.T) {
	t.Parallel()
	p := testPKI()
	log := &tlsLog{}
	srv := &porta.Server{Logger: newTLSTestLogger(log)} // the default handshake timeout, 5 s
	addr := startTLS(t, srv, p.serverConfig(p.server))
	for i, msg := range []string{"hello\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x00\x00\x00\x05hello"} {
		nc, err := net.Dial("tcp", strings.TrimPrefix(addr, "tls://"))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		nc.SetDeadline(start.Add(10 * time.Second))
		if _, err := io.WriteString(nc, msg); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(nc)
		nc.Close()
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("plaintext %q: read %q, then %v; want the connection closed", msg, got, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("plaintext %q: closed after %v, want at once", msg, d)
		}
		waitTLSHandshakeFailures(t, srv, uint64(i+1))
	}
	if out := log.String(); !strings.Contains(out, "reason=tls_handshake") || !strings.Contains(out, "does not look like a TLS handshake") {
		t.Errorf("log does not show the handshake failure with its cause:\n%s", out)
	}
	// The server still serves TLS.
	c, err := dialTLS(t, addr, p.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	tlsExchange(t, c, "hello", "hello")
}

// TestTLSCorruptRecordLogged checks that a connection ended by a read
// error that is not an end of stream (here a TLS record that fails its
// integrity check) logs that error on its close line, with reason error.
func TestTLSCorruptRecordLogged(t *testing.T) {
	t.Parallel()
	p := testPKI()
	log := &tlsLog{}
	srv := &porta.Server{Logger: newTLSTestLogger(log)}
	addr := startTLS(t, srv, p.serverConfig(p.server))
	nc, err := net.Dial("tcp", strings.TrimPrefix(addr, "tls://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	config := p.clientConfig()
	config.ServerName = "localhost"
	tc := tls.Client(nc, config)
	if _, err := tc.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := bufio.NewReader(tc).ReadString('\n'); err != nil || got != "hello\n" {
		t.Fatalf("reply %q, %v; want \"hello\"", got, err)
	}
	// An application data record whose contents are not what the key
	// makes: the server cannot decrypt it.
	record := append([]byte{23, 3, 3, 0, 32}, bytes.Repeat([]byte{0x5a}, 32)...)
	if _, err := nc.Write(record); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, nc)
	waitFor(t, waitTimeout, "the close to be counted", func() bool { return srv.Stats().Closed[porta.CloseError] == 1 })
	var line string
	waitFor(t, waitTimeout, "the close to be logged", func() bool {
		for l := range strings.Lines(log.String()) {
			if strings.Contains(l, "connection closed") {
				line = l
				return true
			}
		}
		return false
	})
	if !strings.Contains(line, "reason=error") || !strings.Contains(line, "err=") || !strings.Contains(line, "tls") {
		t.Errorf("close log line %q, want reason=error with the TLS error", line)
	}
}

// heldWrites passes writes on to its Conn, or keeps them while hold is
// set: a test takes the TLS records a client writes and sends them as it
// likes.
type heldWrites struct {
	net.Conn
	hold bool
	held []byte
}

func (h *heldWrites) Write(p []byte) (int, error) {
	if h.hold {
		h.held = append(h.held, p...)
		return len(p), nil
	}
	return h.Conn.Write(p)
}

// TestTLSTrickledRecord: the frame timeout runs from the first bytes of a
// TLS record, not from when the record is whole, so that a peer trickling
// a record is cut as a slowloris is, not only at the idle timeout. A
// record split by a shorter pause is served, and a connection silent for
// longer than the frame timeout between records is not cut. The trickled
// record starts while the deadline of the record before is still ahead:
// that deadline fires early, and the trickled bytes must keep their
// time through it.
func TestTLSTrickledRecord(t *testing.T) {
	t.Parallel()
	p := testPKI()
	const frameTimeout = 300 * time.Millisecond
	srv := &porta.Server{FrameTimeout: frameTimeout, IdleTimeout: time.Minute}
	addr := startTLS(t, srv, p.serverConfig(p.server))
	nc, err := net.Dial("tcp", strings.TrimPrefix(addr, "tls://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	hw := &heldWrites{Conn: nc}
	config := p.clientConfig()
	config.ServerName = "localhost"
	tc := tls.Client(hw, config)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	record := func(msg string) []byte {
		hw.hold = true
		defer func() { hw.hold, hw.held = false, nil }()
		if _, err := tc.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		return hw.held
	}
	replies := bufio.NewReader(tc)
	expect := func(want string) {
		t.Helper()
		if got, err := replies.ReadString('\n'); err != nil || got != want {
			t.Fatalf("reply %q, %v; want %q", got, err, want)
		}
	}

	r := record("split\n")
	nc.Write(r[:3])
	time.Sleep(frameTimeout / 3)
	nc.Write(r[3:])
	expect("split\n")
	time.Sleep(frameTimeout * 2) // silent between records
	nc.Write(record("whole\n"))
	expect("whole\n")

	r = record("trickled\n")
	// Half a frame timeout after the last record: the deadline its bytes
	// set is still ahead, and fires before the one these bytes need.
	time.Sleep(frameTimeout / 2)
	nc.Write(r[:3])
	start := time.Now()
	if got, err := replies.ReadString('\n'); err == nil || tlsIsTimeout(err) {
		t.Fatalf("a trickled record got %q, %v after %v; want the connection closed", got, err, time.Since(start).Round(time.Millisecond))
	}
	waitFor(t, waitTimeout, "the close to be counted", func() bool { return srv.Stats().ConnsOpen == 0 })
	if n := srv.Stats().Closed[porta.CloseFrameTimeout]; n != 1 {
		t.Errorf("Closed[frame_timeout] = %d, want 1 (closed %v)", n, srv.Stats().Closed)
	}
}

// newTLSTestLogger returns a text logger writing to w.
func newTLSTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func TestTLSClientHelloToPlaintextPort(t *testing.T) {
	t.Parallel()
	p := testPKI()
	s := portatest.NewServer(t, nil) // a plaintext echo server
	hostPort := strings.TrimPrefix(s.Addr, "tcp://")

	// porta's TLS client against it fails cleanly, in time.
	d := porta.Dialer{TLSConfig: p.clientConfig(), Timeout: time.Second}
	c, err := d.DialContext(context.Background(), "tls://"+hostPort)
	if err == nil {
		c.Close()
		t.Fatal("TLS handshake with a plaintext server succeeded")
	}
	if !errors.Is(err, porta.ErrTLSHandshake) {
		t.Errorf("error %q, want a TLS handshake error", err)
	}
	t.Logf("TLS client to a plaintext server: %v", err)

	// A raw ClientHello is data to the plaintext server: it may be
	// echoed; the connection ends when the client closes.
	nc := s.DialRaw()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(tlsClientHello(t)); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	// The server survives and serves others.
	c2 := s.Dial(frame.Line)
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	tlsExchange(t, c2, "still there", "still there")
	if st := s.Stats(); st.Panics != 0 {
		t.Errorf("%d panics", st.Panics)
	}
}

func TestSelfSignedTLSConfig(t *testing.T) {
	t.Parallel()
	config, fingerprint, err := porta.SelfSignedTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fingerprint) {
		t.Errorf("fingerprint %q, want 32 upper-case hex pairs joined by colons", fingerprint)
	}
	if config.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %s, want TLS 1.2", tls.VersionName(config.MinVersion))
	}
	leaf, err := x509.ParseCertificate(config.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if key, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || key.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if v := leaf.NotAfter.Sub(time.Now()); v < 23*time.Hour || v > 25*time.Hour {
		t.Errorf("valid for %v more, want about 24h", v)
	}
	addr := startTLS(t, &porta.Server{}, config)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"", "localhost", "127.0.0.1", "::1"} {
		c, err := dialTLS(t, addr, &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			t.Fatalf("ServerName %q: %v", name, err)
		}
		tlsExchange(t, c, "hello", "hello")
		peer := c.Conn().(*tls.Conn).ConnectionState().PeerCertificates[0]
		if got := tlsFingerprint(sha256.Sum256(peer.Raw)); got != fingerprint {
			t.Errorf("the client sees fingerprint %s, want %s", got, fingerprint)
		}
	}
	_, other, err := porta.SelfSignedTLSConfig()
	if err != nil || other == fingerprint {
		t.Errorf("a second certificate: fingerprint %q, %v; want a different one", other, err)
	}
}

// tlsFingerprint formats a digest as upper-case hex pairs joined by colons.
func tlsFingerprint(sum [32]byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// writeTLSTestFile writes data to dir/name and returns the path.
func writeTLSTestFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNewServerTLSConfig(t *testing.T) {
	t.Parallel()
	p := testPKI()
	dir := t.TempDir()
	cert := writeTLSTestFile(t, dir, "cert.pem", p.server.certPEM)
	key := writeTLSTestFile(t, dir, "key.pem", p.server.keyPEM)
	ca := writeTLSTestFile(t, dir, "ca.pem", p.caPEM)
	notPEM := writeTLSTestFile(t, dir, "not.pem", []byte("hello\n"))

	config, err := porta.NewServerTLSConfig(cert, key, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if config.MinVersion != tls.VersionTLS12 || config.ClientAuth != tls.NoClientCert || config.CipherSuites != nil {
		t.Errorf("config: min %s, client auth %v, suites %v; want TLS 1.2, none, Go's defaults", tls.VersionName(config.MinVersion), config.ClientAuth, config.CipherSuites)
	}
	config, err = porta.NewServerTLSConfig(cert, key, ca, tls.VersionTLS13)
	if err != nil {
		t.Fatal(err)
	}
	if config.MinVersion != tls.VersionTLS13 || config.ClientAuth != tls.RequireAndVerifyClientCert || config.ClientCAs == nil {
		t.Errorf("mutual config: min %s, client auth %v", tls.VersionName(config.MinVersion), config.ClientAuth)
	}
	// The mutual configuration works end to end.
	addr := startTLS(t, &porta.Server{}, config)
	client := p.clientConfig()
	client.Certificates = []tls.Certificate{p.client.cert}
	c, err := dialTLS(t, addr, client)
	if err != nil {
		t.Fatal(err)
	}
	tlsExchange(t, c, "hello", "hello")

	for _, tt := range []struct {
		name                string
		cert, key, clientCA string
		min                 uint16
		want                string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), key, "", 0, "nope.pem"},
		{"key mismatch", cert, writeTLSTestFile(t, dir, "other-key.pem", p.client.keyPEM), "", 0, "cannot load"},
		{"not PEM", notPEM, key, "", 0, "not.pem"},
		{"missing CA", cert, key, filepath.Join(dir, "nope-ca.pem"), 0, "nope-ca.pem"},
		{"CA not PEM", cert, key, notPEM, 0, "no PEM certificates"},
		{"TLS 1.1", cert, key, "", tls.VersionTLS11, "TLS 1.1"},
	} {
		_, err := porta.NewServerTLSConfig(tt.cert, tt.key, tt.clientCA, tt.min)
		if err == nil || !strings.HasPrefix(err.Error(), "porta: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tt.name, err, tt.want)
		}
	}
}

// TestTLSKeyUpdateAfterQuiet: a TLS 1.3 peer that stays quiet for longer
// than WriteTimeout and then asks for a key update still gets its next
// reply. crypto/tls answers the request from inside the server's read, so
// that write must not run into the deadline set at the last flush, which
// has long passed. Go's TLS client cannot send a KeyUpdate; openssl
// s_client does (its "K" command).
func TestTLSKeyUpdateAfterQuiet(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not on PATH; this test needs its s_client")
	}
	p := testPKI()
	srv := &porta.Server{
		Handler:      porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) { w.Write(m.Body) }),
		WriteTimeout: 200 * time.Millisecond,
	}
	addr := startTLS(t, srv, p.serverConfig(p.server))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", strings.TrimPrefix(addr, "tls://"),
		"-servername", "localhost", "-tls1_3")
	var stdout, stderr tlsLog
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	waitFor := func(what string, log *tlsLog, text string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(log.String(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no %q within 10s\nstdout:\n%s\nstderr:\n%s\nserver stats: %+v",
					what, text, stdout.String(), stderr.String(), srv.Stats().Closed)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	io.WriteString(stdin, "first\n")
	waitFor("first reply", &stdout, "\nfirst\n")
	time.Sleep(3 * srv.WriteTimeout) // the write deadline of that reply passes
	io.WriteString(stdin, "K\n")     // a key update, asking for the server's
	waitFor("key update", &stderr, "KEYUPDATE")
	io.WriteString(stdin, "second\n")
	waitFor("reply after the key update", &stdout, "\nsecond\n")
	if n := srv.Stats().Closed[porta.CloseSlowConsumer]; n != 0 {
		t.Errorf("%d connections closed as slow consumers, want 0", n)
	}
}

// TestTLSSlowConsumer: a TLS peer that does not read its replies is
// closed once a write has waited WriteTimeout, although the writes that
// crypto/tls may make inside a read are allowed until WriteTimeout after
// the (here much later) idle deadline.
func TestTLSSlowConsumer(t *testing.T) {
	t.Parallel()
	p := testPKI()
	big := bytes.Repeat([]byte("z"), 64<<10)
	srv := &porta.Server{
		Handler:      porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) { w.Write(big) }),
		WriteTimeout: 200 * time.Millisecond,
		IdleTimeout:  time.Minute,
	}
	addr := startTLS(t, srv, p.serverConfig(p.server))
	tc, err := tls.Dial("tcp", strings.TrimPrefix(addr, "tls://"), p.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	// 2,000 requests ask for 128 MiB of replies, and the client reads none.
	if _, err := tc.Write(bytes.Repeat([]byte("big\n"), 2000)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for srv.Stats().Closed[porta.CloseSlowConsumer] != 1 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no slow consumer closed 10s after its requests (idle timeout %v); closed: %v",
				srv.IdleTimeout, srv.Stats().Closed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
