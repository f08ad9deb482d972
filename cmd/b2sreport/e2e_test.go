package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The end-to-end test runs the report in-process against kbroker, a real
// Kafka-protocol broker in its own process, with the records written by
// franz-go: a different client than kafka-go, which the report uses.

const e2eTopic = "b2s.events"

func TestReportAgainstABroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	addr := startBroker(t)
	// The window of every run: [t0, t0+1h).
	window := []string{"-brokers", addr, "-topic", e2eTopic, "-since", t0.Format(time.RFC3339), "-until", t0.Add(time.Hour).Format(time.RFC3339)}

	// First batch: two sites, five visitors, two records delivered twice,
	// records outside the window, one malformed, one of a newer schema.
	produce(t, addr,
		rec{id: 1, at: "1m", cookie: "ann", url: "https://www.b2s.com/products"},
		view(2, "1m", "ann", "https://www.b2s.com/products?ref=nav"),
		rec{id: 3, at: "1m", cookie: "ann", url: "https://www.b2s.com/style.css"},
		view(2, "1m", "ann", "https://www.b2s.com/products?ref=nav"), // delivered again in the same batch
		view(4, "5m", "bob", "https://www.b2s.com/products"),
		view(5, "6m", "bob", "https://www.b2s.com/"),
		rec{id: 6, at: "7m", kind: "beacon", cookie: "bob", url: "https://www.b2s.com/products", event: "enquiry"},
		view(7, "30m", "cat", "https://www.b2s.com/"),
		rec{id: 8, at: "31m", url: "https://www.b2s.com/robots.txt"}, // no cookie: no visitor
		rec{id: 9, at: "10m", kind: "beacon", host: "suppliers.b2s.com", cookie: "ann", url: "https://suppliers.b2s.com/list", event: "pageview"},
		rec{id: 10, at: "11m", kind: "beacon", host: "suppliers.b2s.com", cookie: "dan", url: "https://suppliers.b2s.com/list", event: "pageview"},
		rec{id: 11, at: "59m59.999999s", kind: "beacon", host: "suppliers.b2s.com", cookie: "dan", url: "https://suppliers.b2s.com/join", event: "pageview"},
		view(12, "-1us", "ann", "https://www.b2s.com/"), // before the window
		view(13, "1h", "ann", "https://www.b2s.com/"),   // at its end, excluded
		rec{id: 14, at: "-48h", cookie: "ann"},
		`{"schema":1,"event_id":`, // cut short
		`{"schema":2,"event_id":"019ac5a1-2b00-7000-8000-0000000000ff","ts":"2026-11-28T20:10:00.000000Z","kind":"beacon","host":"www.b2s.com","event":"pageview"}`,
	)
	produce(t, addr, view(4, "5m", "bob", "https://www.b2s.com/products")) // delivered again, later

	// A report that cannot be written commits nothing.
	err := run(t.Context(), append(window, "-group", "g", "-json"), failingWriter{}, testWriter{t})
	if err == nil || !strings.Contains(err.Error(), "offsets not committed") {
		t.Fatalf("a report that cannot be written: error %v", err)
	}

	got := report(t, append(window, "-group", "g", "-json"))
	want := Report{
		Sites: []Site{
			{Host: "suppliers.b2s.com", Records: 3, PageViews: 3, Visitors: 2, Consent: Consents{Full: 3}, TopPages: []Page{{"/list", 2}, {"/join", 1}}},
			{Host: "www.b2s.com", Records: 8, PageViews: 4, Visitors: 3, Unidentified: 1, Consent: Consents{Full: 8}, TopPages: []Page{{"/", 2}, {"/products", 2}}},
		},
		Network: Network{Visitors: 4}, // ann, bob, cat, dan: records without network_id count their cookie_id
		Read:    18,
		Counted: 11,
		Skipped: Skipped{Duplicates: 2, OutsideWindow: 3, Malformed: 1, UnknownSchema: 1},
	}
	checkReport(t, "first run", got, want, "g")

	// Second batch, read by the same group: only it is counted.
	produce(t, addr,
		view(20, "40m", "eve", "https://www.b2s.com/about"),
		view(21, "41m", "ann", "https://www.b2s.com/products"),
		view(21, "41m", "ann", "https://www.b2s.com/products"),
		rec{id: 22, at: "42m", host: "suppliers.b2s.com", cookie: "dan", url: "https://suppliers.b2s.com/list"},
		view(23, "2h", "ann", "https://www.b2s.com/"),
	)
	got = report(t, append(window, "-group", "g", "-json"))
	want = Report{
		Sites: []Site{
			{Host: "suppliers.b2s.com", Records: 1, PageViews: 0, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{}},
			{Host: "www.b2s.com", Records: 2, PageViews: 2, Visitors: 2, Consent: Consents{Full: 2}, TopPages: []Page{{"/about", 1}, {"/products", 1}}},
		},
		Network: Network{Visitors: 3},
		Read:    5,
		Counted: 3,
		Skipped: Skipped{Duplicates: 1, OutsideWindow: 1},
	}
	checkReport(t, "second run", got, want, "g")

	// Nothing new: nothing read.
	got = report(t, append(window, "-group", "g", "-json"))
	checkReport(t, "third run", got, Report{Sites: []Site{}}, "g")

	// -from beginning counts both batches again, in the same group.
	all := Report{
		Sites: []Site{
			{Host: "suppliers.b2s.com", Records: 4, PageViews: 3, Visitors: 2, Consent: Consents{Full: 4}, TopPages: []Page{{"/list", 2}, {"/join", 1}}},
			{Host: "www.b2s.com", Records: 10, PageViews: 6, Visitors: 4, Unidentified: 1, Consent: Consents{Full: 10}, TopPages: []Page{{"/products", 3}, {"/", 2}, {"/about", 1}}},
		},
		Network: Network{Visitors: 5},
		Read:    23,
		Counted: 14,
		Skipped: Skipped{Duplicates: 3, OutsideWindow: 4, Malformed: 1, UnknownSchema: 1},
	}
	got = report(t, append(window, "-group", "g", "-json", "-from", "beginning"))
	checkReport(t, "run from the beginning", got, all, "g")

	// A new group starts at the beginning; the text report says the same.
	var out bytes.Buffer
	if err := run(t.Context(), append(window, "-group", "text", "-top", "2"), &out, testWriter{t}); err != nil {
		t.Fatalf("text report: %v", err)
	}
	wantText := `topic b2s.events, group text: records with ts from 2026-11-28T20:00:00Z to 2026-11-28T21:00:00Z (excluded)

site               page views  visitors  unidentified   records  bot share
suppliers.b2s.com           3         2             0         4       0.0%
www.b2s.com                 6         4             1        10       0.0%

network visitors 5, members 0

records by consent      full    optout       gpc     child   pending
suppliers.b2s.com          4         0         0         0         0
www.b2s.com               10         0         0         0         0

top pages of suppliers.b2s.com
  2  /list
  1  /join

top pages of www.b2s.com
  3  /products
  2  /

read 23 records: 14 counted; skipped 3 duplicates, 4 outside the window, 1 malformed, 1 of an unknown schema version
`
	if out.String() != wantText {
		t.Errorf("text report:\n%s\nwant:\n%s", out.String(), wantText)
	}
}

func TestNetworkAgainstABroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	addr := startBroker(t)
	const mainSite, sister = "www.b2s.com", "www.b2smade.com"
	// ann comes to the main site, signs in and follows a link to the sister
	// site, new to her there. bob, known to the sister site as bobS, follows
	// a link there from the main site and signs in: the link's record
	// merges bob and bobS. The sister site's proxy ships bobS's earlier
	// records late: keyed by cookie_id, they land behind the link in its
	// partition, so the merge is read before them.
	produce(t, addr,
		rec{id: 1, at: "1m", kind: "beacon", host: mainSite, consent: "full", cookie: "ann", network: "ann", member: "m-1001", url: "https://www.b2s.com/", event: "pageview"},
		rec{id: 2, at: "2m", kind: "beacon", host: sister, consent: "full", cookie: "annS", network: "ann", from: mainSite, url: "https://www.b2smade.com/catalog", event: "pageview"},
		rec{id: 3, at: "3m", host: mainSite, consent: "full", cookie: "bob", network: "bob", url: "https://www.b2s.com/"},
		rec{id: 4, at: "30m", host: sister, consent: "full", cookie: "bobS", network: "bob", prev: "bobS", from: mainSite, member: "m-2002", url: "https://www.b2smade.com/"},
		rec{id: 5, at: "4m", kind: "beacon", host: mainSite, consent: "gpc", url: "https://www.b2s.com/", event: "pageview"},
		rec{id: 6, at: "5m", host: sister, consent: "optout", url: "https://www.b2smade.com/"},
		rec{id: 7, at: "6m", host: sister, consent: "child", url: "https://www.b2smade.com/kids"},
		// dan's record was written before consent and network_id existed.
		rec{id: 8, at: "7m", host: mainSite, cookie: "dan", url: "https://www.b2s.com/"},
		// The link, delivered again.
		rec{id: 4, at: "30m", host: sister, consent: "full", cookie: "bobS", network: "bob", prev: "bobS", from: mainSite, member: "m-2002", url: "https://www.b2smade.com/"},
		// A network_id the report cannot read.
		`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-0000000000fe","ts":"2026-11-28T20:08:00.000000Z","kind":"page","host":"www.b2smade.com","consent":"full","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","network_id":"not a network id"}`,
	)
	produce(t, addr,
		rec{id: 9, at: "10m", kind: "beacon", host: sister, consent: "full", cookie: "bobS", network: "bobS", url: "https://www.b2smade.com/catalog", event: "pageview"},
		rec{id: 10, at: "11m", host: sister, consent: "full", cookie: "bobS", network: "bobS", url: "https://www.b2smade.com/catalog"},
	)
	// Where the sites require consent: eve views a page before consenting
	// and is then identified at her grant; a visitor of the sister site
	// withdraws; a record that says it waits for consent yet carries an
	// ID cannot be read.
	produce(t, addr,
		rec{id: 11, at: "12m", kind: "beacon", host: mainSite, consent: "pending", url: "https://www.b2s.com/", event: "pageview"},
		rec{id: 12, at: "13m", host: mainSite, consent: "full", cookie: "eve", network: "eve", changed: true, url: "https://www.b2s.com/_b2s/consent"},
		rec{id: 13, at: "14m", host: sister, consent: "optout", changed: true, url: "https://www.b2smade.com/_b2s/consent?withdraw"},
		rec{id: 14, at: "15m", host: sister, consent: "pending", cookie: "fay", url: "https://www.b2smade.com/"},
	)

	window := []string{"-brokers", addr, "-topic", e2eTopic, "-since", t0.Format(time.RFC3339), "-until", t0.Add(time.Hour).Format(time.RFC3339)}
	got := report(t, append(window, "-group", "network", "-json"))
	want := Report{
		Sites: []Site{
			{Host: mainSite, Records: 6, PageViews: 3, Visitors: 4, Unidentified: 2, Consent: Consents{Full: 4, GPC: 1, Pending: 1}, ConsentChanges: ConsentChanges{Granted: 1}, TopPages: []Page{{"/", 3}}},
			{Host: sister, Records: 7, PageViews: 2, Visitors: 2, Unidentified: 3, Consent: Consents{Full: 4, OptOut: 2, Child: 1}, ConsentChanges: ConsentChanges{Withdrawn: 1}, TopPages: []Page{{"/catalog", 2}}},
		},
		Network: Network{Visitors: 4, Members: 2}, // ann, bob (bobS), dan, eve; m-1001, m-2002
		Read:    16,
		Counted: 13,
		Skipped: Skipped{Duplicates: 1, Malformed: 2},
	}
	checkReport(t, "network", got, want, "network")

	var out bytes.Buffer
	if err := run(t.Context(), append(window, "-group", "network-text"), &out, testWriter{t}); err != nil {
		t.Fatalf("text report: %v", err)
	}
	wantText := `topic b2s.events, group network-text: records with ts from 2026-11-28T20:00:00Z to 2026-11-28T21:00:00Z (excluded)

site             page views  visitors  unidentified   records  bot share
www.b2s.com               3         4             2         6       0.0%
www.b2smade.com           2         2             3         7       0.0%

network visitors 4, members 2

records by consent      full    optout       gpc     child   pending
www.b2s.com                4         0         1         0         1
www.b2smade.com            4         2         0         1         0

consent changes      granted  withdrawn   refused
www.b2s.com                1          0         0
www.b2smade.com            0          1         0

top pages of www.b2s.com
  3  /

top pages of www.b2smade.com
  2  /catalog

read 16 records: 13 counted; skipped 1 duplicates, 0 outside the window, 2 malformed, 0 of an unknown schema version
`
	if out.String() != wantText {
		t.Errorf("text report:\n%s\nwant:\n%s", out.String(), wantText)
	}
}

func TestReportUntilStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	addr := startBroker(t)
	args := []string{"-brokers", addr, "-topic", e2eTopic, "-group", "live", "-since", t0.Format(time.RFC3339), "-json", "-exit-at-end=false"}

	// One visitor's records, so one partition in this order: once the
	// malformed one is reported, the others have been read.
	produce(t, addr,
		view(1, "1m", "ann", "https://www.b2s.com/"),
		view(2, "2m", "ann", "https://www.b2s.com/products"),
		view(2, "2m", "ann", "https://www.b2s.com/products"),
		&kgo.Record{Key: []byte(cookieID("ann")), Value: []byte("{")},
	)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var out bytes.Buffer
	stderr := &watchWriter{t: t, want: "skipped malformed record", seen: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &out, stderr) }()
	select {
	case <-stderr.seen:
	case err := <-done:
		t.Fatalf("b2sreport stopped before it was stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("b2sreport did not read the records within 20s")
	}

	// While it runs, the group has a member: its offsets cannot be reset.
	err := run(t.Context(), []string{"-brokers", addr, "-topic", e2eTopic, "-group", "live", "-from", "beginning"}, io.Discard, testWriter{t})
	if err == nil || !strings.Contains(err.Error(), "the group has active members") {
		t.Errorf("-from beginning while the group has a member: error %v", err)
	}

	stop() // what SIGINT does in main
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("b2sreport: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("b2sreport did not stop within 20s of its context")
	}
	var got Report
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("decoding the report: %v\n%s", err, out.String())
	}
	want := Report{
		Topic: e2eTopic, Group: "live", Since: t0,
		Sites:   []Site{{Host: "www.b2s.com", Records: 2, PageViews: 2, Visitors: 1, Consent: Consents{Full: 2}, TopPages: []Page{{"/", 1}, {"/products", 1}}}},
		Network: Network{Visitors: 1},
		Read:    4,
		Counted: 2,
		Skipped: Skipped{Duplicates: 1, Malformed: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("report:\n got  %+v\n want %+v", got, want)
	}

	// It committed what it counted.
	args = []string{"-brokers", addr, "-topic", e2eTopic, "-group", "live", "-since", t0.Format(time.RFC3339), "-json"}
	if rep := report(t, args); rep.Read != 0 {
		t.Errorf("the run after it read %d records, want 0", rep.Read)
	}

	// A topic that does not exist is an error that names it.
	args = []string{"-brokers", addr, "-topic", "b2s.evnets"}
	if err := run(t.Context(), args, io.Discard, testWriter{t}); err == nil || !strings.Contains(err.Error(), `"b2s.evnets"`) {
		t.Errorf("a missing topic: error %v", err)
	}
}

