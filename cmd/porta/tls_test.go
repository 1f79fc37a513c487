package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tlsFiles are the PEM files of a throwaway CA and the certificates it
// issued, for the TLS tests.
type tlsFiles struct {
	ca                      string // the CA certificate
	cert, key               string // a server certificate for 127.0.0.1, ::1 and localhost
	expiredCert, expiredKey string // as cert, expired an hour ago
	wrongCert, wrongKey     string // valid for example.com only
	clientCert, clientKey   string // a client certificate
	notPEM                  string // a file with no PEM in it
	caPool                  *x509.CertPool
}

// testTLSFiles writes a fresh CA and certificates into a temporary
// directory of the test.
func testTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	return makeTLSFiles(t.TempDir())
}

// makeTLSFiles makes the CA and certificates and writes them into dir.
func makeTLSFiles(dir string) tlsFiles {
	caKey := newCLITestKey()
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "porta CLI test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	caDER := cliMust(x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey))
	ca := cliMust(x509.ParseCertificate(caDER))
	f := tlsFiles{caPool: x509.NewCertPool()}
	f.caPool.AddCert(ca)
	write := func(name string, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			panic(err)
		}
		return path
	}
	issue := func(name string, tmpl *x509.Certificate) (cert, key string) {
		k := newCLITestKey()
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der := cliMust(x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey))
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "PRIVATE KEY", cliMust(x509.MarshalPKCS8PrivateKey(k)))
	}
	f.ca = write("ca.pem", "CERTIFICATE", caDER)
	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	serverAuth := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	f.cert, f.key = issue("server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: loopback, ExtKeyUsage: serverAuth,
	})
	f.expiredCert, f.expiredKey = issue("expired", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: loopback, ExtKeyUsage: serverAuth,
	})
	f.wrongCert, f.wrongKey = issue("wrong-host", &x509.Certificate{
		SerialNumber: big.NewInt(4), Subject: pkix.Name{CommonName: "example.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"example.com"}, ExtKeyUsage: serverAuth,
	})
	f.clientCert, f.clientKey = issue("client", &x509.Certificate{
		SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "porta-cli-test-client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	f.notPEM = filepath.Join(dir, "not.pem")
	if err := os.WriteFile(f.notPEM, []byte("hello\n"), 0o600); err != nil {
		panic(err)
	}
	return f
}

func newCLITestKey() *ecdsa.PrivateKey {
	return cliMust(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
}

// cliMust panics on an error that cannot happen with good inputs.
func cliMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// tlsHandshake runs a Go TLS client handshake against hostPort and
// returns the connection state, closing the connection.
func tlsHandshake(hostPort string, config *tls.Config) (tls.ConnectionState, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: config}
	c, err := d.Dial("tcp", hostPort)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// insecureWarning is the line --insecure prints on stderr.
const insecureWarning = "porta: warning: --insecure: the server's certificate is not verified\n"

func TestTLSServeSend(t *testing.T) {
	t.Parallel()
	f := testTLSFiles(t)
	s := startServe(t, []string{"tls://127.0.0.1:0"}, "--tls-cert", f.cert, "--tls-key", f.key)
	if !strings.HasPrefix(s.addr(), "tls://127.0.0.1:") {
		t.Fatalf("Listening on %q, want tls://127.0.0.1:PORT", s.addr())
	}
	r := runPorta(t, "", "send", "--ca", f.ca, s.addr(), "hello", "hello world")
	r.want(t, 0, "hello\nhello world\n")
	if r.stderr != "" {
		t.Errorf("stderr: %q, want none", r.stderr)
	}
	runPorta(t, "", "send", "--ca", f.ca, "--server-name", "localhost", s.addr(), "named").want(t, 0, "named\n")
	runPorta(t, "one\ntwo\nclose\nthree\n", "send", "--ca", f.ca, s.addr()).want(t, 0, "one\ntwo\nclosed\n")
	runPorta(t, "chatting\n", "chat", "--ca", f.ca, s.addr()).want(t, 0, "chatting\n")

	// Plaintext to the TLS port is closed at once.
	start := time.Now()
	r = runPorta(t, "", "send", "tcp://"+strings.TrimPrefix(s.addr(), "tls://"), "hello")
	r.want(t, 1, "")
	r.oneLine(t, "closed the connection before replying")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("plaintext to the TLS port took %v to fail", d)
	}
	s.stderr.waitForText(t, "porta serve's log", "reason=tls_handshake")
}

func TestTLSSendVerifies(t *testing.T) {
	t.Parallel()
	f := testTLSFiles(t)
	tests := []struct {
		name      string
		cert, key string
		ca        []string // --ca, if any
		want      []string // in the one line on stderr
	}{
		{"unknown CA", f.cert, f.key, nil, []string{"certificate signed by unknown authority", "(use --ca FILE, or --insecure to skip verification)"}},
		{"expired", f.expiredCert, f.expiredKey, []string{"--ca", f.ca}, []string{"certificate has expired", "(use --insecure to skip verification)"}},
		{"wrong host", f.wrongCert, f.wrongKey, []string{"--ca", f.ca}, []string{"certificate is valid for example.com, not 127.0.0.1", "(use --server-name NAME, or --insecure to skip verification)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startServe(t, []string{"tls://127.0.0.1:0"}, "--tls-cert", tt.cert, "--tls-key", tt.key)
			hostPort := strings.TrimPrefix(s.addr(), "tls://")
			r := runPorta(t, "", append(append([]string{"send"}, tt.ca...), s.addr(), "hello")...)
			r.want(t, 1, "")
			line := r.oneLine(t, tt.want...)
			if want := "porta: TLS handshake with " + hostPort + " failed: "; !strings.HasPrefix(line, want) {
				t.Errorf("stderr %q, want it to start with %q", line, want)
			}
			r = runPorta(t, "", append(append([]string{"send", "--insecure"}, tt.ca...), s.addr(), "hello")...)
			r.want(t, 0, "hello\n")
			if r.stderr != insecureWarning {
				t.Errorf("stderr with --insecure: %q, want %q", r.stderr, insecureWarning)
			}
		})
	}
}

func TestTLSMutual(t *testing.T) {
	t.Parallel()
	f := testTLSFiles(t)
	s := startServe(t, []string{"tls://127.0.0.1:0"}, "--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", f.ca)
	runPorta(t, "", "send", "--ca", f.ca, "--cert", f.clientCert, "--key", f.clientKey, s.addr(), "hello").want(t, 0, "hello\n")

	// Without a client certificate: refused, in one line.
	r := runPorta(t, "", "send", "--ca", f.ca, s.addr(), "hello")
	r.want(t, 1, "")
	t.Logf("without a client certificate: %s", r.oneLine(t, "certificate"))
	// A certificate not meant for client authentication: the server's own.
	r = runPorta(t, "", "send", "--ca", f.ca, "--cert", f.cert, "--key", f.key, s.addr(), "hello")
	r.want(t, 1, "")
	t.Logf("with a certificate of another CA: %s", r.oneLine(t, "porta"))
	s.stderr.waitForText(t, "porta serve's log", "reason=tls_handshake")
}

func TestTLSVersionsCLI(t *testing.T) {
	t.Parallel()
	f := testTLSFiles(t)
	def := startServe(t, []string{"tls://127.0.0.1:0"}, "--tls-cert", f.cert, "--tls-key", f.key)
	min13 := startServe(t, []string{"tls://127.0.0.1:0"}, "--tls-cert", f.cert, "--tls-key", f.key, "--tls-min", "1.3")
	tests := []struct {
		s        *server
		min, max uint16
		ok       bool
	}{
		{def, tls.VersionTLS10, tls.VersionTLS11, false},
		{def, tls.VersionTLS12, tls.VersionTLS12, true},
		{def, tls.VersionTLS13, tls.VersionTLS13, true},
		{min13, tls.VersionTLS12, tls.VersionTLS12, false},
		{min13, tls.VersionTLS13, tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		st, err := tlsHandshake(strings.TrimPrefix(tt.s.addr(), "tls://"), &tls.Config{RootCAs: f.caPool, MinVersion: tt.min, MaxVersion: tt.max})
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s client to %s: %v", tls.VersionName(tt.max), tt.s.addr(), err)
		case tt.ok && st.Version != tt.max:
			t.Errorf("%s client to %s: negotiated %s", tls.VersionName(tt.max), tt.s.addr(), tls.VersionName(st.Version))
		case !tt.ok && err == nil:
			t.Errorf("%s client to %s: handshake succeeded with %s", tls.VersionName(tt.max), tt.s.addr(), tls.VersionName(st.Version))
		}
	}
	runPorta(t, "", "send", "--ca", f.ca, min13.addr(), "hello").want(t, 0, "hello\n")
}

func TestTLSSelfSigned(t *testing.T) {
	t.Parallel()
	s := launchServe(t, []string{"tls://127.0.0.1:0"}, "--tls-self-signed")
	out, ok := s.stdout.waitFor(waitTimeout, func(out string) bool { return strings.Count(out, "\n") >= 2 })
	if !ok {
		t.Fatalf("porta serve --tls-self-signed did not print two lines within %v\nstdout:\n%s\nstderr:\n%s", waitTimeout, out, s.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	fingerprint, ok1 := strings.CutPrefix(lines[0], "TLS certificate fingerprint (SHA-256): ")
	addr, ok2 := strings.CutPrefix(lines[1], "Listening on ")
	if !ok1 || !ok2 || len(lines) != 2 || !strings.HasPrefix(addr, "tls://127.0.0.1:") {
		t.Fatalf("stdout:\n%s\nwant the fingerprint line, then Listening on tls://127.0.0.1:PORT", out)
	}

	st, err := tlsHandshake(strings.TrimPrefix(addr, "tls://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	if seen := strings.Join(parts, ":"); seen != fingerprint {
		t.Errorf("printed fingerprint %s, the client sees %s", fingerprint, seen)
	}

	r := runPorta(t, "", "send", "--insecure", addr, "hello")
	r.want(t, 0, "hello\n")
	if r.stderr != insecureWarning {
		t.Errorf("stderr: %q, want %q", r.stderr, insecureWarning)
	}
	r = runPorta(t, "", "send", addr, "hello")
	r.want(t, 1, "")
	r.oneLine(t, "unknown authority", "--insecure")

	if code := s.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0\nstderr:\n%s", code, s.stderr)
	}
}

func TestTLSUsageErrors(t *testing.T) {
	t.Parallel()
	f := testTLSFiles(t)
	tests := []struct {
		args []string
		want string // in the one line on stderr
	}{
		{[]string{"serve", "tls://127.0.0.1:0"}, "a tls:// address needs --tls-cert and --tls-key, or --tls-self-signed"},
		{[]string{"serve", "--tls-cert", f.cert, "tls://127.0.0.1:0"}, "--tls-key"},
		{[]string{"serve", "--tls-key", f.key, "tls://127.0.0.1:0"}, "--tls-cert"},
		{[]string{"serve", "--tls-self-signed", "--tls-cert", f.cert, "--tls-key", f.key, "tls://127.0.0.1:0"}, "--tls-self-signed"},
		{[]string{"serve", "--tls-self-signed", "127.0.0.1:0"}, "need a tls:// address"},
		{[]string{"serve", "--tls-cert", f.cert, "--tls-key", f.key}, "need a tls:// address"},
		{[]string{"serve", "--tls-min", "1.3", "127.0.0.1:0"}, "need a tls:// address"},
		{[]string{"serve", "--tls-self-signed", "--tls-min", "1.1", "tls://127.0.0.1:0"}, "-tls-min"},
		{[]string{"send", "--ca", f.ca, "127.0.0.1:1", "hello"}, "tls:// addresses only (did you mean tls://127.0.0.1:1?)"},
		{[]string{"send", "--insecure", "unix:///tmp/x.sock", "hello"}, "tls:// addresses only"},
		{[]string{"send", "--cert", f.clientCert, "tls://127.0.0.1:1", "hello"}, "--cert and --key"},
		{[]string{"chat", "--insecure", "127.0.0.1:1"}, "tls:// addresses only"},
	}
	for _, tt := range tests {
		t.Run(argsName(tt.args), func(t *testing.T) {
			t.Parallel()
			r := runPorta(t, "", tt.args...)
			r.want(t, 2, "")
			r.oneLine(t, "porta "+tt.args[0]+":", tt.want)
		})
	}
}

// argsName names a subtest after its arguments, with file names for paths.
func argsName(args []string) string {
	names := make([]string, len(args))
	for i, a := range args {
		if filepath.IsAbs(a) {
			a = filepath.Base(a)
		}
		names[i] = a
	}
	return strings.Join(names, " ")
}

func TestTLSFileErrors(t *testing.T) {
	t.Parallel()
	f := testTLSFiles(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		args []string
		want []string // in the one line on stderr
	}{
		{[]string{"serve", "--tls-cert", missing, "--tls-key", f.key, "tls://127.0.0.1:0"}, []string{"porta: cannot load the TLS certificate", missing}},
		{[]string{"serve", "--tls-cert", f.cert, "--tls-key", f.clientKey, "tls://127.0.0.1:0"}, []string{"porta: cannot load the TLS certificate", "private key does not match"}},
		{[]string{"serve", "--tls-cert", f.notPEM, "--tls-key", f.key, "tls://127.0.0.1:0"}, []string{"porta: cannot load the TLS certificate"}},
		{[]string{"serve", "--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", f.notPEM, "tls://127.0.0.1:0"}, []string{"no PEM certificates", f.notPEM}},
		{[]string{"serve", "--tls-self-signed", "--tls-client-ca", missing, "tls://127.0.0.1:0"}, []string{"porta: cannot read CA certificates", missing}},
		{[]string{"send", "--ca", missing, "tls://127.0.0.1:1", "hello"}, []string{"porta: cannot read CA certificates", missing}},
		{[]string{"send", "--ca", f.notPEM, "tls://127.0.0.1:1", "hello"}, []string{"no PEM certificates"}},
		{[]string{"send", "--cert", missing, "--key", f.clientKey, "tls://127.0.0.1:1", "hello"}, []string{"porta: cannot load the client certificate", missing}},
	}
	for _, tt := range tests {
		t.Run(argsName(tt.args), func(t *testing.T) {
			t.Parallel()
			r := runPorta(t, "", tt.args...)
			r.want(t, 1, "")
			r.oneLine(t, tt.want...)
		})
	}
}

func TestTLSClientToPlaintextServer(t *testing.T) {
	t.Parallel()
	f := testTLSFiles(t)
	s := startServe(t, []string{"127.0.0.1:0"})
	start := time.Now()
	r := runPorta(t, "", "send", "--ca", f.ca, "--timeout", "1s", "tls://"+s.hostPort(), "hello")
	r.want(t, 1, "")
	t.Logf("TLS client to a plaintext server: %s", r.oneLine(t, "TLS handshake", s.hostPort()))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to give up", d)
	}
	// The plaintext server is unharmed.
	runPorta(t, "", "send", s.addr(), "still there").want(t, 0, "still there\n")
}

func TestTLSHelp(t *testing.T) {
	t.Parallel()
	for cmd, wants := range map[string][]string{
		"serve": {"-tls-cert", "-tls-key", "-tls-client-ca", "-tls-min", "(default 1.2)", "-tls-self-signed"},
		"send":  {"-ca", "-cert", "-key", "-server-name", "-insecure"},
		"chat":  {"-ca", "-insecure"},
	} {
		r := runPorta(t, "", cmd, "-h")
		for _, want := range wants {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("porta %s -h does not mention %q:\n%s", cmd, want, r.stdout)
			}
		}
	}
}
