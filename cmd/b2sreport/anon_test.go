package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/internal/recordschema"
)

// anonStream builds a stream of records and, beside it, what the report
// must count of it, tallied as the records are made.
type anonStream struct {
	t      *testing.T
	rng    *rand.Rand
	n      int // event IDs made
	values [][]byte
	// want is the expected Anonymous of each host; visitors the cookie
	// visitors; consent the records by consent.
	want     map[string]*Anonymous
	visitors map[string]map[string]bool
	consent  map[string]map[string]int64
}

func newAnonStream(t *testing.T, seed uint64) *anonStream {
	return &anonStream{t: t, rng: rand.New(rand.NewPCG(seed, 1)), want: map[string]*Anonymous{},
		visitors: map[string]map[string]bool{}, consent: map[string]map[string]int64{}}
}

// add appends a record of host at ts with the fields of extra, and returns
// its value (for a duplicate).
func (s *anonStream) add(host string, ts time.Time, extra map[string]any) []byte {
	s.n++
	m := map[string]any{
		"schema": 1, "event_id": eventID(s.n), "ts": ts.UTC().Format("2006-01-02T15:04:05.000000Z"),
		"kind": "beacon", "host": host, "ip": "203.0.113.0", "ip_truncated": true, "method": "GET",
		"url": "https://" + host + "/", "referrer": "", "user_agent": "test", "status": 200, "bytes": 43,
		"event": "pageview", "params": map[string]string{},
	}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := recordschema.Validate(b); err != nil {
		s.t.Fatalf("the generated record does not match the schema: %v\n%s", err, b)
	}
	s.values = append(s.values, b)
	c := "full"
	if v, ok := extra["consent"].(string); ok {
		c = v
	}
	if s.consent[host] == nil {
		s.consent[host] = map[string]int64{}
	}
	s.consent[host][c]++
	return b
}

