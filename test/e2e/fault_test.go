package e2e

// Fault tests of the durable spool: the broker stops, the edge is killed,
// reloaded, starved of disk or stopped while Kafka is away, and its spool
// is damaged. Each test sends beacons with a unique marker (t=<prefix>-<n>)
// from a few concurrent workers, counts as accepted those answered 200
// with the pixel, reads every topic back with kcat and reconciles: an
// accepted marker found in no record is lost, and nothing may be lost.
// Records that reach Kafka twice (a broker stopped after it stored a batch
// and before it acknowledged it, or the edge died after Kafka acknowledged
// a batch and before it saved its cursor) are allowed by the at-least-once
// design and reported in the log; a reload alone must never cause one.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Load

type loadOptions struct {
	workers int           // concurrent clients; default 4
	pause   time.Duration // between two requests of one worker
	max     int           // requests in all; 0 means until halted
	query   string        // appended to every beacon's query
	// from is the client address of every request (X-Forwarded-For, which
	// the edge trusts from loopback); "" gives each request an address
	// of its own, as the many visitors a load stands for have.
	from string
}

// sentBeacon is a beacon that was answered 200 with the pixel.
type sentBeacon struct {
	marker     string
	sent, done time.Time
}

type loadErr struct {
	at  time.Time
	err error
}

// load sends beacons from concurrent workers until halted or max is
// reached, and keeps what each got.
type load struct {
	e      *env
	prefix string
	o      loadOptions
	seq    atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup

	mu         sync.Mutex
	accepted   []sentBeacon
	statuses   map[int]int // responses by status, pixel or not
	notPixel   int         // 200s whose body was not the pixel
	errs       []loadErr   // requests that got no response
	maxLatency time.Duration
}

func (e *env) startLoad(prefix string, o loadOptions) *load {
	if o.workers == 0 {
		o.workers = 4
	}
	l := &load{e: e, prefix: prefix, o: o, stop: make(chan struct{}), statuses: map[int]int{}}
	for range o.workers {
		l.wg.Go(l.work)
	}
	return l
}

func (l *load) work() {
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		n := l.seq.Add(1)
		if l.o.max > 0 && n > int64(l.o.max) {
			return
		}
		m := fmt.Sprintf("%s-%06d", l.prefix, n)
		from := l.o.from
		if from == "" {
			from = clientAddr(n)
		}
		r, err := l.e.tryRequest("GET", beaconPath+"?t="+m+l.o.query, withHeader("X-Forwarded-For", from))
		l.mu.Lock()
		if err != nil {
			l.errs = append(l.errs, loadErr{time.Now(), err})
		} else {
			l.statuses[r.status]++
			l.maxLatency = max(l.maxLatency, r.done.Sub(r.sent))
			switch {
			case r.status != http.StatusOK:
			case len(r.body) != pixelLen || r.header.Get("Content-Type") != "image/gif":
				l.notPixel++
			default:
				l.accepted = append(l.accepted, sentBeacon{m, r.sent, r.done})
			}
		}
		l.mu.Unlock()
		pause := l.o.pause
		if err != nil {
			pause = 20 * time.Millisecond // the edge is down: do not spin
		}
		if pause > 0 {
			select {
			case <-l.stop:
				return
			case <-time.After(pause):
			}
		}
	}
}

// clientAddr is the n-th address of 198.18.0.0/15, the range set aside
// for benchmarks (RFC 2544): only ever a header value here.
func clientAddr(n int64) string {
	return fmt.Sprintf("198.%d.%d.%d", 18+(n>>16)&1, (n>>8)&255, n&255)
}

// halt stops the workers and waits for them. It is safe to call twice.
func (l *load) halt() *load {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	return l
}

// wait waits for a load with a maximum to send all of it.
func (l *load) wait() *load {
	l.wg.Wait()
	return l
}

// answered is how many requests got a response, of any status.
func (l *load) answered() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.statuses {
		n += c
	}
	return n
}

func (l *load) markers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ms := make([]string, len(l.accepted))
	for i, s := range l.accepted {
		ms[i] = s.marker
	}
	return ms
}

// acceptedBetween counts the accepted beacons sent and answered within
// from..to.
func (l *load) acceptedBetween(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.accepted {
		if !s.sent.Before(from) && !s.done.After(to) {
			n++
		}
	}
	return n
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d accepted, statuses %v, %d 200s without the pixel, %d without a response, slowest answer %v",
		len(l.accepted), l.statuses, l.notPixel, len(l.errs), l.maxLatency.Round(time.Millisecond))
}

// checkAnswers fails unless every request was answered 200 with the pixel,
// except that requests may go unanswered within the windows given (the
// edge is down there).
func (l *load) checkAnswers(t *testing.T, downtime ...[2]time.Time) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("load %s: %d accepted, statuses %v, %d without a response, slowest answer %v",
		l.prefix, len(l.accepted), l.statuses, len(l.errs), l.maxLatency.Round(time.Millisecond))
	for status, n := range l.statuses {
		if status != http.StatusOK {
			t.Errorf("%d beacons answered %d, want every answer 200", n, status)
		}
	}
	if l.notPixel > 0 {
		t.Errorf("%d beacons answered 200 without the 43-byte GIF", l.notPixel)
	}
	var outside []loadErr
	for _, e := range l.errs {
		in := false
		for _, w := range downtime {
			in = in || !e.at.Before(w[0]) && !e.at.After(w[1])
		}
		if !in {
			outside = append(outside, e)
		}
	}
	if len(outside) > 0 {
		t.Errorf("%d beacons got no answer while the edge was up, the first at %s: %v",
			len(outside), outside[0].at.Format("15:04:05.000"), outside[0].err)
	}
	if len(l.accepted) == 0 {
		t.Errorf("no beacon was accepted: the load did not run")
	}
}

