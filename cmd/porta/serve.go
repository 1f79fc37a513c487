package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// serveConfig is what the serve command's flags say.
type serveConfig struct {
	mode, text, logFormat   string
	closeWord, shutdownWord string
	once, verbose           bool
	framing                 framingFlag
	readSize, maxMsg        sizeFlag
	maxConns, maxConnsPerIP int
	allow, deny             prefixList
	idle, frameTimeout      time.Duration
	writeTimeout, drain     time.Duration
	admin                   string // --admin: the HTTP admin address; "" is off
}

func runServe(e *env, args []string) int {
	fs := newFlagSet("serve", "[ADDR...]")
	cfg := serveConfig{
		framing:  framingFlag{f: frame.Auto, allowed: []frame.Framing{frame.Auto, frame.Line, frame.Length, frame.Raw}},
		readSize: frame.DefaultReadSize,
		maxMsg:   frame.DefaultMaxSize,
	}
	fs.StringVar(&cfg.mode, "mode", "echo", "reply `mode`: echo (the message), upper (Unicode upper case) or text (--text)")
	fs.StringVar(&cfg.text, "text", "accepted", "the reply of --mode text")
	fs.StringVar(&cfg.closeWord, "close-word", "close", "reply 'closed' and hang up on this `word` (case-insensitive, trimmed; empty disables)")
	fs.StringVar(&cfg.shutdownWord, "shutdown-word", "", "reply 'closed' and shut the server down on this `word`, from loopback or Unix peers only (empty disables)")
	fs.BoolVar(&cfg.once, "once", false, "close each connection after its first reply")
	fs.Var(&cfg.framing, "framing", "message framing: auto, line, len or raw")
	fs.Var(&cfg.readSize, "read-size", "bytes one raw read takes as a message")
	fs.Var(&cfg.maxMsg, "max-msg", "largest message; a longer one gets an ERR reply and its connection closes (up to 16MiB)")
	fs.IntVar(&cfg.maxConns, "max-conns", porta.DefaultMaxConns, "most open connections; more are refused with an ERR reply (0: no limit)")
	fs.IntVar(&cfg.maxConnsPerIP, "max-conns-per-ip", 0, "most open connections from one IP address (0: no limit)")
	fs.Var(&cfg.allow, "allow", "admit TCP peers and UDP senders only from this `CIDR` (repeatable; default: all)")
	fs.Var(&cfg.deny, "deny", "refuse TCP peers and UDP senders from this `CIDR` (repeatable; deny wins over allow)")
	fs.DurationVar(&cfg.idle, "idle-timeout", porta.DefaultIdleTimeout, "close connections silent this long (0: never)")
	fs.DurationVar(&cfg.frameTimeout, "frame-timeout", porta.DefaultFrameTimeout, "close connections whose started message does not complete this long after its first byte (0: never)")
	fs.DurationVar(&cfg.writeTimeout, "write-timeout", porta.DefaultWriteTimeout, "close connections that do not take a reply this long (0: never)")
	fs.DurationVar(&cfg.drain, "drain-timeout", 10*time.Second, "on SIGINT/SIGTERM, wait this long for connections to finish before closing them")
	fs.BoolVar(&cfg.verbose, "v", false, "also log each message received")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&cfg.admin, "admin", "", "serve /metrics, /healthz, /readyz and a live dashboard over HTTP on `host:port` (no host: 127.0.0.1; default: off)")
	tlsFlags := addServeTLSFlags(fs)
	addrs, code, ok := parseArgs(e, fs, args)
	if !ok {
		return code
	}
	if err := cfg.check(); err != nil {
		return usageFail(e, fs, "%v", err)
	}
	if err := tlsFlags.check(addrs); err != nil {
		return usageFail(e, fs, "%v", err)
	}
	if len(addrs) == 0 {
		addrs = []string{porta.DefaultAddr}
	}
	tlsConfig, err := tlsFlags.config(e)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitFailure
	}

	log := newLogger(e, cfg.logFormat)
	shutdownRequested := make(chan struct{}, 1)
	srv := &porta.Server{
		Handler:        cfg.handler(log, shutdownRequested),
		Framing:        cfg.framing.f,
		MaxMessageSize: int(cfg.maxMsg),
		ReadSize:       int(cfg.readSize),
		MaxConns:       zeroMeansNone(cfg.maxConns),
		MaxConnsPerIP:  cfg.maxConnsPerIP,
		Allow:          cfg.allow,
		Deny:           cfg.deny,
		IdleTimeout:    zeroMeansNever(cfg.idle),
		FrameTimeout:   zeroMeansNever(cfg.frameTimeout),
		WriteTimeout:   zeroMeansNever(cfg.writeTimeout),
		TLSConfig:      tlsConfig,
		Logger:         log,
	}

	adminSrv, err := listenAdmin(cfg.admin, srv)
	if err != nil {
		fmt.Fprintf(e.stderr, "porta serve: %v\n", err)
		return exitFailure
	}
	defer adminSrv.close()

	serve, err := listenAll(addrs, srv)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitFailure
	}
	// Signals are caught before anything is served, so that none is lost.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)

	errs := make(chan error, len(serve))
	for _, s := range serve {
		fmt.Fprintf(e.stdout, "Listening on %s\n", s.addr)
		go func() {
			if err := s.run(); !errors.Is(err, porta.ErrServerClosed) {
				errs <- fmt.Errorf("serving %s: %w", s.addr, err)
			}
		}()
	}
	// Stopped on return, after the drain, so that /readyz reports it.
	defer adminSrv.serve(e)()

	code = exitOK
	select {
	case sig := <-signals:
		log.Info("shutting down", "signal", sig.String(), "drain_timeout", cfg.drain)
	case <-shutdownRequested:
		log.Info("shutting down", "cause", "shutdown word", "drain_timeout", cfg.drain)
	case err := <-errs:
		fmt.Fprintf(e.stderr, "porta: %v\n", err)
		code = exitFailure
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.drain)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("drain timeout: closed the remaining connections", "err", err)
		}
	case sig := <-signals:
		log.Warn("second signal: stopping now", "signal", sig.String())
		srv.Close()
		return exitFailure
	}
	st := srv.Stats()
	log.Info("stopped", "connections", st.ConnsTotal, "messages_in", st.MessagesIn, "messages_out", st.MessagesOut)
	return code
}

