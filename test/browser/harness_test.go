package browser

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/internal/testproc"
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
	// cookieName is the visitor cookie as the edge writes it over https
	// without cookie_domain (cookie_prefix host, the default);
	// plainCookieName is its unprefixed name, as written with
	// cookie_prefix off, a cookie_domain or over plain http.
	cookieName      = "__Host-" + plainCookieName
	plainCookieName = "b2sid"
	cookieMaxAge    = 400 * 24 * time.Hour // the default cookie_max_age

	// waitFor bounds every wait for a condition: a record in Kafka, a
	// request at an origin, the edge getting ready.
	waitFor = 30 * time.Second

	// readyFor bounds the wait for the edge's certificates: when Caddy's
	// first attempt to issue one from its local CA fails, it tries again
	// a minute later.
	readyFor = 90 * time.Second
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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
	broker     *testproc.Proc
	caddy      *testproc.Proc
	records    *recordReader
	roots      *x509.CertPool // Caddy's local root CA
}

// newEnv starts the broker, the origins and the edge, and returns once
// every site answers TLS handshakes with its certificate.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), start: time.Now()}
	e.secret = randomHex(20)
	e.topic = testproc.Topic(t, "browser")
	e.storage = filepath.Join(e.dir, "caddy-storage")

	testproc.DumpLogsOnFailure(t, e.dir)

	e.main = newOrigin(t, "b2s")
	e.sister = newOrigin(t, "b2smade")
	e.ads = newOrigin(t, "adnet")
	e.installSites()

	e.startBroker()
	e.port, e.httpPort = testproc.FreePort(t), testproc.FreePort(t)
	e.adminAddr = fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
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
	e.broker, e.brokerAddr = testproc.StartKbroker(t, "kbroker", filepath.Join(e.dir, "kbroker.log"), bin.Kbroker,
		"-addr", "127.0.0.1:0", "-topic", e.topic, "-partitions", "3")
}

// startCaddy runs the edge on the Caddyfile and waits until its admin
// endpoint answers and every site completes a TLS handshake that verifies
// against Caddy's own root. It sends no HTTP request to a site, which would
// make a record.
func (e *env) startCaddy() {
	t := e.t
	t.Helper()
	e.caddy = testproc.Start(t, "caddy", filepath.Join(e.dir, "caddy.log"),
		[]string{"HOME=" + e.dir, "XDG_DATA_HOME=" + e.dir, "XDG_CONFIG_HOME=" + e.dir},
		bin.Caddy, "run", "--config", e.caddyfile, "--adapter", "caddyfile")
	pending := e.cfg.hosts()
	e.caddy.WaitReady(t, readyFor, func() error {
		if e.roots == nil {
			roots, err := e.loadRoots()
			if err != nil {
				return err
			}
			e.roots = roots
		}
		if !testproc.AdminReady(e.adminAddr) {
			return errors.New("the admin endpoint does not answer")
		}
		for len(pending) > 0 {
			if err := e.handshake(pending[0]); err != nil {
				return fmt.Errorf("sites %q have no certificate yet (%v)", pending, err)
			}
			pending = pending[1:]
		}
		return nil
	})
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
