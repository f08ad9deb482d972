package caddymodule

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"image/gif"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/internal/recordschema"
	"github.com/b2scom/b2s-edge/internal/testrecord"
)

// The ports of the in-process Caddy that caddytest starts. They are taken
// from the OS once per test binary (caddytest can start Caddy only once per
// process), so that this package never clashes with another Caddy or with
// other test binaries running at the same time.
var (
	portsOnce                      sync.Once
	adminPort, httpPort, httpsPort int
)

func testPorts(t *testing.T) (admin, http, https int) {
	t.Helper()
	portsOnce.Do(func() {
		var ls []net.Listener
		for range 3 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("finding a free port: %v", err)
			}
			ls = append(ls, l)
		}
		adminPort, httpPort, httpsPort = ls[0].Addr().(*net.TCPAddr).Port, ls[1].Addr().(*net.TCPAddr).Port, ls[2].Addr().(*net.TCPAddr).Port
		for _, l := range ls {
			l.Close()
		}
	})
	if adminPort == 0 {
		t.Fatal("no ports")
	}
	return adminPort, httpPort, httpsPort
}

// edgeGlobals are the global options of every Caddyfile that loadEdge
// loads into the in-process Caddy. Markers __X__ are replaced.
const edgeGlobals = `{
	admin localhost:__ADMIN__
	http_port __HTTP__
	https_port __HTTPS__
	grace_period 1ns
	storage file_system __STORAGE__
	__GLOBAL_OPTIONS__
	b2s {
		secret __KEYS__
		spool __SPOOL__
		__B2S_OPTIONS__
		kafka {
			brokers __BROKERS__
			topic __TOPIC__
			__KAFKA_OPTIONS__
		}
	}
}

`

// edgeConfig is a Caddyfile for loadEdge: edgeGlobals with what the
// fields add, then the sites. In every field, __HTTP__ and __HTTPS__ are
// the ports of testPorts, and loadEdge's replace pairs replace markers of
// the test's own.
type edgeConfig struct {
	global string   // global options added: certificates, servers
	keys   []string // the b2s secret keys; testKey1 when none
	b2s    string   // options of the b2s app added
	kafka  string   // options of its kafka block added
	sites  string
}

// collectConfig is the site under test.
var collectConfig = edgeConfig{
	global: `local_certs
	skip_install_trust
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Forwarded-For
	}`,
	keys: []string{testKey1, testKey2},
	b2s: `geoip __GEOIP__
		geoip_asn __GEOIP_ASN__
		geoip_anonymous __GEOIP_ANONYMOUS__`,
	kafka: "flush_timeout 5s",
	sites: `http://localhost:__HTTP__ {
	b2s_collect
	header X-B2S-Cookie-ID {http.vars.b2s.cookie_id}
	header X-B2S-Cookie-State {http.vars.b2s.cookie_state}
	handle /cached {
		reverse_proxy __BACKEND__
	}
	handle /fail {
		error 503
	}
	handle /empty {
		vars nothing written
	}
	handle /abort {
		reverse_proxy __BACKEND__
	}
	handle /ws {
		reverse_proxy __BACKEND__
	}
	handle {
		respond "{http.vars.b2s.cookie_id}"
	}
}

http://shop.b2s.test:__HTTP__ {
	b2s_collect /shop/* {
		beacon /shop/p.gif
		cookie_domain .B2S.test
	}
	error /shop/fail 503
	respond "shop"
	handle_errors {
		header Cache-Control "public, max-age=60"
		respond "shop error"
	}
}

https://secure.b2s.test:__HTTPS__ {
	b2s_collect
	respond "secure"
}
`,
}

// edge is a running Caddy with the b2s plugin in front of a Kafka-protocol
// broker, and what a test needs to talk to both.
type edge struct {
	client  *http.Client
	records *recordReader
	base    string // http://localhost:port
	shop    string // http://shop.b2s.test:port
	port    int    // of base and shop
	secure  string // https://secure.b2s.test:port
	admin   string // http://localhost:port
	topic   string
}

