package main

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// This file is the counting: it knows the record (configs/record.schema.json)
// and nothing of Kafka, so it is tested alone. A Counter takes message
// values one at a time, in the order they are read, and a Report is what it
// counted.

// supportedSchema is the newest record schema version this report reads.
// A newer version may have changed the meaning of a field, so its records
// are skipped and counted apart rather than guessed at.
const supportedSchema = 1

// pageviewEvent is the beacon event name (query e) that marks a page view:
// the README's tag is <img src="/b.gif?e=pageview">.
const pageviewEvent = "pageview"

// Config says what a Counter counts.
type Config struct {
	// Since and Until bound the records' ts: Since <= ts < Until. A zero
	// Since or Until leaves that side open.
	Since, Until time.Time
	// Top is how many pages each site lists, most viewed first.
	Top int
	// DedupeWindow is how far behind the newest record (by ts) event IDs
	// are remembered. A record delivered twice carries the same event_id
	// and the same ts, so its copies are caught as long as the newest ts
	// read has not moved more than this past it.
	DedupeWindow time.Duration
	// DedupeMax caps the event IDs held. When it is reached the oldest
	// part of the window is forgotten first.
	DedupeMax int
}

// Outcome is what Add did with a record.
type Outcome int

const (
	Counted       Outcome = iota // counted in the report
	Duplicate                    // same event_id as a record already counted
	OutsideWindow                // valid, but its ts is outside [Since, Until)
	Malformed                    // not JSON, or a field the report needs is missing or invalid
	UnknownSchema                // schema newer than supportedSchema
)

