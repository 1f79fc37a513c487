package porta

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Server's counters since it was created.
type Stats struct {
	ConnsOpen     int64  // stream connections open now
	ConnsTotal    uint64 // stream connections accepted and served
	ConnsRejected uint64 // connections refused by a limit or a filter
	// Rejected counts refused connections by reason, indexed by
	// RejectReason.
	Rejected     [numRejectReasons]uint64
	MessagesIn   uint64 // messages received, over every transport
	MessagesOut  uint64 // replies written (a reply in a write that failed is not counted)
	BytesIn      uint64 // message bytes received, without framing
	BytesOut     uint64 // reply bytes written, without framing
	Panics       uint64 // handler panics recovered
	AcceptErrors uint64 // failed accepts (such as EMFILE), each retried
	// DatagramsDenied counts UDP datagrams dropped unanswered because
	// Allow or Deny refused their sender.
	DatagramsDenied uint64
	// Closed counts ended connections by reason, indexed by CloseReason.
	Closed [numCloseReasons]uint64
	// Listeners has the counts of each listener and UDP socket being
	// served, in no particular order.
	Listeners []ListenerStats
}

// ListenerStats are the counts of one listener or UDP socket.
type ListenerStats struct {
	Addr       string // such as "tcp://127.0.0.1:8000"
	Packet     bool   // a UDP socket: it has messages, not connections
	ConnsOpen  int64  // connections open now
	ConnsTotal uint64 // connections accepted
	Messages   uint64 // UDP only: datagrams received
}

// listenerStats are a listener's live counts.
type listenerStats struct {
	addr     string
	open     atomic.Int64
	total    atomic.Uint64
	messages atomic.Uint64
}

func (ls *listenerStats) snapshot(packet bool) ListenerStats {
	return ListenerStats{Addr: ls.addr, Packet: packet, ConnsOpen: ls.open.Load(), ConnsTotal: ls.total.Load(), Messages: ls.messages.Load()}
}

// ConnInfo describes one open stream connection.
type ConnInfo struct {
	Peer        string    // the peer's address
	Listener    string    // the listener's address, such as "tcp://127.0.0.1:8000"
	Opened      time.Time // when it was accepted
	IdleSince   time.Time // when it last waited for input
	MessagesIn  uint64
	MessagesOut uint64
	BytesIn     uint64
	BytesOut    uint64
}

// counters are the Server's totals. Connections keep their own counts while
// open (see connCounters) and add them here when they close, so the hot
// path touches no shared cache line.
type counters struct {
	connsOpen       atomic.Int64
	connsTotal      atomic.Uint64
	connsRejected   atomic.Uint64
	rejected        [numRejectReasons]atomic.Uint64
	msgsIn          atomic.Uint64
	msgsOut         atomic.Uint64
	bytesIn         atomic.Uint64
	bytesOut        atomic.Uint64
	panics          atomic.Uint64
	acceptErrors    atomic.Uint64
	datagramsDenied atomic.Uint64
	closed          [numCloseReasons]atomic.Uint64
}

// connCounters are one connection's counts. The connection's goroutine
// counts in plain fields, with no atomic instruction per message (an
// atomic store is a locked XCHG on amd64), and publishes them once per
// batch of messages; others read the published copy. A reply counts once
// written: the replies buffered since the last write are pending, and
// are dropped if the write that carries them fails. The published counts
// never go down.
type connCounters struct {
	msgsIn, msgsOut, bytesIn, bytesOut uint64 // the connection's goroutine only
	pendingMsgs, pendingBytes          uint64 // replies buffered, not yet written
	pub                                struct {
		msgsIn, msgsOut, bytesIn, bytesOut atomic.Uint64
	}
}

func (c *connCounters) received(n int) {
	c.msgsIn++
	c.bytesIn += uint64(n)
}

// buffered counts a reply waiting to be written.
func (c *connCounters) buffered(n int) {
	c.pendingMsgs++
	c.pendingBytes += uint64(n)
}

