// Command tutorial is the textbook Go echo server used as a comparison peer
// in porta's performance suite: one goroutine per connection, a
// bufio.Reader, ReadString('\n'), and the line written straight back.
//
//	go build -o tutorial ./tutorial   (from bench/peers)
//	./tutorial -addr 127.0.0.1:0
//
// Prints "Listening on tcp://HOST:PORT" once listening and runs until
// SIGINT or SIGTERM, then exits 0.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address HOST:PORT")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// Catch signals before announcing the port, so a quick SIGTERM exits 0.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	fmt.Printf("Listening on tcp://%s\n", ln.Addr())
	os.Stdout.Sync()

	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(conn)
		}
	}()

	<-sig
	ln.Close()
}

func handle(conn net.Conn) {
	defer conn.Close()
	reader := bufio.NewReader(conn)
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := conn.Write([]byte(line)); err != nil {
			return
		}
	}
}
