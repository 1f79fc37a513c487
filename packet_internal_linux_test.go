//go:build linux

package porta

import (
	"syscall"
	"testing"
)

// TestReplySourceMsgMalformed: control messages that do not parse give no
// source (the kernel then picks one), never a panic.
func TestReplySourceMsgMalformed(t *testing.T) {
	info := make([]byte, syscall.SizeofInet4Pktinfo)
	info[4], info[5], info[6], info[7] = 127, 0, 0, 2 // Spec_dst
	good := appendCmsg(nil, syscall.IPPROTO_IP, syscall.IP_PKTINFO, info)
	if got := replySourceMsg(nil, good); len(got) != syscall.CmsgSpace(syscall.SizeofInet4Pktinfo) || got[syscall.CmsgLen(0)+4] != 127 || got[syscall.CmsgLen(0)+7] != 2 {
		t.Fatalf("a well-formed IP_PKTINFO gave %v", got)
	}
	for name, oob := range map[string][]byte{
		"empty":           nil,
		"short header":    good[:syscall.CmsgLen(0)-1],
		"length past end": good[:syscall.CmsgLen(syscall.SizeofInet4Pktinfo)-1],
		"zero length":     make([]byte, 2*syscall.CmsgLen(0)),
		"short data":      appendCmsg(nil, syscall.IPPROTO_IP, syscall.IP_PKTINFO, info[:4]),
		"other type":      appendCmsg(nil, syscall.IPPROTO_IP, syscall.IP_TTL, info),
	} {
		if got := replySourceMsg(nil, oob); len(got) != 0 {
			t.Errorf("%s: got a source message %v, want none", name, got)
		}
	}
}
