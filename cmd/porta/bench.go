package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/porta-project/porta"
	"github.com/porta-project/porta/bench"
	"github.com/porta-project/porta/frame"
)

// benchConfig is what the bench command's flags say beyond bench.Config.
type benchConfig struct {
	cfg      bench.Config
	size     sizeFlag
	framing  framingFlag
	asJSON   bool
	svg      string
	svgMerge string
}

func runBench(e *env, args []string) int {
	fs := newFlagSet("bench", "ADDR")
	bc := benchConfig{
		size:    bench.DefaultSize,
		framing: framingFlag{f: frame.Line, allowed: []frame.Framing{frame.Line, frame.Length, frame.Raw}},
	}
	c := &bc.cfg
	fs.IntVar(&c.Conns, "c", bench.DefaultConns, "`connections`")
	c.Duration = bench.DefaultDuration
	fs.Var((*secondsFlag)(&c.Duration), "d", "measure for this `duration`, such as 10s or 10 (with -n: a time limit only if given)")
	fs.Int64Var(&c.Messages, "n", 0, "send exactly this many `messages` in all, then stop (0: run for -d)")
	fs.IntVar(&c.Pipeline, "P", 1, "messages kept outstanding per connection (pipeline `depth`)")
	fs.Var(&bc.size, "s", "message `size` in bytes, excluding the framing")
	fs.Float64Var(&c.Rate, "rate", 0, "total `messages/s`, spread over the connections; latency counts from each message's scheduled time (0: as fast as replies come)")
	fs.Var((*secondsFlag)(&c.Warmup), "warmup", "run the load this long before measuring")
	fs.Var(&bc.framing, "framing", "message framing: line, len or raw")
	fs.Float64Var(&c.ConnectRate, "connect-rate", 0, "open at most this many `connections/s` (0: no limit)")
	fs.StringVar(&c.Expect, "expect", "echo", "the correct reply: echo, upper or text:STR")
	c.Timeout = bench.DefaultTimeout
	fs.Var((*secondsFlag)(&c.Timeout), "timeout", "give up on a connection attempt or a reply after this long")
	fs.Var((*secondsFlag)(&c.Hold), "hold", "keep the connections open and idle this long after the last reply")
	fs.StringVar(&c.Engine, "engine", bench.EngineAuto, "load engine: auto, epoll (Linux) or goroutine")
	fs.IntVar(&c.Loops, "loops", 0, "event loops (OS threads) of the epoll engine (0: GOMAXPROCS-1, at least 1 and at most -c)")
	fs.StringVar(&c.Label, "label", "", "name of the run in reports and charts (default ADDR)")
	tlsFlags := addClientTLSFlags(fs)
	fs.BoolVar(&bc.asJSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&bc.svg, "svg", "", "write the latency distribution as an SVG chart to `file`")
	fs.StringVar(&bc.svgMerge, "svg-merge", "", "draw the --json reports in these comma-separated `files` into --svg, without running a load")
	rest, code, ok := parseArgs(e, fs, args)
	if !ok {
		return code
	}
	if bc.svgMerge != "" {
		if len(rest) > 0 {
			return usageFail(e, fs, "--svg-merge takes no ADDR")
		}
		if bc.svg == "" {
			return usageFail(e, fs, "--svg-merge needs --svg FILE")
		}
		return mergeSVG(e, strings.Split(bc.svgMerge, ","), bc.svg)
	}
	if len(rest) != 1 {
		if len(rest) == 0 {
			return usageFail(e, fs, "missing ADDR")
		}
		return usageFail(e, fs, "too many arguments: %s", strings.Join(rest[1:], " "))
	}
	c.Addr = rest[0]
	if code, ok := tlsFlags.setup(e, fs, c.Addr); !ok {
		return code
	}
	c.TLSConfig = tlsFlags.config
	c.Size = int(bc.size)
	c.Framing = bc.framing.f
	if c.Messages > 0 && !flagGiven(fs, "d") {
		c.Duration = 0
	}
	if err := bc.check(); err != nil {
		return usageFail(e, fs, "%v", err)
	}

	// The epoll engine's loops wait for events as C loops do only while a
	// P is left for the rest of the process (see bench.Config.Loops): give
	// this process, which runs nothing else, that spare P even on one CPU.
	if want := max(min(c.Loops, c.Conns), 1) + 1; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	live := newProgressLine(e, c.Hold)
	res, err := bench.Run(ctx, *c, live.update)
	live.clear()
	switch {
	case errors.Is(err, bench.ErrBadConfig):
		return usageFail(e, fs, "%s", strings.TrimPrefix(err.Error(), "bench: bad config: "))
	case errors.Is(err, porta.ErrBadAddress):
		fmt.Fprintln(e.stderr, err) // as serve and send say it
		return exitFailure
	case res == nil:
		fmt.Fprintf(e.stderr, "porta bench: %s\n", strings.TrimPrefix(err.Error(), "bench: "))
		return exitFailure
	}
	if errors.Is(err, bench.ErrNoConnection) {
		if bc.asJSON {
			writeJSON(e.stdout, res)
		}
		fmt.Fprintf(e.stderr, "porta bench: %s\n", strings.TrimPrefix(err.Error(), "bench: "))
		return exitFailure
	}
	if bc.asJSON {
		if werr := writeJSON(e.stdout, res); werr != nil {
			fmt.Fprintf(e.stderr, "porta bench: writing the report: %v\n", werr)
			return exitFailure
		}
	} else {
		res.WriteText(e.stdout)
	}
	if bc.svg != "" {
		if werr := writeSVGFile(bc.svg, res); werr != nil {
			fmt.Fprintf(e.stderr, "porta bench: %v\n", werr)
			return exitFailure
		}
	}
	switch {
	case err != nil:
		fmt.Fprintf(e.stderr, "porta bench: interrupted: %v\n", err)
		return exitFailure
	case !res.OK():
		fmt.Fprintf(e.stderr, "porta bench: %s errors (%s)\n", bench.FormatCount(res.ErrorCount), res.ErrorSummary())
		return exitFailure
	}
	return exitOK
}

