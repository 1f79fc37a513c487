package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/metrics"
)

// ExampleNew counts an echo server's traffic and reads the counters the
// way Prometheus would, from the metrics handler.
func ExampleNew() {
	srv := &porta.Server{}
	m := metrics.New(srv)
	srv.Handler = m.Instrument(porta.Echo)

	l, err := porta.Listen("tcp://127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()

	c, err := porta.Dial(porta.FormatAddr(l.Addr()))
	if err != nil {
		panic(err)
	}
	c.Exchange([]byte("hello"))
	c.Close()
	srv.Shutdown(context.Background())
	<-done

	// Serve m.Handler() on an HTTP mux, such as at /metrics, for
	// Prometheus to scrape; here it is called directly.
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		switch line := sc.Text(); {
		case strings.HasPrefix(line, "porta_connections_total "),
			strings.HasPrefix(line, "porta_messages_received_total "),
			strings.HasPrefix(line, "porta_sent_bytes_total "),
			strings.HasPrefix(line, "porta_handler_duration_seconds_count "):
			fmt.Println(line)
		}
	}
	// Output:
	// porta_connections_total 1
	// porta_handler_duration_seconds_count 1
	// porta_messages_received_total 1
	// porta_sent_bytes_total 5
}
