package porta

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTLSHandshakeTimeout bounds a server's TLS handshake when
// Server.TLSHandshakeTimeout is zero: a handshake takes a few round trips,
// and five seconds covers a slow network and a retransmit or two while
// keeping silent connections from piling up.
const DefaultTLSHandshakeTimeout = 5 * time.Second

// selfSignedValidity is how long a SelfSignedTLSConfig certificate is
// valid: long enough for a day of local testing, short enough that a
// leaked throwaway key soon stops mattering.
const selfSignedValidity = 24 * time.Hour

// ListenTLS opens a TLS listener on addr, a tls://, tls4:// or tls6://
// address (a tcp:// or host:port address is served with TLS too). config
// must hold a certificate (Certificates, GetCertificate or
// GetConfigForClient), else ListenTLS returns an error wrapping
// ErrNoCertificate; NewServerTLSConfig and SelfSignedTLSConfig build one.
// A config whose MinVersion is zero gets TLS 1.2; its cipher suites are
// left to Go's defaults. config is cloned: later changes to it have no
// effect.
//
// The listener's Addr has the network "tls", so FormatAddr prints it as
// "tls://127.0.0.1:8443". Accept does not run the handshake: Serve runs it
// on the connection's own goroutine, within Server.TLSHandshakeTimeout, so
// that a slow or silent peer never holds up the accept loop.
func ListenTLS(addr string, config *tls.Config) (net.Listener, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if a.IsPacket() || a.Network == "unix" {
		return nil, fmt.Errorf("%w %q: TLS is served over TCP only (use tls://host:port)", ErrBadAddress, addr)
	}
	a.TLS = true
	if config == nil || (len(config.Certificates) == 0 && config.GetCertificate == nil && config.GetConfigForClient == nil) {
		return nil, fmt.Errorf("%w to serve %s", ErrNoCertificate, a)
	}
	l, err := listen(a)
	if err != nil {
		return nil, err
	}
	config = config.Clone()
	if config.MinVersion == 0 {
		config.MinVersion = tls.VersionTLS12
	}
	return &tlsListener{Listener: l, config: config}, nil
}

// tlsListener is a TCP listener whose connections speak TLS, server side.
type tlsListener struct {
	net.Listener
	config *tls.Config
}

var _ net.Listener = (*tlsListener)(nil)

// Accept returns the next connection, its handshake not yet run.
func (l *tlsListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(&recordConn{Conn: nc}, l.config), nil
}

// recordConn is the TCP connection under a server's TLS connection. A
// TLS read returns nothing until a whole record has arrived, so a peer
// that trickles the bytes of a record would show the connection loop no
// byte of a frame, and only the idle timeout would end it. recordConn
// notes when bytes first arrive that have not yet reached the loop, and
// keeps the read deadline no later than the frame timeout after them.
type recordConn struct {
	net.Conn
	mu           sync.Mutex
	frameTimeout time.Duration // 0 until the loop sets it, after the handshake
	arrived      time.Time     // when bytes the loop has not seen began to arrive; zero if none
	deadline     time.Time     // the read deadline the loop wants
	set          time.Time     // the read deadline last set on Conn
}

// Read reads from the TCP connection, and starts the frame clock on the
// first bytes since the loop last took what had arrived (see taken).
func (r *recordConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 {
		r.mu.Lock()
		if r.frameTimeout > 0 && r.arrived.IsZero() {
			r.arrived = time.Now()
			// A deadline already as early is left alone, so that a busy
			// connection does not move a timer on every read: it fires
			// early at worst, and the loop arms it again.
			if fd := r.arrived.Add(r.frameTimeout); r.set.IsZero() || r.set.After(fd) {
				r.setReadDeadlineLocked()
			}
		}
		r.mu.Unlock()
	}
	return n, err
}

// SetReadDeadline sets the read deadline to t, or to the frame deadline
// of the bytes that have arrived, if that is earlier.
func (r *recordConn) SetReadDeadline(t time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deadline = t
	return r.setReadDeadlineLocked()
}