// ---------------------------------------------------------------------------
// Reconciliation

// source is one topic on one broker.
type source struct{ broker, topic string }

// tally is what the topics hold for the accepted markers.
type tally struct {
	records  int                  // records read with one of the load's markers
	byMarker map[string][]*record // by marker
	bySource map[source]int       // records by where they were read
	dups     int                  // records beyond the first with the same event_id
	lost     []string             // accepted markers found in no record
}

// reconcile reads every source fully and accounts for the accepted
// markers. It re-reads briefly while markers are missing, so call it once
// the shipper has caught up (waitDrained). It fails on a marker recorded
// under two event_ids, which would mean one request made two records; it
// reports duplicates and returns the lost markers for the caller to judge.
func (e *env) reconcile(t *testing.T, srcs []source, accepted []string) tally {
	t.Helper()
	var tl tally
	for attempt := 0; ; attempt++ {
		tl = tally{byMarker: map[string][]*record{}, bySource: map[source]int{}}
		var readErr error
		for _, s := range srcs {
			recs, err := e.readTopicAt(s.broker, s.topic)
			if err != nil {
				readErr = err
				continue
			}
			for _, r := range recs {
				m := r.marker()
				tl.byMarker[m] = append(tl.byMarker[m], r)
				tl.bySource[s]++
				tl.records++
			}
		}
		tl.lost = tl.lost[:0]
		for _, m := range accepted {
			if len(tl.byMarker[m]) == 0 {
				tl.lost = append(tl.lost, m)
			}
		}
		if readErr == nil && len(tl.lost) == 0 || attempt == 4 {
			if readErr != nil {
				t.Errorf("reading the topics: %v", readErr)
			}
			break
		}
		time.Sleep(400 * time.Millisecond)
	}
	var dupMarkers []string
	for m, rs := range tl.byMarker {
		events := map[string]int{}
		for _, r := range rs {
			events[r.EventID]++
		}
		if len(events) > 1 {
			t.Errorf("marker %s is in %d records with %d different event_ids: one request made two records:\n%s",
				m, len(rs), len(events), rawOf(rs))
		}
		for _, n := range events {
			if n > 1 {
				tl.dups += n - 1
				dupMarkers = append(dupMarkers, m)
			}
		}
	}
	sort.Strings(dupMarkers)
	bySource := make([]string, 0, len(tl.bySource))
	for s, n := range tl.bySource {
		bySource = append(bySource, fmt.Sprintf("%s/%s: %d", s.broker, s.topic, n))
	}
	sort.Strings(bySource)
	t.Logf("reconciled %d accepted beacons against %d records (%s): %d lost, %d duplicate records%s",
		len(accepted), tl.records, strings.Join(bySource, ", "), len(tl.lost), tl.dups, listed(dupMarkers))
	return tl
}

func listed(ms []string) string {
	if len(ms) == 0 {
		return ""
	}
	return fmt.Sprintf(" (markers %s)", strings.Join(firstN(ms, 10), " "))
}

// noneLost fails the test for every lost marker.
func (tl tally) noneLost(t *testing.T) {
	t.Helper()
	if len(tl.lost) > 0 {
		t.Errorf("%d accepted beacons are in no record, e.g. %q", len(tl.lost), firstN(tl.lost, 10))
	}
}

// waitDrained waits until the shipper has caught up: nothing in the spool
// is unacknowledged and the last write to Kafka succeeded, on two reads in
// a row. It returns the last metrics.
func (e *env) waitDrained(t *testing.T) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(recordWait)
	ok := 0
	for {
		m := e.metrics(t)
		if m[`b2s_shipper_lag_seconds`] == 0 && m[`b2s_sink_degraded`] == 0 {
			if ok++; ok == 2 {
				return m
			}
		} else {
			ok = 0
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shipper did not catch up within %v: lag %vs, degraded %v, spool %v bytes", recordWait,
				m[`b2s_shipper_lag_seconds`], m[`b2s_sink_degraded`], m[`b2s_spool_bytes`])
		}
		time.Sleep(pollEvery)
	}
}

// waitMetric polls until ok holds for the metrics, or fails after d.
func (e *env) waitMetric(t *testing.T, what string, d time.Duration, ok func(m map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := e.metrics(t)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Processes

// killCaddy kills the edge with SIGKILL: no cleanup runs, the spool is left
// as the last write(2) left it.
func (e *env) killCaddy() {
	e.t.Helper()
	e.caddy.Signal(e.t, syscall.SIGKILL)
	select {
	case <-e.caddy.Done:
	case <-time.After(10 * time.Second):
		e.t.Fatal("caddy did not die within 10s of SIGKILL")
	}
	e.client.CloseIdleConnections()
}

// goroutines reads the edge's goroutine count from the admin API's pprof
// endpoint.
func (e *env) goroutines(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + e.adminAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(b.String(), "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET /debug/pprof/goroutine: %s, first line %q", resp.Status, first)
	}
	return n, b.String()
}

// openFiles counts the edge's open file descriptors.
func (e *env) openFiles(t *testing.T) (int, []string) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", e.caddy.Cmd.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, d := range ents {
		l, _ := os.Readlink(filepath.Join(dir, d.Name()))
		targets = append(targets, l)
	}
	sort.Strings(targets)
	return len(ents), targets
}

