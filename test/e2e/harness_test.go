package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/b2scom/b2s-edge/internal/geotest"
	"github.com/b2scom/b2s-edge/internal/recordschema"
	"github.com/b2scom/b2s-edge/internal/testproc"
	"github.com/b2scom/b2s-edge/internal/testrecord"
)

// What the suite configures and expects of the edge.
const (
	cookieName   = "b2sid"
	cookieMaxAge = 400 * 24 * 60 * 60 // the default cookie_max_age, 400d, in seconds
	beaconPath   = "/b.gif"
	pixelLen     = 43
	// mailPathPrefix is where the edge serves the mail links.
	mailPathPrefix = "/_b2s/mail/"

	// recordWait bounds how long a record may take to show up in Kafka.
	recordWait = 30 * time.Second
	// pollEvery is the pause between two reads of a topic.
	pollEvery = 150 * time.Millisecond
)

// Cookie keys, 40 bytes each, fresh for every run. The first signs; the
// older one only verifies; the unknown one was never configured.
var (
	currentKey = randomKey()
	olderKey   = randomKey()
	unknownKey = randomKey()
)

func randomKey() []byte {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return []byte(hex.EncodeToString(b[:]))
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// The locations of the test GeoIP database. 192.0.2.0/24 and loopback are
// left out, so they have no location.
var (
	geoShenzhen = geoRec{Country: "CN", Subdivision: "GD", City: "Shenzhen", Lat: ptr(22.5431), Lon: ptr(114.0579)}
	geoHongKong = geoRec{Country: "HK", City: "Hong Kong", Lat: ptr(22.3193), Lon: ptr(114.1694)}
	geoTaipei   = geoRec{Country: "TW", Subdivision: "TPE", City: "Taipei", Lat: ptr(25.033), Lon: ptr(121.5654)}
)

func geoEntries() []geotest.City {
	return []geotest.City{
		{Network: "203.0.113.0/24", Continent: "AS", Country: "CN", CountryName: "China",
			Subdivision: "GD", SubdivisionName: "Guangdong", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579, TimeZone: "Asia/Shanghai"},
		{Network: "198.51.100.0/24", Continent: "AS", Country: "HK", CountryName: "Hong Kong",
			City: "Hong Kong", Lat: 22.3193, Lon: 114.1694, TimeZone: "Asia/Hong_Kong"},
		{Network: "2001:db8::/32", Continent: "AS", Country: "TW", CountryName: "Taiwan",
			Subdivision: "TPE", SubdivisionName: "Taipei", City: "Taipei", Lat: 25.033, Lon: 121.5654, TimeZone: "Asia/Taipei"},
	}
}

func ptr[T any](v T) *T { return &v }

// ---------------------------------------------------------------------------
// The upstream site

// upstream is the site behind the edge. It remembers the headers of every
// request by the request's t query parameter, the scenario marker.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string][]http.Header
}

const (
	bigBodyLen  = 256 << 10
	missingBody = "no such page\n"
	movedBody   = "moved to /page\n"
)

func pageBody(path string) string {
	return "<!doctype html><title>" + path + "</title><p>b2s-edge end-to-end page " + path + "</p>\n"
}

func startUpstream(t *testing.T) *upstream {
	u := &upstream{seen: map[string][]http.Header{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	if m := r.URL.Query().Get("t"); m != "" {
		u.mu.Lock()
		u.seen[m] = append(u.seen[m], r.Header.Clone())
		u.mu.Unlock()
	}
	switch r.URL.Path {
	case "/missing":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, missingBody)
	case "/moved":
		w.Header().Set("Location", "/page")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusFound)
		io.WriteString(w, movedBody)
	case "/big":
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(bytes.Repeat([]byte("b2s"), bigBodyLen/3+1)[:bigBodyLen])
	default:
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, pageBody(r.URL.Path))
	}
}

// requests returns the headers of the requests the upstream received with
// marker m.
func (u *upstream) requests(m string) []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[m]
}

// ---------------------------------------------------------------------------
// The environment: broker, upstream and edge