// check validates the flags that the flag package cannot.
func (bc *benchConfig) check() error {
	c := &bc.cfg
	switch {
	case c.Conns < 1 || c.Conns > bench.MaxConns:
		return fmt.Errorf("-c must be from 1 to %d", bench.MaxConns)
	case c.Loops < 0 || c.Loops > bench.MaxLoops:
		return fmt.Errorf("--loops must be from 0 to %d", bench.MaxLoops)
	case c.Pipeline < 1:
		return errors.New("-P must be at least 1")
	case bc.size < 1 || int(bc.size) > frame.MaxSizeLimit:
		return fmt.Errorf("-s %s is out of range (1 to 16MiB)", bc.size.String())
	case c.Messages < 0:
		return errors.New("-n must not be negative")
	case c.Duration < 0 || (c.Duration == 0 && c.Messages == 0):
		return errors.New("-d must be positive")
	case c.Timeout <= 0:
		return errors.New("--timeout must be positive")
	case c.Rate < 0, c.ConnectRate < 0:
		return errors.New("rates must not be negative")
	case c.Warmup < 0 || c.Hold < 0:
		return errors.New("durations must not be negative")
	}
	return nil
}

// flagGiven reports whether the flag called name was given.
func flagGiven(fs *flagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}

// secondsFlag is a duration flag that also takes a plain number of
// seconds, as load generators' -d usually does.
type secondsFlag time.Duration

func (d *secondsFlag) String() string { return time.Duration(*d).String() }

func (d *secondsFlag) Set(v string) error {
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s < math.MaxInt64/1e9 {
		*d = secondsFlag(s * 1e9)
		return nil
	}
	dur, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("bad duration %q (want a number of seconds or a duration such as 1m30s)", v)
	}
	*d = secondsFlag(dur)
	return nil
}

// writeJSON writes r as one line of JSON.
func writeJSON(w io.Writer, r *bench.Result) error {
	return json.NewEncoder(w).Encode(r)
}

// writeSVGFile draws results into the file at path.
func writeSVGFile(path string, results ...*bench.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := bench.WriteSVG(f, results...); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mergeSVG draws the JSON reports in files into one chart at out.
func mergeSVG(e *env, files []string, out string) int {
	var results []*bench.Result
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(e.stderr, "porta bench: %v\n", err)
			return exitFailure
		}
		var r bench.Result
		if err := json.Unmarshal(data, &r); err != nil {
			fmt.Fprintf(e.stderr, "porta bench: %s: not a --json report: %v\n", name, err)
			return exitFailure
		}
		if r.Label == "" {
			r.Label = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
		}
		results = append(results, &r)
	}
	if err := writeSVGFile(out, results...); err != nil {
		fmt.Fprintf(e.stderr, "porta bench: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// progressLine shows a run's progress on one terminal line, rewritten in
// place, when stdout is a terminal; elsewhere it shows nothing. It also
// says, on stderr, when the connections start being held idle.
type progressLine struct {
	e        *env
	hold     time.Duration
	terminal bool
	shown    bool
	held     bool
}

func newProgressLine(e *env, hold time.Duration) *progressLine {
	f, ok := e.stdout.(*os.File)
	return &progressLine{e: e, hold: hold, terminal: ok && term.IsTerminal(int(f.Fd()))}
}

func (pl *progressLine) update(p bench.Progress) {
	if p.Phase == bench.PhaseHold && !pl.held {
		pl.held = true
		pl.clear()
		fmt.Fprintf(pl.e.stderr, "porta bench: holding the connections idle for %v\n", pl.hold)
	}
	if !pl.terminal {
		return
	}
	fmt.Fprintf(pl.e.stdout, "\r\033[K%-7s %6.1fs  %s msgs  %s msgs/s  %s errors",
		p.Phase, p.Elapsed.Round(100*time.Millisecond).Seconds(), bench.FormatCount(p.Messages), bench.FormatCount(int64(p.Rate)), bench.FormatCount(p.Errors))
	pl.shown = true
}

// clear erases the progress line, if one is shown.
func (pl *progressLine) clear() {
	if pl.shown {
		fmt.Fprint(pl.e.stdout, "\r\033[K")
		pl.shown = false
	}
}