// ---------------------------------------------------------------------------
// The spool on disk, read independently of the product's code from the
// format documented in logship/spool.go.

// Segment format 2: a 24-byte header ("B2SSPL2\n", the first record's
// sequence number, a CRC-32C of those 16 bytes, 4 zero bytes), then
// entries of [4] body length, [4] CRC-32C of the next 8 bytes and the
// body, [8] sequence number, [body]; a length with its top bit set is a
// skip entry over damaged bytes, which holds no record.
const (
	segHeader    = "B2SSPL2\n"
	segHeaderLen = 24
	entryHdrLen  = 16
	skipBit      = 1 << 31
)

// spoolEntry is one intact entry of a segment.
type spoolEntry struct {
	off, size int64 // where the entry starts and its length with its header
	seq       uint64
	marker    string
}

// readSegment returns the intact entries of a segment, passing over skip
// entries and stopping at the first short or corrupt one, and the offset
// where they end.
func readSegment(t *testing.T, path string) ([]spoolEntry, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(segHeader)) || len(b) < segHeaderLen {
		t.Fatalf("%s does not start with the segment header %q", path, segHeader)
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	var out []spoolEntry
	off := int64(segHeaderLen)
	for off+entryHdrLen <= int64(len(b)) {
		l := binary.LittleEndian.Uint32(b[off:])
		if l&skipBit != 0 {
			off += entryHdrLen + int64(l&^skipBit)
			continue
		}
		n := int64(l)
		if n < 10 || off+entryHdrLen+n > int64(len(b)) {
			break
		}
		if crc32.Checksum(b[off+8:off+entryHdrLen+n], table) != binary.LittleEndian.Uint32(b[off+4:]) {
			break
		}
		body := b[off+entryHdrLen : off+entryHdrLen+n]
		kl := int64(binary.LittleEndian.Uint16(body[8:]))
		var rec struct {
			Params map[string]string `json:"params"`
		}
		if 10+kl > n || json.Unmarshal(body[10+kl:], &rec) != nil {
			t.Fatalf("%s: entry at %d does not hold a key and a JSON record", path, off)
		}
		out = append(out, spoolEntry{off: off, size: entryHdrLen + n, seq: binary.LittleEndian.Uint64(b[off+8:]), marker: rec.Params["t"]})
		off += entryHdrLen + n
	}
	return out, off
}

// overwrite writes b into the file at off, as a failing disk might.
func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// flipByte inverts the bits of the byte at off.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, path, off, []byte{^b[off]})
}

// within returns the markers of the entries that overlap from..to.
func within(entries []spoolEntry, from, to int64) []string {
	var ms []string
	for _, e := range entries {
		if e.off < to && e.off+e.size > from {
			ms = append(ms, e.marker)
		}
	}
	return ms
}

// segments lists the spool's segment files in order.
func segments(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(segs) // zero-padded numbers sort as strings
	return segs
}

// ---------------------------------------------------------------------------
// The tests

func TestABrokerRestartUnderLoadLosesNoRecord(t *testing.T) {
	e := newEnv(t, envOptions{persistBroker: true, faults: true})
	l := e.startLoad("brk", loadOptions{pause: 2 * time.Millisecond})
	defer l.halt()
	time.Sleep(700 * time.Millisecond)

	e.stopBroker()
	downAt := time.Now()
	m0 := e.waitMetric(t, "degraded after the broker stopped", 10*time.Second, func(m map[string]float64) bool {
		return m[`b2s_sink_degraded`] == 1
	})
	time.Sleep(time.Until(downAt.Add(3 * time.Second)))
	m1 := e.metrics(t)
	upAt := time.Now()
	e.startBroker(e.brokerAddr) // the same port and data directory
	time.Sleep(time.Second)
	l.halt()

	l.checkAnswers(t)
	if l.maxLatency > 2*time.Second {
		t.Errorf("a beacon took %v: the request path waits on Kafka", l.maxLatency)
	}
	if n := l.acceptedBetween(downAt, upAt); n < 50 {
		t.Errorf("only %d beacons were answered while the broker was down, want a steady load", n)
	}
	if m1[`b2s_records_shipped_total`] != m0[`b2s_records_shipped_total`] {
		t.Errorf("shipped went from %v to %v while the broker was down", m0[`b2s_records_shipped_total`], m1[`b2s_records_shipped_total`])
	}
	if m1[`b2s_records_spooled_total`] <= m0[`b2s_records_spooled_total`] || m1[`b2s_spool_bytes`] <= m0[`b2s_spool_bytes`] {
		t.Errorf("while the broker was down, spooled went from %v to %v and the spool from %v to %v bytes: records are not kept",
			m0[`b2s_records_spooled_total`], m1[`b2s_records_spooled_total`], m0[`b2s_spool_bytes`], m1[`b2s_spool_bytes`])
	}
	if lag := m1[`b2s_shipper_lag_seconds`]; lag < 1.5 {
		t.Errorf("shipper lag %vs after 3s of outage, want the age of the oldest waiting record (about 3s)", lag)
	}
	if m1[`b2s_sink_degraded`] != 1 {
		t.Errorf("b2s_sink_degraded = %v during the outage, want 1", m1[`b2s_sink_degraded`])
	}

	m := e.waitDrained(t)
	e.reconcile(t, []source{{e.brokerAddr, e.topic}}, l.markers()).noneLost(t)
	// One process throughout: its counters account for every answer.
	if n := float64(l.answered()); m[`b2s_records_spooled_total`] != n || m[`b2s_records_shipped_total`] < n ||
		m[`b2s_records_dropped_total{reason="spool_full"}`]+m[`b2s_records_dropped_total{reason="spool_error"}`] != 0 {
		t.Errorf("%v beacons answered; spooled %v, shipped %v, dropped %v (full) %v (error)", n,
			m[`b2s_records_spooled_total`], m[`b2s_records_shipped_total`],
			m[`b2s_records_dropped_total{reason="spool_full"}`], m[`b2s_records_dropped_total{reason="spool_error"}`])
	}
}

