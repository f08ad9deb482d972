// Package testproc runs the programs of the end-to-end tests as child
// processes: the caddy binary and the test broker (test/kbroker), built
// from this checkout, each writing its output to a log file, stopped when
// the test ends. It is imported only by tests and is not part of the
// product.
package testproc

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The packages of the binaries the end-to-end tests run.
const (
	CaddyPackage   = "github.com/b2scom/b2s-edge/cmd/caddy"
	KbrokerPackage = "github.com/b2scom/b2s-edge/test/kbroker"
)

// GoTool is the go command running this test: since Go 1.19 `go test`
// puts its own GOROOT/bin first in the test binary's PATH.
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

// Build builds the package pkg (an import path of this module) into out as
// `make build` builds bin/caddy: static and with -trimpath. Every test
// package builds the same way, so they share the build cache.
func Build(out, pkg string) error {
	cmd := exec.Command(GoTool(), "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return nil
}

// Binaries are the programs an end-to-end test runs.
type Binaries struct {
	Caddy   string // the product binary, what `make build` puts in bin/caddy
	Kbroker string // the test broker
}

// Main is a TestMain's body for a package that runs Binaries: it builds
// them from this checkout into a new temporary directory and sets *b, so
// that the tests exercise the code they sit beside and a clean checkout
// needs no prior build step; then it runs the tests, removes the
// directory and returns the exit code. name prefixes its messages.
func Main(m *testing.M, name string, b *Binaries) int {
	dir, err := os.MkdirTemp("", "b2s-"+name+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: creating a directory for the binaries: %v\n", name, err)
		return 1
	}
	defer os.RemoveAll(dir)
	*b = Binaries{Caddy: filepath.Join(dir, "caddy"), Kbroker: filepath.Join(dir, "kbroker")}
	for _, x := range []struct{ out, pkg string }{{b.Caddy, CaddyPackage}, {b.Kbroker, KbrokerPackage}} {
		if err := Build(x.out, x.pkg); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			return 1
		}
	}
	return m.Run()
}

// Proc is a child process whose stdout and stderr go to a log file.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// Done is closed when the process has exited; WaitErr is then what
	// waiting for it returned.
	Done    <-chan struct{}
	WaitErr error

	logPath  string
	logStart int64 // the log's size when this process started
}

// Start starts bin with env added to this process's environment, appending
// its output to logPath, and stops it when the test ends (see Stop).
func Start(t testing.TB, name, logPath string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("opening %s log: %v", name, err)
	}
	var start int64
	if st, err := f.Stat(); err == nil {
		start = st.Size()
	}
	fmt.Fprintf(f, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	p := &Proc{Name: name, Cmd: cmd, Done: done, logPath: logPath, logStart: start}
	go func() {
		p.WaitErr = cmd.Wait()
		f.Close()
		close(done)
	}()
	t.Cleanup(func() { p.Stop(t) })
	return p
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// Stop ends the process, politely first: SIGTERM, then SIGKILL and a test
// error if it has not exited ten seconds later. It is safe to call twice.
func (p *Proc) Stop(t testing.TB) {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not exit within 10s of SIGTERM; killing it", p.Name)
		_ = p.Cmd.Process.Kill()
		<-p.Done
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.Name, err)
	}
}

// Log is the whole log file, which earlier processes may have written to
// as well.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// OwnLog is what this process wrote to its log.
func (p *Proc) OwnLog() string {
	log := p.Log()
	if int64(len(log)) >= p.logStart {
		return log[p.logStart:]
	}
	return log
}

// WaitReady calls ready until it returns nil, and fails the test, with the
// process's log, if the process exits first or ready still fails after
// timeout.
func (p *Proc) WaitReady(t testing.TB, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			t.Fatalf("%s exited at start: %v\n%s", p.Name, p.WaitErr, Tail([]byte(p.OwnLog()), 16<<10))
		}
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not get ready within %v: %v\n%s", p.Name, timeout, err, Tail([]byte(p.OwnLog()), 16<<10))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// StartKbroker starts the test broker bin with args (see test/kbroker),
// waits until it listens and returns it with the address it listens on.
func StartKbroker(t testing.TB, name, logPath, bin string, args ...string) (*Proc, string) {
	t.Helper()
	p := Start(t, name, logPath, nil, bin, args...)
	const ready = "kbroker: listening on "
	var addr string
	p.WaitReady(t, 15*time.Second, func() error {
		out := p.OwnLog()
		i := strings.Index(out, ready)
		if i < 0 || !strings.Contains(out[i:], "\n") {
			return errors.New(`no "kbroker: listening on" line in its log yet`)
		}
		line := out[i+len(ready):]
		addr = line[:strings.IndexAny(line, ",\n")]
		return nil
	})
	return p, addr
}

// AdminReady reports whether a Caddy admin endpoint at addr (host:port)
// answers with its config.
func AdminReady(addr string) bool {
	resp, err := http.Get("http://" + addr + "/config/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on and
// that no other test, in this process or another, is given until t ends.
//
// A port the kernel picks (":0") will do for a listener the test opens
// at once, not for one a child process opens later: test packages run
// side by side, and Caddy listens with SO_REUSEPORT, so two Caddy
// processes of two packages given the same port both bind it and the
// kernel splits the connections between them (a TLS handshake answered
// by the other test's plain-HTTP site). So ports come from below the
// kernel's ephemeral range, which it never picks for ":0" or outgoing
// connections, each claimed by an flock(2) on a file named after it,
// held until the test ends.
func FreePort(t testing.TB) int {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "b2s-edge-test-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lo, hi := 20000, ephemeralStart()
	for range 1000 {
		port := lo + mrand.IntN(hi-lo)
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // another test holds it
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			f.Close() // something else listens there
			continue
		}
		l.Close()
		t.Cleanup(func() { f.Close() })
		return port
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return 0
}

// ephemeralStart is the first port of the kernel's ephemeral range, or
// 32768 where it cannot be read.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 20000+1000 {
		return 32768
	}
	return n
}

var topicUnsafe = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Topic is a Kafka topic of the test's own: prefix, the test's name and a
// random suffix, so that no two runs or tests share one.
func Topic(t testing.TB, prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "." + topicUnsafe.ReplaceAllString(t.Name(), "_") + "." + hex.EncodeToString(b[:])
}

// DumpLogsOnFailure logs the end of every *.log file in dir if the test
// has failed by the time it ends. Register it before starting the
// processes: cleanups run last registered first, so it runs after they
// have stopped, while a temporary directory of the test still exists.
func DumpLogsOnFailure(t testing.TB, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, path := range logs {
			if b, err := os.ReadFile(path); err == nil {
				t.Logf("----- %s: warnings and errors -----\n%s", filepath.Base(path), Tail(problems(b), 32<<10))
				t.Logf("----- %s -----\n%s", filepath.Base(path), Tail(b, 48<<10))
			}
		}
	})
}

// problems returns the lines of a Caddy log at level warn or above, which
// a busy log's tail may no longer hold.
func problems(b []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		for _, lvl := range [][]byte{[]byte(`"level":"warn"`), []byte(`"level":"error"`), []byte(`"level":"fatal"`), []byte(`"level":"panic"`)} {
			if bytes.Contains(line, lvl) {
				out = append(out, line...)
				break
			}
		}
	}
	return out
}

// Tail is the last n bytes of b, marked as cut when it is.
func Tail(b []byte, n int) []byte {
	if len(b) > n {
		return append([]byte("[...]\n"), b[len(b)-n:]...)
	}
	return b
}
