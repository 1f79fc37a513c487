package porta

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/porta-project/porta/frame"
)

// DefaultDialTimeout bounds a connection attempt when Dialer.Timeout is
// zero: long enough for a slow network, short enough for a script.
const DefaultDialTimeout = 10 * time.Second

// A Dialer connects to message servers: porta's, or any that speaks one of
// the framings. The zero value dials with Line framing.
type Dialer struct {
	// Framing frames the messages sent and splits the replies. The zero
	// value, frame.Auto, means frame.Line. UDP always uses one datagram
	// per message.
	Framing frame.Framing

	// Timeout bounds the connection attempt. Zero means
	// DefaultDialTimeout.
	Timeout time.Duration

	// MaxMessageSize is the largest reply accepted, in bytes. Zero means
	// frame.DefaultMaxSize (64 KiB); the highest value is
	// frame.MaxSizeLimit (16 MiB), and larger ones are lowered to it. A
	// larger reply makes Receive return an error wrapping
	// frame.ErrTooLong.
	MaxMessageSize int

	// ReadSize is the most bytes one Raw read takes as a reply, at most
	// MaxMessageSize. Zero means frame.DefaultReadSize (1024).
	ReadSize int

	// TLSConfig configures the TLS client of tls:// addresses: the CA
	// certificates (RootCAs), a client certificate, ServerName. Nil means
	// the system's CA certificates. An empty ServerName is the host of
	// the address. Other addresses ignore it.
	TLSConfig *tls.Config
}

// Dial connects to addr (see Addr for the syntax) with Line framing.
func Dial(addr string) (*ClientConn, error) {
	var d Dialer
	return d.DialContext(context.Background(), addr)
}

// DialContext connects to addr (see Addr for the syntax). A refused or
// failed connection is reported in words that name the address, such as
// "porta: connection refused: nothing is listening on 127.0.0.1:8000".
//
// For a tls:// address, the TLS handshake completes within the same
// Timeout, verifying the server's certificate as d.TLSConfig says. A
// failed handshake returns an error that wraps ErrTLSHandshake and its
// cause, such as an x509.UnknownAuthorityError, and reads like
// "porta: TLS handshake with 127.0.0.1:8443 failed: certificate signed by
// unknown authority".
func (d *Dialer) DialContext(ctx context.Context, addr string) (*ClientConn, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	if a.TLS {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	nd := net.Dialer{Timeout: timeout}
	nc, err := nd.DialContext(ctx, a.Network, a.Address)
	if err != nil {
		return nil, dialError(a, err)
	}
	if a.TLS {
		if nc, err = clientHandshake(ctx, a, nc, d.TLSConfig); err != nil {
			return nil, err
		}
	}
	return newClientConn(nc, a.IsPacket(), d), nil
}

// NewClientConn wraps an established connection, framing as d says. It is
// for connections made by other means, such as a TLS or proxy dialer.
func NewClientConn(nc net.Conn, d *Dialer) *ClientConn {
	return newClientConn(nc, isDatagramConn(nc), d)
}

// isDatagramConn reports whether nc carries datagrams (UDP, unixgram). The
// net.PacketConn interface alone cannot tell: a Unix stream connection,
// *net.UnixConn, implements it too.
func isDatagramConn(nc net.Conn) bool {
	if _, ok := nc.(net.PacketConn); !ok {
		return false
	}
	for _, a := range []net.Addr{nc.LocalAddr(), nc.RemoteAddr()} {
		if a != nil {
			switch a.Network() {
			case "unix", "unixpacket":
				return false
			}
		}
	}
	return true
}

func newClientConn(nc net.Conn, packet bool, d *Dialer) *ClientConn {
	f := d.Framing
	if f == frame.Auto {
		f = frame.Line
	}
	if packet {
		f = frame.Raw
	}
	dec := frame.NewDecoder(nc, f, d.MaxMessageSize)
	if packet {
		// A datagram is read whole, straight from the socket: an empty
		// datagram is an empty reply, which a Decoder would skip.
		// One byte more than the limit, to tell a datagram over it,
		// which a read would cut short without a word.
		return &ClientConn{nc: nc, framing: f, dec: dec, dgram: make([]byte, dec.MaxSize()+1)}
	}
	if d.ReadSize > 0 {
		dec.SetReadSize(d.ReadSize)
	}
	return &ClientConn{nc: nc, framing: f, dec: dec}
}

// dialError says why a connection failed, naming the address.
func dialError(a Addr, err error) error {
	where := a.Address
	if a.Network == "unix" || a.IsPacket() {
		where = a.String()
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &wordedError{"porta: connection refused: nothing is listening on " + where, err}
	case errors.Is(err, syscall.ENOENT):
		return &wordedError{"porta: no such socket: nothing is listening on " + where, err}
	case isTimeoutErr(err):
		return &wordedError{"porta: timed out connecting to " + where, err}
	}
	return fmt.Errorf("porta: cannot connect to %s: %w", where, err)
}

// wordedError is an error whose text says it all in words, while still
// wrapping the system error for errors.Is.
type wordedError struct {
	text string
	err  error
}

func (e *wordedError) Error() string { return e.text }
func (e *wordedError) Unwrap() error { return e.err }

// A ClientConn is a client's connection to a message server. Its methods
// frame what is sent and split what is received into replies. It is not
// safe for concurrent use, except that one goroutine may Send while
// another Receives.
type ClientConn struct {
	nc      net.Conn
	framing frame.Framing
	dec     *frame.Decoder
	out     []byte
	dgram   []byte // UDP only: the buffer each datagram is read into
}

// Send frames msg and writes it. With Line framing msg should not contain
// '\n', which would end it early.
func (c *ClientConn) Send(msg []byte) error {
	c.out = frame.Append(c.out[:0], c.framing, msg)
	_, err := c.nc.Write(c.out)
	return err
}

// Receive returns the next reply. It returns io.EOF when the server has
// closed the connection cleanly between replies. The reply is valid until
// the next call of Receive or Exchange.
func (c *ClientConn) Receive() ([]byte, error) {
	if c.dgram != nil {
		n, err := c.nc.Read(c.dgram)
		if err != nil {
			return nil, err
		}
		if n == len(c.dgram) {
			return nil, fmt.Errorf("%w: a datagram of more than %d bytes", frame.ErrTooLong, n-1)
		}
		return c.dgram[:n], nil
	}
	return c.dec.Next()
}

// Exchange sends msg and returns its reply.
func (c *ClientConn) Exchange(msg []byte) ([]byte, error) {
	if err := c.Send(msg); err != nil {
		return nil, err
	}
	return c.Receive()
}

// Framing returns the framing used on the connection.
func (c *ClientConn) Framing() frame.Framing { return c.framing }

// Conn returns the underlying connection, for deadlines and addresses.
func (c *ClientConn) Conn() net.Conn { return c.nc }

// SetDeadline sets the deadline for Send and Receive, as net.Conn does.
func (c *ClientConn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// CloseWrite tells the server that no more messages will come, where the
// transport supports it (TCP, Unix), while replies can still be received.
func (c *ClientConn) CloseWrite() error {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection.
func (c *ClientConn) Close() error { return c.nc.Close() }
