package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/frame"
)

// Defaults of the Config's fields; each is what a zero field means.
const (
	// DefaultConns is the default number of connections: enough to keep a
	// multi-core server busy without needing a raised descriptor limit.
	DefaultConns = 50
	// DefaultDuration is the default measured time when Messages is zero:
	// long enough for stable percentiles up to p99.9 at tens of thousands
	// of messages per second.
	DefaultDuration = 10 * time.Second
	// DefaultSize is the default message body size in bytes, excluding the
	// framing: a small request, as in most echo benchmarks.
	DefaultSize = 64
	// DefaultTimeout bounds each connection attempt and the wait for each
	// reply when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
)

// Limits of the Config's fields, beyond which a load cannot run: Run
// returns ErrBadConfig.
const (
	// MaxConns is the most connections: 2^20, the most descriptors a
	// Linux process may have open by default (fs.nr_open).
	MaxConns = 1 << 20
	// MaxLoops is the most event loops: 1024, more than machines have
	// CPUs; each is an OS thread, and a Go program may have 10,000.
	MaxLoops = 1024
	// MaxOutstanding is the most memory, in bytes, that the messages
	// outstanding at once may take: Conns × Pipeline × (the framed
	// message size plus 8 bytes for its send time). 16 GiB: the
	// generator keeps them in its buffers.
	MaxOutstanding = 16 << 30
)

// MaxRate is the highest Config.Rate, in messages per second: one message
// per nanosecond, the resolution of the schedule's clock, and far more than
// any server answers.
const MaxRate = 1e9

// maxLatency is the highest latency the histograms track: 60 s, far past
// any timeout a benchmark would use. Longer latencies are recorded as 60 s.
const maxLatency = int64(60 * time.Second)

// latencyDigits is the histograms' precision in significant decimal digits:
// 0.1% error, as HdrHistogram recommends for latency.
const latencyDigits = 3

// Engines that Config.Engine names.
const (
	// EngineAuto picks EngineEpoll where it is available, else
	// EngineGoroutine.
	EngineAuto = "auto"
	// EngineEpoll runs the connections on nonblocking sockets in epoll
	// loops, one per OS thread (Linux, TCP and Unix sockets).
	EngineEpoll = "epoll"
	// EngineGoroutine runs each connection on its own goroutine with the
	// net package. It works everywhere.
	EngineGoroutine = "goroutine"
)

// A Config describes a load. The zero value of every field except Addr has
// a meaning, given in its comment.
type Config struct {
	// Addr is the server's address, in porta's syntax: host:port,
	// tcp://host:port, tcp4://, tcp6://, unix:///path or tls://host:port
	// (tls4://, tls6://). UDP is not supported.
	Addr string

	// Conns is the number of connections. Zero means DefaultConns.
	Conns int

	// Duration is how long to measure, after the warmup. Zero means
	// DefaultDuration when Messages is zero, and no time limit when
	// Messages is set.
	Duration time.Duration

	// Messages, when positive, is the exact number of messages to send and
	// check after the warmup, spread evenly over the connections; the run
	// ends when all have been answered (or Duration, if set, runs out).
	Messages int64

	// Pipeline is the number of messages each connection keeps
	// outstanding. Zero means 1.
	Pipeline int

	// Size is the size of each message body in bytes, excluding the
	// framing's own bytes (Line adds '\n', Length a 4-byte prefix). Zero
	// means DefaultSize.
	Size int

	// Rate, when positive, is the total number of messages per second,
	// spread evenly over the connections (open model, see the package
	// comment), at most MaxRate. Zero sends as fast as the replies come
	// back (closed model).
	Rate float64

	// Warmup is run before measuring, with the same load, and not counted
	// (errors in it are). Zero means none.
	Warmup time.Duration

	// Framing delimits the messages and replies. The zero value,
	// frame.Auto, means frame.Line. With frame.Raw a message is sent
	// without delimiter and its reply is recognised by its expected
	// length.
	Framing frame.Framing

	// ConnectRate, when positive, limits new connections per second, so
	// that a server's listen backlog is not overrun. Zero means no limit.
	ConnectRate float64

	// Expect says what a correct reply is: "echo" (the message itself),
	// "upper" (the message in upper case) or "text:STR" (the text STR).
	// Empty means "echo".
	Expect string

	// Timeout bounds each connection attempt and each wait for a reply.
	// A connection waiting longer is closed and its outstanding messages
	// count as missing. Zero means DefaultTimeout.
	Timeout time.Duration

	// TLSConfig configures the client side of tls:// addresses. Nil means
	// crypto/tls's defaults: the system's roots, and the address's host as
	// the server name. TLS connections run on the goroutine engine.
	TLSConfig *tls.Config

	// Hold keeps the connections open and idle this long after the last
	// reply, before closing them, so that an idle server can be measured.
	// Zero means close at once.
	Hold time.Duration

	// Engine is EngineAuto, EngineEpoll or EngineGoroutine. Empty means
	// EngineAuto.
	Engine string

	// Loops is the number of event loops of the epoll engine, each on its
	// own OS thread. Zero means GOMAXPROCS-1, at least 1 and at most
	// Conns. Loops that leave a P (GOMAXPROCS slot) free for the rest of
	// the process wait for events as a C event loop does, without the Go
	// scheduler, which is the fastest way; a dedicated generator process
	// should therefore run with GOMAXPROCS above Loops even on one CPU, as
	// "porta bench" does.
	Loops int

	// Label names the run in reports and charts. Empty means Addr.
	Label string
}