func TestAnEdgeKilledWhileTheBrokerIsDownShipsEveryAnsweredBeaconAfterItsRestart(t *testing.T) {
	// fsync never: surviving the death of the process rests on write(2)
	// alone; fsync only matters for a power loss.
	e := newEnv(t, envOptions{persistBroker: true, faults: true, fsync: "never"})
	l := e.startLoad("kill", loadOptions{pause: 2 * time.Millisecond})
	defer l.halt()
	time.Sleep(500 * time.Millisecond)
	e.stopBroker()
	downAt := time.Now()
	time.Sleep(time.Second)

	killAt := time.Now()
	e.killCaddy()
	waiting := l.acceptedBetween(downAt, killAt) // none of them can have been shipped
	e.startCaddy()                               // the same Caddyfile, so the same spool directory
	upAt := time.Now()
	m := e.metrics(t)
	// The spool the dead process left is reopened: each record is a few
	// hundred bytes.
	if least := 100 * float64(waiting); waiting == 0 || m[`b2s_spool_bytes`] < least {
		t.Errorf("the restarted edge's spool holds %v bytes, want at least %v for the %d beacons answered after the broker stopped",
			m[`b2s_spool_bytes`], least, waiting)
	}
	t.Logf("after the restart: spool %v bytes, %v repairs", m[`b2s_spool_bytes`], m[`b2s_spool_repairs_total`])
	time.Sleep(time.Second)
	l.halt()
	l.checkAnswers(t, [2]time.Time{killAt, upAt.Add(100 * time.Millisecond)})
	if n := l.acceptedBetween(upAt, time.Now()); n == 0 {
		t.Errorf("no beacon was answered by the restarted edge")
	}

	e.startBroker(e.brokerAddr)
	e.waitDrained(t)
	tl := e.reconcile(t, []source{{e.brokerAddr, e.topic}}, l.markers())
	tl.noneLost(t)
}

