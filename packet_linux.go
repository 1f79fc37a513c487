//go:build linux

package porta

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// replySource makes the replies of a UDP socket bound to a wildcard
// address (0.0.0.0 or ::) go out from the address each datagram was sent
// to. Without it the kernel picks the source by route, and on a host with
// several addresses a sender that wrote to another one (127.0.0.2, a
// second or floating address) gets its reply from an address it did not
// write to, which a connected client drops. Each read asks for the
// datagram's destination (IP_PKTINFO, IPV6_RECVPKTINFO) and each reply
// names it as its source.
type replySource struct {
	uc  *net.UDPConn // nil: the socket is bound to one address, or not UDP
	oob []byte       // control messages read with a datagram
	src []byte       // the control message that sets the reply's source; nil for none
	ap  netip.AddrPort
}

// init sets rs up for pc, if pc is a UDP socket bound to a wildcard
// address and the kernel takes the options.
func (rs *replySource) init(pc net.PacketConn) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return
	}
	if la, ok := uc.LocalAddr().(*net.UDPAddr); !ok || !la.IP.IsUnspecified() {
		return
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return
	}
	ok = false
	raw.Control(func(fd uintptr) {
		domain, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
		if err != nil {
			return
		}
		// IP_PKTINFO on an IPv6 socket reports the IPv4 datagrams it
		// receives (as ::ffff:a.b.c.d).
		if syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1) != nil {
			return
		}
		if domain == syscall.AF_INET6 && syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1) != nil {
			return
		}
		ok = true
	})
	if ok {
		rs.uc = uc
		rs.oob = make([]byte, syscall.CmsgSpace(syscall.SizeofInet6Pktinfo)+syscall.CmsgSpace(syscall.SizeofInet4Pktinfo))
		rs.src = make([]byte, 0, syscall.CmsgSpace(syscall.SizeofInet6Pktinfo))
	}
}

// readFrom reads one datagram from pc, and notes where it was sent.
func (rs *replySource) readFrom(pc net.PacketConn, buf []byte) (int, net.Addr, error) {
	if rs.uc == nil {
		return pc.ReadFrom(buf)
	}
	n, oobn, _, ap, err := rs.uc.ReadMsgUDPAddrPort(buf, rs.oob)
	if err != nil {
		return n, nil, err
	}
	rs.ap = ap
	rs.src = replySourceMsg(rs.src[:0], rs.oob[:oobn])
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// writeTo sends p to the sender of the datagram last read, from the
// address it was sent to.
func (rs *replySource) writeTo(pc net.PacketConn, p []byte, peer net.Addr) (int, error) {
	if rs.uc == nil {
		return pc.WriteTo(p, peer)
	}
	n, _, err := rs.uc.WriteMsgUDPAddrPort(p, rs.src, rs.ap)
	return n, err
}

// replySourceMsg appends to dst the control message that sends a reply
// from the destination reported in oob (the control messages read with a
// datagram), and returns dst; nothing if oob reports none.
func replySourceMsg(dst, oob []byte) []byte {
	for len(oob) >= syscall.CmsgLen(0) {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < syscall.CmsgLen(0) || l > len(oob) {
			return dst
		}
		data := oob[syscall.CmsgLen(0):l]
		switch {
		case h.Level == syscall.IPPROTO_IP && h.Type == syscall.IP_PKTINFO && len(data) >= syscall.SizeofInet4Pktinfo:
			in := (*syscall.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			// Spec_dst is the local address the datagram came to (for a
			// broadcast, a local address of its interface).
			info := syscall.Inet4Pktinfo{Spec_dst: in.Spec_dst}
			return appendCmsg(dst, syscall.IPPROTO_IP, syscall.IP_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&info)), syscall.SizeofInet4Pktinfo))
		case h.Level == syscall.IPPROTO_IPV6 && h.Type == syscall.IPV6_PKTINFO && len(data) >= syscall.SizeofInet6Pktinfo:
			in := (*syscall.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			if netip.AddrFrom16(in.Addr).IsMulticast() {
				return dst // not a source address: let the kernel choose
			}
			info := syscall.Inet6Pktinfo{Addr: in.Addr, Ifindex: in.Ifindex}
			return appendCmsg(dst, syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&info)), syscall.SizeofInet6Pktinfo))
		}
		oob = oob[min(syscall.CmsgSpace(l-syscall.CmsgLen(0)), len(oob)):]
	}
	return dst
}

// appendCmsg appends one control message to dst.
func appendCmsg(dst []byte, level, typ int32, data []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, syscall.CmsgSpace(len(data)))...)
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&dst[start]))
	h.Level, h.Type = level, typ
	h.SetLen(syscall.CmsgLen(len(data)))
	copy(dst[start+syscall.CmsgLen(0):], data)
	return dst
}
