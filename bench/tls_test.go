package bench_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/bench"
)

// TestTLS drives a TLS server: verified against its certificate it
// answers every message; without the certificate trusted, no connection
// is made.
func TestTLS(t *testing.T) {
	t.Parallel()
	serverConfig, _, err := porta.SelfSignedTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	l, err := porta.ListenTLS("tls://127.0.0.1:0", serverConfig)
	if err != nil {
		t.Fatal(err)
	}
	srv := &porta.Server{}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, porta.ErrServerClosed) {
			t.Errorf("Serve = %v", err)
		}
	})
	addr := porta.FormatAddr(l.Addr())

	leaf, err := x509.ParseCertificate(serverConfig.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	res := run(t, bench.Config{Addr: addr, Conns: 4, Pipeline: 2, Messages: 400, TLSConfig: &tls.Config{RootCAs: roots}})
	wantOK(t, res, 400)
	if res.Engine != bench.EngineGoroutine {
		t.Errorf("engine %q, want %q for TLS", res.Engine, bench.EngineGoroutine)
	}
	// With no host (tls://:PORT) the server is verified as "localhost",
	// as porta's client does.
	res = run(t, bench.Config{Addr: "tls://:" + port(t, addr), Conns: 1, Messages: 10, TLSConfig: &tls.Config{RootCAs: roots}})
	wantOK(t, res, 10)

	res, err = runErr(t, bench.Config{Addr: addr, Conns: 2, Messages: 10})
	if err == nil && res.OK() {
		t.Fatalf("an untrusted certificate was accepted: %+v", res)
	}
}