type envOptions struct {
	// persistBroker gives the broker a data directory, so its records
	// survive a restart.
	persistBroker bool
	// extraTopics are created next to the test's topic.
	extraTopics []string
	// siteExtra is added to the site block of the first config.
	siteExtra string
	// spoolMaxSize, fsync and flushTimeout set the global options of the
	// same name in every config the test writes; "" leaves the default.
	spoolMaxSize, fsync, flushTimeout string
	// clientLimit is a client_limit option (a line or a block) for every
	// config the test writes; "" leaves the default.
	clientLimit string
	// spoolFS, when set, is the size of a tmpfs mounted on the spool
	// directory for the test (e.g. "8m"): a small disk that fills up.
	spoolFS string
	// faults marks a test that kills, restarts or starves processes: the
	// counters of the edge no longer match the requests the harness sent,
	// and a record may reach Kafka twice (at-least-once delivery), which
	// the test reports rather than fails on.
	faults bool
}

// env is one edge (Caddy with b2s-edge) in front of one upstream, shipping
// to one broker, all on loopback.
type env struct {
	t         *testing.T
	dir       string
	start     time.Time
	topic     string
	topics    []string
	geoPath   string
	up        *upstream
	deadAddr  string // an address nothing listens on
	adminAddr string
	siteAddr  string

	brokerAddr string
	brokerData string
	broker     *testproc.Proc
	caddy      *testproc.Proc
	caddyfile  string
	spoolDir   string
	opts       envOptions
	client     *http.Client

	pages, beacons atomic.Int64 // records the edge should have built
	mails          atomic.Int64 // records of mail links: open, click, unsubscribe

	mu      sync.Mutex
	checked map[string]*record // by topic/partition/offset
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat is needed to read records back from Kafka and was not found (%v): apt-get install kcat (or make deps)", err)
	}
	e := &env{t: t, dir: t.TempDir(), start: time.Now(), checked: map[string]*record{}, opts: o}
	// Never the default spool under Caddy's data directory: a spool is
	// locked by one process, and each test has its own.
	e.spoolDir = filepath.Join(e.dir, "spool")
	if o.spoolFS != "" {
		mountTmpfs(t, e.spoolDir, o.spoolFS)
	}
	e.topic = testproc.Topic(t, "e2e")
	e.topics = append([]string{e.topic}, o.extraTopics...)

	testproc.DumpLogsOnFailure(t, e.dir)

	e.geoPath = filepath.Join(e.dir, "city.mmdb")
	if err := geotest.WriteCityDB(e.geoPath, geoEntries()); err != nil {
		t.Fatal(err)
	}
	e.up = startUpstream(t)
	e.deadAddr = fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))

	if o.persistBroker {
		e.brokerData = filepath.Join(e.dir, "kafka-data")
	}
	e.startBroker("127.0.0.1:0")

	e.adminAddr = fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	e.siteAddr = fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t))
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 32}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{
		Transport:     tr,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	e.caddyfile = filepath.Join(e.dir, "Caddyfile")
	e.writeCaddyfile(caddyConfig{Topic: e.topic, SiteExtra: o.siteExtra})
	e.startCaddy()
	// Close the client's idle connections before Caddy stops: net/http's
	// Shutdown waits up to 5s for a connection that never sent a request,
	// which a transport may have dialled for a burst and not used.
	t.Cleanup(e.client.CloseIdleConnections)

	// Every scenario ends by comparing the edge's counters with what it
	// sent: they run before the processes stop.
	t.Cleanup(func() {
		if !t.Failed() && !o.faults {
			e.checkCounters()
		}
	})
	return e
}

// startBroker starts kbroker on addr (port 0 picks one) and waits until
// it is ready.
func (e *env) startBroker(addr string) {
	e.t.Helper()
	e.broker, e.brokerAddr = e.startKbroker("kbroker", addr, e.brokerData)
}