func TestRepeatedReloadsUnderLoadLoseNothingAndLeakNothing(t *testing.T) {
	topic2 := "e2e.reload2." + randomID()[:8]
	// faults: the test does its own accounting, since a beacon reset
	// during a reload may or may not have made a record; duplicates are
	// still an error here.
	e := newEnv(t, envOptions{extraTopics: []string{topic2}, faults: true})
	_, broker2 := e.startKbroker("kbroker2", "127.0.0.1:0", "")
	first := e.brokerAddr

	// Warm up, so that connections to the broker exist, then measure.
	e.startLoad("warm", loadOptions{max: 200}).wait().checkAnswers(t)
	e.waitDrained(t)
	settle := func() {
		e.client.CloseIdleConnections()
		time.Sleep(300 * time.Millisecond)
	}
	settle()
	baseG, baseProfile := e.goroutines(t)
	baseF, baseFiles := e.openFiles(t)
	t.Logf("baseline: %d goroutines, %d open files", baseG, baseF)

	l := e.startLoad("rl", loadOptions{pause: 2 * time.Millisecond})
	defer l.halt()
	steps := []struct {
		name string
		cfg  caddyConfig
		want source // where records go once this config is in force
	}{
		{"a site change", caddyConfig{Topic: e.topic, SiteExtra: cfgSite(1)}, source{first, e.topic}},
		{"a topic change", caddyConfig{Topic: topic2, SiteExtra: cfgSite(2)}, source{first, topic2}},
		{"a broker change", caddyConfig{Topic: topic2, Brokers: broker2, SiteExtra: cfgSite(3)}, source{broker2, topic2}},
		{"a topic change on the new broker", caddyConfig{Topic: e.topic, Brokers: broker2, SiteExtra: cfgSite(4)}, source{broker2, e.topic}},
		{"a change back to the first broker", caddyConfig{Topic: e.topic, SiteExtra: cfgSite(5)}, source{first, e.topic}},
		{"another site change", caddyConfig{Topic: e.topic, SiteExtra: cfgSite(6)}, source{first, e.topic}},
	}
	var pages []string
	var reloads [][2]time.Time
	for i, s := range steps {
		time.Sleep(300 * time.Millisecond)
		e.writeCaddyfile(s.cfg)
		start := time.Now()
		if err := e.reload(); err != nil {
			t.Fatalf("reload %d (%s): %v", i+1, s.name, err)
		}
		// The replaced server closes its idle keep-alive connections; a
		// client that reuses one at that moment gets a reset, not an
		// answer (net/http, with or without b2s). Such beacons count as
		// not accepted; any answer that is not 200 still fails.
		reloads = append(reloads, [2]time.Time{start, time.Now().Add(100 * time.Millisecond)})
		// A page after each reload, on a fresh connection, shows the
		// config in force and where its records go. The edge answers it
		// itself: Caddy's reverse_proxy keeps an idle upstream connection
		// per replaced config, which would hide what b2s leaves behind.
		m := fmt.Sprintf("cfg-%d", i+1)
		e.client.CloseIdleConnections()
		r := e.request(t, "GET", "/cfg?t="+m)
		if got := r.header.Get("X-E2E-Config"); r.status != http.StatusOK || got != strconv.Itoa(i+1) {
			t.Errorf("after reload %d (%s): status %d, X-E2E-Config %q, want 200 and %d", i+1, s.name, r.status, got, i+1)
		}
		pages = append(pages, m)
	}
	time.Sleep(300 * time.Millisecond)
	l.halt()
	l.checkAnswers(t, reloads...)

	m := e.waitDrained(t)
	// Every answered request made one record, every record was spooled
	// and shipped once; an unanswered one may have made a record.
	answered, unanswered := float64(e.pages.Load()+e.beacons.Load()), float64(len(l.errs))
	if sp := m[`b2s_records_spooled_total`]; sp < answered || sp > answered+unanswered || m[`b2s_records_shipped_total`] != sp ||
		m[`b2s_records_dropped_total{reason="spool_full"}`]+m[`b2s_records_dropped_total{reason="spool_error"}`] != 0 {
		t.Errorf("%v requests answered, %v not: spooled %v, shipped %v, dropped %v (full) %v (error)", answered, unanswered, sp,
			m[`b2s_records_shipped_total`], m[`b2s_records_dropped_total{reason="spool_full"}`], m[`b2s_records_dropped_total{reason="spool_error"}`])
	}
	srcs := []source{{first, e.topic}, {first, topic2}, {broker2, topic2}, {broker2, e.topic}}
	tl := e.reconcile(t, srcs, append(l.markers(), pages...))
	tl.noneLost(t)
	if tl.dups > 0 {
		t.Errorf("%d records were shipped twice across the reloads: a reload must never duplicate a record", tl.dups)
	}
	for _, s := range srcs {
		if tl.bySource[s] == 0 {
			t.Errorf("%s/%s received no record: the reloads did not switch the producer there", s.broker, s.topic)
		}
	}
	for i, m := range pages {
		if rs := tl.byMarker[m]; len(rs) > 0 {
			if got := (source{rs[0].broker, rs[0].topic}); got != steps[i].want {
				t.Errorf("the page after reload %d (%s) went to %s/%s, want %s/%s", i+1, steps[i].name,
					got.broker, got.topic, steps[i].want.broker, steps[i].want.topic)
			}
		}
	}

	// Goroutines and open files come back to where they were: nothing
	// the replaced configs and producers held is left behind.
	const tolG, tolF = 3, 2
	var g, f int
	var profile string
	var files []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		settle()
		g, profile = e.goroutines(t)
		f, files = e.openFiles(t)
		if g <= baseG+tolG && f <= baseF+tolF || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("after %d reloads: %d goroutines (baseline %d), %d open files (baseline %d)", len(steps), g, baseG, f, baseF)
	if g > baseG+tolG {
		t.Errorf("%d goroutines after the reloads, baseline %d (tolerance %d): a reload leaks goroutines\n%s\nbaseline:\n%s", g, baseG, tolG, profile, baseProfile)
	}
	if f > baseF+tolF {
		t.Errorf("%d open files after the reloads, baseline %d (tolerance %d): a reload leaks descriptors\nbefore: %q\nafter:  %q",
			f, baseF, tolF, baseFiles, files)
	}
}

// A config that fails to load never was in force: records must keep going
// where the running config sends them, never to the brokers or topic the
// failed one named, even for the moment it took to fail.
func TestAReloadThatFailsShipsNothingWhereTheFailedConfigPointed(t *testing.T) {
	failedTopic := "e2e.failed." + randomID()[:8]
	e := newEnv(t, envOptions{extraTopics: []string{failedTopic}, faults: true})
	l := e.startLoad("fail", loadOptions{pause: time.Millisecond})
	defer l.halt()
	const reloads = 10
	for range reloads {
		time.Sleep(100 * time.Millisecond)
		// The b2s app provisions; the handler after it fails.
		e.writeCaddyfile(caddyConfig{Topic: failedTopic, CollectExtra: "beacon no-leading-slash"})
		if err := e.reload(); err == nil {
			t.Fatal("caddy reload accepted a beacon path without a leading slash")
		}
	}
	time.Sleep(200 * time.Millisecond)
	l.halt()
	l.checkAnswers(t)
	e.waitDrained(t)
	tl := e.reconcile(t, []source{{e.brokerAddr, e.topic}, {e.brokerAddr, failedTopic}}, l.markers())
	tl.noneLost(t)
	if tl.dups > 0 {
		t.Errorf("%d records were shipped twice across failed reloads", tl.dups)
	}
	if n := tl.bySource[source{e.brokerAddr, failedTopic}]; n > 0 {
		t.Errorf("%d records went to %s, the topic of a config that failed to load %d times", n, failedTopic, reloads)
	}
}