// startEdge starts a kfake cluster with topic, an upstream that answers
// with a cacheable page, and Caddy with collectConfig.
func startEdge(t *testing.T, topic string) *edge {
	t.Helper()
	brokers := startKafka(t, topic)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "b2s-test" {
			// Switch protocols, then echo one line.
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: b2s-test\r\n\r\n")
			brw.Flush()
			if line, err := brw.ReadString('\n'); err == nil {
				brw.WriteString(line)
				brw.Flush()
			}
			return
		}
		if r.URL.Path == "/abort" {
			// Promise 100 bytes, send 10, and drop the connection.
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "only ten..")
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "a cacheable page")
	}))
	t.Cleanup(upstream.Close)

	geoip, err := filepath.Abs("testdata/geoip/GeoIP2-City-Test.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	geoipASN, geoipAnonymous := writeEdgeGeoIP(t, t.TempDir())
	e := loadEdge(t, collectConfig, brokers, topic,
		"__GEOIP__", geoip,
		"__GEOIP_ASN__", geoipASN,
		"__GEOIP_ANONYMOUS__", geoipAnonymous,
		"__BACKEND__", strings.TrimPrefix(upstream.URL, "http://"),
	)
	_, _, httpsP := testPorts(t)
	e.shop = fmt.Sprintf("http://shop.b2s.test:%d", e.port)
	e.secure = fmt.Sprintf("https://secure.b2s.test:%d", httpsP)
	e.records = newRecordReader(t, brokers, topic)
	return e
}

// startKafka starts a kfake cluster of one broker with topic in three
// partitions, closed when the test ends, and returns its addresses.
func startKafka(t *testing.T, topic string, opts ...kfake.Opt) []string {
	t.Helper()
	cluster, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, topic)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(cluster.Close)
	return cluster.ListenAddrs()
}

// loadEdge loads c into the in-process Caddy (see loadCaddyfile) with the
// ports of testPorts, new storage and spool directories, and the b2s app
// shipping topic to brokers; replace are pairs of further markers and
// their values. The edge it returns has no record reader.
func loadEdge(t *testing.T, c edgeConfig, brokers []string, topic string, replace ...string) *edge {
	t.Helper()
	admin, httpP, httpsP := testPorts(t)
	keys := c.keys
	if len(keys) == 0 {
		keys = []string{testKey1}
	}
	caddyfile := strings.NewReplacer(
		"__GLOBAL_OPTIONS__", c.global,
		"__B2S_OPTIONS__", c.b2s,
		"__KAFKA_OPTIONS__", c.kafka,
	).Replace(edgeGlobals + c.sites)
	caddyfile = strings.NewReplacer(append([]string{
		"__ADMIN__", strconv.Itoa(admin),
		"__HTTP__", strconv.Itoa(httpP),
		"__HTTPS__", strconv.Itoa(httpsP),
		"__STORAGE__", t.TempDir(),
		"__SPOOL__", t.TempDir(),
		"__KEYS__", strings.Join(keys, " "),
		"__BROKERS__", strings.Join(brokers, " "),
		"__TOPIC__", topic,
	}, replace...)...).Replace(caddyfile)
	loadCaddyfile(t, caddyfile)
	return &edge{
		client: newTestClient(t),
		base:   fmt.Sprintf("http://localhost:%d", httpP),
		admin:  fmt.Sprintf("http://localhost:%d", admin),
		port:   httpP,
		topic:  topic,
	}
}

// loadCaddyfile loads caddyfile, whose admin endpoint must be the one
// testPorts gives, into the in-process Caddy (started on first use), and
// unloads it when the test ends. Call it after starting what the test's
// cleanup must stop last (the broker): cleanups run last in, first out,
// so the b2s app is released and flushes its spool while Kafka is there.
func loadCaddyfile(t *testing.T, caddyfile string) {
	t.Helper()
	admin, _, _ := testPorts(t)
	// Registered before caddytest's own cleanup (which dumps the config of
	// a failed test), so it runs after it.
	t.Cleanup(func() { unload(t, admin) })
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort:          admin,
		LoadRequestTimeout: 30 * time.Second,
		TestRequestTimeout: 10 * time.Second,
	})
	tester.InitServer(caddyfile, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// unload replaces the running config by one that serves only the admin
// endpoint, which releases the b2s app and its spool.
func unload(t *testing.T, admin int) {
	listen := fmt.Sprintf("localhost:%d", admin)
	body := fmt.Sprintf(`{"admin":{"listen":%q}}`, listen)
	req, err := http.NewRequest(http.MethodPost, "http://"+listen+"/load", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Errorf("unloading the test config: %v", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("unloading the test config: %s: %s", resp.Status, b)
	}
}

// newTestClient sends every request to 127.0.0.1 whatever the host name,
// trusts any certificate (Caddy's internal CA), keeps no cookies and does
// not follow redirects.
func newTestClient(t *testing.T) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // Caddy's internal CA
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *edge) do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response to %s %s: %v", req.Method, req.URL, err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

// newRequest builds a request; a header value with newlines is sent as
// several header lines.
func newRequest(t *testing.T, method, url string, header map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		for _, line := range strings.Split(v, "\n") {
			req.Header.Add(k, line)
		}
	}
	return req
}

