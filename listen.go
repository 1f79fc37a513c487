package porta

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultAddr is the address a zero Server listens on: loopback only, so
// that nothing is exposed to the network unless asked for.
const DefaultAddr = "127.0.0.1:8000"

// An Addr is a parsed porta address.
//
// The syntax, shared by every command, is one of
//
//	host:port               TCP (IPv4 or IPv6, as host resolves)
//	:port                   TCP on all interfaces
//	tcp://host:port         the same as host:port
//	tcp4://host:port        TCP over IPv4 only
//	tcp6://[::1]:port       TCP over IPv6 only
//	udp://host:port         UDP (also udp4://, udp6://)
//	unix:///path/to.sock    a Unix stream socket
//	tls://host:port         TLS over TCP (also tls4://, tls6://)
//
// A port of 0 asks the system for a free port.
type Addr struct {
	// Network is the Go network name: "tcp", "tcp4", "tcp6", "udp",
	// "udp4", "udp6" or "unix". A TLS address has a TCP network.
	Network string
	// Address is host:port, or the socket path for "unix".
	Address string
	// TLS reports whether the address is a tls:// (tls4://, tls6://)
	// address: TLS over Network.
	TLS bool
}

// tlsSchemes maps the TLS schemes to their TCP networks.
var tlsSchemes = map[string]string{"tls": "tcp", "tls4": "tcp4", "tls6": "tcp6"}

// ParseAddr parses s in the address syntax described at Addr.
func ParseAddr(s string) (Addr, error) {
	scheme, rest, hasScheme := strings.Cut(s, "://")
	if !hasScheme {
		scheme, rest = "tcp", s
	}
	switch scheme {
	case "unix":
		if rest == "" {
			return Addr{}, fmt.Errorf("%w %q: missing socket path (unix:///path/to.sock)", ErrBadAddress, s)
		}
		return Addr{Network: "unix", Address: rest}, nil
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "tls", "tls4", "tls6":
	default:
		return Addr{}, fmt.Errorf("%w %q: unknown scheme %q (want tcp, tcp4, tcp6, udp, udp4, udp6, unix, tls, tls4 or tls6)", ErrBadAddress, s, scheme)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		if _, perr := strconv.Atoi(rest); perr == nil {
			return Addr{}, fmt.Errorf("%w %q: missing host (did you mean 127.0.0.1:%s, or :%s for all interfaces?)", ErrBadAddress, s, rest, rest)
		}
		return Addr{}, fmt.Errorf("%w %q: want host:port", ErrBadAddress, s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return Addr{}, fmt.Errorf("%w %q: port %q is not a number from 0 to 65535", ErrBadAddress, s, port)
	}
	if strings.ContainsAny(host, " /") {
		return Addr{}, fmt.Errorf("%w %q: bad host %q", ErrBadAddress, s, host)
	}
	if network, ok := tlsSchemes[scheme]; ok {
		return Addr{Network: network, Address: rest, TLS: true}, nil
	}
	return Addr{Network: scheme, Address: rest}, nil
}

// IsPacket reports whether the address is a datagram (UDP) address.
func (a Addr) IsPacket() bool { return strings.HasPrefix(a.Network, "udp") }

// String returns the address in URL form, such as "tcp://127.0.0.1:8000",
// "tls://127.0.0.1:8443" or "unix:///tmp/porta.sock".
func (a Addr) String() string {
	if a.TLS {
		return strings.Replace(a.Network, "tcp", "tls", 1) + "://" + a.Address
	}
	return a.Network + "://" + a.Address
}

// FormatAddr returns a network address in URL form, such as
// "tcp://127.0.0.1:8000" or "unix:///tmp/porta.sock". It is how porta
// prints listener and peer addresses. The address of a ListenTLS listener
// prints as "tls://127.0.0.1:8443".
func FormatAddr(a net.Addr) string {
	if a == nil {
		return ""
	}
	network := a.Network()
	if network == "unixgram" || network == "unixpacket" {
		network = "unix"
	}
	return network + "://" + a.String()
}

// addrString returns a's String, or "" for nil; used in log lines.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	if s := a.String(); s != "" && s != "@" {
		return s
	}
	return a.Network() // an unnamed Unix socket peer
}

// Listen opens a stream listener on addr (see Addr for the syntax).
//
// For a Unix socket, a stale socket file left behind by a crashed server is
// replaced, but a live one, where another server answers, is not: Listen
// returns an error wrapping ErrAddrInUse. Of concurrent Listen calls on one
// socket path, in one process or (on Linux) in several, at most one
// succeeds; the others return ErrAddrInUse. The socket file is removed
// when the listener is closed.
//
// A tls:// address needs a certificate: Listen refuses it, with an error
// that says to use ListenTLS.
func Listen(addr string) (net.Listener, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if a.IsPacket() {
		return nil, fmt.Errorf("%w %q: UDP is not a stream address (use ListenPacket)", ErrBadAddress, addr)
	}
	if a.TLS {
		return nil, fmt.Errorf("%w %q: a TLS address needs a certificate (use ListenTLS)", ErrBadAddress, addr)
	}
	return listen(a)
}

// listen opens a stream listener on a parsed, non-packet address.
func listen(a Addr) (net.Listener, error) {
	if a.Network == "unix" && !isAbstract(a.Address) {
		return listenUnix(a)
	}
	l, err := net.Listen(a.Network, a.Address)
	if err != nil {
		return nil, listenError(a, err)
	}
	return l, nil
}

// isAbstract reports whether a Unix socket name is in Linux's abstract
// namespace, where there is no file to replace or remove.
func isAbstract(path string) bool {
	return strings.HasPrefix(path, "@") && (runtime.GOOS == "linux" || runtime.GOOS == "android")
}

