package reliability_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
)

// Helpers of the process-level tests (T5, T6, T12, T13): the porta binary
// as a subprocess, its log, and descriptor and CPU counts from /proc.

// procClockTicks is USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat: 100 on every Linux architecture Go supports.
const procClockTicks = 100

// Bounds on a porta subprocess, generous for a loaded machine; a passing
// test waits for none of them in full.
const (
	procStartTimeout = 15 * time.Second // until every "Listening on" line
	procKillTimeout  = 5 * time.Second  // after SIGKILL, until Wait returns
)

// procBin is the porta binary, built once for every test of the package.
var procBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// procBinary returns the path of the porta command, building it on first
// use. It is built without -race: the process-level tests measure the
// server's CPU and timing, and the in-process tests (T12, T13) cover races.
// The build directory is removed by procCleanup.
func procBinary(t testing.TB) string {
	t.Helper()
	procBin.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			procBin.err = fmt.Errorf("building porta: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "porta-reliability-")
		if err != nil {
			procBin.err = err
			return
		}
		procBin.dir = dir
		path := filepath.Join(dir, "porta")
		out, err := exec.Command(goTool, "build", "-o", path, "github.com/porta-project/porta/cmd/porta").CombinedOutput()
		if err != nil {
			procBin.err = fmt.Errorf("building porta: %v\n%s", err, out)
			return
		}
		procBin.path = path
	})
	if procBin.err != nil {
		t.Fatal(procBin.err)
	}
	return procBin.path
}

// procCleanup removes the binary built by procBinary. TestMain may call it
// after the tests have run; without it the directory stays in os.TempDir.
func procCleanup() {
	if procBin.dir != "" {
		os.RemoveAll(procBin.dir)
	}
}

// procLine is one line a subprocess wrote, with the time it was read.
type procLine struct {
	at   time.Time
	text string
}

// procLog collects the lines of a subprocess's output as they arrive.
type procLog struct {
	mu    sync.Mutex
	lines []procLine
	added chan struct{} // signalled (without blocking) on every line
	done  chan struct{} // closed at end of stream
}

func procNewLog() *procLog {
	return &procLog{added: make(chan struct{}, 1), done: make(chan struct{})}
}

// read reads r line by line until end of stream.
func (l *procLog) read(r io.Reader) {
	defer close(l.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, procLine{time.Now(), sc.Text()})
		l.mu.Unlock()
		select {
		case l.added <- struct{}{}:
		default:
		}
	}
	io.Copy(io.Discard, r) // after an over-long line: keep the pipe drained
}

// snapshot returns the lines read so far.
func (l *procLog) snapshot() []procLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]procLine(nil), l.lines...)
}