// edgeRecord is the JSON record, decoded strictly: a field the test does
// not know fails it, so that a schema change is a conscious one. Every
// record read is also checked against configs/record.schema.json.
type (
	edgeRecord = testrecord.Record
	edgeASN    = testrecord.ASN
)

// consumed is one Kafka message as an independent client read it.
type consumed struct {
	key       string
	partition int32
	rec       edgeRecord
}

// probe is the query parameter that ties a request to its record.
func (c consumed) probe() string {
	if p, ok := c.rec.Params["probe"]; ok {
		return p
	}
	if u, err := url.Parse(c.rec.URL); err == nil {
		return u.Query().Get("probe")
	}
	return ""
}

// recordReader reads the topic from the start with franz-go.
type recordReader struct {
	cl  *kgo.Client
	got []consumed
	// starved is set once a record failed to arrive: later waits are
	// short, so that a broken shipper fails the test in seconds, not
	// minutes.
	starved bool
}

func newRecordReader(t *testing.T, brokers []string, topic string) *recordReader {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatalf("starting the kafka consumer: %v", err)
	}
	t.Cleanup(cl.Close)
	return &recordReader{cl: cl}
}

// poll reads what arrives within d.
func (r *recordReader) poll(t *testing.T, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	fs := r.cl.PollFetches(ctx)
	fs.EachError(func(topic string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Errorf("consuming %s/%d: %v", topic, p, err)
		}
	})
	fs.EachRecord(func(m *kgo.Record) {
		if err := recordschema.Validate(m.Value); err != nil {
			t.Errorf("record at %s/%d@%d: %v", m.Topic, m.Partition, m.Offset, err)
		}
		if err := recordschema.NoDuplicateKeys(m.Value); err != nil {
			t.Errorf("record at %s/%d@%d: %v", m.Topic, m.Partition, m.Offset, err)
		}
		dec := json.NewDecoder(bytes.NewReader(m.Value))
		dec.DisallowUnknownFields()
		var rec edgeRecord
		if err := dec.Decode(&rec); err != nil {
			t.Errorf("record at %s/%d@%d is not the expected JSON: %v\n%s", m.Topic, m.Partition, m.Offset, err, m.Value)
			return
		}
		r.got = append(r.got, consumed{key: string(m.Key), partition: m.Partition, rec: rec})
	})
}

// lookFor reads for at most wait and returns the record of probe, if any,
// without failing the test.
func (r *recordReader) lookFor(t *testing.T, probe string, wait time.Duration) (consumed, bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, c := range r.got {
			if c.probe() == probe {
				return c, true
			}
		}
		if time.Now().After(deadline) {
			return consumed{}, false
		}
		r.poll(t, 200*time.Millisecond)
	}
}

// find waits for the record of probe, and checks there is only one.
func (r *recordReader) find(t *testing.T, probe string) consumed {
	t.Helper()
	wait := 15 * time.Second
	if r.starved {
		wait = time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		var found []consumed
		for _, c := range r.got {
			if c.probe() == probe {
				found = append(found, c)
			}
		}
		switch {
		case len(found) == 1:
			return found[0]
		case len(found) > 1:
			t.Fatalf("%d records for probe %q, want one: %+v", len(found), probe, found)
		case time.Now().After(deadline):
			r.starved = true
			t.Fatalf("no record for probe %q within %v (%d records read)", probe, wait, len(r.got))
		}
		r.poll(t, 200*time.Millisecond)
	}
}

