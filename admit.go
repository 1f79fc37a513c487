package porta

import (
	"net"
	"net/netip"
	"sync"
)

// A RejectReason says why a new connection was refused before being
// served. Its String form is fit for log lines and metric labels.
type RejectReason uint8

// The reasons a connection is refused.
const (
	// RejectMaxConns: the server already had MaxConns open connections.
	RejectMaxConns RejectReason = iota
	// RejectMaxConnsPerIP: the peer's IP already had MaxConnsPerIP.
	RejectMaxConnsPerIP
	// RejectDenied: the peer's address is denied by Deny or not in Allow.
	RejectDenied

	numRejectReasons // the number of reasons; keep last
)

var rejectReasonNames = [numRejectReasons]string{
	RejectMaxConns:      "max_conns",
	RejectMaxConnsPerIP: "max_conns_per_ip",
	RejectDenied:        "denied",
}

// String returns the reason's label, such as "max_conns".
func (r RejectReason) String() string {
	if r < numRejectReasons {
		return rejectReasonNames[r]
	}
	return "unknown"
}

// RejectReasons returns every RejectReason, in order.
func RejectReasons() []RejectReason {
	rs := make([]RejectReason, numRejectReasons)
	for i := range rs {
		rs[i] = RejectReason(i)
	}
	return rs
}

// ipCounts counts open connections per peer IP, for MaxConnsPerIP.
type ipCounts struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

// peerIP returns the IP address of a peer (unmapped): that of a TCP or
// UDP address, or of another listener's address whose text is an IP
// address and port, such as a wrapping listener's; false for Unix peers
// and other addresses, which no filter or per-IP limit applies to.
func peerIP(a net.Addr) (netip.Addr, bool) {
	var ip net.IP
	switch a := a.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	case *net.UnixAddr, nil:
		return netip.Addr{}, false
	default:
		ap, err := netip.ParseAddrPort(a.String())
		return ap.Addr().Unmap(), err == nil
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}

// permitted reports whether the filters let ip (unmapped) in: not in any
// Deny prefix and, when Allow is not empty, in one of its prefixes. Deny
// wins.
func (s *Server) permitted(ip netip.Addr) bool {
	for _, p := range s.Deny {
		if prefixContains(p, ip) {
			return false
		}
	}
	if len(s.Allow) == 0 {
		return true
	}
	for _, p := range s.Allow {
		if prefixContains(p, ip) {
			return true
		}
	}
	return false
}

// prefixContains reports whether p holds ip, an IPv4 address matching an
// IPv6 prefix that holds its IPv4-mapped form (::ffff:127.0.0.1/128 holds
// 127.0.0.1), so that a filter written in that form is not bypassed.
func prefixContains(p netip.Prefix, ip netip.Addr) bool {
	if p.Contains(ip) {
		return true
	}
	return ip.Is4() && p.Addr().Is6() && p.Contains(netip.AddrFrom16(ip.As16()))
}

// admit decides whether a new connection may be served. If it may, the
// connection is counted (globally and for its IP) until release; ip is its
// peer IP, invalid for a Unix peer.
func (s *Server) admit(nc net.Conn) (ip netip.Addr, why RejectReason, ok bool) {
	ip, isIP := peerIP(nc.RemoteAddr())
	if isIP && !s.permitted(ip) {
		return ip, RejectDenied, false
	}
	if n := s.counters.connsOpen.Add(1); s.maxConns() > 0 && n > s.maxConns() {
		s.counters.connsOpen.Add(-1)
		return ip, RejectMaxConns, false
	}
	if isIP && s.MaxConnsPerIP > 0 {
		s.perIP.mu.Lock()
		if s.perIP.n[ip] >= s.MaxConnsPerIP {
			s.perIP.mu.Unlock()
			s.counters.connsOpen.Add(-1)
			return ip, RejectMaxConnsPerIP, false
		}
		if s.perIP.n == nil {
			s.perIP.n = make(map[netip.Addr]int)
		}
		s.perIP.n[ip]++
		s.perIP.mu.Unlock()
	}
	return ip, 0, true
}

// release undoes admit's counting when a connection ends.
func (s *Server) release(ip netip.Addr) {
	s.counters.connsOpen.Add(-1)
	if !ip.IsValid() || s.MaxConnsPerIP <= 0 {
		return
	}
	s.perIP.mu.Lock()
	if s.perIP.n[ip]--; s.perIP.n[ip] <= 0 {
		delete(s.perIP.n, ip)
	}
	s.perIP.mu.Unlock()
}

// refuse counts a refused connection and tells the peer why: a peer over
// a limit gets "ERR too many connections", in the server's framing, and a
// denied peer is closed without a word.
func (s *Server) refuse(nc net.Conn, why RejectReason) {
	s.counters.connsRejected.Add(1)
	s.counters.rejected[why].Add(1)
	if why == RejectDenied {
		s.counters.closed[CloseDenied].Add(1)
		s.logger().Warn("connection denied", "peer", addrString(nc.RemoteAddr()))
		nc.Close()
		return
	}
	s.counters.closed[CloseLimit].Add(1)
	if !s.trackRefusal(nc) {
		nc.Close()
		return
	}
	go func() {
		defer s.untrackRefusal(nc)
		s.reject(nc, why)
	}()
}

// maxRejecting bounds the refusals written at once (see Server.refuse).
const maxRejecting = 64

// trackRefusal adds a refusal about to be written, so that Shutdown waits
// for it and Close ends it. It fails during shutdown, and in a flood of
// refused peers: the refusals under way hold a descriptor and a goroutine
// each for a second or more, and more would defeat the limit; such a peer
// is closed without a word.
func (s *Server) trackRefusal(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown() || len(s.refusals) >= maxRejecting {
		return false
	}
	if s.refusals == nil {
		s.refusals = make(map[net.Conn]struct{})
	}
	s.refusals[nc] = struct{}{}
	s.active.Add(1)
	return true
}

// untrackRefusal removes a refusal that has ended.
func (s *Server) untrackRefusal(nc net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refusals, nc)
	s.active.Done()
}