func (s *anonStream) newAnonID() string {
	var id [16]byte
	for i := range id {
		id[i] = byte(s.rng.UintN(256))
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// visit adds the records of one anonymous visitor of host on the UTC day
// of start: sessions runs of records, each record under 30 minutes after
// the one before, each run at least 30 minutes after the last.
func (s *anonStream) visit(host string, start time.Time, id, consent string, sessions int) {
	day := s.day(host, start)
	day.Visitors++
	ts := start
	for i := 0; i < sessions; i++ {
		if i > 0 {
			ts = ts.Add(sessionGap + time.Duration(s.rng.Int64N(int64(90*time.Minute))))
		}
		s.want[host].Sessions++
		day.Sessions++
		for n := 1 + s.rng.IntN(5); n > 0; n-- {
			s.add(host, ts, map[string]any{"consent": consent, "anon_id": id})
			s.want[host].Records++
			day.Records++
			ts = ts.Add(time.Duration(s.rng.Int64N(int64(sessionGap))))
		}
	}
	if utcDay(ts) != utcDay(start) {
		s.t.Fatalf("a visit from %s ran into the next day (%s)", start, ts)
	}
	s.want[host].Visitors++
}

// day returns the expected count of host on ts's day.
func (s *anonStream) day(host string, ts time.Time) *AnonDay {
	a := s.want[host]
	if a == nil {
		a = &Anonymous{}
		s.want[host] = a
	}
	name := ts.UTC().Format(time.DateOnly)
	for i := range a.Days {
		if a.Days[i].Day == name {
			return &a.Days[i]
		}
	}
	a.Days = append(a.Days, AnonDay{Day: name})
	return &a.Days[len(a.Days)-1]
}

// one adds a single record of an anonymous visitor: one record, one
// session, one visitor of its day.
func (s *anonStream) one(host string, ts time.Time, id string) {
	s.add(host, ts, map[string]any{"consent": "optout", "anon_id": id})
	d := s.day(host, ts)
	d.Records++
	d.Visitors++
	d.Sessions++
	a := s.want[host]
	a.Records++
	a.Visitors++
	a.Sessions++
}

func TestAnonymousVisitors(t *testing.T) {
	day1 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	day2 := day1.Add(24 * time.Hour)
	hosts := []string{"www.b2s.com", "www.b2smade.com"}
	s := newAnonStream(t, 7)

	// Anonymous visitors of every consent that allows no identifier and
	// is no child's, on two days, on two sites.
	for _, host := range hosts {
		for _, day := range []time.Time{day1, day2} {
			for v := 0; v < 42; v++ {
				consent := []string{"optout", "gpc", "pending"}[v%3]
				start := day.Add(time.Duration(s.rng.Int64N(int64(10 * time.Hour))))
				s.visit(host, start, s.newAnonID(), consent, 1+s.rng.IntN(3))
			}
		}
	}
	// One anon_id on two sites is a visitor of each.
	shared := s.newAnonID()
	s.one(hosts[0], day1.Add(20*time.Hour), shared)
	s.one(hosts[1], day1.Add(20*time.Hour), shared)
	// One anon_id on two days is two visitor-days, and a run across
	// midnight two sessions: never joined across days.
	night := s.newAnonID()
	s.one(hosts[0], day2.Add(-time.Minute), night)
	s.one(hosts[0], day2.Add(time.Minute), night)
	// The session boundary: a pause of exactly 30 minutes starts a new
	// session, one a microsecond shorter does not.
	edge := s.newAnonID()
	at := day2.Add(22 * time.Hour)
	s.add(hosts[1], at, map[string]any{"consent": "gpc", "anon_id": edge})
	s.add(hosts[1], at.Add(sessionGap-time.Microsecond), map[string]any{"consent": "gpc", "anon_id": edge})
	s.add(hosts[1], at.Add(2*sessionGap-time.Microsecond), map[string]any{"consent": "gpc", "anon_id": edge})
	d := s.day(hosts[1], at)
	d.Records, d.Visitors, d.Sessions = d.Records+3, d.Visitors+1, d.Sessions+2
	s.want[hosts[1]].Records += 3
	s.want[hosts[1]].Visitors++
	s.want[hosts[1]].Sessions += 2

	// Records counted elsewhere or not at all: cookie visitors, children,
	// opted-out records without an anon_id (anon_id off), and records
	// outside the window.
	for i := 0; i < 25; i++ {
		cookie := cookieID(fmt.Sprint("v", i%10))
		host := hosts[i%2]
		s.add(host, day1.Add(time.Duration(i)*time.Hour), map[string]any{"consent": "full", "cookie_id": cookie, "cookie_state": "returning"})
		if s.visitors[host] == nil {
			s.visitors[host] = map[string]bool{}
		}
		s.visitors[host][cookie] = true
	}
	for i := 0; i < 6; i++ {
		s.add(hosts[i%2], day1.Add(time.Duration(i)*time.Hour), map[string]any{"consent": "child"})
		s.add(hosts[i%2], day2.Add(time.Duration(i)*time.Hour), map[string]any{"consent": "optout"})
	}
	counted := len(s.values)
	s.add(hosts[0], day1.Add(-time.Microsecond), map[string]any{"consent": "optout", "anon_id": s.newAnonID()})
	s.consent[hosts[0]]["optout"]--

	// Copies of records, as at-least-once delivery makes them.
	dups := 0
	for i := 0; i < counted; i += 17 {
		s.values = append(s.values, s.values[i])
		dups++
	}

	for trial := 0; trial < 3; trial++ {
		values := append([][]byte(nil), s.values...)
		if trial > 0 {
			// Partitions deliver in any order.
			s.rng.Shuffle(len(values), func(i, j int) { values[i], values[j] = values[j], values[i] })
		}
		c := NewCounter(Config{Since: day1, Until: day2.Add(24 * time.Hour), Top: 10, DedupeWindow: 48 * time.Hour, DedupeMax: 1 << 20})
		for _, v := range values {
			if o, err := c.Add(v); err != nil || o != Counted && o != Duplicate && o != OutsideWindow {
				t.Fatalf("record %s: %v %v", v, o, err)
			}
		}
		rep := c.Report()
		if rep.Counted != int64(counted) || rep.Skipped.Duplicates != int64(dups) || rep.Skipped.OutsideWindow != 1 {
			t.Fatalf("counted %d, duplicates %d, outside %d; want %d, %d, 1", rep.Counted, rep.Skipped.Duplicates, rep.Skipped.OutsideWindow, counted, dups)
		}
		for _, site := range rep.Sites {
			want := s.want[site.Host]
			if !reflect.DeepEqual(site.Anonymous, want) {
				t.Errorf("order %d, %s: anonymous\n%+v\nwant\n%+v", trial, site.Host, site.Anonymous, want)
			}
			if site.Visitors != int64(len(s.visitors[site.Host])) {
				t.Errorf("%s: %d cookie visitors, want %d: anonymous visitors are not added to them", site.Host, site.Visitors, len(s.visitors[site.Host]))
			}
			got := map[string]int64{"full": site.Consent.Full, "optout": site.Consent.OptOut, "gpc": site.Consent.GPC, "child": site.Consent.Child, "pending": site.Consent.Pending}
			for k, v := range s.consent[site.Host] {
				if got[k] != v {
					t.Errorf("%s: %d records of consent %s, want %d", site.Host, got[k], k, v)
				}
			}
		}
		if trial == 0 {
			// Control: the counts are not those of the records alone.
			a := rep.Sites[0].Anonymous
			if a.Visitors >= a.Records || a.Sessions <= a.Visitors || len(a.Days) != 2 {
				t.Errorf("the stream does not exercise the counting: %+v", a)
			}
			if c := rep.Sites[0].Consent; c.OptOut == 0 || c.GPC == 0 || c.Pending == 0 {
				t.Errorf("the stream lacks a consent that carries anon_ids: %+v", c)
			}
		}
	}
}

func TestAnonIDMalformed(t *testing.T) {
	const id = "q83vEjRWeJCrze8SNFZ4kA"
	at := t0.Add(time.Minute)
	base := func(extra string) []byte {
		return []byte(`{"schema":1,"event_id":"` + eventID(1) + `","ts":"` + at.Format("2006-01-02T15:04:05.000000Z") +
			`","kind":"page","host":"www.b2s.com","ip":"i","method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0` + extra + `}`)
	}
	for _, tc := range []struct {
		name, extra, err string
	}{
		{"an anon_id in a full record", `,"consent":"full","anon_id":"` + id + `"`, "consent full, yet the record carries an anon_id"},
		{"an anon_id in a record without consent (full)", `,"anon_id":"` + id + `"`, "consent full, yet the record carries an anon_id"},
		{"an anon_id in a child's record", `,"consent":"child","anon_id":"` + id + `"`, "consent child, yet the record carries an anon_id"},
		{"an anon_id of 21 characters", `,"consent":"optout","anon_id":"` + id[1:] + `"`, "is not 16 bytes of base64url"},
		{"an anon_id in standard base64", `,"consent":"optout","anon_id":"q83vEjRW+JCrze8SNFZ4kA"`, "is not 16 bytes of base64url"},
		{"an empty anon_id", `,"consent":"gpc","anon_id":""`, "is not 16 bytes of base64url"},
		{"an anon_id in a pending record with a cookie_id", `,"consent":"pending","anon_id":"` + id + `","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0"`, `consent "pending", yet the record carries identifiers`},
		{"control: an anon_id in an opted-out record", `,"consent":"optout","anon_id":"` + id + `"`, ""},
		{"control: an anon_id in a GPC record", `,"consent":"gpc","anon_id":"` + id + `"`, ""},
		{"control: an anon_id in a pending record", `,"consent":"pending","anon_id":"` + id + `"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCounter(Config{DedupeWindow: time.Hour, DedupeMax: 10})
			o, err := c.Add(base(tc.extra))
			if tc.err == "" {
				if o != Counted || err != nil {
					t.Fatalf("%v %v, want counted", o, err)
				}
				if a := c.Report().Sites[0].Anonymous; a == nil || a.Visitors != 1 {
					t.Errorf("anonymous %+v, want one visitor", a)
				}
				return
			}
			if o != Malformed || err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v %v, want malformed: %s", o, err, tc.err)
			}
		})
	}
}

func TestAnonymousVisitorsText(t *testing.T) {
	c := NewCounter(Config{DedupeWindow: 48 * time.Hour, DedupeMax: 100})
	s := newAnonStream(t, 1)
	day1 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	s.one("www.b2s.com", day1, "q83vEjRWeJCrze8SNFZ4kA")
	s.one("www.b2s.com", day1.Add(time.Hour), "q83vEjRWeJCrze8SNFZ4kA")
	s.one("www.b2s.com", day1.Add(24*time.Hour), "q83vEjRWeJCrze8SNFZ4kA")
	s.add("www.b2smade.com", day1, map[string]any{"consent": "full", "cookie_id": cookieID("a"), "cookie_state": "new"})
	for _, v := range s.values {
		if _, err := c.Add(v); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := writeText(&out, c.Report()); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"anonymous visitors (anon_id)     daily  sessions   records\n",
		"www.b2s.com                          2         3         3\n",
		"  2026-12-06                         1         2         2\n",
		"  2026-12-07                         1         1         1\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text[strings.Index(text, "anonymous visitors"):], "www.b2smade.com") {
		t.Errorf("a site without anon_ids is listed among the anonymous visitors:\n%s", text)
	}
}