// waitCount reads until n records in all have arrived.
func (r *recordReader) waitCount(t *testing.T, n int) {
	t.Helper()
	wait := 15 * time.Second
	if r.starved {
		wait = time.Second
	}
	deadline := time.Now().Add(wait)
	for len(r.got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d records read within %v, want %d", len(r.got), wait, n)
		}
		r.poll(t, 200*time.Millisecond)
	}
}

// Counters of the package, read directly.

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	switch {
	case pb.Counter != nil:
		return pb.Counter.GetValue()
	case pb.Gauge != nil:
		return pb.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", m.Desc())
	return 0
}

var setReasons = []string{"new", "reset", "refresh", "resign"}

type counters struct {
	page, beacon                      float64
	set                               map[string]float64
	accepted, shipped, full, spoolErr uint64
	writes, writeErrors               uint64
}

func readCounters(t *testing.T) counters {
	t.Helper()
	c := counters{
		page:        metricValue(t, recordsPage),
		beacon:      metricValue(t, recordsBcn),
		set:         map[string]float64{},
		accepted:    stats.Accepted.Load(),
		shipped:     stats.Shipped.Load(),
		full:        stats.DroppedFull.Load(),
		spoolErr:    stats.DroppedError.Load(),
		writes:      stats.Writes.Load(),
		writeErrors: stats.WriteErrors.Load(),
	}
	for _, r := range setReasons {
		c.set[r] = metricValue(t, cookiesSet.WithLabelValues(r))
	}
	return c
}

// wantDelta is how the counters must move for one request.
type wantDelta struct {
	page, beacon int
	setReason    string // "" when no cookie is set
}

