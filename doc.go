// Package porta serves and sends messages over TCP (plain or TLS), Unix and
// UDP sockets.
//
// TCP is a byte stream: one recv can return half a message or ten. porta
// makes messages real with a framing (see package frame: lines,
// length-prefixed frames, or raw reads for recv()-style clients) and hands
// each message to a Handler, the way net/http hands requests to an
// http.Handler:
//
//	srv := &porta.Server{Addr: "127.0.0.1:8000", Handler: porta.Upper}
//	log.Fatal(srv.ListenAndServe())
//
// The zero Server echoes on 127.0.0.1:8000. A Handler is one method,
// ServeMessage(w, m); HandlerFunc adapts a function. Built-in handlers are
// Echo, Upper, Reply and HangUpOn; Middleware wraps handlers and Chain
// composes them. Dial and ClientConn are the client side.
//
// # The data path
//
// One goroutine serves each stream connection (conn.go):
//
//	read (Decoder.Fill, one read, under a deadline)
//	  -> decode (Decoder.Decode: every complete message buffered)
//	  -> handler (ServeMessage; w.Write appends a framed reply to a buffer)
//	  -> flush (one write of all replies, when no complete message is left)
//
// so a peer that pipelines gets its replies in few packets, and replies
// are always in order. On Linux, the connections of a handler marked
// NonBlocking (porta's own are) wait for input in a few event loops
// instead (loop_linux.go), which run the same steps for each connection
// with input, without a goroutine switch per message. A UDP socket is
// served by one goroutine: each datagram is one message, each reply one
// datagram (packet.go).
//
// # Limits and failures
//
// Every resource is bounded: message size (MaxMessageSize, checked before
// allocating), open connections (MaxConns), idle time (IdleTimeout), the
// time to complete a started frame (FrameTimeout), to take a reply
// (WriteTimeout) and to complete a TLS handshake (TLSHandshakeTimeout). A
// handler panic closes only its connection. Running out of file
// descriptors makes the accept loop back off (5 ms doubling to 1 s)
// instead of spinning. Every connection ends with a CloseReason.
//
// # Shutdown
//
// Shutdown closes the listeners, wakes idle connections, lets every
// connection answer the messages it has read and flush its replies, then
// closes them; Close cuts at once. docs/concurrency.md describes the
// goroutines, locks and the shutdown protocol.
package porta
