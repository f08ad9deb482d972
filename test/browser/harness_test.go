package browser

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
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

// The sites, as the browser names them. Chromium resolves every one of them
// to 127.0.0.1 (see browserFlags); Caddy serves them all on one HTTPS port.
const (
	// mainHost is b2s.com's main site.
	mainHost = "www.b2s.test"
	// sisterHost is a sister site on another registrable domain.
	sisterHost = "www.b2smade.test"
	// adHost is an advertiser's own domain: no b2s-edge in front of it.
	adHost = "ads.adnet.example"
)

const (
	cookieName   = "b2sid"
	cookieMaxAge = 400 * 24 * time.Hour // the default cookie_max_age

	// waitFor bounds every wait for a condition: a record in Kafka, a
	// request at an origin, the edge getting ready.
	waitFor = 30 * time.Second
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------
// Child processes

// proc is a child process whose stdout and stderr go to a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// startProc starts bin and stops it when the test ends: SIGTERM, then
// SIGKILL if it has not exited ten seconds later.
func startProc(t *testing.T, name, logPath string, env []string, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("opening %s log: %v", name, err)
	}
	fmt.Fprintf(f, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(p.stop(t))
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop returns a func that ends the process, politely first.
func (p *proc) stop(t *testing.T) func() {
	return func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not exit within 10s of SIGTERM; killing it", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---------------------------------------------------------------------------
// The environment

// envOptions changes an environment before its processes start.
type envOptions struct {
	// configure edits the edge's config, which newEnv fills with the
	// three sites first. It may also add routes to the origins.
	configure func(e *env, c *edgeConfig)
}

// env is one edge (Caddy with b2s-edge) serving the three sites over HTTPS
// in front of their origins, shipping to one broker, all on loopback.
type env struct {
	t     *testing.T
	dir   string
	start time.Time

	secret string // the b2s secret, hex: 40 bytes
	topic  string

	// The origins behind the sites; an origin's routes may be changed at
	// any time.
	main, sister, ads *origin

	port       int // HTTPS, shared by every site
	httpPort   int
	adminAddr  string
	brokerAddr string
	storage    string // Caddy's storage: its local CA and certificates
	caddyfile  string
	cfg        *edgeConfig
	broker     *proc
	caddy      *proc
	records    *recordReader
	roots      *x509.CertPool // Caddy's local root CA
}

var topicSafe = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// newEnv starts the broker, the origins and the edge, and returns once
// every site answers TLS handshakes with its certificate.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), start: time.Now()}
	e.secret = randomHex(20)
	e.topic = "browser." + topicSafe.ReplaceAllString(t.Name(), "_") + "." + randomHex(4)
	e.storage = filepath.Join(e.dir, "caddy-storage")

	// Dump the logs after the processes have stopped (cleanups run last
	// registered first), while the temporary directory still exists.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(e.dir, "*.log"))
		for _, path := range logs {
			if b, err := os.ReadFile(path); err == nil {
				t.Logf("----- %s -----\n%s", filepath.Base(path), tail(b, 32<<10))
			}
		}
	})

	e.main = newOrigin(t, "b2s")
	e.sister = newOrigin(t, "b2smade")
	e.ads = newOrigin(t, "adnet")
	e.installSites()

	e.startBroker()
	e.port, e.httpPort = freePort(t), freePort(t)
	e.adminAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.cfg = e.defaultConfig()
	if o.configure != nil {
		o.configure(e, e.cfg)
	}
	e.caddyfile = filepath.Join(e.dir, "Caddyfile")
	if err := os.WriteFile(e.caddyfile, []byte(e.cfg.render(e)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.startCaddy()
	e.records = newRecordReader(t, e.brokerAddr, e.topic, e.start)
	return e
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return append([]byte("[...]\n"), b[len(b)-n:]...)
	}
	return b
}

// url is the absolute URL of path on host, as the browser loads it.
func (e *env) url(host, path string) string {
	return "https://" + host + ":" + strconv.Itoa(e.port) + path
}

// origin is the scheme, host and port of host's site.
func (e *env) origin(host string) string { return e.url(host, "") }

// startBroker starts kbroker with the test's topic on a free port and waits
// until it is ready.
func (e *env) startBroker() {
	t := e.t
	t.Helper()
	p := startProc(t, "kbroker", filepath.Join(e.dir, "kbroker.log"), nil, kbrokerBin,
		"-addr", "127.0.0.1:0", "-topic", e.topic, "-partitions", "3")
	const ready = "kbroker: listening on "
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := p.log()
		if i := strings.Index(out, ready); i >= 0 && strings.Contains(out[i:], "\n") {
			line := out[i+len(ready):]
			e.broker, e.brokerAddr = p, line[:strings.IndexAny(line, ",\n")]
			return
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("kbroker did not get ready (exited: %v, %v):\n%s", p.exited(), p.waitErr, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startCaddy runs the edge on the Caddyfile and waits until its admin
// endpoint answers and every site completes a TLS handshake that verifies
// against Caddy's own root. It sends no HTTP request to a site, which would
// make a record.
func (e *env) startCaddy() {
	t := e.t
	t.Helper()
	e.caddy = startProc(t, "caddy", filepath.Join(e.dir, "caddy.log"),
		[]string{"HOME=" + e.dir, "XDG_DATA_HOME=" + e.dir, "XDG_CONFIG_HOME=" + e.dir},
		caddyBin, "run", "--config", e.caddyfile, "--adapter", "caddyfile")
	deadline := time.Now().Add(waitFor)
	pending := e.cfg.hosts()
	var lastErr error
	for len(pending) > 0 {
		if e.caddy.exited() {
			t.Fatalf("caddy exited at start: %v", e.caddy.waitErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not get ready within %v: sites %q have no certificate yet (%v)", waitFor, pending, lastErr)
		}
		if e.roots == nil {
			e.roots, lastErr = e.loadRoots()
		}
		if e.roots != nil && e.adminReady() {
			if lastErr = e.handshake(pending[0]); lastErr == nil {
				pending = pending[1:]
				continue
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (e *env) adminReady() bool {
	resp, err := http.Get("http://" + e.adminAddr + "/config/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// caPath is the certificate of Caddy's local CA of the given kind (root
// or intermediate), in its storage.
func (e *env) caPath(kind string) string {
	return filepath.Join(e.storage, "pki", "authorities", "local", kind+".crt")
}

func (e *env) loadRoots() (*x509.CertPool, error) {
	pem, err := os.ReadFile(e.caPath("root"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", e.caPath("root"))
	}
	return pool, nil
}

// handshake completes a TLS handshake with host's site, verifying its
// certificate against Caddy's root.
func (e *env) handshake(host string) error {
	d := &tls.Dialer{Config: &tls.Config{ServerName: host, RootCAs: e.roots}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", e.port))
	if err != nil {
		return err
	}
	return c.Close()
}

// client is an HTTPS client of the edge's sites outside the browser: it
// trusts Caddy's root, dials the edge whatever the host, sends no cookie
// and follows no redirect.
func (e *env) client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: waitFor,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: e.roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", e.port))
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