// SetDeadline sets the read deadline as SetReadDeadline does, and the
// write deadline.
func (r *recordConn) SetDeadline(t time.Time) error {
	if err := r.SetReadDeadline(t); err != nil {
		return err
	}
	return r.Conn.SetWriteDeadline(t)
}

func (r *recordConn) setReadDeadlineLocked() error {
	t := r.deadline
	if !r.arrived.IsZero() {
		if fd := r.arrived.Add(r.frameTimeout); t.IsZero() || fd.Before(t) {
			t = fd
		}
	}
	r.set = t
	return r.Conn.SetReadDeadline(t)
}

// setFrameTimeout starts (d > 0) or stops the frame clock of bytes that
// arrive, and forgets any that had.
func (r *recordConn) setFrameTimeout(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frameTimeout, r.arrived = d, time.Time{}
	r.setReadDeadlineLocked()
}

// taken is called by the loop after a read that returned data: what had
// arrived has reached it, as whole messages or as the start of a frame,
// whose own clock runs from then. It returns when those bytes began to
// arrive (zero if none had), and forgets them. A read that ends at a
// deadline takes nothing: bytes of a record still incomplete keep their
// time.
func (r *recordConn) taken() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := r.arrived
	r.arrived = time.Time{}
	return at
}

// frameExpired reports whether bytes that have not reached the loop
// arrived a frame timeout or more before now.
func (r *recordConn) frameExpired(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.arrived.IsZero() && !now.Before(r.arrived.Add(r.frameTimeout))
}

// Addr returns the listener's address, with the network "tls".
func (l *tlsListener) Addr() net.Addr { return tlsAddr{l.Listener.Addr()} }

// tlsAddr is the address of a TLS listener: a TCP address whose network
// is "tls", so that FormatAddr prints "tls://host:port".
type tlsAddr struct{ net.Addr }

// Network returns "tls".
func (tlsAddr) Network() string { return "tls" }

// NewServerTLSConfig returns a server TLS configuration that presents the
// certificate chain in certFile (PEM, leaf first) with the private key in
// keyFile. If clientCAFile is not empty, clients must present a
// certificate signed by one of the CA certificates in that PEM file
// (mutual TLS). minVersion is tls.VersionTLS12 or tls.VersionTLS13; zero
// means TLS 1.2. Cipher suites are Go's defaults.
func NewServerTLSConfig(certFile, keyFile, clientCAFile string, minVersion uint16) (*tls.Config, error) {
	switch minVersion {
	case 0:
		minVersion = tls.VersionTLS12
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("porta: TLS minimum version %s is not supported (want TLS 1.2 or TLS 1.3)", tls.VersionName(minVersion))
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("porta: cannot load the TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	config := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion}
	if clientCAFile != "" {
		if err := RequireClientCerts(config, clientCAFile); err != nil {
			return nil, err
		}
	}
	return config, nil
}

// RequireClientCerts makes a server configuration require and verify
// client certificates (mutual TLS) signed by one of the CA certificates
// in the PEM file caFile.
func RequireClientCerts(config *tls.Config, caFile string) error {
	pool, err := loadCertPool(caFile)
	if err != nil {
		return err
	}
	config.ClientCAs = pool
	config.ClientAuth = tls.RequireAndVerifyClientCert
	return nil
}

// NewClientTLSConfig returns a client TLS configuration for Dialer: it
// verifies servers with the CA certificates in caFile (the system's when
// empty), presents the certificate in certFile with keyFile for mutual TLS
// (none when both are empty), and expects serverName in the server's
// certificate (the dialed host when empty). insecure skips verification
// of the server's certificate; use it for tests only.
func NewClientTLSConfig(caFile, certFile, keyFile, serverName string, insecure bool) (*tls.Config, error) {
	config := &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure}
	if caFile != "" {
		pool, err := loadCertPool(caFile)
		if err != nil {
			return nil, err
		}
		config.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("porta: cannot load the client certificate %s with key %s: %w", certFile, keyFile, err)
		}
		config.Certificates = []tls.Certificate{cert}
	}
	return config, nil
}

