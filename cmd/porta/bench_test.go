package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/porta-project/porta/bench"
)

// The tests of "porta bench": the report, the JSON report and chart, the
// exit status on wrong replies and refused connections, and usage errors.

func TestBenchReport(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	r := runPorta(t, "", "bench", "-c", "4", "-P", "2", "-n", "200", s.addr())
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%v\nwant exit status 0 and no stderr", r)
	}
	for _, want := range []string{"4 connections, pipeline 2, 64-byte line messages", "messages    200 in", "0 errors",
		"throughput", "msgs/s", "MB/s", "latency     min", "p99.9", "connect     4 of 4 connections"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "\r") {
		t.Errorf("stdout is not a terminal, yet it holds a progress line:\n%q", r.stdout)
	}
}

func TestBenchJSONAndSVG(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--mode", "upper")
	dir := t.TempDir()
	var files []string
	for _, label := range []string{"first", "second"} {
		svg := filepath.Join(dir, label+".svg")
		r := runPorta(t, "", "bench", "--json", "--expect", "upper", "--label", label, "--svg", svg,
			"-c", "2", "-d", "0.3", "--framing", "len", s.addr())
		if r.code != 0 {
			t.Fatalf("%v\nwant exit status 0", r)
		}
		var res bench.Result
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || strings.Count(r.stdout, "\n") != 1 {
			t.Fatalf("stdout is not one JSON object on one line: %v\n%s", err, r.stdout)
		}
		if res.Label != label || res.Messages == 0 || res.Framing != "len" || res.Expect != "upper" || res.Seconds < 0.3 {
			t.Errorf("report %+v", res)
		}
		if n := countSeries(t, svg); n != 1 {
			t.Errorf("--svg drew %d series, want 1", n)
		}
		file := filepath.Join(dir, label+".json")
		if err := os.WriteFile(file, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, file)
	}
	merged := filepath.Join(dir, "merged.svg")
	r := runPorta(t, "", "bench", "--svg-merge", strings.Join(files, ","), "--svg", merged)
	r.want(t, 0, "")
	if n := countSeries(t, merged); n != 2 {
		t.Errorf("--svg-merge of 2 reports drew %d series, want 2", n)
	}
}

// countSeries parses an SVG file as XML and counts its series: elements
// of class "series".
func countSeries(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	n := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			for _, a := range se.Attr {
				if a.Name.Local == "class" && a.Value == "series" {
					n++
				}
			}
		}
	}
}

func TestBenchWrongReplies(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"}, "--mode", "upper")
	r := runPorta(t, "", "bench", "-c", "2", "-n", "10", s.addr())
	if r.code != 1 {
		t.Fatalf("%v\nwant exit status 1", r)
	}
	r.oneLine(t, "porta bench:", "10 errors", "wrong 10")
	for _, want := range []string{"errors      wrong 10", "wrong", `got  "000000000000ABCDEFG`, `want "000000000000abcdefg`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestBenchTimeoutSeconds: --timeout takes a plain number of seconds, as
// -d, --warmup and --hold do.
func TestBenchTimeoutSeconds(t *testing.T) {
	t.Parallel()
	s := startServe(t, []string{"127.0.0.1:0"})
	r := runPorta(t, "", "bench", "-c", "1", "-n", "5", "--timeout", "2.5", "--json", s.addr())
	if r.code != 0 || !strings.Contains(r.stdout, `"messages":5`) {
		t.Fatalf("%v\nwant exit status 0 and 5 messages", r)
	}
}

func TestBenchRefused(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	r := runPorta(t, "", "bench", "-c", "3", "-d", "1", addr)
	r.want(t, 1, "")
	r.oneLine(t, "porta bench:", "no connection", addr, "refused")
}

func TestBenchUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"127.0.0.1:1", "127.0.0.1:2"},
		{"-c", "0", "127.0.0.1:1"},
		{"-P", "0", "127.0.0.1:1"},
		{"-s", "0", "127.0.0.1:1"},
		{"-d", "soon", "127.0.0.1:1"},
		{"--framing", "auto", "127.0.0.1:1"},
		{"--expect", "shout", "127.0.0.1:1"},
		{"--engine", "threads", "127.0.0.1:1"},
		{"--svg-merge", "a.json"},
		{"udp://127.0.0.1:1"},
		// Values too large to run, which must not crash or hang.
		{"-c", "100000000000", "127.0.0.1:1"},
		{"-P", "1000000000000", "127.0.0.1:1"},
		{"-c", "1000", "-P", "1000", "-s", "1MiB", "127.0.0.1:1"},
		{"--loops", "100000000", "127.0.0.1:1"},
		{"--rate", "1e300", "127.0.0.1:1"},
		{"--rate", "NaN", "127.0.0.1:1"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := runPorta(t, "", append([]string{"bench"}, args...)...)
			r.want(t, 2, "")
			r.oneLine(t, "porta bench:")
		})
	}
	r := runPorta(t, "", "bench", "8000")
	r.want(t, 1, "")
	r.oneLine(t, "bad address", `"8000"`)
}

func TestBenchHelp(t *testing.T) {
	t.Parallel()
	r := runPorta(t, "", "help", "bench")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%v\nwant exit status 0 and no stderr", r)
	}
	for _, want := range []string{"usage: porta bench [flags] ADDR", "-c ", "-d ", "-n ", "-P ", "-s ", "-rate", "-warmup",
		"-framing", "-connect-rate", "-expect", "-json", "-svg", "-svg-merge"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestBenchTLS: bench verifies a TLS server's certificate like send does,
// with --ca, and refuses an unknown one unless --insecure, which warns.
func TestBenchTLS(t *testing.T) {
	t.Parallel()
	f := testTLSFiles(t)
	s := startServe(t, []string{"tls://127.0.0.1:0"}, "--tls-cert", f.cert, "--tls-key", f.key)
	r := runPorta(t, "", "bench", "--ca", f.ca, "-c", "2", "-n", "100", s.addr())
	if r.code != 0 || !strings.Contains(r.stdout, "messages    100 in") {
		t.Fatalf("%v\nwant exit status 0 and 100 messages", r)
	}
	r = runPorta(t, "", "bench", "-c", "2", "-n", "100", s.addr())
	if r.code != 1 || !strings.Contains(r.stderr, "certificate signed by unknown authority") {
		t.Fatalf("%v\nwant exit status 1 for an unknown CA", r)
	}
	r = runPorta(t, "", "bench", "--insecure", "-c", "2", "-n", "100", s.addr())
	if r.code != 0 || !strings.Contains(r.stderr, "--insecure") {
		t.Fatalf("%v\nwant exit status 0 and the --insecure warning", r)
	}
	r = runPorta(t, "", "bench", "--ca", f.ca, "-c", "2", "-n", "10", "tcp://127.0.0.1:1")
	if r.code != 2 {
		t.Fatalf("%v\nwant exit status 2: TLS flags on a tcp:// address", r)
	}
}