func (o Outcome) String() string {
	switch o {
	case Counted:
		return "counted"
	case Duplicate:
		return "duplicate"
	case OutsideWindow:
		return "outside the window"
	case Malformed:
		return "malformed"
	case UnknownSchema:
		return "unknown schema"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Counter counts records into a Report. It is not safe for concurrent use.
type Counter struct {
	cfg     Config
	sites   map[string]*siteTally
	seen    *dedupe
	read    int64
	counted int64
	skipped Skipped
	// late counts records counted without a duplicate check, because their
	// ts was older than the part of the window still remembered.
	late int64
}

type siteTally struct {
	records   int64
	pageViews int64
	visitors  map[[16]byte]struct{}
	pages     map[string]int64
}

// NewCounter returns a Counter for cfg. DedupeWindow and DedupeMax must be
// positive.
func NewCounter(cfg Config) *Counter {
	return &Counter{
		cfg:   cfg,
		sites: make(map[string]*siteTally),
		seen:  newDedupe(cfg.DedupeWindow, cfg.DedupeMax),
	}
}

// record holds the fields of a record the report uses; encoding/json
// ignores the others, as the schema asks of consumers.
type record struct {
	Schema   int    `json:"schema"`
	EventID  string `json:"event_id"`
	TS       string `json:"ts"`
	Kind     string `json:"kind"`
	Host     string `json:"host"`
	CookieID string `json:"cookie_id"`
	URL      string `json:"url"`
	Event    string `json:"event"`
}

// Add counts one Kafka message value. The error says why a record was
// skipped as Malformed or UnknownSchema, and is nil otherwise.
func (c *Counter) Add(value []byte) (Outcome, error) {
	c.read++
	var r record
	err := json.Unmarshal(value, &r)
	switch {
	case err != nil && !json.Valid(value):
		c.skipped.Malformed++
		return Malformed, fmt.Errorf("not JSON: %w", err)
	case r.Schema > supportedSchema:
		// Checked before the other errors: a newer schema may have
		// changed a field's type, and encoding/json still fills in the
		// fields after one of the wrong type.
		c.skipped.UnknownSchema++
		return UnknownSchema, fmt.Errorf("schema %d is newer than %d", r.Schema, supportedSchema)
	case err != nil:
		c.skipped.Malformed++
		return Malformed, err
	}
	id, ts, cookie, err := r.validate()
	if err != nil {
		c.skipped.Malformed++
		return Malformed, err
	}
	if ts.Before(c.cfg.Since) && !c.cfg.Since.IsZero() || !ts.Before(c.cfg.Until) && !c.cfg.Until.IsZero() {
		c.skipped.OutsideWindow++
		return OutsideWindow, nil
	}
	switch c.seen.add(id, ts) {
	case seenBefore:
		c.skipped.Duplicates++
		return Duplicate, nil
	case tooOld:
		c.late++
	}

	c.counted++
	s := c.sites[r.Host]
	if s == nil {
		s = &siteTally{visitors: make(map[[16]byte]struct{}), pages: make(map[string]int64)}
		c.sites[r.Host] = s
	}
	s.records++
	if cookie != nil {
		s.visitors[*cookie] = struct{}{}
	}
	if r.Kind == "beacon" && r.Event == pageviewEvent {
		s.pageViews++
		s.pages[pagePath(r.URL)]++
	}
	return Counted, nil
}

// validate checks the fields the report relies on and returns them parsed;
// cookie is nil when the record has no cookie_id.
func (r *record) validate() (id [16]byte, ts time.Time, cookie *[16]byte, err error) {
	if r.Schema != supportedSchema {
		return id, ts, nil, fmt.Errorf("schema %d, want %d", r.Schema, supportedSchema)
	}
	id, ok := parseUUID(r.EventID)
	if !ok {
		return id, ts, nil, fmt.Errorf("event_id %q is not a UUID", r.EventID)
	}
	ts, err = time.Parse(time.RFC3339Nano, r.TS)
	if err != nil {
		return id, ts, nil, fmt.Errorf("ts %q is not an RFC 3339 time", r.TS)
	}
	if r.Kind != "page" && r.Kind != "beacon" {
		return id, ts, nil, fmt.Errorf("kind %q is neither page nor beacon", r.Kind)
	}
	if r.Host == "" {
		return id, ts, nil, errors.New("host is missing")
	}
	if r.CookieID != "" {
		var c [16]byte
		if len(r.CookieID) != 32 {
			return id, ts, nil, fmt.Errorf("cookie_id %q is not 32 hex digits", r.CookieID)
		}
		if _, err := hex.Decode(c[:], []byte(r.CookieID)); err != nil {
			return id, ts, nil, fmt.Errorf("cookie_id %q is not 32 hex digits", r.CookieID)
		}
		cookie = &c
	}
	return id, ts, cookie, nil
}

// parseUUID parses the 8-4-4-4-12 hex form into its 16 bytes, which is
// what the dedupe set holds (a third of the string's size).
func parseUUID(s string) (id [16]byte, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, false
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	_, err := hex.Decode(id[:], []byte(h))
	return id, err == nil
}

// pagePath is the path of a page URL without query or fragment, "/" when
// empty. A URL that does not parse is cut at its first '?' or '#'.
func pagePath(raw string) string {
	var p string
	if u, err := url.Parse(raw); err == nil {
		p = u.Path
	} else {
		p, _, _ = strings.Cut(raw, "?")
		p, _, _ = strings.Cut(p, "#")
	}
	if p == "" {
		p = "/"
	}
	return p
}

// Report is what a Counter counted. Its JSON form is b2sreport's -json
// output.
type Report struct {
	Topic string    `json:"topic,omitempty"`
	Group string    `json:"group,omitempty"`
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Sites are ordered by host.
	Sites []Site `json:"sites"`
	// Read is every message read: Counted plus every Skipped.
	Read    int64   `json:"read"`
	Counted int64   `json:"counted"`
	Skipped Skipped `json:"skipped"`
	// NotDeduplicated counts records counted without a duplicate check:
	// their ts was further behind the newest record read than
	// -dedupe-window (or the -dedupe-max cap) reaches. A second copy of
	// one of them would have been counted twice.
	NotDeduplicated int64 `json:"not_deduplicated"`
}

// Site is the report of one host.
type Site struct {
	Host string `json:"host"`
	// Records counts every record of the site, pages and beacons.
	Records int64 `json:"records"`
	// PageViews counts beacon records whose event is "pageview".
	PageViews int64 `json:"page_views"`
	// Visitors counts distinct cookie_ids among the site's records.
	Visitors int64 `json:"visitors"`
	// TopPages are the most viewed paths, by views then path.
	TopPages []Page `json:"top_pages"`
}

// Page is a path and its page views.
type Page struct {
	Path  string `json:"path"`
	Views int64  `json:"views"`
}

// Skipped counts the records read but not counted, by reason.
type Skipped struct {
	Duplicates    int64 `json:"duplicates"`
	OutsideWindow int64 `json:"outside_window"`
	Malformed     int64 `json:"malformed"`
	UnknownSchema int64 `json:"unknown_schema"`
}

// Report returns what has been counted so far.
func (c *Counter) Report() Report {
	rep := Report{
		Since:           c.cfg.Since,
		Until:           c.cfg.Until,
		Sites:           make([]Site, 0, len(c.sites)),
		Read:            c.read,
		Counted:         c.counted,
		Skipped:         c.skipped,
		NotDeduplicated: c.late,
	}
	for host, s := range c.sites {
		site := Site{
			Host:      host,
			Records:   s.records,
			PageViews: s.pageViews,
			Visitors:  int64(len(s.visitors)),
			TopPages:  make([]Page, 0, len(s.pages)),
		}
		for p, n := range s.pages {
			site.TopPages = append(site.TopPages, Page{Path: p, Views: n})
		}
		slices.SortFunc(site.TopPages, func(a, b Page) int {
			return cmp.Or(cmp.Compare(b.Views, a.Views), strings.Compare(a.Path, b.Path))
		})
		site.TopPages = site.TopPages[:min(len(site.TopPages), max(c.cfg.Top, 0))]
		rep.Sites = append(rep.Sites, site)
	}
	slices.SortFunc(rep.Sites, func(a, b Site) int { return strings.Compare(a.Host, b.Host) })
	return rep
}

// dedupe remembers event IDs in buckets of ts, so that forgetting the
// oldest part of the window is dropping a whole bucket. Copies of a record
// carry the same ts, so they always meet in one bucket.
type dedupe struct {
	width   time.Duration // of a bucket: the window over dedupeBuckets
	max     int
	size    int
	buckets map[int64]map[[16]byte]struct{}
	started bool
	newest  int64 // key of the newest bucket added to
	floor   int64 // keys below it are forgotten
}

// dedupeBuckets is how many buckets span the window. The set holds between
// the window and 1/dedupeBuckets more.
const dedupeBuckets = 16

type seenResult int

const (
	firstSeen  seenResult = iota
	seenBefore            // a copy was added before
	tooOld                // older than what is remembered: not checked, not added
)

func newDedupe(window time.Duration, limit int) *dedupe {
	return &dedupe{
		width:   max(window/dedupeBuckets, time.Nanosecond),
		max:     limit,
		buckets: make(map[int64]map[[16]byte]struct{}),
	}
}

func (d *dedupe) key(ts time.Time) int64 {
	// Floor division, so buckets before 1970 are as wide as the others.
	n, w := ts.UnixNano(), int64(d.width)
	k := n / w
	if n%w < 0 {
		k--
	}
	return k
}

func (d *dedupe) add(id [16]byte, ts time.Time) seenResult {
	k := d.key(ts)
	if d.started && k < d.floor {
		return tooOld
	}
	b := d.buckets[k]
	if _, ok := b[id]; ok {
		return seenBefore
	}
	if b == nil {
		b = make(map[[16]byte]struct{})
		d.buckets[k] = b
	}
	b[id] = struct{}{}
	d.size++
	switch {
	case !d.started:
		d.started, d.newest, d.floor = true, k, k-dedupeBuckets
	case k > d.newest:
		d.newest = k
		d.forgetBelow(k - dedupeBuckets)
	}
	for d.size > d.max {
		// Over the cap: forget the oldest bucket, even the newest if
		// it is the only one left (then nothing is checked until ts
		// moves on to the next bucket).
		oldest := d.newest
		for key := range d.buckets {
			oldest = min(oldest, key)
		}
		d.forgetBelow(oldest + 1)
	}
	return firstSeen
}

// forgetBelow drops the buckets with keys below floor.
func (d *dedupe) forgetBelow(floor int64) {
	if floor <= d.floor {
		return
	}
	d.floor = floor
	for key, b := range d.buckets {
		if key < floor {
			d.size -= len(b)
			delete(d.buckets, key)
		}
	}
}
