package porta

import "errors"

// Sentinel errors. Match them with errors.Is; their text is not an API.
var (
	// ErrServerClosed is returned by Serve, ServePacket and ListenAndServe
	// after a call to Shutdown or Close.
	ErrServerClosed = errors.New("porta: server closed")

	// ErrHungUp is returned by ResponseWriter.Write after Close. (A
	// ClientConn whose server hung up gets io.EOF from Receive.)
	ErrHungUp = errors.New("porta: connection hung up")

	// ErrBadAddress is wrapped by every address parsing error.
	ErrBadAddress = errors.New("porta: bad address")

	// ErrAddrInUse is returned by Listen when another server holds the
	// address, including a live Unix socket.
	ErrAddrInUse = errors.New("porta: address already in use")

	// ErrNoCertificate is returned by ListenTLS and ListenAndServe when a
	// tls:// address has no certificate to present.
	ErrNoCertificate = errors.New("porta: TLS needs a certificate")

	// ErrTLSHandshake is wrapped by the error of a Dialer whose TLS
	// handshake failed, together with the cause (such as an
	// x509.UnknownAuthorityError), which errors.As finds.
	ErrTLSHandshake = errors.New("porta: TLS handshake failed")
)