// checkDelta waits a little for the handler to finish counting after the
// response was read, then compares.
func checkDelta(t *testing.T, before counters, want wantDelta) {
	t.Helper()
	records := want.page + want.beacon
	var after counters
	deadline := time.Now().Add(5 * time.Second)
	for {
		after = readCounters(t)
		if int(after.accepted-before.accepted) >= records && int(after.page-before.page) >= want.page && int(after.beacon-before.beacon) >= want.beacon {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := int(after.page - before.page); d != want.page {
		t.Errorf("b2s_records_total{kind=page} moved by %d, want %d", d, want.page)
	}
	if d := int(after.beacon - before.beacon); d != want.beacon {
		t.Errorf("b2s_records_total{kind=beacon} moved by %d, want %d", d, want.beacon)
	}
	if d := int(after.accepted - before.accepted); d != records {
		t.Errorf("stats.Accepted moved by %d, want %d", d, records)
	}
	for _, r := range setReasons {
		n := 0
		if r == want.setReason {
			n = 1
		}
		if d := int(after.set[r] - before.set[r]); d != n {
			t.Errorf("b2s_cookies_set_total{reason=%s} moved by %d, want %d", r, d, n)
		}
	}
}

// Cookies.

var cookieValueRE = regexp.MustCompile(`^1\.([0-9a-f]{32})\.([0-9a-f]{8})\.([A-Za-z0-9_-]{22})$`)

func signerOf(t *testing.T, keys ...string) *beacon.Signer {
	t.Helper()
	var bs [][]byte
	for _, k := range keys {
		bs = append(bs, []byte(k))
	}
	s, err := beacon.NewSigner(bs...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkSetCookie checks the one Set-Cookie of h: its exact attributes
// (wantTail, which follows the value), the value's layout, that the first
// key signed it just now, and returns the cookie ID.
func checkSetCookie(t *testing.T, h http.Header, wantTail string) string {
	t.Helper()
	sc := h.Values("Set-Cookie")
	if len(sc) != 1 {
		t.Fatalf("Set-Cookie = %q, want one", sc)
	}
	name, rest, _ := strings.Cut(sc[0], "=")
	value, tail, _ := strings.Cut(rest, ";")
	// Over https, without cookie_domain, the name has the __Host- prefix.
	wantName := DefaultCookieName
	if strings.HasSuffix(wantTail, "; Secure") && !strings.Contains(wantTail, "Domain=") {
		wantName = hostPrefix + DefaultCookieName
	}
	if name != wantName {
		t.Errorf("cookie name = %q, want %q", name, wantName)
	}
	if ";"+tail != wantTail {
		t.Errorf("cookie attributes = %q, want %q", ";"+tail, wantTail)
	}
	m := cookieValueRE.FindStringSubmatch(value)
	if m == nil {
		t.Fatalf("cookie value %q is not 1.<32 hex>.<8 hex>.<22 base64url>", value)
	}
	c, err := http.ParseSetCookie(sc[0])
	if err != nil {
		t.Fatalf("net/http cannot parse Set-Cookie %q: %v", sc[0], err)
	}
	if c.Value != value || c.Path != "/" || c.MaxAge != 34560000 || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("parsed cookie = %+v; want value %q, Path=/, Max-Age=34560000 (400 days), HttpOnly, SameSite=Lax", c, value)
	}
	v, ok := signerOf(t, testKey1).Verify(value)
	if !ok {
		t.Fatalf("cookie value %q does not verify with the first key", value)
	}
	if d := time.Since(v.Issued); d < -time.Minute || d > time.Minute {
		t.Errorf("cookie issued at %v, want about now", v.Issued)
	}
	return m[1]
}

// checkKafkaMessage checks the message key and its partition: kafka-go's
// Murmur2Balancer must agree with the Java client's partitioner, which
// franz-go reproduces.
func checkKafkaMessage(t *testing.T, c consumed) {
	t.Helper()
	if c.key != c.rec.CookieID {
		t.Errorf("message key = %q, want the cookie_id %q", c.key, c.rec.CookieID)
	}
	want := kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: []byte(c.key)}, 3)
	if int(c.partition) != want {
		t.Errorf("record with key %q is in partition %d, want %d as the Java client would put it", c.key, c.partition, want)
	}
	if c.rec.Schema != beacon.SchemaVersion {
		t.Errorf("schema = %d, want %d", c.rec.Schema, beacon.SchemaVersion)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(c.rec.EventID) {
		t.Errorf("event_id %q is not a UUIDv7", c.rec.EventID)
	}
	if ts, err := time.Parse(time.RFC3339Nano, c.rec.TS); err != nil {
		t.Errorf("ts %q: %v", c.rec.TS, err)
	} else if d := time.Since(ts); d < -time.Minute || d > time.Minute {
		t.Errorf("ts = %v, want about now", c.rec.TS)
	}
}

// recordsEqual compares records without their params, which pages do
// not have.
func recordsEqual(a, b edgeRecord) bool {
	a.Params, b.Params = nil, nil
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

// checkPixel checks the beacon's answer: a 43-byte transparent 1x1 GIF
// that no cache keeps.
func checkPixel(t *testing.T, method string, resp response) {
	t.Helper()
	h := resp.header
	for _, c := range []struct{ name, got, want string }{
		{"Content-Type", h.Get("Content-Type"), "image/gif"},
		{"Content-Length", h.Get("Content-Length"), "43"},
		{"Pragma", h.Get("Pragma"), "no-cache"},
		{"X-Content-Type-Options", h.Get("X-Content-Type-Options"), "nosniff"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if cc := h.Get("Cache-Control"); !strings.Contains(cc, "no-store") || strings.Contains(cc, "private") {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	if method == http.MethodHead {
		if len(resp.body) != 0 {
			t.Errorf("HEAD body = %d bytes, want none", len(resp.body))
		}
		return
	}
	if len(resp.body) != 43 {
		t.Fatalf("body = %d bytes, want 43", len(resp.body))
	}
	if ct := http.DetectContentType(resp.body); ct != "image/gif" {
		t.Errorf("body sniffs as %q, want image/gif", ct)
	}
	img, err := gif.Decode(bytes.NewReader(resp.body))
	if err != nil {
		t.Fatalf("body is not a GIF: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Errorf("GIF is %dx%d, want 1x1", b.Dx(), b.Dy())
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Errorf("the pixel has alpha %d, want transparent", a)
	}
}

// scrape fetches a Prometheus text exposition.
func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s %v", url, resp.Status, err)
	}
	return body
}

// scrapeMetrics reads a Prometheus text exposition into series -> value.
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	body := scrape(t, url)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
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
	return out
}

// scrapeHelp reads the HELP lines of a Prometheus text exposition into
// metric name -> help text.
func scrapeHelp(t *testing.T, url string) map[string]string {
	t.Helper()
	body := scrape(t, url)
	out := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, "# HELP ")
		if !ok {
			continue
		}
		name, help, _ := strings.Cut(rest, " ")
		out[name] = help
	}
	return out
}
