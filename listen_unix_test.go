//go:build unix

package porta_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/porta-project/porta"
)

// staleSocket leaves a socket file at path with nothing listening on it, as
// a server that crashed does. The socket is bound but never listens, so it
// refuses connections even while a process that another test forks holds
// a copy of it until exec; a listener closed here would still accept them.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
}

// checkAnswers checks that l is the listener behind the socket file at
// path: a dial of path is a connection that l accepts.
func checkAnswers(t *testing.T, l net.Listener, path string) {
	t.Helper()
	dl, ok := l.(interface{ SetDeadline(time.Time) error })
	if !ok {
		t.Fatalf("%T has no SetDeadline", l)
	}
	dl.SetDeadline(time.Now().Add(promptly))
	defer dl.SetDeadline(time.Time{})
	c, err := net.DialTimeout("unix", path, promptly)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	defer c.Close()
	ac, err := l.Accept()
	if err != nil {
		t.Fatalf("the listener on %s accepts nothing: %v", path, err)
	}
	ac.Close()
}

// TestListenUnixStaleRace runs two Listen calls at once on a stale socket
// file, many times: at most one may succeed, the other must report the
// address in use, and the winner's socket file must stay in place and
// answer. Without a lock around probe, remove and bind, both could see the
// stale file, and the second would remove the first one's live file.
func TestListenUnixStaleRace(t *testing.T) {
	t.Parallel()
	const rounds = 200
	dir := t.TempDir()
	var both, none int
	for i := range rounds {
		path := filepath.Join(dir, fmt.Sprintf("r%d.sock", i))
		staleSocket(t, path)

		var ls [2]net.Listener
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j := range ls {
			wg.Go(func() {
				<-start
				ls[j], errs[j] = porta.Listen("unix://" + path)
			})
		}
		close(start)
		wg.Wait()

		var won []net.Listener
		for j, l := range ls {
			if errs[j] == nil {
				won = append(won, l)
			} else if !errors.Is(errs[j], porta.ErrAddrInUse) {
				t.Errorf("round %d: Listen = %v, want success or ErrAddrInUse", i, errs[j])
			}
		}
		switch len(won) {
		case 0:
			none++
			t.Logf("round %d: neither Listen succeeded: %v; %v", i, errs[0], errs[1])
		case 1:
			checkAnswers(t, won[0], path)
			if err := won[0].Close(); err != nil {
				t.Errorf("round %d: Close: %v", i, err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("round %d: socket file after Close: %v, want it removed", i, err)
			}
		default:
			both++
			for _, l := range won {
				l.Close()
			}
		}
		if t.Failed() {
			break
		}
	}
	if both > 0 || none > 0 {
		t.Errorf("of %d rounds: both Listen calls succeeded in %d, neither in %d; want exactly one every time", rounds, both, none)
	}
}

// deniedSocketEnv, when set, makes TestListenUnixPermissionDenied the
// child it runs as the user nobody: it listens on the socket path the
// variable holds and prints the error.
const deniedSocketEnv = "PORTA_TEST_DENIED_SOCKET"

// TestListenUnixPermissionDenied listens on a socket in a directory that
// is not writable: the error must say so, not talk about ports. Root may
// write anywhere, so as root the test runs itself as the user nobody.
func TestListenUnixPermissionDenied(t *testing.T) {
	t.Parallel()
	if path := os.Getenv(deniedSocketEnv); path != "" {
		l, err := porta.Listen("unix://" + path)
		if err == nil {
			l.Close()
			fmt.Println("RESULT: listening")
			return
		}
		fmt.Printf("RESULT: %v (EACCES %v)\n", err, errors.Is(err, syscall.EACCES))
		return
	}

	// A directory everyone may enter, so that nobody can reach ro in it.
	dir, err := os.MkdirTemp("", "porta-denied-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	path := filepath.Join(ro, "porta.sock")

	var got string
	if os.Geteuid() != 0 {
		l, err := porta.Listen("unix://" + path)
		if err == nil {
			l.Close()
			t.Fatalf("Listen in a read-only directory succeeded")
		}
		got = fmt.Sprintf("%v (EACCES %v)", err, errors.Is(err, syscall.EACCES))
	} else {
		// nobody must be able to run the test binary: link it into dir,
		// or copy it there if it is on another file system.
		bin := filepath.Join(dir, "porta.test")
		if err := os.Link(os.Args[0], bin); err != nil {
			b, err := os.ReadFile(os.Args[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin, b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		var out []byte
		for {
			cmd := exec.CommandContext(ctx, bin, "-test.run=^TestListenUnixPermissionDenied$", "-test.count=1")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), deniedSocketEnv+"="+path)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err = cmd.CombinedOutput()
			// A copy this process wrote is busy while a child that a
			// parallel test forked holds it open, until that child
			// execs: try again.
			if !errors.Is(err, syscall.ETXTBSY) || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("cannot run as nobody here: %v", err)
		}
		if err != nil {
			t.Fatalf("running the test as nobody: %v\n%s", err, out)
		}
		_, after, ok := strings.Cut(string(out), "RESULT: ")
		if !ok {
			t.Fatalf("no result from the test run as nobody:\n%s", out)
		}
		got, _, _ = strings.Cut(after, "\n")
	}
	want := "porta: permission denied: unix://" + path + " (cannot create the socket file: directory " + ro + " is not writable by this user, or a directory on its path is not searchable) (EACCES true)"
	if got != want {
		t.Errorf("Listen in a read-only directory: %s\nwant %s", got, want)
	}
}
