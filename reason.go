package porta

// A CloseReason says why a connection ended. Its String form is short and
// stable, fit for log lines and metric labels.
type CloseReason uint8

// The ways a connection can end.
const (
	// ClosePeer: the peer closed its side between messages, or reset the
	// connection (between messages or not).
	ClosePeer CloseReason = iota
	// CloseTruncated: the peer closed its side in the middle of a frame.
	CloseTruncated
	// CloseHangUp: the handler hung up, for example on the close word.
	CloseHangUp
	// CloseIdle: nothing was received for the idle timeout.
	CloseIdle
	// CloseFrameTimeout: a started frame did not complete in time.
	CloseFrameTimeout
	// CloseTooLong: a message exceeded the size limit.
	CloseTooLong
	// CloseSlowConsumer: the peer did not take its replies in time.
	CloseSlowConsumer
	// CloseLimit: the connection was refused by a connection limit.
	CloseLimit
	// CloseDenied: the connection was refused by the address filters.
	CloseDenied
	// CloseShutdown: the server shut down.
	CloseShutdown
	// ClosePanic: the handler panicked.
	ClosePanic
	// CloseError: a read or write failed.
	CloseError
	// CloseTLSHandshake: the TLS handshake failed or did not complete
	// within the handshake timeout.
	CloseTLSHandshake

	numCloseReasons // the number of reasons; keep last
)

var closeReasonNames = [numCloseReasons]string{
	ClosePeer:         "peer_closed",
	CloseTruncated:    "truncated",
	CloseHangUp:       "hangup",
	CloseIdle:         "idle_timeout",
	CloseFrameTimeout: "frame_timeout",
	CloseTooLong:      "too_long",
	CloseSlowConsumer: "slow_consumer",
	CloseLimit:        "limit",
	CloseDenied:       "denied",
	CloseShutdown:     "shutdown",
	ClosePanic:        "panic",
	CloseError:        "error",
	CloseTLSHandshake: "tls_handshake",
}

// String returns the reason's label, such as "peer_closed" or "idle_timeout".
func (r CloseReason) String() string {
	if r < numCloseReasons {
		return closeReasonNames[r]
	}
	return "unknown"
}

// CloseReasons returns every CloseReason, in order; useful to pre-create
// metric series.
func CloseReasons() []CloseReason {
	rs := make([]CloseReason, numCloseReasons)
	for i := range rs {
		rs[i] = CloseReason(i)
	}
	return rs
}
