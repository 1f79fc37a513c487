package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/porta-project/porta"
)

// serveTLS is what the serve command's TLS flags say.
type serveTLS struct {
	cert, key, clientCA string
	min                 tlsVersionFlag
	selfSigned          bool
}

// addServeTLSFlags defines the serve command's TLS flags.
func addServeTLSFlags(fs *flagSet) *serveTLS {
	t := &serveTLS{min: tlsVersionFlag{v: tls.VersionTLS12}}
	fs.StringVar(&t.cert, "tls-cert", "", "serve tls:// addresses with the certificate chain in this PEM `file`")
	fs.StringVar(&t.key, "tls-key", "", "the private key of --tls-cert, a PEM `file`")
	fs.StringVar(&t.clientCA, "tls-client-ca", "", "require client certificates signed by a CA in this PEM `file` (mutual TLS)")
	fs.Var(&t.min, "tls-min", "lowest TLS `version` accepted: 1.2 or 1.3")
	fs.BoolVar(&t.selfSigned, "tls-self-signed", false, "serve tls:// addresses with a throwaway self-signed certificate (localhost, 127.0.0.1, ::1; valid 24h) and print its fingerprint")
	return t
}

// check validates the TLS flags against the addresses to serve. An
// address that does not parse is left for the listener to report.
func (t *serveTLS) check(addrs []string) error {
	hasTLS := false
	for _, addr := range addrs {
		if a, err := porta.ParseAddr(addr); err == nil && a.TLS {
			hasTLS = true
		}
	}
	switch {
	case (t.cert == "") != (t.key == ""):
		return errors.New("--tls-cert and --tls-key must be given together")
	case t.selfSigned && t.cert != "":
		return errors.New("--tls-self-signed and --tls-cert exclude each other")
	case hasTLS && t.cert == "" && !t.selfSigned:
		return errors.New("a tls:// address needs --tls-cert and --tls-key, or --tls-self-signed")
	case !hasTLS && (t.cert != "" || t.selfSigned || t.clientCA != "" || t.min.set):
		return errors.New("--tls-cert, --tls-self-signed, --tls-client-ca and --tls-min need a tls:// address to serve, such as tls://127.0.0.1:8443")
	}
	return nil
}

// config loads or makes the server's TLS configuration; nil when no
// address uses TLS. For --tls-self-signed it prints the certificate's
// fingerprint on stdout, before the Listening lines.
func (t *serveTLS) config(e *env) (*tls.Config, error) {
	if !t.selfSigned {
		if t.cert == "" {
			return nil, nil
		}
		return porta.NewServerTLSConfig(t.cert, t.key, t.clientCA, t.min.v)
	}
	config, fingerprint, err := porta.SelfSignedTLSConfig()
	if err != nil {
		return nil, err
	}
	config.MinVersion = t.min.v
	if t.clientCA != "" {
		if err := porta.RequireClientCerts(config, t.clientCA); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(e.stdout, "TLS certificate fingerprint (SHA-256): %s\n", fingerprint)
	return config, nil
}

// listenStream opens a stream listener on addr: with TLS, as config says,
// for a tls:// address.
func listenStream(addr string, a porta.Addr, config *tls.Config) (net.Listener, error) {
	if a.TLS {
		return porta.ListenTLS(addr, config)
	}
	return porta.Listen(addr)
}

// clientTLS is what the client commands' TLS flags say, and the client
// configuration that setup builds from them.
type clientTLS struct {
	ca, cert, key, serverName string
	insecure                  bool

	config *tls.Config // nil: the library's default, the system's CAs
}

// addClientTLSFlags defines the TLS flags of the client commands.
func addClientTLSFlags(fs *flagSet) *clientTLS {
	t := &clientTLS{}
	fs.StringVar(&t.ca, "ca", "", "verify tls:// servers with the CA certificates in this PEM `file` instead of the system's")
	fs.StringVar(&t.cert, "cert", "", "present the client certificate in this PEM `file` to tls:// servers (mutual TLS)")
	fs.StringVar(&t.key, "key", "", "the private key of --cert, a PEM `file`")
	fs.StringVar(&t.serverName, "server-name", "", "the `name` the server's certificate must hold (default: the host of ADDR)")
	fs.BoolVar(&t.insecure, "insecure", false, "do not verify the server's certificate (for testing only)")
	return t
}

// set reports whether any TLS flag was given.
func (t *clientTLS) set() bool {
	return t.ca != "" || t.cert != "" || t.key != "" || t.serverName != "" || t.insecure
}

// setupTLS checks the TLS flags against addr and loads their files into
// cfg.tls.config. It prints the warning of --insecure. ok is false when
// the command should stop, with exit status code: a usage error, or a file
// that cannot be loaded.
func (cfg *clientConfig) setupTLS(e *env, fs *flagSet, addr string) (code int, ok bool) {
	return cfg.tls.setup(e, fs, addr)
}

// setup checks the TLS flags against addr and loads their files into
// t.config; see clientConfig.setupTLS. send, chat and bench share it.
func (t *clientTLS) setup(e *env, fs *flagSet, addr string) (code int, ok bool) {
	if (t.cert == "") != (t.key == "") {
		return usageFail(e, fs, "--cert and --key must be given together"), false
	}
	a, err := porta.ParseAddr(addr)
	if err != nil || !t.set() {
		return 0, true // a bad address is reported by the dial
	}
	if !a.TLS {
		hint := ""
		if strings.HasPrefix(a.Network, "tcp") {
			hint = fmt.Sprintf(" (did you mean tls://%s?)", a.Address)
		}
		return usageFail(e, fs, "--ca, --cert, --key, --server-name and --insecure apply to tls:// addresses only%s", hint), false
	}
	config, err := porta.NewClientTLSConfig(t.ca, t.cert, t.key, t.serverName, t.insecure)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitFailure, false
	}
	if t.insecure {
		fmt.Fprintln(e.stderr, "porta: warning: --insecure: the server's certificate is not verified")
	}
	t.config = config
	return 0, true
}

// withTLSHint adds to a failed TLS handshake's error the flag that would
// get past it.
func withTLSHint(err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	hint := ""
	switch {
	case !errors.Is(err, porta.ErrTLSHandshake):
		return err
	case errors.As(err, &unknownCA):
		hint = "use --ca FILE, or --insecure to skip verification"
	case errors.As(err, &host):
		hint = "use --server-name NAME, or --insecure to skip verification"
	case errors.As(err, &invalid):
		hint = "use --insecure to skip verification"
	default:
		return err
	}
	return &hintedError{err, hint}
}

// hintedError is an error with a hint in parentheses at the end of its
// line.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *hintedError) Unwrap() error { return e.err }

// tlsVersionFlag is a TLS version flag: 1.2 or 1.3. set tells whether
// the command line gave it.
type tlsVersionFlag struct {
	v   uint16
	set bool
}

func (v *tlsVersionFlag) String() string {
	switch v.v {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return ""
}

func (v *tlsVersionFlag) Set(s string) error {
	switch s {
	case "1.2":
		v.v = tls.VersionTLS12
	case "1.3":
		v.v = tls.VersionTLS13
	default:
		return fmt.Errorf("unknown TLS version %q (want 1.2 or 1.3)", s)
	}
	v.set = true
	return nil
}
