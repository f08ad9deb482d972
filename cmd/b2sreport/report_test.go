package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// t0 is the start of the window most cases count over: [t0, t0+1h).
var t0 = time.Date(2026, 11, 28, 20, 0, 0, 0, time.UTC)

// rec is a record of schema 1 with the fields the report reads; the others
// are fixed. It is marshalled by recJSON.
type rec struct {
	id     int    // event_id is made from it
	at     string // ts as an offset from t0, e.g. "10m", "-1us"
	kind   string // "page" (default) or "beacon"
	host   string // default www.b2s.com
	cookie string // cookie_id; "" for none
	url    string
	event  string
	// The fields of the site network and privacy; "" for none. Records
	// written before they existed had none of them.
	consent string
	network string // network_id, a name like cookie
	prev    string // prev_network_id, a name like cookie
	member  string // member_id, as is
	from    string // linked_from
	edge    string // the edge that wrote it; "" for none, as before edge existed
	changed bool   // consent_changed
}

func eventID(n int) string { return fmt.Sprintf("019ac5a1-2b00-7000-8000-%012x", n) }

func cookieID(name string) string { return fmt.Sprintf("%032x", name) }

func (r rec) json(t testing.TB) string {
	t.Helper()
	d := time.Duration(0)
	if r.at != "" {
		var err error
		if d, err = time.ParseDuration(r.at); err != nil {
			t.Fatal(err)
		}
	}
	m := map[string]any{
		"schema": 1, "event_id": eventID(r.id), "ts": t0.Add(d).Format("2006-01-02T15:04:05.000000Z"),
		"kind": "page", "host": "www.b2s.com", "ip": "203.0.113.7", "method": "GET",
		"url": "https://www.b2s.com/", "referrer": "", "user_agent": "test", "status": 200, "bytes": 100,
	}
	if r.kind != "" {
		m["kind"] = r.kind
	}
	if r.kind == "beacon" {
		m["params"] = map[string]string{}
		m["bytes"] = 43
	}
	if r.host != "" {
		m["host"] = r.host
	}
	if r.cookie != "" {
		m["cookie_id"], m["cookie_state"] = cookieID(r.cookie), "returning"
	}
	if r.consent != "" {
		m["consent"] = r.consent
	}
	if r.network != "" {
		m["network_id"] = cookieID(r.network)
	}
	if r.prev != "" {
		m["prev_network_id"] = cookieID(r.prev)
	}
	if r.member != "" {
		m["member_id"] = r.member
	}
	if r.from != "" {
		m["linked_from"] = r.from
	}
	if r.edge != "" {
		m["edge"] = r.edge
	}
	if r.url != "" {
		m["url"] = r.url
	}
	if r.event != "" {
		m["event"] = r.event
	}
	if r.changed {
		m["consent_changed"] = true
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// view is a pageview beacon of visitor cookie on url.
func view(id int, at, cookie, url string) rec {
	return rec{id: id, at: at, kind: "beacon", cookie: cookie, url: url, event: "pageview"}
}

func TestCounter(t *testing.T) {
	window := Config{Since: t0, Until: t0.Add(time.Hour), Top: 10, DedupeWindow: time.Hour, DedupeMax: 1000}
	tests := []struct {
		scenario string
		cfg      Config
		records  []rec
		raw      []string // added after records
		want     Report
		outcomes []Outcome // of records then raw, when checked
	}{
		{
			scenario: "a record delivered twice is counted once",
			records: []rec{
				view(1, "1m", "ann", "https://www.b2s.com/products"),
				view(1, "1m", "ann", "https://www.b2s.com/products"),
				view(2, "2m", "ann", "https://www.b2s.com/products"),
				view(1, "1m", "ann", "https://www.b2s.com/products"),
			},
			outcomes: []Outcome{Counted, Duplicate, Counted, Duplicate},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 2, PageViews: 2, Visitors: 1, Consent: Consents{Full: 2}, TopPages: []Page{{"/products", 2}}}},
				Network: Network{Visitors: 1},
				Read:    4,
				Counted: 2,
				Skipped: Skipped{Duplicates: 2},
			},
		},
		{
			scenario: "records are counted by the edge that wrote them, a duplicate once, one without an edge under none",
			records: []rec{
				{id: 1, at: "1m", cookie: "ann", edge: "fra-1"},
				{id: 2, at: "2m", cookie: "ann", edge: "fra-2"},
				{id: 2, at: "2m", cookie: "ann", edge: "fra-2"},
				{id: 3, at: "3m", cookie: "ann", edge: "fra-1"},
				{id: 4, at: "4m", cookie: "bob"},
				{id: 5, at: "-1h", cookie: "bob", edge: "fra-3"},
			},
			outcomes: []Outcome{Counted, Counted, Duplicate, Counted, Counted, OutsideWindow},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 4, Visitors: 2, Consent: Consents{Full: 4}, TopPages: []Page{}}},
				Network: Network{Visitors: 2},
				Edges:   []EdgeRecords{{"", 1}, {"fra-1", 2}, {"fra-2", 1}},
				Read:    6,
				Counted: 4,
				Skipped: Skipped{Duplicates: 1, OutsideWindow: 1},
			},
		},
		{
			scenario: "since is included and until excluded",
			records: []rec{
				view(1, "-1us", "ann", "/before"),
				view(2, "0s", "ann", "/first"),
				view(3, "59m59.999999s", "ann", "/last"),
				view(4, "1h", "ann", "/until"),
				view(5, "-240h", "ann", "/long-before"),
			},
			outcomes: []Outcome{OutsideWindow, Counted, Counted, OutsideWindow, OutsideWindow},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 2, PageViews: 2, Visitors: 1, Consent: Consents{Full: 2}, TopPages: []Page{{"/first", 1}, {"/last", 1}}}},
				Network: Network{Visitors: 1},
				Read:    5,
				Counted: 2,
				Skipped: Skipped{OutsideWindow: 3},
			},
		},
		{
			scenario: "an open window counts records however early or late",
			cfg:      Config{Top: 10, DedupeWindow: time.Hour, DedupeMax: 1000},
			records:  []rec{view(1, "-8760h", "ann", "/old"), view(2, "8760h", "ann", "/new")},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 2, PageViews: 2, Visitors: 1, Consent: Consents{Full: 2}, TopPages: []Page{{"/new", 1}, {"/old", 1}}}},
				Network: Network{Visitors: 1},
				Read:    2,
				Counted: 2,
			},
		},
		{
			scenario: "a duplicate outside the window is skipped as outside the window",
			records:  []rec{view(1, "2h", "ann", "/"), view(1, "2h", "ann", "/")},
			want:     Report{Sites: []Site{}, Read: 2, Skipped: Skipped{OutsideWindow: 2}},
		},
		{
			scenario: "visitors are distinct cookie ids per site, and a record without one is unidentified",
			records: []rec{
				{id: 1, cookie: "ann"},
				{id: 2, cookie: "ann", url: "https://www.b2s.com/style.css"},
				{id: 3, cookie: "bob"},
				{id: 4},
				{id: 5, host: "suppliers.b2s.com", cookie: "ann"},
				{id: 6, host: "suppliers.b2s.com"},
			},
			want: Report{
				Sites: []Site{
					{Host: "suppliers.b2s.com", Records: 2, Visitors: 1, Unidentified: 1, Consent: Consents{Full: 2}, TopPages: []Page{}},
					{Host: "www.b2s.com", Records: 4, Visitors: 2, Unidentified: 1, Consent: Consents{Full: 4}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 2},
				Read:    6,
				Counted: 6,
			},
		},
		{
			scenario: "page views are pageview beacons, not page records or other events",
			records: []rec{
				{id: 1, cookie: "ann", url: "https://www.b2s.com/products"},
				{id: 2, cookie: "ann", url: "https://www.b2s.com/style.css"},
				view(3, "", "ann", "https://www.b2s.com/products"),
				{id: 4, kind: "beacon", cookie: "ann", url: "https://www.b2s.com/products", event: "enquiry"},
				{id: 5, kind: "beacon", cookie: "ann", url: "https://www.b2s.com/products"},
				{id: 6, kind: "beacon", cookie: "ann", url: "https://www.b2s.com/products", event: "PageView"},
			},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 6, PageViews: 1, Visitors: 1, Consent: Consents{Full: 6}, TopPages: []Page{{"/products", 1}}}},
				Network: Network{Visitors: 1},
				Read:    6,
				Counted: 6,
			},
		},
		{
			scenario: "top pages are ordered by views then path, and cut at top",
			cfg:      Config{Since: t0, Until: t0.Add(time.Hour), Top: 3, DedupeWindow: time.Hour, DedupeMax: 1000},
			records: []rec{
				view(1, "", "ann", "/c"), view(2, "", "ann", "/c"),
				view(3, "", "ann", "/b"), view(4, "", "bob", "/b"),
				view(5, "", "ann", "/a"),
				view(6, "", "ann", "/z"), view(7, "", "ann", "/z"), view(8, "", "bob", "/z"),
				view(9, "", "ann", "/d"),
			},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 9, PageViews: 9, Visitors: 2, Consent: Consents{Full: 9}, TopPages: []Page{{"/z", 3}, {"/b", 2}, {"/c", 2}}}},
				Network: Network{Visitors: 2},
				Read:    9,
				Counted: 9,
			},
		},
		{
			scenario: "a page is its path without query or fragment",
			records: []rec{
				view(1, "", "ann", "https://www.b2s.com/p?utm_source=x"),
				view(2, "", "ann", "https://www.b2s.com/p#top"),
				view(3, "", "ann", "/p"),
				view(4, "", "ann", "https://www.b2s.com"),
				view(5, "", "ann", "https://www.b2s.com/?q=1"),
				view(6, "", "ann", "%zz/bad?x"),
			},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 6, PageViews: 6, Visitors: 1, Consent: Consents{Full: 6}, TopPages: []Page{{"/p", 3}, {"/", 2}, {"%zz/bad", 1}}}},
				Network: Network{Visitors: 1},
				Read:    6,
				Counted: 6,
			},
		},
		{
			scenario: "top 0 lists no pages",
			cfg:      Config{Top: 0, DedupeWindow: time.Hour, DedupeMax: 1000},
			records:  []rec{view(1, "", "ann", "/")},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 1, PageViews: 1, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{}}},
				Network: Network{Visitors: 1},
				Read:    1,
				Counted: 1,
			},
		},
		{
			scenario: "malformed records are skipped and counted",
			raw: []string{
				``,
				`not json`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001"`,
				`null`,
				`[1,2]`,
				`{}`,
				`{"schema":"1"}`,
				`{"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h"}`,
				`{"schema":0,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h"}`,
				`{"schema":1,"ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h"}`,
				`{"schema":1,"event_id":"not-a-uuid-at-all-but-36-chars-long!","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"yesterday","kind":"page","host":"h"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"click","host":"h"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":""}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","cookie_id":"xyz"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","url":42}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","network_id":"xyz"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","network_id":"2ba4d43fa2ecb3a3656759d4833980cg"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","network_id":42}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","network_id":"2ba4d43fa2ecb3a3656759d4833980c0","prev_network_id":"2ba4d43f"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","prev_network_id":"2ba4d43fa2ecb3a3656759d4833980c0"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","network_id":"2ba4d43fa2ecb3a3656759d4833980c0"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","member_id":"m-1"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","member_id":""}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","member_id":"` + strings.Repeat("m", 65) + `"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"partial"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":""}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":null}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":["full"]}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"optout","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"child","member_id":"m-1"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"pending","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"pending","member_id":"m-1"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"granted"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"Pending"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"full","consent_changed":true}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"page","host":"h","consent":"full","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","consent_changed":"yes"}`,
			},
			want: Report{Sites: []Site{}, Read: 37, Skipped: Skipped{Malformed: 37}},
		},
		{
			scenario: "identifiers on a record whose consent is not full are never counted: the record is malformed",
			records: []rec{
				{id: 1, consent: "optout", cookie: "ann", network: "ann", member: "m-1"},
				{id: 2, consent: "gpc", cookie: "bob"},
				{id: 3, consent: "child", cookie: "cat", network: "dan", prev: "cat"},
				{id: 4, consent: "full", cookie: "dan", network: "dan"},
				{id: 5, consent: "pending", cookie: "eve"},
				{id: 6, consent: "pending", network: "eve"},
				{id: 7, consent: "pending", member: "m-2"},
			},
			outcomes: []Outcome{Malformed, Malformed, Malformed, Counted, Malformed, Malformed, Malformed},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 1, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{}}},
				Network: Network{Visitors: 1},
				Read:    7,
				Counted: 1,
				Skipped: Skipped{Malformed: 6},
			},
		},
		{
			scenario: "a pending record is counted by consent and as unidentified, its anon_id among the anonymous visitors",
			raw: []string{
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:01:00.000000Z","kind":"beacon","host":"h","url":"/x","event":"pageview","consent":"pending","anon_id":"q83vEjRWeJCrze8SNFZ4kA"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000002","ts":"2026-11-28T20:02:00.000000Z","kind":"page","host":"h","consent":"pending","anon_id":"q83vEjRWeJCrze8SNFZ4kA"}`,
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000003","ts":"2026-11-28T20:03:00.000000Z","kind":"page","host":"h","consent":"pending"}`,
			},
			outcomes: []Outcome{Counted, Counted, Counted},
			want: Report{
				Sites: []Site{{
					Host: "h", Records: 3, PageViews: 1, Unidentified: 3, Consent: Consents{Pending: 3}, TopPages: []Page{{"/x", 1}},
					Anonymous: &Anonymous{Records: 2, Visitors: 1, Sessions: 1, Days: []AnonDay{{Day: "2026-11-28", Records: 2, Visitors: 1, Sessions: 1}}},
				}},
				Read:    3,
				Counted: 3,
			},
		},
		{
			scenario: "grants, withdrawals and refusals of consent are counted per site, from the records marked consent_changed",
			records: []rec{
				{id: 1, host: "www.b2s.com", consent: "pending"},
				{id: 2, host: "www.b2s.com", consent: "full", cookie: "ann", network: "ann", changed: true}, // the endpoint's grant
				{id: 3, host: "www.b2s.com", consent: "full", cookie: "ann", network: "ann"},                // identified since
				{id: 4, host: "www.b2s.com", consent: "optout", changed: true},                              // the endpoint's withdrawal
				{id: 5, host: "www.b2s.com", consent: "optout"},                                             // opted out since
				{id: 6, host: "www.b2smade.com", consent: "full", cookie: "bob", network: "bob", changed: true},
				{id: 7, host: "www.b2smade.com", consent: "full", cookie: "cat", network: "cat"}, // no change: a returning visitor
				{id: 8, host: "suppliers.b2s.com", consent: "full", cookie: "dan", network: "dan"},
				{id: 9, host: "suppliers.b2s.com", consent: "pending"},                 // pending: no mark
				{id: 10, host: "suppliers.b2s.com", consent: "pending", changed: true}, // the platform's refusal deleted the cookies
			},
			want: Report{
				Sites: []Site{
					{Host: "suppliers.b2s.com", Records: 3, Visitors: 1, Unidentified: 2, Consent: Consents{Full: 1, Pending: 2}, ConsentChanges: ConsentChanges{Refused: 1}, TopPages: []Page{}},
					{Host: "www.b2s.com", Records: 5, Visitors: 1, Unidentified: 3, Consent: Consents{Full: 2, OptOut: 2, Pending: 1}, ConsentChanges: ConsentChanges{Granted: 1, Withdrawn: 1}, TopPages: []Page{}},
					{Host: "www.b2smade.com", Records: 2, Visitors: 2, Consent: Consents{Full: 2}, ConsentChanges: ConsentChanges{Granted: 1}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 4},
				Read:    10,
				Counted: 10,
			},
		},
		{
			scenario: "a consent change the edge never marks is malformed: on gpc or child, on a grant without cookie_id",
			records: []rec{
				{id: 1, consent: "gpc", changed: true},
				{id: 2, consent: "child", changed: true},
				{id: 3, consent: "pending", changed: true, cookie: "eve"}, // a refusal carries no ID
				{id: 4, consent: "full", changed: true},
				{id: 5, changed: true, cookie: "ann"}, // no consent field: full
				{id: 6, consent: "optout", changed: true},
				{id: 7, consent: "pending", changed: true},
			},
			outcomes: []Outcome{Malformed, Malformed, Malformed, Malformed, Counted, Counted, Counted},
			want: Report{
				Sites:   []Site{{Host: "www.b2s.com", Records: 3, Visitors: 1, Unidentified: 2, Consent: Consents{Full: 1, OptOut: 1, Pending: 1}, ConsentChanges: ConsentChanges{Granted: 1, Withdrawn: 1, Refused: 1}, TopPages: []Page{}}},
				Network: Network{Visitors: 1},
				Read:    7,
				Counted: 3,
				Skipped: Skipped{Malformed: 4},
			},
		},
		{
			scenario: "a newer schema is counted apart, even when a field changed type",
			raw: []string{
				`{"schema":2,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.000000Z","kind":"beacon","host":"h","event":"pageview"}`,
				`{"schema":3,"event_id":{"v":1},"ts":1764360000,"kind":["page"],"host":"h"}`,
				`{"kind":["page"],"schema":3}`,
			},
			outcomes: []Outcome{UnknownSchema, UnknownSchema, UnknownSchema},
			want:     Report{Sites: []Site{}, Read: 3, Skipped: Skipped{UnknownSchema: 3}},
		},
		{
			scenario: "fields the report does not know are ignored",
			raw: []string{
				`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00.5Z","kind":"beacon","host":"h","url":"/x","event":"pageview","new_field":{"a":[1,2]},"cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0"}`,
			},
			want: Report{
				Sites:   []Site{{Host: "h", Records: 1, PageViews: 1, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{{"/x", 1}}}},
				Network: Network{Visitors: 1},
				Read:    1,
				Counted: 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.DedupeMax == 0 {
				cfg = window
			}
			c := NewCounter(cfg)
			var got []Outcome
			add := func(v string) {
				o, err := c.Add([]byte(v))
				if (err != nil) != (o == Malformed || o == UnknownSchema) {
					t.Errorf("Add(%s) = %v, error %v: an error goes with exactly the skipped-as-invalid outcomes", v, o, err)
				}
				got = append(got, o)
			}
			for _, r := range tt.records {
				add(r.json(t))
			}
			for _, v := range tt.raw {
				add(v)
			}
			if tt.outcomes != nil && !reflect.DeepEqual(got, tt.outcomes) {
				t.Errorf("outcomes = %v, want %v", got, tt.outcomes)
			}
			rep := c.Report()
			want := tt.want
			want.Since, want.Until = cfg.Since, cfg.Until
			if !reflect.DeepEqual(rep, want) {
				t.Errorf("report:\n got  %+v\n want %+v", rep, want)
			}
			sk := rep.Skipped
			if sum := rep.Counted + sk.Duplicates + sk.OutsideWindow + sk.Malformed + sk.UnknownSchema; sum != rep.Read {
				t.Errorf("counted and skipped add up to %d, read %d", sum, rep.Read)
			}
		})
	}
}

