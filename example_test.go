package porta_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"strings"
	"sync"

	"github.com/porta-project/porta"
)

// serveExample serves h on a free loopback port and returns the address to
// dial and a function that shuts the server down.
func serveExample(h porta.Handler) (addr string, stop func()) {
	srv := &porta.Server{Handler: h}
	l, err := porta.Listen("tcp://127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	return porta.FormatAddr(l.Addr()), func() {
		srv.Shutdown(context.Background())
		<-done
	}
}

// A server that answers each line in upper case, and a client of it.
func ExampleServer() {
	srv := &porta.Server{Handler: porta.Upper}
	l, err := porta.Listen("tcp://127.0.0.1:0") // port 0: any free port
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()

	c, err := porta.Dial(porta.FormatAddr(l.Addr()))
	if err != nil {
		log.Fatal(err)
	}
	reply, err := c.Exchange([]byte("hello, porta"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", reply)
	c.Close()

	if err := srv.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-done)
	// Output:
	// HELLO, PORTA
	// porta: server closed
}

// A protocol of one's own: a key-value store answering "SET key value"
// and "GET key".
func ExampleHandlerFunc() {
	var mu sync.Mutex // handlers of different connections run concurrently
	store := make(map[string]string)
	kv := porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		cmd, args, _ := strings.Cut(string(m.Body), " ")
		mu.Lock()
		defer mu.Unlock()
		switch strings.ToUpper(cmd) {
		case "SET":
			key, value, _ := strings.Cut(args, " ")
			store[key] = value
			w.Write([]byte("OK"))
		case "GET":
			if value, ok := store[args]; ok {
				w.Write([]byte(value))
			} else {
				w.Write([]byte("ERR no such key"))
			}
		default:
			w.Write([]byte("ERR unknown command " + cmd))
		}
	})

	addr, stop := serveExample(kv)
	defer stop()
	c, err := porta.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"SET colour blue", "GET colour", "GET size", "DEL colour"} {
		reply, err := c.Exchange([]byte(msg))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s -> %s\n", msg, reply)
	}
	// Output:
	// SET colour blue -> OK
	// GET colour -> blue
	// GET size -> ERR no such key
	// DEL colour -> ERR unknown command DEL
}

// A handler that computes its reply from the message alone never blocks:
// marked so, its connections wait in the server's event loops (on Linux)
// rather than on a goroutine each, which makes each message cheaper.
func ExampleNonBlocking() {
	reverse := porta.NonBlocking(porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		b := m.Body // the handler may modify the body in place
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		w.Write(b)
	}))

	addr, stop := serveExample(porta.HangUpOn("close", "closed", reverse))
	defer stop()
	c, err := porta.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"stressed", "drawer", "close"} {
		reply, err := c.Exchange([]byte(msg))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s -> %s\n", msg, reply)
	}
	// Output:
	// stressed -> desserts
	// drawer -> reward
	// close -> closed
}

// A close word: the server answers it and hangs up.
func ExampleHangUpOn() {
	addr, stop := serveExample(porta.HangUpOn("quit", "bye", porta.Echo))
	defer stop()
	c, err := porta.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"hello", " QUIT "} {
		reply, err := c.Exchange([]byte(msg))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%q -> %q\n", msg, reply)
	}
	_, err = c.Receive()
	fmt.Println(err)
	// Output:
	// "hello" -> "hello"
	// " QUIT " -> "bye"
	// EOF
}

// A client: Dial takes the address syntax of ParseAddr, and a client may
// pipeline messages, sending several before reading the replies.
func ExampleDial() {
	addr, stop := serveExample(porta.Reply("accepted"))
	defer stop()

	c, err := porta.Dial(addr) // such as "tcp://127.0.0.1:8000"
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	reply, err := c.Exchange([]byte("one"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (framing %s)\n", reply, c.Framing())

	for _, msg := range []string{"two", "three"} {
		if err := c.Send([]byte(msg)); err != nil {
			log.Fatal(err)
		}
	}
	for range 2 {
		reply, err := c.Receive()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s\n", reply)
	}
	// Output:
	// accepted (framing line)
	// accepted
	// accepted
}

// Middleware runs in the order given: here messages are trimmed, then
// empty ones are refused, and the rest reach Upper.
func ExampleChain() {
	trim := func(next porta.Handler) porta.Handler {
		return porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
			m.Body = bytes.TrimSpace(m.Body)
			next.ServeMessage(w, m)
		})
	}
	nonEmpty := func(next porta.Handler) porta.Handler {
		return porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
			if len(m.Body) == 0 {
				w.Write([]byte("ERR empty message"))
				return
			}
			next.ServeMessage(w, m)
		})
	}

	addr, stop := serveExample(porta.Chain(porta.Upper, trim, nonEmpty))
	defer stop()
	c, err := porta.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, msg := range []string{"  padded  ", "   ", "plain"} {
		reply, err := c.Exchange([]byte(msg))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%q -> %q\n", msg, reply)
	}
	// Output:
	// "  padded  " -> "PADDED"
	// "   " -> "ERR empty message"
	// "plain" -> "PLAIN"
}
