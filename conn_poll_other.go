//go:build !linux

package porta

// pollLoop runs a connection's loop with the decoder's own reads where
// raw socket access is not used: connections wait inside their reads,
// holding their read buffer.
type pollLoop struct {
	c       *conn
	drained bool // never set: every wait is a blocking read
	woken   bool // never set
}

func (r *pollLoop) init(c *conn) { r.c = c }

// serve runs the connection's loop until it ends.
func (r *pollLoop) serve() (CloseReason, bool) { return r.c.run() }

// fill reads once into the decoder.
func (r *pollLoop) fill() error { return r.c.dec.Fill() }

// shutdown does nothing: no connection is ever busy here.
func (r *pollLoop) shutdown() {}

// wrote does nothing: every wait is a blocking read.
func (r *pollLoop) wrote() {}

// write writes nothing: the caller writes through the connection.
func (r *pollLoop) write(p []byte) (int, error) { return 0, nil }