func TestMalformedRecordsSayWhy(t *testing.T) {
	tests := []struct{ value, want string }{
		{`not json`, "not JSON"},
		{`{"schema":1,"event_id":"x","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h"}`, `event_id "x" is not a UUID`},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28 20:00","kind":"page","host":"h"}`, "ts"},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h","cookie_id":"ABC"}`, "cookie_id"},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","network_id":"ABC"}`, `network_id "ABC" is not 32 hex digits`},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","network_id":"2ba4d43fa2ecb3a3656759d4833980c0","prev_network_id":"x"}`, `prev_network_id "x" is not 32 hex digits`},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h","consent":"gpc","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0"}`, `consent "gpc", yet the record carries identifiers`},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h","consent":"none"}`, `consent "none" is none of full, optout, gpc, child, pending`},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h","consent":"pending","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0"}`, `consent "pending", yet the record carries identifiers`},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h","consent":"gpc","consent_changed":true}`, `consent_changed on a gpc record`},
		{`{"schema":1,"event_id":"019ac5a1-2b00-7000-8000-000000000001","ts":"2026-11-28T20:00:00Z","kind":"page","host":"h","consent_changed":true}`, `consent_changed on a full record without cookie_id`},
		{`{"schema":7}`, "schema 7 is newer than 1"},
	}
	for _, tt := range tests {
		_, err := NewCounter(Config{DedupeWindow: time.Hour, DedupeMax: 10}).Add([]byte(tt.value))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Add(%s) error = %v, want it to mention %q", tt.value, err, tt.want)
		}
	}
}

func TestDedupe(t *testing.T) {
	id := func(n byte) [16]byte { return [16]byte{15: n} }
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		id   byte
		at   time.Duration
		want seenResult
	}
	tests := []struct {
		scenario string
		window   time.Duration
		max      int
		steps    []step
	}{
		{
			scenario: "a copy is caught however far apart in the stream, within the window",
			window:   time.Hour, max: 100,
			steps: []step{
				{1, 0, firstSeen}, {2, 30 * time.Minute, firstSeen}, {3, time.Hour, firstSeen},
				{1, 0, seenBefore}, {2, 30 * time.Minute, seenBefore}, {3, time.Hour, seenBefore},
			},
		},
		{
			scenario: "a record further behind the newest than the window is not checked",
			window:   time.Hour, max: 100,
			steps: []step{
				{1, 0, firstSeen},
				{2, 2 * time.Hour, firstSeen},
				{1, 0, tooOld},
				{3, 0, tooOld},
				{4, 2*time.Hour - 59*time.Minute, firstSeen},
				{4, 2*time.Hour - 59*time.Minute, seenBefore},
			},
		},
		{
			scenario: "records arriving out of ts order within the window are all checked",
			window:   time.Hour, max: 100,
			steps: []step{
				{1, time.Hour, firstSeen}, {2, 10 * time.Minute, firstSeen}, {3, 50 * time.Minute, firstSeen},
				{2, 10 * time.Minute, seenBefore}, {1, time.Hour, seenBefore},
			},
		},
		{
			scenario: "past the cap the oldest part of the window is forgotten first",
			window:   time.Hour, max: 3,
			steps: []step{
				{1, 0, firstSeen}, {2, 30 * time.Minute, firstSeen}, {3, 40 * time.Minute, firstSeen},
				{4, 50 * time.Minute, firstSeen}, // over the cap: the bucket of 1 goes
				{1, 0, tooOld},
				{2, 30 * time.Minute, seenBefore},
				{4, 50 * time.Minute, seenBefore},
			},
		},
		{
			scenario: "times before 1970 fall in their own buckets",
			window:   time.Hour, max: 100,
			steps: []step{
				{1, -time.Duration(t0.UnixNano()) - time.Nanosecond, firstSeen},
				{2, -time.Duration(t0.UnixNano()), firstSeen},
				{1, -time.Duration(t0.UnixNano()) - time.Nanosecond, seenBefore},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			d := newDedupe(tt.window, tt.max)
			for i, s := range tt.steps {
				if got := d.add(id(s.id), at(s.at)); got != s.want {
					t.Fatalf("step %d: add(%d, t0%+v) = %v, want %v", i, s.id, s.at, got, s.want)
				}
				if d.size > tt.max {
					t.Fatalf("step %d: %d ids held, cap %d", i, d.size, tt.max)
				}
			}
		})
	}
}

func TestRecordsTooOldToCheckAreCountedAndReported(t *testing.T) {
	c := NewCounter(Config{Top: 10, DedupeWindow: time.Minute, DedupeMax: 100})
	for _, r := range []rec{view(1, "0s", "ann", "/"), view(2, "10m", "ann", "/"), view(1, "0s", "ann", "/")} {
		if o, err := c.Add([]byte(r.json(t))); o != Counted || err != nil {
			t.Fatalf("Add = %v, %v; want counted", o, err)
		}
	}
	if rep := c.Report(); rep.Counted != 3 || rep.NotDeduplicated != 1 {
		t.Fatalf("counted %d, not deduplicated %d; want 3 and 1", rep.Counted, rep.NotDeduplicated)
	}
}

// permutations calls f with every order of 0..n-1 (Heap's algorithm).
func permutations(n int, f func([]int)) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var gen func(k int)
	gen = func(k int) {
		if k <= 1 {
			f(p)
			return
		}
		for i := range k - 1 {
			gen(k - 1)
			if k%2 == 0 {
				p[i], p[k-1] = p[k-1], p[i]
			} else {
				p[0], p[k-1] = p[k-1], p[0]
			}
		}
		gen(k - 1)
	}
	gen(n)
}

func TestPermutationsAreEveryOrderOnce(t *testing.T) {
	seen := make(map[string]bool)
	permutations(4, func(p []int) { seen[fmt.Sprint(p)] = true })
	if len(seen) != 24 {
		t.Fatalf("%d distinct orders of 4, want 24", len(seen))
	}
}

func TestNetworkVisitors(t *testing.T) {
	const (
		mainSite = "www.b2s.com"
		sister   = "www.b2smade.com"
		third    = "suppliers.b2s.com"
	)
	tests := []struct {
		scenario string
		records  []rec // counted in every order
		want     Report
	}{
		{
			scenario: "a visitor linked to a site that knew them under another network id counts once, whether the link comes before or after that site's own records",
			records: []rec{
				{id: 1, host: mainSite, consent: "full", cookie: "ann", network: "ann"},
				{id: 2, host: sister, consent: "full", cookie: "annS", network: "annS"},
				{id: 3, host: sister, consent: "full", cookie: "annS", network: "ann", prev: "annS"},
				{id: 4, host: sister, consent: "full", cookie: "annS", network: "ann"},
				{id: 5, host: sister, consent: "full", cookie: "bob", network: "bob"},
			},
			want: Report{
				Sites: []Site{
					{Host: mainSite, Records: 1, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{}},
					{Host: sister, Records: 4, Visitors: 2, Consent: Consents{Full: 4}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 2},
				Read:    5,
				Counted: 5,
			},
		},
		{
			scenario: "links chained across three sites make one visitor",
			records: []rec{
				{id: 1, host: mainSite, consent: "full", cookie: "a", network: "a"},
				{id: 2, host: sister, consent: "full", cookie: "b", network: "b"},
				{id: 3, host: third, consent: "full", cookie: "c", network: "c"},
				{id: 4, host: third, consent: "full", cookie: "c", network: "b", prev: "c"},  // from the sister site
				{id: 5, host: sister, consent: "full", cookie: "b", network: "a", prev: "b"}, // later, from the main site
				{id: 6, host: mainSite, consent: "full", cookie: "dan", network: "dan"},      // someone else
			},
			want: Report{
				Sites: []Site{
					{Host: third, Records: 2, Visitors: 1, Consent: Consents{Full: 2}, TopPages: []Page{}},
					{Host: mainSite, Records: 2, Visitors: 2, Consent: Consents{Full: 2}, TopPages: []Page{}},
					{Host: sister, Records: 2, Visitors: 1, Consent: Consents{Full: 2}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 2},
				Read:    6,
				Counted: 6,
			},
		},
		{
			scenario: "a record without network_id counts its cookie_id as its network id",
			records: []rec{
				{id: 1, host: mainSite, cookie: "ann"},                                  // written before consent and network_id
				{id: 2, host: mainSite, consent: "full", cookie: "ann", network: "ann"}, // the same visitor since
				{id: 3, host: sister, cookie: "bob"},                                    // written before
				{id: 4, host: sister, consent: "full", cookie: "bob", network: "ann", prev: "bob"},
				{id: 5, host: sister, cookie: "cat"},
			},
			want: Report{
				Sites: []Site{
					{Host: mainSite, Records: 2, Visitors: 1, Consent: Consents{Full: 2}, TopPages: []Page{}},
					{Host: sister, Records: 3, Visitors: 2, Consent: Consents{Full: 3}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 2},
				Read:    5,
				Counted: 5,
			},
		},
		{
			scenario: "records without consent to identify are counted by consent and as unidentified, never as visitors",
			records: []rec{
				{id: 1, host: mainSite, consent: "full", cookie: "ann", network: "ann", member: "m-1"},
				{id: 2, host: mainSite, consent: "optout"},
				{id: 3, host: mainSite, consent: "gpc"},
				{id: 4, host: mainSite, consent: "child"},
				{id: 5, host: mainSite, consent: "full"}, // e.g. a cross-site beacon without third-party cookies
				{id: 6, host: sister, consent: "gpc"},
				{id: 7, host: sister, consent: "pending"},
			},
			want: Report{
				Sites: []Site{
					{Host: mainSite, Records: 5, Visitors: 1, Unidentified: 4, Consent: Consents{Full: 2, OptOut: 1, GPC: 1, Child: 1}, TopPages: []Page{}},
					{Host: sister, Records: 2, Unidentified: 2, Consent: Consents{GPC: 1, Pending: 1}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 1, Members: 1},
				Read:    7,
				Counted: 7,
			},
		},
		{
			scenario: "members are distinct member ids across the sites",
			records: []rec{
				{id: 1, host: mainSite, consent: "full", cookie: "ann", network: "ann", member: "m-1"},
				{id: 2, host: sister, consent: "full", cookie: "annS", network: "ann", member: "m-1"},
				{id: 3, host: sister, consent: "full", cookie: "bob", network: "bob", member: "M-1"},
				{id: 4, host: sister, consent: "full", cookie: "cat", network: "cat", member: "m-1 "},
				{id: 5, host: mainSite, consent: "full", cookie: "dan", network: "dan"},
			},
			want: Report{
				Sites: []Site{
					{Host: mainSite, Records: 2, Visitors: 2, Consent: Consents{Full: 2}, TopPages: []Page{}},
					{Host: sister, Records: 3, Visitors: 3, Consent: Consents{Full: 3}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 4, Members: 3},
				Read:    5,
				Counted: 5,
			},
		},
		{
			scenario: "a link read outside the window still merges the ids in it, and counts no visitor itself",
			records: []rec{
				{id: 1, at: "10m", host: mainSite, consent: "full", cookie: "ann", network: "ann"},
				{id: 2, at: "20m", host: sister, consent: "full", cookie: "annS", network: "annS"},
				{id: 3, at: "1h30m", host: sister, consent: "full", cookie: "annS", network: "ann", prev: "annS"},
				{id: 4, at: "-1h", host: third, consent: "full", cookie: "eve", network: "zed", prev: "eve"},
			},
			want: Report{
				Sites: []Site{
					{Host: mainSite, Records: 1, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{}},
					{Host: sister, Records: 1, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 1},
				Read:    4,
				Counted: 2,
				Skipped: Skipped{OutsideWindow: 2},
			},
		},
		{
			scenario: "a link delivered twice merges once and is counted once",
			records: []rec{
				{id: 1, host: mainSite, consent: "full", cookie: "ann", network: "ann"},
				{id: 2, host: sister, consent: "full", cookie: "annS", network: "ann", prev: "annS"},
				{id: 2, host: sister, consent: "full", cookie: "annS", network: "ann", prev: "annS"},
				{id: 3, host: sister, consent: "full", cookie: "annS", network: "annS"},
			},
			want: Report{
				Sites: []Site{
					{Host: mainSite, Records: 1, Visitors: 1, Consent: Consents{Full: 1}, TopPages: []Page{}},
					{Host: sister, Records: 2, Visitors: 1, Consent: Consents{Full: 2}, TopPages: []Page{}},
				},
				Network: Network{Visitors: 1},
				Read:    4,
				Counted: 3,
				Skipped: Skipped{Duplicates: 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			values := make([]string, len(tt.records))
			for i, r := range tt.records {
				values[i] = r.json(t)
			}
			want := tt.want
			want.Since, want.Until = t0, t0.Add(time.Hour)
			orders := 0
			permutations(len(values), func(order []int) {
				orders++
				c := NewCounter(Config{Since: t0, Until: t0.Add(time.Hour), Top: 10, DedupeWindow: time.Hour, DedupeMax: 1000})
				for _, i := range order {
					if o, err := c.Add([]byte(values[i])); err != nil {
						t.Fatalf("order %v: Add(%s) = %v, %v", order, values[i], o, err)
					}
				}
				if rep := c.Report(); !reflect.DeepEqual(rep, want) {
					t.Fatalf("in the order %v:\n got  %+v\n want %+v", order, rep, want)
				}
			})
			t.Logf("the same report in all %d orders", orders)
		})
	}
}

func TestUnionFindMergesInAnyOrder(t *testing.T) {
	id := func(n int) [16]byte { return [16]byte{14: byte(n >> 8), 15: byte(n)} }
	// Two chains, 0-1-...-499 and 500-...-999, merged link by link in an
	// order that is neither forward nor backward.
	var links [][2]int
	for i := range 999 {
		if i != 499 {
			links = append(links, [2]int{i, i + 1})
		}
	}
	for i := range links {
		j := (i * 7919) % len(links)
		links[i], links[j] = links[j], links[i]
	}
	u := unionFind{parent: make(map[[16]byte][16]byte)}
	for _, l := range links {
		u.union(id(l[1]), id(l[0]))
	}
	a, b := u.find(id(0)), u.find(id(999))
	if a == b {
		t.Fatal("the two chains are one set")
	}
	for n := range 1000 {
		want := a
		if n >= 500 {
			want = b
		}
		if got := u.find(id(n)); got != want {
			t.Fatalf("find(%d) = %x, want %x", n, got, want)
		}
	}
	if got := u.find(id(5000)); got != id(5000) {
		t.Errorf("an id never merged: find = %x, want itself", got)
	}
}