// written counts the pending replies as sent, their write having
// succeeded, and publishes the reply counts.
func (c *connCounters) written() {
	c.msgsOut += c.pendingMsgs
	c.bytesOut += c.pendingBytes
	c.pendingMsgs, c.pendingBytes = 0, 0
	c.publishWritten()
}

// unsent drops the pending replies, whose write failed: a batch whose
// write fails counts none of its replies, even if part of it reached the
// socket.
func (c *connCounters) unsent() {
	c.pendingMsgs, c.pendingBytes = 0, 0
}

// publishReceived makes the counts of messages received visible to Stats
// and Conns. The connection calls it before each write of replies (and
// before each read), so that a peer that has its reply finds its message
// counted.
func (c *connCounters) publishReceived() {
	c.pub.msgsIn.Store(c.msgsIn)
	c.pub.bytesIn.Store(c.bytesIn)
}

// publishWritten makes the counts of replies written visible.
func (c *connCounters) publishWritten() {
	c.pub.msgsOut.Store(c.msgsOut)
	c.pub.bytesOut.Store(c.bytesOut)
}

// publish makes all the counts visible to Stats and Conns.
func (c *connCounters) publish() {
	c.publishReceived()
	c.publishWritten()
}

// addTo adds the connection's published counts to the server's totals.
func (c *connCounters) addTo(t *counters) {
	t.msgsIn.Add(c.pub.msgsIn.Load())
	t.msgsOut.Add(c.pub.msgsOut.Load())
	t.bytesIn.Add(c.pub.bytesIn.Load())
	t.bytesOut.Add(c.pub.bytesOut.Load())
}

// Stats returns a snapshot of the server's counters, including the counts
// of connections still open. It is safe to call at any time.
func (s *Server) Stats() Stats {
	// Hold the lock from the first load: a closing connection moves its
	// counts into the totals under it (see trackConn), so reading the
	// totals and the open connections in one critical section counts it
	// exactly once.
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &s.counters
	st := Stats{
		ConnsOpen:       t.connsOpen.Load(),
		ConnsTotal:      t.connsTotal.Load(),
		ConnsRejected:   t.connsRejected.Load(),
		MessagesIn:      t.msgsIn.Load(),
		MessagesOut:     t.msgsOut.Load(),
		BytesIn:         t.bytesIn.Load(),
		BytesOut:        t.bytesOut.Load(),
		Panics:          t.panics.Load(),
		AcceptErrors:    t.acceptErrors.Load(),
		DatagramsDenied: t.datagramsDenied.Load(),
	}
	for i := range st.Closed {
		st.Closed[i] = t.closed[i].Load()
	}
	for i := range st.Rejected {
		st.Rejected[i] = t.rejected[i].Load()
	}
	for c := range s.conns {
		st.MessagesIn += c.stats.pub.msgsIn.Load()
		st.MessagesOut += c.stats.pub.msgsOut.Load()
		st.BytesIn += c.stats.pub.bytesIn.Load()
		st.BytesOut += c.stats.pub.bytesOut.Load()
	}
	for _, ls := range s.listeners {
		st.Listeners = append(st.Listeners, ls.snapshot(false))
	}
	for _, ps := range s.packets {
		st.Listeners = append(st.Listeners, ps.ls.snapshot(true))
	}
	return st
}

// Conns returns a description of every open stream connection, in no
// particular order. It is safe to call at any time; its cost grows with
// the number of connections.
func (s *Server) Conns() []ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	infos := make([]ConnInfo, 0, len(s.conns))
	for c := range s.conns {
		infos = append(infos, ConnInfo{
			Peer:        addrString(c.nc.RemoteAddr()),
			Listener:    c.ls.addr,
			Opened:      c.opened,
			IdleSince:   time.Unix(0, c.idleSince.Load()),
			MessagesIn:  c.stats.pub.msgsIn.Load(),
			MessagesOut: c.stats.pub.msgsOut.Load(),
			BytesIn:     c.stats.pub.bytesIn.Load(),
			BytesOut:    c.stats.pub.bytesOut.Load(),
		})
	}
	return infos
}
