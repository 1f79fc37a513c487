package admin

import (
	"cmp"
	"slices"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/metrics"
)

// MaxConnRows is the most connections a Snapshot lists, the oldest first,
// so that a server with many connections sends a bounded page.
const MaxConnRows = 200

// A Snapshot is the state of a server at one moment, as /api/snapshot
// and each event of /events carry it in JSON. Counters are totals since
// the server was created; a client computes rates from two snapshots.
type Snapshot struct {
	Time      time.Time     `json:"time"`
	Ready     bool          `json:"ready"`     // as /readyz says
	Totals    Totals        `json:"totals"`    // server-wide counts
	Listeners []Listener    `json:"listeners"` // sorted by address
	Closed    []ReasonCount `json:"closed"`    // every close reason, in porta.CloseReasons order
	Latency   Latency       `json:"latency"`   // of about the last metrics.LatencyWindow: see metrics.Latency
	// Conns are the open stream connections, the oldest first, at most
	// MaxConnRows of Totals.ConnsOpen.
	Conns []Conn `json:"conns"`
}

// Totals holds a server's counts, as porta.Stats has them.
type Totals struct {
	ConnsOpen     int64  `json:"conns_open"`
	ConnsTotal    uint64 `json:"conns_total"`
	ConnsRejected uint64 `json:"conns_rejected"`
	MessagesIn    uint64 `json:"messages_in"`
	MessagesOut   uint64 `json:"messages_out"`
	BytesIn       uint64 `json:"bytes_in"`
	BytesOut      uint64 `json:"bytes_out"`
	Panics        uint64 `json:"panics"`
	AcceptErrors  uint64 `json:"accept_errors"`
	// Errors is the sum of porta_errors_total: see metrics.Errors.
	Errors uint64 `json:"errors"`
}

// Listener holds the counts of one listener or UDP socket being served.
type Listener struct {
	Addr       string `json:"addr"`
	Packet     bool   `json:"packet"` // a UDP socket: datagrams, no connections
	ConnsOpen  int64  `json:"conns_open"`
	ConnsTotal uint64 `json:"conns_total"`
	Datagrams  uint64 `json:"datagrams"`
}

// ReasonCount is the number of connections that ended for one reason.
type ReasonCount struct {
	Reason string `json:"reason"` // porta.CloseReason's String form
	Count  uint64 `json:"count"`
	Error  bool   `json:"error"` // counted as an error: see metrics.IsError
}

// Latency holds handler-latency figures in seconds; see metrics.Latency.
type Latency struct {
	Window float64 `json:"window_seconds"`
	Count  uint64  `json:"count"`
	P50    float64 `json:"p50_seconds"`
	P90    float64 `json:"p90_seconds"`
	P99    float64 `json:"p99_seconds"`
	Max    float64 `json:"max_seconds"`
}

// Conn describes one open connection.
type Conn struct {
	Peer        string    `json:"peer"`
	Listener    string    `json:"listener"`
	Opened      time.Time `json:"opened"`
	Age         float64   `json:"age_seconds"`
	Idle        float64   `json:"idle_seconds"` // since it last waited for input
	MessagesIn  uint64    `json:"messages_in"`
	MessagesOut uint64    `json:"messages_out"`
	BytesIn     uint64    `json:"bytes_in"`
	BytesOut    uint64    `json:"bytes_out"`
}

// takeSnapshot reads srv and m at now.
func takeSnapshot(srv *porta.Server, m *metrics.Metrics, now time.Time) Snapshot {
	st := srv.Stats()
	s := Snapshot{
		Time:  now,
		Ready: srv.Ready(),
		Totals: Totals{
			ConnsOpen:     st.ConnsOpen,
			ConnsTotal:    st.ConnsTotal,
			ConnsRejected: st.ConnsRejected,
			MessagesIn:    st.MessagesIn,
			MessagesOut:   st.MessagesOut,
			BytesIn:       st.BytesIn,
			BytesOut:      st.BytesOut,
			Panics:        st.Panics,
			AcceptErrors:  st.AcceptErrors,
		},
		Listeners: make([]Listener, 0, len(st.Listeners)),
		Conns:     []Conn{},
	}
	for _, l := range st.Listeners {
		s.Listeners = append(s.Listeners, Listener{
			Addr: l.Addr, Packet: l.Packet, ConnsOpen: l.ConnsOpen, ConnsTotal: l.ConnsTotal, Datagrams: l.Messages,
		})
	}
	slices.SortFunc(s.Listeners, func(a, b Listener) int { return cmp.Compare(a.Addr, b.Addr) })
	for _, r := range porta.CloseReasons() {
		s.Closed = append(s.Closed, ReasonCount{Reason: r.String(), Count: st.Closed[r], Error: metrics.IsError(r)})
	}
	for _, k := range metrics.Errors(st) {
		s.Totals.Errors += k.Count
	}
	lat := m.Latency()
	s.Latency = Latency{
		Window: lat.Window.Seconds(), Count: lat.Count,
		P50: lat.P50.Seconds(), P90: lat.P90.Seconds(), P99: lat.P99.Seconds(), Max: lat.Max.Seconds(),
	}

	conns := srv.Conns()
	slices.SortFunc(conns, func(a, b porta.ConnInfo) int { return a.Opened.Compare(b.Opened) })
	for _, c := range conns[:min(len(conns), MaxConnRows)] {
		s.Conns = append(s.Conns, Conn{
			Peer:        c.Peer,
			Listener:    c.Listener,
			Opened:      c.Opened,
			Age:         max(now.Sub(c.Opened), 0).Seconds(),
			Idle:        max(now.Sub(c.IdleSince), 0).Seconds(),
			MessagesIn:  c.MessagesIn,
			MessagesOut: c.MessagesOut,
			BytesIn:     c.BytesIn,
			BytesOut:    c.BytesOut,
		})
	}
	return s
}