// startKbroker starts a broker with the test's topics, logging to
// <name>.log, and returns it with the address it listens on. dataDir ""
// keeps its records in memory only.
func (e *env) startKbroker(name, addr, dataDir string) (*testproc.Proc, string) {
	e.t.Helper()
	args := []string{"-addr", addr, "-topic", strings.Join(e.topics, ","), "-partitions", "3"}
	if dataDir != "" {
		args = append(args, "-data-dir", dataDir)
	}
	return testproc.StartKbroker(e.t, name, filepath.Join(e.dir, name+".log"), bin.Kbroker, args...)
}

// stopBroker stops the broker with SIGTERM and waits for it to exit.
func (e *env) stopBroker() {
	e.t.Helper()
	e.broker.Signal(e.t, syscall.SIGTERM)
	select {
	case <-e.broker.Done:
	case <-time.After(10 * time.Second):
		e.t.Fatal("kbroker did not exit within 10s of SIGTERM")
	}
}

// caddyConfig is what changes between the configs a test loads.
type caddyConfig struct {
	Topic string
	// Brokers replaces the test's broker, host:port[,host:port...].
	Brokers string
	// SiteExtra is added to the site block, before the routes.
	SiteExtra string
	// CollectExtra is added inside b2s_collect's block.
	CollectExtra string
}

var caddyfileTmpl = template.Must(template.New("Caddyfile").Parse(`{
	admin {{.AdminAddr}}
	default_bind 127.0.0.1
	persist_config off
	servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
		client_ip_headers X-Forwarded-For
	}
	b2s {
		secret {{.Current}} {{.Older}}
		geoip {{.GeoIP}}
		spool {{.Spool}}
{{- if .SpoolMaxSize}}
		spool_max_size {{.SpoolMaxSize}}
{{- end}}
{{- if .Fsync}}
		fsync {{.Fsync}}
{{- end}}
{{- if .ClientLimit}}
		{{.ClientLimit}}
{{- end}}
		kafka {
			brokers {{.Broker}}
			topic {{.Topic}}
{{- if .FlushTimeout}}
			flush_timeout {{.FlushTimeout}}
{{- end}}
		}
	}
}

http://{{.SiteAddr}} {
	b2s_health /healthz {
		max_lag 1m
	}
	b2s_collect{{if .CollectExtra}} {
		{{.CollectExtra}}
	}{{end}}
{{if .SiteExtra}}	{{.SiteExtra}}
{{end}}	handle /down/* {
		reverse_proxy {{.DeadAddr}}
	}
	handle {
		reverse_proxy {{.Upstream}} {
			header_up X-B2S-Cookie-ID {http.vars.b2s.cookie_id}
			header_up X-B2S-Event-ID {http.vars.b2s.event_id}
		}
	}
}
`))

