package porta_test

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/porta-project/porta"
)

// kvHandler is a custom protocol in a few lines: "SET key value" stores,
// "GET key" answers the value. It is the README's library example.
func kvHandler() porta.Handler {
	var store sync.Map // handlers run concurrently, one per connection
	return porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		cmd, rest, _ := strings.Cut(string(m.Body), " ")
		switch strings.ToUpper(cmd) {
		case "SET":
			key, value, _ := strings.Cut(rest, " ")
			store.Store(key, value)
			w.Write([]byte("OK"))
		case "GET":
			if v, ok := store.Load(rest); ok {
				w.Write([]byte(v.(string)))
			} else {
				w.Write([]byte("ERR no such key"))
			}
		default:
			w.Write([]byte("ERR unknown command"))
		}
	})
}

// A custom protocol: a key-value store that also hangs up on "close".
func Example_customProtocol() {
	l, err := porta.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &porta.Server{Handler: porta.HangUpOn("close", "closed", kvHandler())}
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())

	c, err := porta.Dial(l.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	for _, msg := range []string{"SET city Lisbon", "GET city", "GET town", "close"} {
		reply, err := c.Exchange([]byte(msg))
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s -> %s\n", msg, reply)
	}
	// Output:
	// SET city Lisbon -> OK
	// GET city -> Lisbon
	// GET town -> ERR no such key
	// close -> closed
}