// expectKind is the kind of reply a Config expects.
type expectKind uint8

const (
	expectEcho expectKind = iota
	expectUpper
	expectText
)

// settings is a Config with its defaults resolved and checked.
type settings struct {
	Config
	addr        porta.Addr
	expect      expectKind
	text        []byte // the reply of expectText
	maxReply    int    // the largest reply the decoders accept
	unlimited   bool   // Messages mode without a time limit
	wireSize    int    // bytes of one framed message
	replyLength int    // bytes of one correct reply, unframed
}

// Errors returned by Run for a Config it cannot run.
var (
	// ErrBadConfig means a Config field is out of range; the error says
	// which.
	ErrBadConfig = errors.New("bench: bad config")
	// ErrNoConnection means that not one connection could be opened; the
	// error wraps the first connection error.
	ErrNoConnection = errors.New("bench: no connection")
)

// resolve checks c and fills in the defaults.
func (c Config) resolve() (*settings, error) {
	bad := func(format string, args ...any) (*settings, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, args...))
	}
	s := &settings{Config: c}
	a, err := porta.ParseAddr(c.Addr)
	if err != nil {
		return nil, err
	}
	if a.IsPacket() {
		return bad("%s: UDP is not supported (use a tcp or unix address)", c.Addr)
	}
	s.addr = a
	if s.Conns == 0 {
		s.Conns = DefaultConns
	}
	if s.Pipeline == 0 {
		s.Pipeline = 1
	}
	if s.Size == 0 {
		s.Size = DefaultSize
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Framing == frame.Auto {
		s.Framing = frame.Line
	}
	if s.Engine == "" {
		s.Engine = EngineAuto
	}
	if s.Label == "" {
		s.Label = c.Addr
	}
	switch {
	case s.Conns < 0 || s.Conns > MaxConns:
		return bad("connections must be from 1 to %d", MaxConns)
	case s.Pipeline < 0:
		return bad("pipeline depth must be positive")
	case s.Size < 0 || s.Size > frame.MaxSizeLimit:
		return bad("message size %d is out of range (1 to %d bytes)", s.Size, frame.MaxSizeLimit)
	case s.Duration < 0 || s.Warmup < 0 || s.Timeout < 0 || s.Hold < 0:
		return bad("durations must not be negative")
	case s.Messages < 0:
		return bad("message count must not be negative")
	case s.Rate < 0 || s.Rate > MaxRate || math.IsNaN(s.Rate):
		return bad("rate must be a positive number of at most %g messages/s", float64(MaxRate))
	case s.ConnectRate < 0 || math.IsNaN(s.ConnectRate) || math.IsInf(s.ConnectRate, 0):
		return bad("connect rate must be a positive number")
	case s.Loops < 0 || s.Loops > MaxLoops:
		return bad("loops must be from 0 to %d", MaxLoops)
	case s.Framing > frame.Raw:
		return bad("unknown framing %v", s.Framing)
	}
	switch s.Engine {
	case EngineAuto, EngineEpoll, EngineGoroutine:
	default:
		return bad("unknown engine %q (want auto, epoll or goroutine)", s.Engine)
	}
	if s.Messages == 0 && s.Duration == 0 {
		s.Duration = DefaultDuration
	}
	s.unlimited = s.Messages > 0 && s.Duration == 0

	switch {
	case c.Expect == "" || c.Expect == "echo":
		s.expect = expectEcho
	case c.Expect == "upper":
		s.expect = expectUpper
	case strings.HasPrefix(c.Expect, "text:"):
		s.expect = expectText
		s.text = []byte(strings.TrimPrefix(c.Expect, "text:"))
		if len(s.text) > frame.MaxSizeLimit {
			return bad("expected text is longer than %d bytes", frame.MaxSizeLimit)
		}
		if s.Framing == frame.Raw && len(s.text) == 0 {
			return bad("with raw framing the expected text must not be empty")
		}
	default:
		return bad("unknown expectation %q (want echo, upper or text:STR)", c.Expect)
	}
	s.replyLength = s.Size
	if s.expect == expectText {
		s.replyLength = len(s.text)
	}
	s.maxReply = max(frame.DefaultMaxSize, 2*s.replyLength)
	s.wireSize = s.Size + frame.Overhead(s.Framing)
	if out := float64(s.Conns) * float64(s.Pipeline) * float64(s.wireSize+8); out > MaxOutstanding {
		return bad("%d connections with %d messages of %d bytes outstanding would take %.0f GiB (at most %d GiB)",
			s.Conns, s.Pipeline, s.wireSize, out/(1<<30), MaxOutstanding>>30)
	}
	return s, nil
}

// expectName returns the expectation as Config.Expect spells it.
func (s *settings) expectName() string {
	switch s.expect {
	case expectUpper:
		return "upper"
	case expectText:
		return "text:" + string(s.text)
	}
	return "echo"
}
