// Command netpoll is an echo server on github.com/cloudwego/netpoll, used as
// a comparison peer in porta's performance suite. It follows the library's
// documented pattern: an EventLoop whose OnRequest takes all readable bytes
// with reader.Next(reader.Len()), writes them to the connection's writer and
// flushes. Echoing bytes echoes line-framed messages unchanged.
//
//	go build -o netpoll ./netpoll   (from bench/peers)
//	./netpoll -addr 127.0.0.1:0
//
// Prints "Listening on tcp://HOST:PORT" once listening and runs until
// SIGINT or SIGTERM, then exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudwego/netpoll"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address HOST:PORT")
	flag.Parse()

	ln, err := netpoll.CreateListener("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	loop, err := netpoll.NewEventLoop(echo)
	if err != nil {
		log.Fatal(err)
	}
	// Catch signals before announcing the port, so a quick SIGTERM exits 0.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	fmt.Printf("Listening on tcp://%s\n", ln.Addr())
	os.Stdout.Sync()

	go func() {
		if err := loop.Serve(ln); err != nil {
			log.Fatal(err)
		}
	}()

	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	loop.Shutdown(ctx)
}

// echo writes back everything that is currently readable.
func echo(ctx context.Context, conn netpoll.Connection) error {
	reader, writer := conn.Reader(), conn.Writer()
	data, err := reader.Next(reader.Len())
	if err != nil {
		return err
	}
	// Copy into the writer's own buffer so the read buffer can be released
	// even if the flush is only partly written to the socket.
	buf, err := writer.Malloc(len(data))
	if err != nil {
		return err
	}
	copy(buf, data)
	reader.Release()
	return writer.Flush()
}