// cfgSite is the site addition of the n-th config of the reload test.
// bigQuery is 31 beacon parameters of 512 bytes: with the marker, a
// record at the most a record holds (8 KiB).
func bigQuery() string {
	var b strings.Builder
	for i := range 31 {
		fmt.Fprintf(&b, "&p%02d=%s", i, strings.Repeat("x", 512))
	}
	return b.String()
}

func cfgSite(n int) string {
	return fmt.Sprintf("header X-E2E-Config %d\n\thandle /cfg {\n\t\trespond \"config %d\" 200\n\t}", n, n)
}

func TestAFullSpoolStillServesBeaconsAndCountsEveryDrop(t *testing.T) {
	e := newEnv(t, envOptions{persistBroker: true, faults: true, spoolMaxSize: "1MiB"})
	e.stopBroker()
	// Records of about 8 KB, the most a record holds: about 120 fill the
	// spool.
	big := bigQuery()
	const sent = 200
	l := e.startLoad("full", loadOptions{max: sent, query: big}).wait()
	l.checkAnswers(t)
	if n := l.answered(); n != sent || len(l.markers()) != sent {
		t.Fatalf("%d of %d beacons answered, %d accepted; want every one answered 200 with the pixel", n, sent, len(l.markers()))
	}

	m := e.metrics(t)
	spooled, full, failed := m[`b2s_records_spooled_total`], m[`b2s_records_dropped_total{reason="spool_full"}`], m[`b2s_records_dropped_total{reason="spool_error"}`]
	t.Logf("%d beacons: %v spooled, %v dropped (spool full), %v dropped (spool error); spool %v of %v bytes",
		sent, spooled, full, failed, m[`b2s_spool_bytes`], m[`b2s_spool_max_bytes`])
	if spooled+full != sent || failed != 0 {
		t.Errorf("spooled %v + dropped for a full spool %v = %v, want the %d beacons answered; dropped for errors %v, want 0",
			spooled, full, spooled+full, sent, failed)
	}
	if full == 0 || spooled < 30 {
		t.Errorf("spooled %v and dropped %v: the 1MiB cap was not reached, or reached far too early", spooled, full)
	}
	if m[`b2s_spool_max_bytes`] != 1<<20 || m[`b2s_spool_bytes`] > 1<<20 || m[`b2s_spool_bytes`] < 0.9*(1<<20)-20000 {
		t.Errorf("spool %v bytes of a maximum of %v, want a full spool of at most 1MiB", m[`b2s_spool_bytes`], m[`b2s_spool_max_bytes`])
	}
	status, rep := e.health(t)
	if status != http.StatusServiceUnavailable || !slices.Contains(rep.Reasons, "spool_nearly_full") || !slices.Contains(rep.Reasons, "kafka_failing") {
		t.Errorf("health %d %+v with a full spool and the broker down, want 503 for spool_nearly_full and kafka_failing", status, rep)
	}

	e.startBroker(e.brokerAddr)
	e.waitDrained(t)
	tl := e.reconcile(t, []source{{e.brokerAddr, e.topic}}, l.markers())
	if float64(len(tl.lost)) != full {
		t.Errorf("%d accepted beacons have no record, and %v were counted dropped for a full spool: every loss must be counted, and only losses",
			len(tl.lost), full)
	}
	if float64(tl.records) != spooled || tl.dups != 0 {
		t.Errorf("the topic holds %d records (%d duplicates) for %v spooled", tl.records, tl.dups, spooled)
	}

	// Shipping made room: new records are kept again.
	after := e.startLoad("room", loadOptions{max: 20, query: big}).wait()
	after.checkAnswers(t)
	e.waitDrained(t)
	e.reconcile(t, []source{{e.brokerAddr, e.topic}}, after.markers()).noneLost(t)
	if got := e.metrics(t)[`b2s_records_dropped_total{reason="spool_full"}`]; got != full {
		t.Errorf("dropped for a full spool went from %v to %v after the spool drained", full, got)
	}
}

