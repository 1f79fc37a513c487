//go:build !linux

package porta

import "github.com/porta-project/porta/frame"

// rawReader reads through the decoder's own reader where raw socket
// access is not used: connections wait inside their reads, holding their
// read buffer.
type rawReader struct{ dec *frame.Decoder }

func (r *rawReader) init(nc any, dec *frame.Decoder, onIdle func()) { r.dec = dec }

// Fill reads once into the decoder.
func (r *rawReader) Fill() error { return r.dec.Fill() }
