package bench_test

import (
	"context"
	"fmt"
	"log"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/bench"
)

// ExampleRun loads an upper-casing porta server with exactly 1000
// messages over 4 connections, 8 in flight on each, and checks every
// reply.
func ExampleRun() {
	l, err := porta.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &porta.Server{Handler: porta.Upper}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		srv.Shutdown(context.Background())
		<-served
	}()

	res, err := bench.Run(context.Background(), bench.Config{
		Addr:     porta.FormatAddr(l.Addr()),
		Conns:    4,
		Pipeline: 8,
		Messages: 1000,
		Expect:   "upper",
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Messages, "correct replies,", res.ErrorCount, "errors")
	// Output: 1000 correct replies, 0 errors
}
