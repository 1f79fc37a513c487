// Package metrics exposes a porta.Server's counters to Prometheus and
// measures how long its handler takes.
//
// New returns a Metrics with a registry of its own (no global state, no
// default registerer): the server's counters, read from Server.Stats at
// scrape time, the handler-latency histogram filled by Instrument, and the
// Go runtime and process collectors. Handler serves that registry in the
// Prometheus exposition format:
//
//	srv := &porta.Server{}
//	m := metrics.New(srv)
//	srv.Handler = m.Instrument(porta.Echo)
//	mux := http.NewServeMux()
//	mux.Handle("GET /metrics", m.Handler())
//
// docs/observability.md lists every metric with its type, labels and
// meaning.
package metrics

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/porta-project/porta"
)

// Metrics counts one porta.Server for Prometheus. It is a
// prometheus.Collector of the server's metrics (everything but the Go and
// process collectors), so it may also be registered in a registry of the
// caller's. Its methods are safe for concurrent use.
type Metrics struct {
	srv     *porta.Server
	reg     *prometheus.Registry
	latency prometheus.Histogram
	maxNano atomic.Int64 // the largest handler latency since the last window sample
	window  latencyWindow
}

var _ prometheus.Collector = (*Metrics)(nil)

// New returns the metrics of srv, registered in a new registry together
// with the Go runtime and process collectors. srv may already be serving.
// The handler latencies are counted only for handlers wrapped by
// Instrument.
func New(srv *porta.Server) *Metrics {
	m := &Metrics{
		srv: srv,
		reg: prometheus.NewRegistry(),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "porta_handler_duration_seconds",
			Help:    "Time the handler took to serve one message, in seconds.",
			Buckets: latencyBuckets,
		}),
	}
	m.window.init(time.Now())
	m.reg.MustRegister(m,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry holding the server's metrics and the Go
// and process collectors; register more collectors in it to serve them on
// the same endpoint.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler returns an http.Handler serving the registry in the Prometheus
// exposition format (text, or protobuf when the scraper asks for it). A
// collector that fails leaves its metrics out instead of failing the
// scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Metric descriptors; docs/observability.md explains each.
var (
	descConnsOpen = prometheus.NewDesc("porta_connections_open",
		"Stream connections open now.", nil, nil)
	descConnsTotal = prometheus.NewDesc("porta_connections_total",
		"Stream connections accepted and served.", nil, nil)
	descListenerOpen = prometheus.NewDesc("porta_listener_connections_open",
		"Stream connections open now, by listener being served.", []string{"listener"}, nil)
	descListenerTotal = prometheus.NewDesc("porta_listener_connections_total",
		"Stream connections accepted, by listener being served.", []string{"listener"}, nil)
	descListenerDatagrams = prometheus.NewDesc("porta_listener_datagrams_total",
		"Datagrams received, by UDP socket being served.", []string{"listener"}, nil)
	descRejected = prometheus.NewDesc("porta_connections_rejected_total",
		"Connections refused, by reason.", []string{"reason"}, nil)
	descClosed = prometheus.NewDesc("porta_connections_closed_total",
		"Connections ended, by close reason.", []string{"reason"}, nil)
	descDatagramsDenied = prometheus.NewDesc("porta_datagrams_denied_total",
		"UDP datagrams dropped unanswered because the address filters refused their sender.", nil, nil)
	descMsgsIn = prometheus.NewDesc("porta_messages_received_total",
		"Messages received, over every transport.", nil, nil)
	descMsgsOut = prometheus.NewDesc("porta_messages_sent_total",
		"Replies written, over every transport (not those in a write that failed).", nil, nil)
	descBytesIn = prometheus.NewDesc("porta_received_bytes_total",
		"Message bytes received, without framing.", nil, nil)
	descBytesOut = prometheus.NewDesc("porta_sent_bytes_total",
		"Reply bytes sent, without framing.", nil, nil)
	descErrors = prometheus.NewDesc("porta_errors_total",
		"Errors, by kind: connections ended by a failure or a timeout, handler panics, and failed accepts.", []string{"kind"}, nil)
	descSlow = prometheus.NewDesc("porta_slow_consumers_total",
		"Connections closed because the peer did not take its replies in time.", nil, nil)
	descPanics = prometheus.NewDesc("porta_panics_total",
		"Handler panics recovered.", nil, nil)
	descReady = prometheus.NewDesc("porta_ready",
		"1 while the server is serving at least one listener and not shutting down, else 0.", nil, nil)
)

// ErrorKindAccept is the kind label of porta_errors_total that counts
// failed accepts (such as EMFILE), each of which the server retried.
const ErrorKindAccept = "accept"

// IsError reports whether a connection that ended for reason r counts as
// an error in porta_errors_total, under kind r.String(): every reason but
// an orderly end (peer_closed, hangup, shutdown) or a refusal (limit,
// denied), which porta_connections_rejected_total counts.
func IsError(r porta.CloseReason) bool {
	switch r {
	case porta.ClosePeer, porta.CloseHangUp, porta.CloseShutdown, porta.CloseLimit, porta.CloseDenied:
		return false
	}
	return true
}

// A KindCount is the count of one kind of error.
type KindCount struct {
	Kind  string
	Count uint64
}

// Errors returns the series of porta_errors_total from st, in a fixed
// order: one per close reason for which IsError holds, except that kind
// "panic" counts every recovered panic (a UDP handler's too, which closes
// no connection), and then kind "accept".
func Errors(st porta.Stats) []KindCount {
	var ks []KindCount
	for _, r := range porta.CloseReasons() {
		if !IsError(r) {
			continue
		}
		n := st.Closed[r]
		if r == porta.ClosePanic {
			n = st.Panics
		}
		ks = append(ks, KindCount{r.String(), n})
	}
	return append(ks, KindCount{ErrorKindAccept, st.AcceptErrors})
}

// Describe sends the descriptors of the server's metrics, the latency
// histogram included. It implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descConnsOpen, descConnsTotal, descListenerOpen, descListenerTotal, descListenerDatagrams,
		descRejected, descClosed, descDatagramsDenied, descMsgsIn, descMsgsOut, descBytesIn, descBytesOut,
		descErrors, descSlow, descPanics, descReady,
	} {
		ch <- d
	}
	m.latency.Describe(ch)
}

