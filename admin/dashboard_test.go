package admin_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/admin"
	"github.com/porta-project/porta/frame"
	"github.com/porta-project/porta/metrics"
	"github.com/porta-project/porta/portatest"
)

// screenshotDirEnv names the environment variable that, when set, says
// where TestDashboardInBrowser saves its screenshots (such as docs/img),
// and makes it run its traffic longer, for fuller charts.
const screenshotDirEnv = "PORTA_SCREENSHOT_DIR"

// findBrowser returns the path of Chromium, or skips the test.
func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no browser: chromium, chromium-browser or google-chrome not found on PATH " +
		"(apt-get install chromium to test the dashboard in a browser)")
	return ""
}

// pageValues are the numbers the dashboard shows, from their data-value
// attributes.
type pageValues struct {
	Status     string `json:"status"`
	ConnsOpen  string `json:"open"`
	MessagesIn string `json:"messagesIn"`
	RateIn     string `json:"rateIn"`
	ConnRows   int    `json:"connRows"`
}

const readPage = `(() => {
	const v = (id) => document.getElementById(id).dataset.value ?? '';
	return {
		status: document.getElementById('status').textContent,
		open: v('conns-open'),
		messagesIn: v('messages-in'),
		rateIn: v('msg-rate-in'),
		connRows: document.querySelectorAll('#conns tbody tr:not(:has(td.empty))').length,
	};
})()`

// TestDashboardInBrowser loads the dashboard in headless Chromium, drives
// traffic, and checks that the page's numbers change and agree with
// /api/snapshot and /metrics. It saves screenshots of the page on a laptop
// and a phone screen as test artifacts (go test -artifacts), or in
// $PORTA_SCREENSHOT_DIR.
func TestDashboardInBrowser(t *testing.T) {
	browser := findBrowser(t)
	shotDir, long := os.Getenv(screenshotDirEnv), true
	if shotDir == "" {
		shotDir, long = t.ArtifactDir(), false
	}

	srv := &porta.Server{Framing: frame.Line, MaxMessageSize: 4096}
	m := metrics.New(srv)
	srv.Handler = m.Instrument(porta.HangUpOn("close", "closed", porta.Echo))
	s := portatest.Start(t, srv, "tcp")
	ts := httptest.NewServer(admin.New(srv, m))
	t.Cleanup(ts.Close)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	defer chromedp.Cancel(ctx) // close the browser before the servers stop

	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(ts.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("conns-open")),
	); err != nil {
		t.Fatalf("loading the dashboard: %v", err)
	}
	page := func() pageValues {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[pageValues](readPage))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return v
	}
	waitPage := func(what string, cond func(pageValues) bool) pageValues {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			v := page()
			if cond(v) {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for the page to show %s; it shows %+v", what, v)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitPage("the first snapshot", func(v pageValues) bool { return v.Status == "ready" && v.ConnsOpen == "0" })

	// Traffic: steady clients that stay connected, and short-lived ones
	// that end in the several ways a connection can end.
	const steady = 5
	clients := make([]*porta.ClientConn, steady)
	for i := range clients {
		clients[i] = s.Dial(frame.Line)
		clients[i].SetDeadline(time.Now().Add(5 * time.Minute))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		wg.Go(func() { steadyTraffic(t, c, i, start, stop) })
	}
	wg.Go(func() { churn(t, s, stop) })

	v := waitPage("traffic", func(v pageValues) bool {
		n, _ := strconv.Atoi(v.MessagesIn)
		return n > 0 && v.ConnsOpen != "0" && v.RateIn != "" && v.RateIn != "0"
	})
	t.Logf("the page shows traffic: %+v", v)
	run := 3 * time.Second
	if long {
		run = 45 * time.Second // fill the charts for the README's screenshot
	}
	time.Sleep(run)
	saveScreenshot(t, ctx, filepath.Join(shotDir, "dashboard.png"))

	close(stop)
	wg.Wait()
	waitFor(t, "the short-lived connections to close", func() bool { return srv.Stats().ConnsOpen == steady })
	want := srv.Stats()
	wantOpen, wantIn := strconv.Itoa(steady), strconv.FormatUint(want.MessagesIn, 10)
	v = waitPage(fmt.Sprintf("%s open and %s messages in", wantOpen, wantIn), func(v pageValues) bool {
		return v.ConnsOpen == wantOpen && v.MessagesIn == wantIn && v.ConnRows == steady
	})
	checkAgreement(t, ts, v)

	// One client says the close word: the page follows.
	if reply, err := clients[0].Exchange([]byte("close")); err != nil || string(reply) != "closed" {
		t.Fatalf("close word: %q, %v", reply, err)
	}
	wantOpen, wantIn = strconv.Itoa(steady-1), strconv.FormatUint(want.MessagesIn+1, 10)
	v = waitPage(fmt.Sprintf("%s open and %s messages in", wantOpen, wantIn), func(v pageValues) bool {
		return v.ConnsOpen == wantOpen && v.MessagesIn == wantIn
	})
	checkAgreement(t, ts, v)

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatalf("phone viewport: %v", err)
	}
	time.Sleep(1200 * time.Millisecond) // a redraw at the new size
	saveScreenshot(t, ctx, filepath.Join(shotDir, "dashboard-phone.png"))
}