// Damage to the spool costs the records whose bytes were damaged, and only
// those: the edge resynchronises on the next intact entry, ships the rest
// and counts what it lost. A damaged tail (a torn last append) is cut off
// and counted as one record, whether or not it held one.
func TestDamageToTheSpoolCostsOnlyTheDamagedRecords(t *testing.T) {
	variants := []struct {
		name string
		// damage damages the segment, whose intact entries are given, and
		// returns the markers of the records whose bytes it touched.
		damage func(t *testing.T, seg string, entries []spoolEntry, end int64) []string
		// size is the segment's size after the repair.
		size func(entries []spoolEntry, end int64) int64
		// tail: the damage is at the segment's end, counted as one record.
		tail bool
	}{
		{"garbage appended after the last record loses nothing",
			func(t *testing.T, seg string, _ []spoolEntry, end int64) []string {
				// A plausible entry header whose checksum is wrong, its
				// body, then bytes that are no header at all.
				junk := binary.LittleEndian.AppendUint32(nil, 40)
				junk = binary.LittleEndian.AppendUint32(junk, 0xdeadbeef)
				junk = append(junk, bytes.Repeat([]byte{0xa5}, 8+40+100)...)
				overwrite(t, seg, end, junk)
				return nil
			},
			func(_ []spoolEntry, end int64) int64 { return end }, true},
		{"a last record cut in half loses that record only",
			func(t *testing.T, seg string, entries []spoolEntry, _ int64) []string {
				last := entries[len(entries)-1]
				if err := os.Truncate(seg, last.off+last.size/2); err != nil {
					t.Fatal(err)
				}
				return []string{last.marker}
			},
			func(entries []spoolEntry, _ int64) int64 { return entries[len(entries)-1].off }, true},
		{"a flipped byte in a record's payload loses that record only",
			func(t *testing.T, seg string, entries []spoolEntry, _ int64) []string {
				mid := entries[len(entries)/2]
				flipByte(t, seg, mid.off+mid.size-5)
				return []string{mid.marker}
			},
			func(_ []spoolEntry, end int64) int64 { return end }, false},
		{"a flipped byte in a record's length loses that record only",
			func(t *testing.T, seg string, entries []spoolEntry, _ int64) []string {
				mid := entries[len(entries)/2]
				flipByte(t, seg, mid.off+1)
				return []string{mid.marker}
			},
			func(_ []spoolEntry, end int64) int64 { return end }, false},
		{"a zeroed page in the middle loses the records on it only",
			func(t *testing.T, seg string, entries []spoolEntry, end int64) []string {
				from := (end/2)&^4095 + 4096
				if from+4096 > end {
					t.Fatalf("segment of %d bytes too short for a page in the middle", end)
				}
				overwrite(t, seg, from, make([]byte, 4096))
				return within(entries, from, from+4096)
			},
			func(_ []spoolEntry, end int64) int64 { return end }, false},
		{"a flipped byte in the segment header loses nothing",
			func(t *testing.T, seg string, _ []spoolEntry, _ int64) []string {
				flipByte(t, seg, 10) // the first record's sequence number
				return nil
			},
			func(_ []spoolEntry, end int64) int64 { return end }, false},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t, envOptions{persistBroker: true, faults: true})
			e.stopBroker()
			l := e.startLoad("tail", loadOptions{max: 300}).wait()
			l.checkAnswers(t)
			accepted := l.markers()
			e.killCaddy()

			// Every answered beacon is in the spool the dead process left.
			inSpool := map[string]bool{}
			var seg string
			var entries []spoolEntry
			var end int64
			for _, s := range segments(t, e.spoolDir) {
				es, n := readSegment(t, s)
				for _, en := range es {
					inSpool[en.marker] = true
				}
				if len(es) > 0 {
					seg, entries, end = s, es, n
				}
			}
			for _, m := range accepted {
				if !inSpool[m] {
					t.Fatalf("beacon %s was answered 200 and its record is not in the spool", m)
				}
			}
			if seg == "" {
				t.Fatal("no segment holds a record")
			}
			touched := v.damage(t, seg, entries, end)

			e.startCaddy()
			m := e.metrics(t)
			if r := m[`b2s_spool_repairs_total`]; r < 1 {
				t.Errorf("b2s_spool_repairs_total = %v after a start on a damaged segment, want at least 1", r)
			}
			if log := e.caddy.Log(); !strings.Contains(log, "spool segment damaged") || !strings.Contains(log, filepath.Base(seg)) {
				t.Errorf("the edge did not log the repair of %s", filepath.Base(seg))
			}
			if st, err := os.Stat(seg); err != nil || st.Size() != v.size(entries, end) {
				t.Errorf("after the repair %s is %v bytes (%v), want %d: cut at the end of the last intact record",
					filepath.Base(seg), sizeOf(st), err, v.size(entries, end))
			}
			// The repaired spool keeps taking records.
			more := e.startLoad("more", loadOptions{max: 20}).wait()
			more.checkAnswers(t)

			e.startBroker(e.brokerAddr)
			m = e.waitDrained(t)
			tl := e.reconcile(t, []source{{e.brokerAddr, e.topic}}, slices.Concat(accepted, more.markers()))
			slices.Sort(tl.lost)
			slices.Sort(touched)
			if !slices.Equal(tl.lost, touched) {
				t.Errorf("lost %q, want exactly the records on the damaged bytes, %q", firstN(tl.lost, 10), firstN(touched, 10))
			}
			// Every loss is counted: answered - delivered - counted = 0. A
			// damaged tail counts as one record, held or not.
			counted, want := m[`b2s_records_dropped_total{reason="damaged"}`], float64(len(tl.lost))
			if v.tail {
				want = 1
			}
			if counted != want {
				t.Errorf("b2s_records_dropped_total{reason=\"damaged\"} = %v with %d records lost, want %v", counted, len(tl.lost), want)
			}
			if tl.dups != 0 {
				t.Errorf("%d duplicate records", tl.dups)
			}
		})
	}
}

func sizeOf(st os.FileInfo) any {
	if st == nil {
		return "?"
	}
	return st.Size()
}

