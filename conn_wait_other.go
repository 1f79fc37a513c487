//go:build !linux

package porta

// rawReader runs a connection's loop with the decoder's own reads where
// raw socket access is not used: connections wait inside their reads,
// holding their read buffer.
type rawReader struct {
	c       *conn
	drained bool // never set: every wait is a blocking read
	woken   bool // never set
}

func (r *rawReader) init(c *conn) { r.c = c }

// serve runs the connection's loop until it ends.
func (r *rawReader) serve() (CloseReason, bool) { return r.c.run() }

// fill reads once into the decoder.
func (r *rawReader) fill() error { return r.c.dec.Fill() }

// shutdown does nothing: no connection is ever busy here.
func (r *rawReader) shutdown() {}

// wrote does nothing: every wait is a blocking read.
func (r *rawReader) wrote() {}

// write writes nothing: the caller writes through the connection.
func (r *rawReader) write(p []byte) (int, error) { return 0, nil }