// Collect reads the server's Stats and sends them as metrics, with the
// latency histogram. It implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.srv.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	gauge(descConnsOpen, float64(st.ConnsOpen))
	counter(descConnsTotal, st.ConnsTotal)
	for _, l := range mergeListeners(st.Listeners) {
		if l.Packet {
			counter(descListenerDatagrams, l.Messages, l.Addr)
			continue
		}
		gauge(descListenerOpen, float64(l.ConnsOpen), l.Addr)
		counter(descListenerTotal, l.ConnsTotal, l.Addr)
	}
	for _, r := range porta.RejectReasons() {
		counter(descRejected, st.Rejected[r], r.String())
	}
	for _, r := range porta.CloseReasons() {
		counter(descClosed, st.Closed[r], r.String())
	}
	counter(descDatagramsDenied, st.DatagramsDenied)
	counter(descMsgsIn, st.MessagesIn)
	counter(descMsgsOut, st.MessagesOut)
	counter(descBytesIn, st.BytesIn)
	counter(descBytesOut, st.BytesOut)
	for _, k := range Errors(st) {
		counter(descErrors, k.Count, k.Kind)
	}
	counter(descSlow, st.Closed[porta.CloseSlowConsumer])
	counter(descPanics, st.Panics)
	ready := 0.0
	if m.srv.Ready() {
		ready = 1
	}
	gauge(descReady, ready)
	m.latency.Collect(ch)
}

// mergeListeners adds up the counts of listeners that share an address
// (the same listener served twice), since a registry refuses two series
// with the same labels.
func mergeListeners(ls []porta.ListenerStats) []porta.ListenerStats {
	out := ls[:0:0]
	index := make(map[string]int, len(ls))
	for _, l := range ls {
		// A label value must be UTF-8, or the registry fails the scrape
		// (a Unix socket's path may be any bytes).
		l.Addr = strings.ToValidUTF8(l.Addr, "\uFFFD")
		i, ok := index[l.Addr]
		if !ok {
			index[l.Addr] = len(out)
			out = append(out, l)
			continue
		}
		out[i].ConnsOpen += l.ConnsOpen
		out[i].ConnsTotal += l.ConnsTotal
		out[i].Messages += l.Messages
	}
	return out
}