// String returns the text read so far, for failure messages.
func (l *procLog) String() string {
	var b strings.Builder
	for _, ln := range l.snapshot() {
		b.WriteString(ln.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// count returns the number of lines read so far that contain s.
func (l *procLog) count(s string) int {
	n := 0
	for _, ln := range l.snapshot() {
		if strings.Contains(ln.text, s) {
			n++
		}
	}
	return n
}

// waitFor waits up to timeout for a line containing s and returns it.
func (l *procLog) waitFor(s string, timeout time.Duration) (procLine, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		for _, ln := range l.snapshot() {
			if strings.Contains(ln.text, s) {
				return ln, true
			}
		}
		select {
		case <-l.added:
		case <-l.done:
			for _, ln := range l.snapshot() {
				if strings.Contains(ln.text, s) {
					return ln, true
				}
			}
			return procLine{}, false
		case <-deadline.C:
			return procLine{}, false
		}
	}
}

// procJSON is one JSON log line of `porta serve --log-format json`.
type procJSON map[string]any

// jsonRecords returns the lines that parse as JSON objects whose "msg" is
// msg, each with the time it was read.
func (l *procLog) jsonRecords(msg string) []procJSON {
	var out []procJSON
	for _, ln := range l.snapshot() {
		var rec procJSON
		if json.Unmarshal([]byte(ln.text), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// uint returns the record's field name as a count; false if absent.
func (r procJSON) uint(name string) (uint64, bool) {
	f, ok := r[name].(float64)
	if !ok || f < 0 {
		return 0, false
	}
	return uint64(f), true
}

// time returns the record's "time" field.
func (r procJSON) time() (time.Time, bool) {
	s, ok := r["time"].(string)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// procServe is a running `porta serve` subprocess.
type procServe struct {
	cmd    *exec.Cmd
	addrs  []porta.Addr // the listeners, in the order of their "Listening on" lines
	stdout *procLog
	stderr *procLog

	done     chan struct{} // closed when the process has exited
	exitCode int           // valid after done
	exitedAt time.Time     // valid after done
}

// procStartServe starts `porta serve` on addrs with flags, through the
// command prefix wrap (such as prlimit; may be nil), and waits until it
// listens on every address. The process is killed, if still running, when
// the test ends.
func procStartServe(t testing.TB, wrap []string, addrs []string, flags ...string) *procServe {
	t.Helper()
	argv := append(append([]string(nil), wrap...), procBinary(t), "serve")
	argv = append(append(argv, addrs...), flags...)
	cmd := exec.Command(argv[0], argv[1:]...)
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// *os.File outputs: Wait returns as soon as the process exits, without
	// waiting for the pipes to drain, so exitedAt is the exit time.
	cmd.Stdout, cmd.Stderr = outW, errW
	p := &procServe{cmd: cmd, stdout: procNewLog(), stderr: procNewLog(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		t.Fatalf("starting %v: %v", argv, err)
	}
	outW.Close()
	errW.Close()
	go func() { p.stdout.read(outR); outR.Close() }()
	go func() { p.stderr.read(errR); errR.Close() }()
	go func() {
		cmd.Wait()
		p.exitedAt = time.Now()
		p.exitCode = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(procKillTimeout):
				t.Errorf("porta serve (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
			}
		}
		<-p.stdout.done
		<-p.stderr.done
	})

	deadline := time.Now().Add(procStartTimeout)
	for len(p.addrs) < len(addrs) {
		var found []porta.Addr
		for _, ln := range p.stdout.snapshot() {
			if s, ok := strings.CutPrefix(ln.text, "Listening on "); ok {
				a, err := porta.ParseAddr(s)
				if err != nil {
					t.Fatalf("porta serve printed a bad address %q: %v", s, err)
				}
				found = append(found, a)
			}
		}
		p.addrs = found
		if len(p.addrs) >= len(addrs) {
			break
		}
		select {
		case <-p.stdout.added:
		case <-p.done:
			t.Fatalf("porta serve exited with status %d before listening\nstderr:\n%s", p.exitCode, p.stderr)
		case <-time.After(time.Until(deadline)):
			t.Fatalf("porta serve did not listen on %d addresses within %v\nstdout:\n%s\nstderr:\n%s", len(addrs), procStartTimeout, p.stdout, p.stderr)
		}
	}
	return p
}

// pid returns the process id of the server (prlimit and ip netns exec
// exec the command in place, so it is the server's own).
func (p *procServe) pid() int { return p.cmd.Process.Pid }

// signal sends sig and returns the time just before sending it.
func (p *procServe) signal(t testing.TB, sig os.Signal) time.Time {
	t.Helper()
	at := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling porta serve: %v", err)
	}
	return at
}

// running reports whether the process has not exited.
func (p *procServe) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitExit waits up to timeout for the process to exit; false if it did
// not.
func (p *procServe) waitExit(timeout time.Duration) bool {
	select {
	case <-p.done:
		<-p.stderr.done
		<-p.stdout.done
		return true
	case <-time.After(timeout):
		return false
	}
}

// procStopped is the final "stopped" line of porta serve.
type procStopped struct {
	connections, messagesIn, messagesOut uint64
}

// stopped returns the counts of the final "stopped" log line, which needs
// --log-format json; false if there is none.
func (p *procServe) stopped() (procStopped, bool) {
	recs := p.stderr.jsonRecords("stopped")
	if len(recs) != 1 {
		return procStopped{}, false
	}
	var s procStopped
	var ok1, ok2, ok3 bool
	s.connections, ok1 = recs[0].uint("connections")
	s.messagesIn, ok2 = recs[0].uint("messages_in")
	s.messagesOut, ok3 = recs[0].uint("messages_out")
	return s, ok1 && ok2 && ok3
}

// procFDs returns the number of open descriptors of process pid; pid 0 is
// this process (the descriptor of the directory being read is not
// counted).
func procFDs(pid int) (int, error) {
	dir := "/proc/self/fd"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid) + "/fd"
	}
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	n := len(names)
	if pid == 0 {
		n-- // f itself
	}
	return n, nil
}

// procCPU returns the CPU time process pid has used, user plus system, from
// /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// the fields after it start with field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return time.Duration(utime+stime) * time.Second / procClockTicks, nil
}

// procIsReset reports whether err is the peer resetting or refusing the
// connection, as opposed to a timeout or a clean end.
func procIsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// procPercentile returns the p-th percentile (0-100) of sorted durations.
func procPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// procMetric fetches http://addr/metrics (Prometheus text format) and
// returns the value of the series named exactly series, labels included.
func procMetric(addr, series string) (float64, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		return 0, err
	}
	body, err := io.ReadAll(c)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no series %s in the metrics", series)
}

// procStalls watches how late this process gets to run: a goroutine asks
// to sleep 10 ms, over and over, and records the largest overshoot. On a
// machine starved by other jobs that reaches seconds, which explains (but
// does not excuse) a timing failure; the tests report it.
type procStalls struct {
	stop  chan struct{}
	done  chan struct{}
	worst time.Duration
}

func procWatchStalls() *procStalls {
	s := &procStalls{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		const tick = 10 * time.Millisecond
		for {
			start := time.Now()
			select {
			case <-s.stop:
				return
			case <-time.After(tick):
				s.worst = max(s.worst, time.Since(start)-tick)
			}
		}
	}()
	return s
}

// end stops the watch and returns the largest delay seen.
func (s *procStalls) end() time.Duration {
	close(s.stop)
	<-s.done
	return s.worst
}
