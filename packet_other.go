//go:build !linux

package porta

import "net"

// replySource sends replies with WriteTo: the kernel picks their source
// address (see packet_linux.go for what Linux does instead).
type replySource struct{}

func (rs *replySource) init(net.PacketConn) {}

func (rs *replySource) readFrom(pc net.PacketConn, buf []byte) (int, net.Addr, error) {
	return pc.ReadFrom(buf)
}

func (rs *replySource) writeTo(pc net.PacketConn, p []byte, peer net.Addr) (int, error) {
	return pc.WriteTo(p, peer)
}
