package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// adminURL waits for the "Admin on URL" line of a server started with
// --admin and returns the URL.
func adminURL(t *testing.T, s *server) string {
	t.Helper()
	out := s.stdout.waitForText(t, "porta serve's stdout", "Admin on ")
	m := regexp.MustCompile(`(?m)^Admin on (http://\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("stdout has no \"Admin on URL\" line:\n%s", out)
	}
	return m[1]
}

// adminGet fetches url and returns the status and body.
func adminGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// TestServeAdmin runs "porta serve --admin :0": the admin server listens
// on loopback, answers every endpoint, reports the drain on /readyz while
// a connection finishes its frame, and stops without waiting for an open
// dashboard.
func TestServeAdmin(t *testing.T) {
	t.Parallel()
	s := launchServe(t, []string{"127.0.0.1:0"}, "--admin", ":0", "--framing", "line")
	base := adminURL(t, s)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("admin URL %s: want loopback when no host is given", base)
	}
	out := s.stdout.String()
	listen := regexp.MustCompile(`(?m)^Listening on tcp://(\S+)$`).FindStringSubmatch(out)
	if listen == nil || strings.Index(out, "Listening on") > strings.Index(out, "Admin on") {
		t.Fatalf("stdout should say Listening on, then Admin on:\n%s", out)
	}
	hostPort := listen[1]

	for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
		if code, body := adminGet(t, base+path); code != http.StatusOK || body != want {
			t.Errorf("GET %s = %d %q, want 200 %q", path, code, body, want)
		}
	}
	if code, body := adminGet(t, base+"/"); code != http.StatusOK || !strings.Contains(body, `id="conns-open"`) {
		t.Errorf("GET / = %d, without the dashboard", code)
	}
	// Bound to loopback, the endpoints answer only requests for an IP
	// address or localhost: a page whose name was rebound to 127.0.0.1
	// cannot read them.
	for host, want := range map[string]int{"evil.example:80": http.StatusMisdirectedRequest, "localhost": http.StatusOK, "LOCALHOST.:9090": http.StatusOK, "[::1]:9090": http.StatusOK} {
		req, _ := http.NewRequest("GET", base+"/api/snapshot", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /api/snapshot with Host %q = %d, want %d", host, resp.StatusCode, want)
		}
	}

	// A connection that sent a message and half of another.
	c, err := net.DialTimeout("tcp", hostPort, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	r := bufio.NewReader(c)
	if _, err := io.WriteString(c, "ping\nhalf"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("reply %q, %v; want ping", line, err)
	}
	code, metrics := adminGet(t, base+"/metrics")
	for _, want := range []string{"porta_messages_received_total 1\n", "porta_connections_open 1\n", "porta_handler_duration_seconds_count 1\n", "porta_ready 1\n"} {
		if code != http.StatusOK || !strings.Contains(metrics, want) {
			t.Errorf("GET /metrics = %d without %q", code, want)
		}
	}

	// An open dashboard must not hold the exit.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/events", nil)
	events, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Body.Close()

	s.signal(syscall.SIGTERM)
	deadline := time.Now().Add(waitTimeout)
	for {
		code, body := adminGet(t, base+"/readyz")
		if code == http.StatusServiceUnavailable && body == "not ready\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q during the drain, want 503", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := io.WriteString(c, "-done\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "half-done\n" {
		t.Fatalf("reply %q, %v; want half-done", line, err)
	}
	if code := s.wait(stopTimeout); code != 0 {
		t.Fatalf("exit status %d, want 0\nstderr:\n%s", code, s.stderr)
	}
}

// TestServeAdminBadAddress checks that an --admin address that cannot be
// used fails the start with one line on stderr and exit status 1, before
// anything listens.
func TestServeAdminBadAddress(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct{ addr, text string }{
		{"nope", "bad --admin address"},
		{"127.0.0.1:70000", "bad --admin address"},
		{"http://127.0.0.1:9090", "without a scheme"},
		{busy.Addr().String(), "address already in use"},
	} {
		r := runPorta(t, "", "serve", "--admin", tc.addr, "127.0.0.1:0")
		if r.code != 1 || r.stdout != "" {
			t.Errorf("--admin %s: %v\nwant exit status 1 and nothing listening", tc.addr, r)
			continue
		}
		r.oneLine(t, "porta serve", tc.text)
	}
}

// TestLoopbackHostsOnly checks which Host headers the loopback admin
// server answers: a name other than localhost is refused, as a rebound
// name would be, but a request that names no host (HTTP/1.0, as some
// health checkers send it) cannot come from a browser and is answered.
func TestLoopbackHostsOnly(t *testing.T) {
	t.Parallel()
	h := loopbackHostsOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	for host, want := range map[string]int{
		"":                 http.StatusOK,
		"127.0.0.1":        http.StatusOK,
		"127.0.0.1:9090":   http.StatusOK,
		"[::1]:9090":       http.StatusOK,
		"localhost:9090":   http.StatusOK,
		"LocalHost.":       http.StatusOK,
		"evil.example":     http.StatusMisdirectedRequest,
		"evil.example:80":  http.StatusMisdirectedRequest,
		"localhost.evil":   http.StatusMisdirectedRequest,
		"127.0.0.1.evil:1": http.StatusMisdirectedRequest,
	} {
		req := httptest.NewRequest("GET", "/healthz", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %q: status %d, want %d", host, rec.Code, want)
		}
	}
}