// check validates the flags that the flag package cannot.
func (c *serveConfig) check() error {
	switch c.mode {
	case "echo", "upper", "text":
	default:
		return fmt.Errorf("unknown --mode %q (want echo, upper or text)", c.mode)
	}
	switch c.logFormat {
	case "text", "json":
	default:
		return fmt.Errorf("unknown --log-format %q (want text or json)", c.logFormat)
	}
	if c.maxMsg < 1 || int(c.maxMsg) > frame.MaxSizeLimit {
		return fmt.Errorf("--max-msg %s is out of range (1 to 16MiB)", c.maxMsg.String())
	}
	if c.readSize < 1 {
		return errors.New("--read-size must be at least 1")
	}
	if c.maxConns < 0 || c.maxConnsPerIP < 0 {
		return errors.New("--max-conns and --max-conns-per-ip must not be negative")
	}
	for _, d := range []time.Duration{c.idle, c.frameTimeout, c.writeTimeout, c.drain} {
		if d < 0 {
			return errors.New("timeouts must not be negative")
		}
	}
	return nil
}

// handler builds the reply handler: the mode, then --once, the close word
// and the shutdown word around it, and message logging outermost.
func (c *serveConfig) handler(log *slog.Logger, shutdownRequested chan<- struct{}) porta.Handler {
	var h porta.Handler
	switch c.mode {
	case "upper":
		h = porta.Upper
	case "text":
		h = porta.Reply(c.text)
	default:
		h = porta.Echo
	}
	if c.once {
		h = porta.Once(h)
	}
	h = porta.HangUpOn(c.closeWord, "closed", h)
	if c.shutdownWord != "" {
		h = shutdownOn([]byte(c.shutdownWord), shutdownRequested, h)
	}
	if c.verbose {
		h = porta.LogMessages(log)(h)
	}
	return h
}

// shutdownOn answers word from a local peer with "closed", hangs up and
// asks for a graceful shutdown; from other peers it is an ordinary message.
func shutdownOn(word []byte, requested chan<- struct{}, next porta.Handler) porta.Handler {
	// It never blocks: the request is a send that gives up at once, and
	// next is one of porta's handlers, which never block either.
	return porta.NonBlocking(porta.HandlerFunc(func(w porta.ResponseWriter, m *porta.Message) {
		if !porta.IsWord(m.Body, word) || !porta.IsLocal(m.RemoteAddr) {
			next.ServeMessage(w, m)
			return
		}
		w.Write([]byte("closed"))
		w.Close()
		select {
		case requested <- struct{}{}:
		default: // already requested
		}
	}))
}

// listener is one opened address and how to serve it.
type listener struct {
	addr string
	run  func() error
}

// listenAll opens every address before serving any, so that a bad one
// fails the start with nothing half-running.
func listenAll(addrs []string, srv *porta.Server) ([]listener, error) {
	var opened []listener
	var closers []func() error
	fail := func(err error) ([]listener, error) {
		for _, c := range closers {
			c()
		}
		return nil, err
	}
	for _, addr := range addrs {
		a, err := porta.ParseAddr(addr)
		if err != nil {
			return fail(err)
		}
		if a.IsPacket() {
			pc, err := porta.ListenPacket(addr)
			if err != nil {
				return fail(err)
			}
			closers = append(closers, pc.Close)
			opened = append(opened, listener{porta.FormatAddr(pc.LocalAddr()), func() error { return srv.ServePacket(pc) }})
			continue
		}
		l, err := listenStream(addr, a, srv.TLSConfig)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, l.Close)
		opened = append(opened, listener{porta.FormatAddr(l.Addr()), func() error { return srv.Serve(l) }})
	}
	return opened, nil
}

// newLogger returns the log/slog logger for stderr in the given format.
func newLogger(e *env, format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, nil))
	}
	return slog.New(slog.NewTextHandler(e.stderr, nil))
}

// zeroMeansNever maps the command line's 0 ("never") to the library's
// negative duration; the library reads zero as "default".
func zeroMeansNever(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// zeroMeansNone maps the command line's 0 ("no limit") to the library's -1.
func zeroMeansNone(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