// listenUnix listens on the Unix socket file a.Address, replacing a stale
// one. The whole of it (bind, probe of the file in the way, its removal,
// bind again) runs under the path's lock, so that no other Listen can
// remove the file between our probe and our bind, or probe ours between
// bind and listen, when a connect is refused as if it were stale.
func listenUnix(a Addr) (net.Listener, error) {
	release, err := lockSocketPath(a.Address)
	if err != nil {
		return nil, err
	}
	defer release()
	l, err := net.Listen(a.Network, a.Address)
	if err != nil && errors.Is(err, syscall.EADDRINUSE) {
		if staleErr := removeStaleSocket(a.Address); staleErr != nil {
			return nil, staleErr
		}
		l, err = net.Listen(a.Network, a.Address)
	}
	if err != nil {
		return nil, listenError(a, err)
	}
	return l, nil
}

// socketLocks holds the keys (see socketLockKey) of the Unix socket paths
// that a Listen in this process is setting up.
var (
	socketLocksMu sync.Mutex
	socketLocks   = make(map[string]bool)
)

// lockSocketPath takes the lock on the Unix socket path for a Listen, and
// returns the function that releases it. The lock is held in this process
// and, on Linux, across processes too, by binding a name derived from the
// path in the abstract socket namespace: the kernel frees it when its
// holder exits, so a crash leaves no stale lock. Elsewhere only Listen
// calls within the process exclude each other.
//
// The lock is not waited for: whoever holds it is setting up a listener
// on the same path, which either succeeds, or fails because a live server
// holds the path, and either way a second Listen would find it in use. So
// lockSocketPath returns an error wrapping ErrAddrInUse instead.
func lockSocketPath(path string) (release func(), err error) {
	busy := fmt.Errorf("%w: unix://%s (another server is starting on it)", ErrAddrInUse, path)
	key := socketLockKey(path)
	socketLocksMu.Lock()
	if socketLocks[key] {
		socketLocksMu.Unlock()
		return nil, busy
	}
	socketLocks[key] = true
	socketLocksMu.Unlock()
	unlock := func() {
		socketLocksMu.Lock()
		delete(socketLocks, key)
		socketLocksMu.Unlock()
	}
	if runtime.GOOS != "linux" && runtime.GOOS != "android" {
		return unlock, nil
	}
	sum := sha256.Sum256([]byte(key))
	pc, err := net.ListenPacket("unixgram", "@porta-listen-"+hex.EncodeToString(sum[:16]))
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		unlock()
		return nil, busy
	case err != nil:
		// No abstract sockets here (a sandbox may forbid them): the
		// lock within the process is all there is.
		return unlock, nil
	}
	return func() { pc.Close(); unlock() }, nil
}

// socketLockKey returns the absolute path of the socket file at path, with
// symbolic links in its directory resolved, so that two spellings of one
// path share a lock.
func socketLockKey(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	dir, base := filepath.Split(abs)
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	return filepath.Join(dir, base)
}

// ListenPacket opens a datagram socket on addr, which must be a udp://,
// udp4:// or udp6:// address.
func ListenPacket(addr string) (net.PacketConn, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if !a.IsPacket() {
		return nil, fmt.Errorf("%w %q: not a UDP address", ErrBadAddress, addr)
	}
	pc, err := net.ListenPacket(a.Network, a.Address)
	if err != nil {
		return nil, listenError(a, err)
	}
	return pc, nil
}

// listenError makes a listen failure say what went wrong in words.
func listenError(a Addr, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%w: %s", ErrAddrInUse, a)
	case errors.Is(err, syscall.EACCES):
		return &wordedError{"porta: permission denied: " + a.String() + permissionHint(a), err}
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return &wordedError{"porta: cannot listen on " + a.String() + ": no such local address", err}
	}
	return fmt.Errorf("porta: cannot listen on %s: %w", a, err)
}

// firstUnprivilegedPort is the lowest port number that needs no privilege
// to bind: ports 1 to 1023 need root (or, on Linux, CAP_NET_BIND_SERVICE),
// and port 0 asks for a free high port.
const firstUnprivilegedPort = 1024

// permissionHint says, in parentheses after a space, the likely reason a
// listen on a was denied, or returns "" if there is none to give: a port
// of 0, or of 1024 or above, needs no privilege, so the reason is
// elsewhere (a security policy, say).
func permissionHint(a Addr) string {
	if a.Network == "unix" {
		return " (cannot create the socket file: directory " + filepath.Dir(a.Address) + " is not writable by this user, or a directory on its path is not searchable)"
	}
	_, port, err := net.SplitHostPort(a.Address)
	if err != nil {
		return ""
	}
	if n, err := strconv.Atoi(port); err == nil && n > 0 && n < firstUnprivilegedPort {
		return " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
	}
	return ""
}

// staleProbeTimeout bounds the dial that tells a live Unix socket from a
// stale one; a live server accepts at once.
const staleProbeTimeout = 500 * time.Millisecond

// removeStaleSocket removes the socket file at path if no server answers
// on it, and returns an error wrapping ErrAddrInUse if one does.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil // gone meanwhile: the retry will tell
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%w: unix://%s exists and is not a socket", ErrAddrInUse, path)
	}
	c, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: unix://%s (another server is answering on it)", ErrAddrInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w: unix://%s: %v", ErrAddrInUse, path, err)
	}
	// The caller's lock keeps other porta Listens away; this check narrows
	// the window for anyone else who replaced the file since the probe.
	if now, err := os.Lstat(path); err != nil {
		return nil // gone meanwhile: the retry will tell
	} else if !os.SameFile(now, fi) {
		return fmt.Errorf("%w: unix://%s (replaced while probed)", ErrAddrInUse, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("porta: cannot remove stale socket unix://%s: %w", path, err)
	}
	return nil
}
