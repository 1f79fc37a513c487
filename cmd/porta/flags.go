package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
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
		if endedFlags(fs.FlagSet, args[:len(args)-len(left)]) {
			return append(rest, left...), 0, true
		}
		if len(left) == 0 {
			return rest, 0, true
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

// endedFlags reports whether the arguments a successful fs.Parse consumed
// end with a "--" that ended the flags, and not one taken as a flag's
// value ("--text --").
func endedFlags(fs *flag.FlagSet, consumed []string) bool {
	for i := 0; i < len(consumed); i++ {
		a := consumed[i]
		if a == "--" {
			return i == len(consumed)-1
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-") // -x or --x
		name, _, hasValue := strings.Cut(name, "=")
		if f := fs.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) {
			i++ // the next argument is this flag's value
		}
	}
	return false
}

// isBoolFlag reports whether f takes no value of its own, as -v.
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
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
	if n > math.MaxInt/mult {
		return 0, fmt.Errorf("size %q is too large", v)
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

// prefixList is a repeatable flag of IP prefixes ("10.0.0.0/8") or single
// addresses ("127.0.0.2", taken as /32 or /128).
type prefixList []netip.Prefix

func (p *prefixList) String() string {
	s := make([]string, len(*p))
	for i, pr := range *p {
		s[i] = pr.String()
	}
	return strings.Join(s, ",")
}

func (p *prefixList) Set(v string) error {
	if pr, err := netip.ParsePrefix(v); err == nil {
		*p = append(*p, pr.Masked())
		return nil
	}
	ip, err := netip.ParseAddr(v)
	if err != nil {
		return fmt.Errorf("bad CIDR %q (want an address such as 127.0.0.1 or a prefix such as 10.0.0.0/8)", v)
	}
	ip = ip.Unmap()
	*p = append(*p, netip.PrefixFrom(ip, ip.BitLen()))
	return nil
}