func TestSIGTERMWithTheBrokerDownExitsWithinTheFlushTimeoutAndKeepsTheRecords(t *testing.T) {
	const flush = 2 * time.Second
	e := newEnv(t, envOptions{persistBroker: true, faults: true, flushTimeout: flush.String()})
	l := e.startLoad("term", loadOptions{pause: 2 * time.Millisecond})
	defer l.halt()
	time.Sleep(300 * time.Millisecond)
	e.stopBroker()
	time.Sleep(700 * time.Millisecond)

	// Under load: a beacon answered 200 while the edge shuts down must
	// have its record in the spool too.
	termAt := time.Now()
	e.caddy.Signal(t, syscall.SIGTERM)
	select {
	case <-e.caddy.Done:
	case <-time.After(15 * time.Second):
		t.Fatal("caddy did not exit within 15s of SIGTERM")
	}
	took := time.Since(termAt)
	l.halt()
	t.Logf("caddy exited %v after SIGTERM with the broker down (flush_timeout %v)", took.Round(time.Millisecond), flush)
	// Delivery is given up after flush_timeout; closing the producer and
	// the spool takes well under a second more.
	if limit := flush + 2*time.Second; took > limit {
		t.Errorf("caddy took %v to exit with flush_timeout %v, want less than %v", took, flush, limit)
	}
	if e.caddy.WaitErr != nil {
		t.Errorf("caddy exited with %v, want 0", e.caddy.WaitErr)
	}
	l.checkAnswers(t, [2]time.Time{termAt, time.Now()})
	if !strings.Contains(e.caddy.Log(), "kafka unreachable at shutdown") {
		t.Errorf("the edge did not log that records stay in the spool")
	}

	e.startBroker(e.brokerAddr)
	e.startCaddy()
	e.waitDrained(t)
	e.reconcile(t, []source{{e.brokerAddr, e.topic}}, l.markers()).noneLost(t)
}

// One client floods the edge during a Kafka outage while others browse:
// every request is answered, the flood's records are bounded by
// client_limit and every one it lost is counted, and every other client's
// record arrives once Kafka is back.
func TestOneFloodingClientIsBoundedAndEveryOtherRecordArrives(t *testing.T) {
	const burst, perSecond = 200, 20
	e := newEnv(t, envOptions{persistBroker: true, faults: true,
		clientLimit: fmt.Sprintf("client_limit {\n\t\t\taddress %d %d\n\t\t}", perSecond, burst)})
	e.stopBroker()
	start := time.Now()
	flood := e.startLoad("flood", loadOptions{workers: 2, from: "203.0.113.66"})
	others := e.startLoad("visitor", loadOptions{workers: 2, pause: 2 * time.Millisecond, max: 1500}).wait()
	flood.halt()
	took := time.Since(start)
	flood.checkAnswers(t)
	others.checkAnswers(t)
	limited := e.metrics(t)[`b2s_records_dropped_total{reason="client_limit"}`]

	e.startBroker(e.brokerAddr)
	e.waitDrained(t)
	srcs := []source{{e.brokerAddr, e.topic}}
	e.reconcile(t, srcs, others.markers()).noneLost(t)
	tl := e.reconcile(t, srcs, flood.markers())
	delivered := len(flood.markers()) - len(tl.lost)
	t.Logf("flood: %d answered in %v, %d delivered, %v counted dropped (client_limit)", flood.answered(), took.Round(time.Millisecond), delivered, limited)
	if float64(len(tl.lost)) != limited {
		t.Errorf("%d of the flood's answered beacons have no record and %v were counted dropped by client_limit: answered - delivered - counted must be 0",
			len(tl.lost), limited)
	}
	if most := burst + perSecond*int(took.Seconds()+1); delivered > most || delivered < burst {
		t.Errorf("%d of the flood's records delivered in %v, want the burst of %d and at most %d a second after it (%d in all)",
			delivered, took.Round(time.Millisecond), burst, perSecond, most)
	}
	if tl.dups != 0 {
		t.Errorf("%d duplicate records", tl.dups)
	}
}

// A symbolic link planted in the spool directory under a segment's name is
// neither followed nor touched: the file it points to keeps its content,
// the edge counts and logs the refusal and keeps shipping.
func TestASymlinkPlantedInTheSpoolIsNeverFollowed(t *testing.T) {
	e := newEnv(t, envOptions{persistBroker: true, faults: true})
	l := e.startLoad("before", loadOptions{max: 50}).wait()
	l.checkAnswers(t)
	e.waitDrained(t)
	e.killCaddy()

	victim := filepath.Join(e.dir, "victim")
	content := []byte("a file the edge must never write\n")
	if err := os.WriteFile(victim, content, 0o644); err != nil {
		t.Fatal(err)
	}
	segs := segments(t, e.spoolDir)
	planted := filepath.Join(e.spoolDir, fmt.Sprintf("%020d.seg", 99999))
	if len(segs) > 0 {
		// The name right after the newest segment: the one the edge would
		// open next.
		var n int
		fmt.Sscanf(filepath.Base(segs[len(segs)-1]), "%d.seg", &n)
		planted = filepath.Join(e.spoolDir, fmt.Sprintf("%020d.seg", n+1))
	}
	if err := os.Symlink(victim, planted); err != nil {
		t.Fatal(err)
	}

	e.startCaddy()
	after := e.startLoad("after", loadOptions{max: 200}).wait()
	after.checkAnswers(t)
	e.waitDrained(t)
	e.reconcile(t, []source{{e.brokerAddr, e.topic}}, append(l.markers(), after.markers()...)).noneLost(t)
	if got, err := os.ReadFile(victim); err != nil || !bytes.Equal(got, content) {
		t.Errorf("the symlink's target now holds %q (%v), want it untouched", got, err)
	}
	if m := e.metrics(t); m[`b2s_spool_refused_total`] < 1 {
		t.Errorf("b2s_spool_refused_total = %v, want the planted link counted", m[`b2s_spool_refused_total`])
	}
	if !strings.Contains(e.caddy.Log(), "not a regular file") {
		t.Error("the edge did not log the planted link")
	}
}
