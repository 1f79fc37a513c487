// Command profserve is "porta serve --framing line --max-conns 0" with a
// CPU profile: the same porta.Server configuration (echo behind the close
// word, default limits and timeouts, one text log line per connection on
// stderr), written to -cpuprofile when it stops. bench/run uses it with
// PROFILE=1 to show where porta serve spends its time under each load.
//
//	go build -o profserve ./bench/testdata/profserve
//	./profserve -addr 127.0.0.1:0 -cpuprofile cpu.pprof
//
// Prints "Listening on tcp://HOST:PORT" once listening; stops on SIGINT or
// SIGTERM. On SIGUSR1 it prints the runtime's memory statistics on stdout
// and, with -memprofile, writes a heap profile: bench/run uses that while
// the memory scenario's connections are idle.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	profile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	memProfile := flag.String("memprofile", "", "write a heap profile to this file on SIGUSR1")
	flag.Parse()
	if *memProfile != "" {
		runtime.MemProfileRate = 512 // bytes: fine enough to see every connection's share
	}

	srv := &porta.Server{
		Handler:  porta.HangUpOn("close", "closed", porta.Echo),
		Framing:  frame.Line,
		MaxConns: -1,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	l, err := porta.Listen(*addr)
	if err != nil {
		log.Fatal(err)
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("Listening on %s\n", porta.FormatAddr(l.Addr()))
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	go srv.Serve(l)
	for sig := range signals {
		if sig != syscall.SIGUSR1 {
			break
		}
		memStats(srv.Stats().ConnsOpen, *memProfile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// memStats prints where the process's memory is, per open connection, and
// writes a heap profile to path if it is set.
func memStats(conns int64, path string) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	per := func(b uint64) string {
		if conns == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f B/conn", float64(b)/float64(conns))
	}
	fmt.Printf("memstats: %d connections open; heap in use %d KiB (%s), stacks %d KiB (%s), goroutines %d, runtime total %d KiB (%s)\n",
		conns, m.HeapInuse>>10, per(m.HeapInuse), m.StackInuse>>10, per(m.StackInuse), runtime.NumGoroutine(), m.Sys>>10, per(m.Sys))
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		log.Print(err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		log.Print(err)
	}
}