func (e *env) writeCaddyfile(c caddyConfig) {
	e.t.Helper()
	var b bytes.Buffer
	brokers := c.Brokers
	if brokers == "" {
		brokers = e.brokerAddr
	}
	err := caddyfileTmpl.Execute(&b, map[string]any{
		"AdminAddr": e.adminAddr, "SiteAddr": e.siteAddr, "Current": string(currentKey), "Older": string(olderKey),
		"GeoIP": e.geoPath, "Spool": e.spoolDir, "SpoolMaxSize": e.opts.spoolMaxSize, "Fsync": e.opts.fsync, "ClientLimit": e.opts.clientLimit,
		"Broker": brokers, "Topic": c.Topic, "FlushTimeout": e.opts.flushTimeout, "SiteExtra": c.SiteExtra,
		"CollectExtra": c.CollectExtra, "DeadAddr": e.deadAddr, "Upstream": e.up.srv.Listener.Addr().String(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.caddyfile, b.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) caddyEnv() []string {
	return []string{"HOME=" + e.dir, "XDG_DATA_HOME=" + e.dir, "XDG_CONFIG_HOME=" + e.dir}
}

// startCaddy runs the edge on the Caddyfile and waits until both the admin
// endpoint and the site accept connections. It sends no request to the
// site, which would make a record.
func (e *env) startCaddy() {
	t := e.t
	t.Helper()
	e.caddy = testproc.Start(t, "caddy", filepath.Join(e.dir, "caddy.log"), e.caddyEnv(),
		bin.Caddy, "run", "--config", e.caddyfile, "--adapter", "caddyfile")
	e.caddy.WaitReady(t, 20*time.Second, func() error {
		if !testproc.AdminReady(e.adminAddr) {
			return errors.New("the admin endpoint does not answer")
		}
		c, err := net.DialTimeout("tcp", e.siteAddr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// reload loads the Caddyfile as it is now with `caddy reload`.
func (e *env) reload() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.Caddy, "reload", "--config", e.caddyfile, "--adapter", "caddyfile", "--address", e.adminAddr)
	cmd.Env = append(os.Environ(), e.caddyEnv()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("caddy reload: %v\n%s", err, out)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Requests

type reply struct {
	status     int
	header     http.Header
	body       []byte
	sent, done time.Time // when the client started the request and had the whole response
}

type reqOptions struct {
	header http.Header
	from   string // local IP to connect from
	body   []byte
}

type reqOpt func(*reqOptions)

func withHeader(k, v string) reqOpt {
	return func(o *reqOptions) { o.header.Add(k, v) }
}

// withBody sends body with the Content-Type ctype.
func withBody(ctype, body string) reqOpt {
	return func(o *reqOptions) { o.header.Set("Content-Type", ctype); o.body = []byte(body) }
}

// withCookie sends the raw Cookie header value h.
func withCookie(h string) reqOpt { return withHeader("Cookie", h) }

func fromIP(ip string) reqOpt { return func(o *reqOptions) { o.from = ip } }

// request sends method target (a path with a raw query, sent as is) to the
// edge and counts the record it should make.
func (e *env) request(t *testing.T, method, target string, opts ...reqOpt) *reply {
	t.Helper()
	r, err := e.tryRequest(method, target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) tryRequest(method, target string, opts ...reqOpt) (*reply, error) {
	o := reqOptions{header: http.Header{}}
	for _, f := range opts {
		f(&o)
	}
	path, rawQuery, _ := strings.Cut(target, "?")
	var body io.Reader
	if o.body != nil {
		body = bytes.NewReader(o.body)
	}
	req, err := http.NewRequest(method, "http://"+e.siteAddr+"/", body)
	if err != nil {
		return nil, err
	}
	req.URL.Path, req.URL.RawQuery = path, rawQuery
	for k, vs := range o.header {
		req.Header[k] = vs
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "b2s-e2e/1")
	}
	client := e.client
	if o.from != "" {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.from)}}
		tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true, DisableCompression: true}
		client = &http.Client{Transport: tr, Timeout: 15 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	r := &reply{sent: time.Now()}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	r.body, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", method, target, err)
	}
	r.done = time.Now()
	r.status, r.header = resp.StatusCode, resp.Header
	e.count(method, path, r.status)
	return r, nil
}

// rawRequest writes a GET request line byte for byte, for queries no HTTP
// client would send (raw invalid UTF-8).
func (e *env) rawRequest(t *testing.T, target string, headers ...string) *reply {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.siteAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\nHost: " + e.siteAddr + "\r\nUser-Agent: b2s-e2e/1\r\nConnection: close\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	r := &reply{sent: time.Now()}
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("raw GET %q: %v", target, err)
	}
	defer resp.Body.Close()
	if r.body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	r.done = time.Now()
	r.status, r.header = resp.StatusCode, resp.Header
	path, _, _ := strings.Cut(target, "?")
	e.count(http.MethodGet, path, http.StatusOK)
	return r
}

// count tallies the record a request should make: every request is a page
// record except the beacon, which records GET and HEAD only.
func (e *env) count(method, path string, status int) {
	switch {
	case strings.HasPrefix(path, mailPathPrefix) && !(strings.HasPrefix(path, mailPathPrefix+"unsubscribe/") && (method == http.MethodGet || method == http.MethodHead)):
		e.mails.Add(1) // an unsubscribe's GET only asks: a page
	case path != beaconPath:
		e.pages.Add(1)
	case method == http.MethodGet || method == http.MethodHead,
		method == http.MethodPost && status == http.StatusNoContent: // not a 413
		e.beacons.Add(1)
	}
}

// issuedCookie returns the cookie the edge set on r, after checking its
// attributes and verifying its signature with the current key, or "" when
// it set none.
func issuedCookie(t *testing.T, r *reply) (value, id string, issued time.Time) {
	t.Helper()
	lines := r.header.Values("Set-Cookie")
	if len(lines) == 0 {
		return "", "", time.Time{}
	}
	if len(lines) > 1 {
		t.Errorf("%d Set-Cookie headers, want one: %q", len(lines), lines)
	}
	parts := strings.Split(lines[0], "; ")
	name, value, _ := strings.Cut(parts[0], "=")
	if name != cookieName {
		t.Errorf("Set-Cookie %q sets %q, want %q", lines[0], name, cookieName)
	}
	attrs := append([]string(nil), parts[1:]...)
	sort.Strings(attrs)
	want := []string{"HttpOnly", "Max-Age=" + strconv.Itoa(cookieMaxAge), "Path=/", "SameSite=Lax"}
	if strings.Join(attrs, "; ") != strings.Join(want, "; ") {
		t.Errorf("Set-Cookie attributes %q, want exactly %q (no Secure over http, no Domain)", attrs, want)
	}
	id, issued, ok := verifyCookie(value, currentKey)
	if !ok {
		// Errorf, not Fatalf: this runs on request goroutines too.
		t.Errorf("Set-Cookie value %q does not verify with the current key", value)
		return "", "", time.Time{}
	}
	if issued.Before(r.sent.Truncate(time.Second)) || issued.After(r.done) {
		t.Errorf("cookie issued at %v, outside the request's window %v..%v", issued, r.sent, r.done)
	}
	return value, id, issued
}

// signCookie builds a cookie value the way the edge documents it
// (beacon/cookie.go), independently of its code:
// 1.<id>.<issued, 8 hex>.<base64url of the first 16 bytes of HMAC-SHA256>.
func signCookie(key []byte, id string, issued time.Time) string {
	msg := fmt.Sprintf("1.%s.%08x", id, uint32(issued.Unix()))
	return msg + "." + mac(key, msg)
}

func mac(key []byte, msg string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

var cookieRe = regexp.MustCompile(`^1\.([0-9a-f]{32})\.([0-9a-f]{8})\.([A-Za-z0-9_-]{22})$`)

func verifyCookie(value string, key []byte) (id string, issued time.Time, ok bool) {
	m := cookieRe.FindStringSubmatch(value)
	if m == nil || !hmac.Equal([]byte(m[3]), []byte(mac(key, value[:len(value)-23]))) {
		return "", time.Time{}, false
	}
	sec, _ := strconv.ParseUint(m[2], 16, 32)
	return m[1], time.Unix(int64(sec), 0), true
}

// ---------------------------------------------------------------------------
// Records, read back with kcat

// geoRec is a record's geo object, printed as its JSON.
type geoRec testrecord.Geo

func (g *geoRec) String() string {
	if g == nil {
		return "<absent>"
	}
	b, _ := json.Marshal(g)
	return string(b)
}

type record struct {
	testrecord.Record

	time      time.Time
	fields    map[string]json.RawMessage
	broker    string
	topic     string
	partition int
	offset    int64
	key       string
	raw       []byte
}

func (r *record) has(field string) bool { _, ok := r.fields[field]; return ok }

// marker is the scenario marker of the request that made r: the t query
// parameter of a page's URL, or the beacon's t parameter.
func (r *record) marker() string {
	if r.Kind == "beacon" {
		return r.Params["t"]
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return ""
	}
	return u.Query().Get("t")
}

// suiteEvents holds every event_id read in the whole run, with where it
// was read, to prove that no two records share one.
var suiteEvents = struct {
	sync.Mutex
	at map[string]string
}{at: map[string]string{}}

// readTopic reads every record of topic with kcat. Each record is checked
// once, the first time it is read (see checkRecord).
func (e *env) readTopic(topic string) ([]*record, error) {
	return e.readTopicAt(e.brokerAddr, topic)
}

// readTopicAt reads every record of topic from the broker at addr.
func (e *env) readTopicAt(addr, topic string) ([]*record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", "-b", addr, "-t", topic, "-C", "-o", "beginning", "-e", "-q",
		// librdkafka waits up to 500ms for each empty fetch by default.
		"-X", "fetch.wait.max.ms=10", "-f", `%p\t%o\t%k\t%s\n`)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kcat: %v: %s", err, stderr.Bytes())
	}
	var recs []*record
	for line := range bytes.SplitSeq(out, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		f := bytes.SplitN(line, []byte("\t"), 4)
		if len(f) != 4 {
			e.t.Errorf("kcat printed a line that is not partition, offset, key and value: %q", line)
			continue
		}
		p, _ := strconv.Atoi(string(f[0]))
		o, _ := strconv.ParseInt(string(f[1]), 10, 64)
		recs = append(recs, e.checkRecord(addr, topic, p, o, string(f[2]), f[3]))
	}
	return recs, nil
}

// checkRecord checks what every record must satisfy: valid UTF-8 JSON
// without duplicate keys that passes the published schema, a suite-wide
// unique event_id, a ts inside the test's time window, and the cookie ID
// as its Kafka key.
func (e *env) checkRecord(broker, topic string, partition int, offset int64, key string, value []byte) *record {
	t := e.t
	loc := fmt.Sprintf("%s/%s/%d/%d", broker, topic, partition, offset)
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.checked[loc]; r != nil {
		return r
	}
	r := &record{broker: broker, topic: topic, partition: partition, offset: offset, key: key, raw: append([]byte(nil), value...)}
	e.checked[loc] = r
	if !utf8.Valid(value) {
		t.Errorf("record %s is not valid UTF-8: %q", loc, value)
	}
	if err := recordschema.Validate(value); err != nil {
		t.Errorf("record %s: %v", loc, err)
	}
	if err := recordschema.NoDuplicateKeys(value); err != nil {
		t.Errorf("record %s: %v", loc, err)
	}
	if err := json.Unmarshal(value, &r.fields); err != nil {
		t.Errorf("record %s is not a JSON object: %v: %s", loc, err, value)
		return r
	}
	if err := json.Unmarshal(value, r); err != nil {
		t.Errorf("record %s: %v: %s", loc, err, value)
	}
	ts, err := time.Parse(time.RFC3339Nano, r.TS)
	if err != nil {
		t.Errorf("record %s: ts %q: %v", loc, r.TS, err)
	}
	r.time = ts
	if now := time.Now(); ts.Before(e.start.Truncate(time.Microsecond)) || ts.After(now) {
		t.Errorf("record %s: ts %s is outside the test's window %s..%s", loc, r.TS,
			e.start.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	// A UUIDv7 starts with the Unix milliseconds; the edge takes both
	// from one clock reading.
	if ms := fmt.Sprintf("%012x", ts.UnixMilli()); len(r.EventID) < 13 || strings.ReplaceAll(r.EventID, "-", "")[:12] != ms {
		t.Errorf("record %s: event_id %s does not carry the milliseconds of ts %s (%s)", loc, r.EventID, r.TS, ms)
	}
	switch r.Kind {
	case "open", "click", "unsubscribe":
		// A recipient's mail events are keyed by the member, when named.
		if key != r.MemberID || r.CookieID != "" {
			t.Errorf("record %s: Kafka key %q with cookie_id %q, want the record's member_id %q and no cookie", loc, key, r.CookieID, r.MemberID)
		}
	default:
		// The unsubscribe's GET (a page) makes no visitor: it only asks;
		// nor does a record whose consent is not full (no cookie_id, no
		// key).
		identified := r.Consent == "" || r.Consent == "full"
		if (r.CookieID == "" && identified && !strings.Contains(r.URL, mailPathPrefix+"unsubscribe")) || key != r.CookieID {
			t.Errorf("record %s: Kafka key %q, want the record's cookie_id %q", loc, key, r.CookieID)
		}
	}
	suiteEvents.Lock()
	// A fault test may see a record twice (shipped, then the edge died
	// before saving its cursor); it reports them (see reconcile).
	if prev, ok := suiteEvents.at[r.EventID]; ok && prev != loc && !e.opts.faults {
		t.Errorf("event_id %s is in two records: %s and %s", r.EventID, prev, loc)
	}
	suiteEvents.at[r.EventID] = loc
	suiteEvents.Unlock()
	return r
}

// records waits until topic holds a record for every marker and returns
// them by marker. A marker with more than one record is an error: a
// record was duplicated, or a scenario reused a marker.
func (e *env) records(t *testing.T, topic string, markers ...string) map[string]*record {
	t.Helper()
	deadline := time.Now().Add(recordWait)
	for {
		recs, err := e.readTopic(topic)
		got := map[string][]*record{}
		for _, r := range recs {
			got[r.marker()] = append(got[r.marker()], r)
		}
		var missing []string
		for _, m := range markers {
			if len(got[m]) == 0 {
				missing = append(missing, m)
			}
		}
		if err == nil && len(missing) == 0 {
			out := map[string]*record{}
			for _, m := range markers {
				if len(got[m]) > 1 {
					t.Errorf("%d records for marker %q in %s, want one:\n%s", len(got[m]), m, topic, rawOf(got[m]))
				}
				out[m] = got[m][0]
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s lacks records for %d of %d markers %q (it holds %d records; last read error: %v)",
				recordWait, topic, len(missing), len(markers), firstN(missing, 10), len(recs), err)
		}
		time.Sleep(pollEvery)
	}
}

// record waits for the one record of marker in the test's topic.
func (e *env) record(t *testing.T, marker string) *record {
	t.Helper()
	return e.records(t, e.topic, marker)[marker]
}

func rawOf(rs []*record) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s/%d/%d %s\n", r.topic, r.partition, r.offset, r.raw)
	}
	return b.String()
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// want is the expected content of one record. Every field is compared.
type want struct {
	kind        string
	method      string
	url         string
	referrer    string
	userAgent   string // default b2s-e2e/1
	ip          string // default 127.0.0.1
	cookieID    string
	cookieState string
	status      int
	bytes       int64
	event       string  // "" means absent
	bot         string  // "" means absent, but see expect
	geo         *geoRec // nil means absent
	params      map[string]string
}

// expect compares every field of r with w, and r's ts with the window of
// the request that made it.
func (e *env) expect(t *testing.T, r *record, resp *reply, w want) {
	t.Helper()
	if w.userAgent == "" {
		w.userAgent = "b2s-e2e/1"
	}
	if w.ip == "" {
		w.ip = "127.0.0.1"
	}
	if w.kind == "beacon" && w.url == "" && w.bot == "" {
		// A beacon that names no page (no u, no Referer) from a client
		// not otherwise flagged, as b2s-e2e/1 is not, is flagged.
		w.bot = "beacon_without_page"
	}
	str := func(field, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("record %s = %q, want %q\n%s", field, got, want, r.raw)
		}
	}
	if r.Schema != 1 {
		t.Errorf("record schema = %d, want 1", r.Schema)
	}
	str("kind", r.Kind, w.kind)
	str("host", r.Host, e.siteAddr)
	str("ip", r.IP, w.ip)
	str("method", r.Method, w.method)
	str("url", r.URL, w.url)
	str("referrer", r.Referrer, w.referrer)
	str("user_agent", r.UserAgent, w.userAgent)
	str("cookie_id", r.CookieID, w.cookieID)
	str("cookie_state", r.CookieState, w.cookieState)
	str("event", r.Event, w.event)
	if w.event == "" && r.has("event") {
		t.Errorf("record has an event, want none: %s", r.raw)
	}
	str("bot", r.Bot, w.bot)
	if w.bot == "" && r.has("bot") {
		t.Errorf("record has a bot flag, want none: %s", r.raw)
	}
	if r.Status != w.status {
		t.Errorf("record status = %d, want %d", r.Status, w.status)
	}
	if r.Bytes != w.bytes {
		t.Errorf("record bytes = %d, want %d", r.Bytes, w.bytes)
	}
	if g := (*geoRec)(r.Geo); g.String() != w.geo.String() {
		t.Errorf("record geo = %s, want %s", g, w.geo)
	}
	if w.params != nil {
		gotP, _ := json.Marshal(r.Params)
		wantP, _ := json.Marshal(w.params)
		if !bytes.Equal(gotP, wantP) {
			t.Errorf("record params = %s, want %s", gotP, wantP)
		}
	}
	if (w.kind == "beacon") != r.has("params") {
		t.Errorf("record of kind %s has params: %v, want them on beacons only", r.Kind, r.has("params"))
	}
	if resp != nil && (r.time.Before(resp.sent.Truncate(time.Microsecond)) || r.time.After(resp.done)) {
		t.Errorf("record ts %s is outside its request's window %s..%s", r.TS,
			resp.sent.UTC().Format(time.RFC3339Nano), resp.done.UTC().Format(time.RFC3339Nano))
	}
}

// ---------------------------------------------------------------------------
// Metrics

// metrics reads the admin endpoint's Prometheus metrics, by series name
// with labels as exposed, e.g. b2s_records_total{kind="page"}.
func (e *env) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitMetrics polls the metrics until every series in want has its value,
// and returns the last read.
func (e *env) waitMetrics(t *testing.T, want map[string]float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := e.metrics(t)
		var diff []string
		for k, v := range want {
			got, ok := m[k]
			if !ok || math.Abs(got-v) > 1e-9 {
				diff = append(diff, fmt.Sprintf("%s = %v (present %v), want %v", k, got, ok, v))
			}
		}
		if len(diff) == 0 {
			return m
		}
		if time.Now().After(deadline) {
			sort.Strings(diff)
			t.Errorf("metrics after 15s:\n  %s", strings.Join(diff, "\n  "))
			return m
		}
		time.Sleep(pollEvery)
	}
}

// checkCounters compares the edge's record counters with the records the
// test's requests should have made; nothing may be dropped, and the
// shipper must have caught up.
func (e *env) checkCounters() {
	t := e.t
	p, b, ml := float64(e.pages.Load()), float64(e.beacons.Load()), float64(e.mails.Load())
	if e.caddy.Exited() {
		return
	}
	m := e.waitMetrics(t, map[string]float64{
		`b2s_records_total{kind="page"}`:                  p,
		`b2s_records_total{kind="beacon"}`:                b,
		`b2s_records_spooled_total`:                       p + b + ml,
		`b2s_records_shipped_total`:                       p + b + ml,
		`b2s_records_dropped_total{reason="spool_full"}`:  0,
		`b2s_records_dropped_total{reason="spool_error"}`: 0,
		`b2s_spool_repairs_total`:                         0,
		`b2s_shipper_lag_seconds`:                         0,
		`b2s_sink_degraded`:                               0,
	})
	if n, ok := m[`b2s_spool_bytes`]; !ok || n <= 0 || n > m[`b2s_spool_max_bytes`] {
		t.Errorf("b2s_spool_bytes = %v (present %v), want between 1 and b2s_spool_max_bytes %v", n, ok, m[`b2s_spool_max_bytes`])
	}
}

// healthReport is b2s_health's JSON answer.
type healthReport struct {
	Status     string   `json:"status"`
	Reasons    []string `json:"reasons"`
	LagSeconds float64  `json:"lag_seconds"`
	SpoolBytes int64    `json:"spool_bytes"`
}

// health asks the site's b2s_health handler (/healthz) how the sink is.
// It makes no record, so it bypasses the request counters.
func (e *env) health(t *testing.T) (int, healthReport) {
	t.Helper()
	resp, err := e.client.Get("http://" + e.siteAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep healthReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Errorf("health answer %s is not JSON: %v", resp.Status, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("health Content-Type %q, want application/json", ct)
	}
	if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("health answer sets a cookie: %q", sc)
	}
	return resp.StatusCode, rep
}

// mountTmpfs mounts a tmpfs of size on dir until the test ends. It needs
// root, as `make test` and CI have.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("mounting a %s tmpfs for the spool needs root: run the test as root", size)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting the tmpfs on %s: %v: %s", dir, err, out)
		}
	})
}