// watchWriter is a stderr for b2sreport that closes seen once it has
// written want.
type watchWriter struct {
	t    *testing.T
	want string
	seen chan struct{}
	once sync.Once
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	if strings.Contains(string(p), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// report runs b2sreport with args and decodes its -json output.
func report(t *testing.T, args []string) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	if err := run(ctx, args, &out, testWriter{t}); err != nil {
		t.Fatalf("b2sreport %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("b2sreport ran in %v", time.Since(start).Round(time.Millisecond))
	var rep Report
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("decoding the report: %v\n%s", err, out.String())
	}
	return rep
}

func checkReport(t *testing.T, run string, got, want Report, group string) {
	t.Helper()
	want.Topic, want.Group = e2eTopic, group
	want.Since, want.Until = t0, t0.Add(time.Hour)
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("%s:\n got  %s\n want %s", run, g, w)
	}
}

// produce writes records the way the edge does: the value is the record,
// the key its cookie_id. A string is written as is, without a key, and a
// *kgo.Record as it is.
func produce(t *testing.T, addr string, records ...any) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(e2eTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var krs []*kgo.Record
	for _, r := range records {
		switch r := r.(type) {
		case rec:
			kr := &kgo.Record{Value: []byte(r.json(t))}
			if r.cookie != "" {
				kr.Key = []byte(cookieID(r.cookie))
			}
			krs = append(krs, kr)
		case string:
			krs = append(krs, &kgo.Record{Value: []byte(r)})
		case *kgo.Record:
			krs = append(krs, r)
		default:
			t.Fatalf("produce: %T", r)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// startBroker builds and starts test/kbroker on a free port and returns
// its address; the test's cleanup stops it.
func startBroker(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "kbroker")
	goTool, err := exec.LookPath("go") // go test puts its own go first in PATH
	if err != nil {
		t.Fatalf("finding the go command: %v", err)
	}
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/b2scom/b2s-edge/test/kbroker").CombinedOutput(); err != nil {
		t.Fatalf("building kbroker: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-topic", e2eTopic, "-partitions", "3")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting kbroker: %v", err)
	}
	var (
		mu   sync.Mutex
		logs strings.Builder
	)
	ready := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			line := s.Text()
			mu.Lock()
			logs.WriteString(line + "\n")
			mu.Unlock()
			if rest, ok := strings.CutPrefix(line, "kbroker: listening on "); ok {
				addr, _, _ := strings.Cut(rest, ",")
				ready <- addr
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { <-drained; done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("kbroker: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("kbroker did not exit within 10s of SIGTERM; killing it")
			_ = cmd.Process.Kill()
			<-done
		}
	})
	select {
	case addr := <-ready:
		return addr
	case <-drained:
	case <-time.After(15 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	t.Fatalf("kbroker did not get ready:\n%s", logs.String())
	return ""
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("stdout is closed") }

// testWriter sends b2sreport's stderr to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
