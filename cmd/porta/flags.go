package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/porta-project/porta/frame"
)

// flagSet is a command's flags and the synopsis of its other arguments.
type flagSet struct {
	*flag.FlagSet
	args string // such as "ADDR [MESSAGE...]"
}

// newFlagSet returns the flag set of command name. Parsing errors are
// reported by parseArgs, not printed by the flag package.
func newFlagSet(name, args string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, args: args}
}

// parseArgs parses flags wherever they stand among the arguments, as users
// expect ("porta serve :0 --mode upper"), and returns the other arguments;
// "--" ends the flags. On -h it prints the help to stdout; on a bad flag it
// prints one line to stderr. ok is false when the command should stop,
// with exit status code.
func parseArgs(e *env, fs *flagSet, args []string) (rest []string, code int, ok bool) {
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printHelp(e.stdout, fs)
			return nil, exitOK, false
		}
		if err != nil {
			return nil, usageFail(e, fs, "%v", err), false
		}
		left := fs.Args()
		if n := len(args) - len(left); n > 0 && args[n-1] == "--" {
			return append(rest, left...), 0, true
		}
		if len(left) == 0 {
			return rest, 0, true
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// printHelp prints a command's synopsis and flags with their defaults.
func printHelp(w io.Writer, fs *flagSet) {
	fmt.Fprintf(w, "usage: porta %s [flags] %s\n\nflags:\n", fs.Name(), fs.args)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// usageFail prints one line about a usage error and returns exitUsage.
func usageFail(e *env, fs *flagSet, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "porta %s: %s (see 'porta help %s')\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return exitUsage
}

// sizeFlag is a byte size flag that accepts plain numbers and the suffixes
// B, K/KB/KiB, M/MB/MiB (all powers of 1024).
type sizeFlag int

func (s *sizeFlag) String() string { return formatSize(int(*s)) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int, error) {
	num := strings.TrimRight(v, "BbKkMmIi")
	unit := strings.ToLower(v[len(num):])
	mult := 1
	switch unit {
	case "", "b":
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	default:
		return 0, fmt.Errorf("bad size %q (want a number of bytes, optionally with KiB or MiB)", v)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q (want a number of bytes, optionally with KiB or MiB)", v)
	}
	return n * mult, nil
}

func formatSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n)
}

// framingFlag is a frame.Framing flag; allowed lists the accepted values.
type framingFlag struct {
	f       frame.Framing
	allowed []frame.Framing
}

func (ff *framingFlag) String() string { return ff.f.String() }

func (ff *framingFlag) Set(v string) error {
	f, err := frame.Parse(v)
	if err != nil {
		return err
	}
	for _, a := range ff.allowed {
		if f == a {
			ff.f = f
			return nil
		}
	}
	names := make([]string, len(ff.allowed))
	for i, a := range ff.allowed {
		names[i] = a.String()
	}
	return fmt.Errorf("unknown framing %q (want %s)", v, strings.Join(names, ", "))
}