// loadCertPool reads the PEM certificates in file into a pool.
func loadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("porta: cannot read CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("porta: no PEM certificates in %s", file)
	}
	return pool, nil
}

// SelfSignedTLSConfig returns a server TLS configuration with a fresh,
// throwaway self-signed certificate, for local use: an ECDSA P-256 key,
// valid for 24 hours, for the names localhost, 127.0.0.1 and ::1. It also
// returns the certificate's fingerprint, the SHA-256 of its DER encoding
// in upper-case hex pairs joined by colons ("AB:CD:..."), which a client
// can compare with the certificate it is shown. MinVersion is TLS 1.2.
func SelfSignedTLSConfig() (config *tls.Config, fingerprint string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("porta: generating a TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, "", fmt.Errorf("porta: generating a TLS certificate serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "porta self-signed"},
		NotBefore:             now.Add(-time.Minute), // tolerate a little clock skew
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, "", fmt.Errorf("porta: creating a self-signed TLS certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, certFingerprint(der), nil
}

// certFingerprint returns the SHA-256 of a DER certificate as upper-case
// hex pairs joined by colons.
func certFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}

// clientHandshake runs the client side of the TLS handshake over nc,
// within ctx, verifying the server as config says (nil means the system's
// roots). An empty ServerName is taken from the host of a, and is
// "localhost" for an address with no host (":8443").
func clientHandshake(ctx context.Context, a Addr, nc net.Conn, config *tls.Config) (*tls.Conn, error) {
	if config == nil {
		config = &tls.Config{}
	}
	if config.ServerName == "" {
		host, _, _ := net.SplitHostPort(a.Address)
		if host == "" {
			host = "localhost"
		}
		config = config.Clone()
		config.ServerName = host
	}
	tc := tls.Client(nc, config)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, handshakeError(a, err)
	}
	return tc, nil
}

// handshakeError says in words why a client's TLS handshake failed.
func handshakeError(a Addr, err error) error {
	if isTimeoutErr(err) || errors.Is(err, context.DeadlineExceeded) {
		return &tlsError{"porta: timed out in the TLS handshake with " + a.Address, err}
	}
	return &tlsError{fmt.Sprintf("porta: TLS handshake with %s failed: %s", a.Address, handshakeCause(err)), err}
}

// handshakeCause describes the cause of a failed handshake, without the
// package prefixes.
func handshakeCause(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "certificate signed by unknown authority"
	case errors.As(err, &host):
		return hostMismatch(host)
	case errors.As(err, &invalid):
		return strings.TrimPrefix(invalid.Error(), "x509: ")
	case errors.As(err, &record):
		return "the server did not answer in TLS (is it a plaintext server?)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the server closed the connection"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return "the server refused it: " + opErr.Err.Error()
	}
	return strings.TrimPrefix(err.Error(), "tls: ")
}

// hostMismatch describes a certificate that is not valid for the host
// dialled, naming the hosts it is valid for.
func hostMismatch(e x509.HostnameError) string {
	var names []string
	if e.Certificate != nil {
		names = append(names, e.Certificate.DNSNames...)
		for _, ip := range e.Certificate.IPAddresses {
			names = append(names, ip.String())
		}
	}
	if len(names) == 0 {
		return "certificate is not valid for " + e.Host + " (it names no host)"
	}
	return "certificate is valid for " + strings.Join(names, ", ") + ", not " + e.Host
}

// tlsError is a client's failed TLS handshake: it says what went wrong in
// words, and wraps both ErrTLSHandshake and the cause.
type tlsError struct {
	text  string
	cause error
}

func (e *tlsError) Error() string   { return e.text }
func (e *tlsError) Unwrap() []error { return []error{ErrTLSHandshake, e.cause} }