// checkAgreement checks that what the page shows is what /api/snapshot
// and /metrics say, for a server whose traffic has stopped.
func checkAgreement(t *testing.T, ts *httptest.Server, v pageValues) {
	t.Helper()
	snap := snapshot(t, ts)
	if got := strconv.FormatInt(snap.Totals.ConnsOpen, 10); got != v.ConnsOpen {
		t.Errorf("page shows %s open, /api/snapshot %s", v.ConnsOpen, got)
	}
	if got := strconv.FormatUint(snap.Totals.MessagesIn, 10); got != v.MessagesIn {
		t.Errorf("page shows %s messages in, /api/snapshot %s", v.MessagesIn, got)
	}
	fams := scrapeMetrics(t, ts)
	if got := strconv.FormatFloat(metricValue(fams, "porta_connections_open"), 'f', -1, 64); got != v.ConnsOpen {
		t.Errorf("page shows %s open, porta_connections_open is %s", v.ConnsOpen, got)
	}
	if got := strconv.FormatFloat(metricValue(fams, "porta_messages_received_total"), 'f', -1, 64); got != v.MessagesIn {
		t.Errorf("page shows %s messages in, porta_messages_received_total is %s", v.MessagesIn, got)
	}
}

// steadyTraffic sends messages of varied sizes on c at a rate that rises
// and falls, until stop is closed.
func steadyTraffic(t *testing.T, c *porta.ClientConn, i int, start time.Time, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	for {
		select {
		case <-stop:
			return
		default:
		}
		msg := strings.Repeat(string(rune('a'+i)), 8+rng.IntN(120))
		if _, err := c.Exchange([]byte(msg)); err != nil {
			t.Errorf("steady client %d: %v", i, err)
			return
		}
		phase := time.Since(start).Seconds()/6 + float64(i)
		time.Sleep(time.Duration(float64(3*time.Millisecond) * (1.6 + math.Sin(phase))))
	}
}

// churn opens short-lived connections until stop is closed: each sends a
// few messages and then hangs up, says the close word, or sends a message
// over the limit.
func churn(t *testing.T, s *portatest.Server, stop <-chan struct{}) {
	d := porta.Dialer{Framing: frame.Line, Timeout: 5 * time.Second}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-time.After(150 * time.Millisecond):
		}
		c, err := d.DialContext(context.Background(), s.Addr)
		if err != nil {
			t.Errorf("churn: %v", err)
			return
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		for range 3 {
			c.Exchange([]byte("short-lived"))
		}
		switch n % 7 {
		case 0:
			c.Exchange([]byte("close"))
		case 3:
			c.Exchange([]byte(strings.Repeat("x", 5000)))
		}
		c.Close()
	}
}

// saveScreenshot saves a PNG of the whole page at path.
func saveScreenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s (%d bytes)", path, len(png))
}
