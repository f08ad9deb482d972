package main

import (
	"cmp"
	"crypto/sha256"
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

// consent is a record's consent; a record without the field is consentFull.
type consent uint8

const (
	consentFull consent = iota
	consentOptOut
	consentGPC
	consentChild
	// consentPending is a visitor where the site requires consent
	// (require_consent) who has not given it yet.
	consentPending
	numConsents
)

// consentNames are the values of the record's consent field, by consent.
var consentNames = [numConsents]string{"full", "optout", "gpc", "child", "pending"}

// Counter counts records into a Report. It is not safe for concurrent use.
type Counter struct {
	cfg   Config
	sites map[string]*siteTally
	// edges counts the counted records by the edge that wrote them;
	// anyEdge says one of them named an edge.
	edges   map[string]int64
	anyEdge bool
	// networkIDs are the network IDs of the counted records, members their
	// member IDs hashed (memberKey); merged says which IDs are one visitor.
	networkIDs map[[16]byte]struct{}
	members    map[[16]byte]struct{}
	merged     unionFind
	seen       *dedupe
	read       int64
	counted    int64
	skipped    Skipped
	// late counts records counted without a duplicate check, because their
	// ts was older than the part of the window still remembered.
	late int64
	// campaigns count the mail records by campaign; mailInvalid those of
	// links that did not open (mail.go).
	campaigns   map[string]*campaignTally
	mailInvalid int64
}

type siteTally struct {
	records      int64
	pageViews    int64
	unidentified int64
	bots         int64
	consent      [numConsents]int64
	// granted, withdrawn and refused count the records marked
	// consent_changed: consent full (a grant), optout (a withdrawal) and
	// pending (the consent platform's refusal).
	granted, withdrawn, refused int64
	visitors                    map[[16]byte]struct{}
	pages                       map[string]int64
	// clients tallies the records that are no bot's and carry a ua, by
	// browser, OS and device (clientDims), then by name.
	clients [numDims]map[string]*clientTally
	// anon counts the records with an anon_id (anon.go).
	anon anonTally
}

// The dimensions of the ua object the report breaks sites down by.
const (
	dimBrowser = iota
	dimOS
	dimDevice
	numDims
)

type clientTally struct {
	pageViews int64
	visitors  map[[16]byte]struct{}
}

// unknownName stands for a ua member a record does not have.
const unknownName = "unknown"

// NewCounter returns a Counter for cfg. DedupeWindow and DedupeMax must be
// positive.
func NewCounter(cfg Config) *Counter {
	return &Counter{
		cfg:        cfg,
		sites:      make(map[string]*siteTally),
		edges:      make(map[string]int64),
		networkIDs: make(map[[16]byte]struct{}),
		members:    make(map[[16]byte]struct{}),
		merged:     unionFind{parent: make(map[[16]byte][16]byte)},
		seen:       newDedupe(cfg.DedupeWindow, cfg.DedupeMax),
	}
}

// record holds the fields of a record the report uses; encoding/json
// ignores the others, as the schema asks of consumers. Consent is kept raw,
// and MemberID is a pointer, to tell an empty or null value from none.
type record struct {
	Schema        int             `json:"schema"`
	EventID       string          `json:"event_id"`
	TS            string          `json:"ts"`
	Kind          string          `json:"kind"`
	Host          string          `json:"host"`
	Edge          string          `json:"edge"`
	Consent       json.RawMessage `json:"consent"`
	CookieID      string          `json:"cookie_id"`
	NetworkID     string          `json:"network_id"`
	PrevNetworkID string          `json:"prev_network_id"`
	MemberID      *string         `json:"member_id"`
	URL           string          `json:"url"`
	Event         string          `json:"event"`
	Bot           string          `json:"bot"`
	AnonID        *string         `json:"anon_id"`
	// ConsentChanged is true on the record at which the visitor's
	// consent changed.
	ConsentChanged bool `json:"consent_changed"`
	UA             *struct {
		Browser string `json:"browser"`
		OS      string `json:"os"`
		Device  string `json:"device"`
	} `json:"ua"`
	// Mail records (mail.go).
	Link     string `json:"link"`
	Campaign string `json:"campaign"`
	Prefetch string `json:"prefetch"`
}

// fields are the parsed fields of a valid record. The identifiers are set
// only when identified: consent full and a cookie_id.
type fields struct {
	eventID    [16]byte
	ts         time.Time
	consent    consent
	identified bool
	cookie     [16]byte
	// network is the network_id, or the cookie_id in a record written
	// before network_id existed.
	network   [16]byte
	prev      [16]byte // prev_network_id, when hasPrev
	hasPrev   bool
	member    [16]byte // memberKey of member_id, when hasMember
	hasMember bool
	mail      bool     // a record of a mail link: open, click or unsubscribe
	anon      [16]byte // anon_id, when hasAnon (anon.go)
	hasAnon   bool
	changed   bool // consent_changed: a grant (full) or withdrawal (optout)
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
	f, err := r.validate()
	if err != nil {
		c.skipped.Malformed++
		return Malformed, err
	}
	if f.hasPrev {
		// Whichever record says two network IDs are one visitor, and
		// whenever it is read: the IDs are merged for the whole report.
		c.merged.union(f.prev, f.network)
	}
	ts := f.ts
	if ts.Before(c.cfg.Since) && !c.cfg.Since.IsZero() || !ts.Before(c.cfg.Until) && !c.cfg.Until.IsZero() {
		c.skipped.OutsideWindow++
		return OutsideWindow, nil
	}
	switch c.seen.add(f.eventID, ts) {
	case seenBefore:
		c.skipped.Duplicates++
		return Duplicate, nil
	case tooOld:
		c.late++
	}

	c.counted++
	if f.mail {
		c.addMail(&r, f)
		return Counted, nil
	}
	s := c.sites[r.Host]
	if s == nil {
		s = &siteTally{visitors: make(map[[16]byte]struct{}), pages: make(map[string]int64)}
		c.sites[r.Host] = s
	}
	s.records++
	c.edges[r.Edge]++
	c.anyEdge = c.anyEdge || r.Edge != ""
	s.consent[f.consent]++
	if f.changed {
		switch f.consent {
		case consentFull:
			s.granted++
		case consentOptOut:
			s.withdrawn++
		default:
			s.refused++
		}
	}
	if f.hasAnon {
		s.anon.add(f.anon, ts)
	}
	if f.identified {
		s.visitors[f.cookie] = struct{}{}
		c.networkIDs[f.network] = struct{}{}
		if f.hasMember {
			c.members[f.member] = struct{}{}
		}
	} else {
		s.unidentified++
	}
	pageView := r.Kind == "beacon" && r.Event == pageviewEvent
	if pageView {
		s.pageViews++
		s.pages[pagePath(r.URL)]++
	}
	if r.Bot != "" {
		s.bots++
	} else if r.UA != nil {
		for d, name := range [numDims]string{r.UA.Browser, r.UA.OS, r.UA.Device} {
			s.countClient(d, name, pageView, f)
		}
	}
	return Counted, nil
}

// countClient counts a record that is no bot's under name in dimension d.
func (s *siteTally) countClient(d int, name string, pageView bool, f fields) {
	if name == "" {
		name = unknownName
	}
	if s.clients[d] == nil {
		s.clients[d] = make(map[string]*clientTally)
	}
	ct := s.clients[d][name]
	if ct == nil {
		ct = &clientTally{visitors: make(map[[16]byte]struct{})}
		s.clients[d][name] = ct
	}
	if pageView {
		ct.pageViews++
	}
	if f.identified {
		ct.visitors[f.cookie] = struct{}{}
	}
}

// validate checks the fields the report relies on and returns them parsed.
func (r *record) validate() (f fields, err error) {
	if r.Schema != supportedSchema {
		return f, fmt.Errorf("schema %d, want %d", r.Schema, supportedSchema)
	}
	var ok bool
	if f.eventID, ok = parseUUID(r.EventID); !ok {
		return f, fmt.Errorf("event_id %q is not a UUID", r.EventID)
	}
	if f.ts, err = time.Parse(time.RFC3339Nano, r.TS); err != nil {
		return f, fmt.Errorf("ts %q is not an RFC 3339 time", r.TS)
	}
	if r.Kind != "page" && r.Kind != "beacon" && !mailKinds[r.Kind] {
		return f, fmt.Errorf("kind %q is none of page, beacon, open, click, unsubscribe", r.Kind)
	}
	if r.Host == "" {
		return f, errors.New("host is missing")
	}
	if r.Consent != nil {
		// Absent means full; null or any other value is not a consent
		// the report can assume.
		var name string
		i := -1
		if json.Unmarshal(r.Consent, &name) == nil {
			i = slices.Index(consentNames[:], name)
		}
		if i < 0 {
			return f, fmt.Errorf("consent %s is none of %s", r.Consent, strings.Join(consentNames[:], ", "))
		}
		f.consent = consent(i)
	}
	if r.AnonID != nil {
		// Only records that allow no identifier, and no child's, carry
		// one: anything else contradicts itself.
		if f.anon, ok = parseAnonID(*r.AnonID); !ok {
			return f, fmt.Errorf("anon_id %q is not 16 bytes of base64url", *r.AnonID)
		}
		if f.consent == consentFull || f.consent == consentChild {
			return f, fmt.Errorf("consent %s, yet the record carries an anon_id", consentNames[f.consent])
		}
		f.hasAnon = true
	}
	if r.ConsentChanged {
		// The edge marks a change of consent only where the site
		// requires it: the grant (full), the withdrawal (optout), the
		// consent platform's refusal (pending, as the identifier
		// cookies are deleted). Any other is a record the report cannot
		// read as one of these.
		switch {
		case mailKinds[r.Kind]:
			return f, fmt.Errorf("consent_changed on a %s record: mail links change no consent", r.Kind)
		case f.consent != consentFull && f.consent != consentOptOut && f.consent != consentPending:
			return f, fmt.Errorf("consent_changed on a %s record: a change of consent is a grant (full), a withdrawal (optout) or a refusal (pending)", consentNames[f.consent])
		case f.consent == consentFull && r.CookieID == "":
			return f, errors.New("consent_changed on a full record without cookie_id: a grant identifies the visitor")
		}
		f.changed = true
	}
	if mailKinds[r.Kind] {
		return r.validateMail(f)
	}
	hasIDs := r.CookieID != "" || r.NetworkID != "" || r.PrevNetworkID != "" || r.MemberID != nil
	switch {
	case !hasIDs:
		return f, nil
	case f.consent != consentFull:
		// Contradictory: the record says its visitor is not to be
		// identified. Counting it either way would be a guess.
		return f, fmt.Errorf("consent %s, yet the record carries identifiers", r.Consent)
	case r.CookieID == "":
		return f, errors.New("network_id, prev_network_id or member_id without cookie_id")
	case r.PrevNetworkID != "" && r.NetworkID == "":
		return f, errors.New("prev_network_id without network_id")
	}
	if f.cookie, ok = parseHexID(r.CookieID); !ok {
		return f, fmt.Errorf("cookie_id %q is not 32 hex digits", r.CookieID)
	}
	f.network = f.cookie // a record written before network_id existed
	if r.NetworkID != "" {
		if f.network, ok = parseHexID(r.NetworkID); !ok {
			return f, fmt.Errorf("network_id %q is not 32 hex digits", r.NetworkID)
		}
	}
	if r.PrevNetworkID != "" {
		if f.prev, ok = parseHexID(r.PrevNetworkID); !ok {
			return f, fmt.Errorf("prev_network_id %q is not 32 hex digits", r.PrevNetworkID)
		}
		f.hasPrev = true
	}
	if r.MemberID != nil {
		if n := len(*r.MemberID); n < 1 || n > maxMemberLen {
			return f, fmt.Errorf("member_id of %d bytes, want 1 to %d", n, maxMemberLen)
		}
		f.member, f.hasMember = memberKey(*r.MemberID), true
	}
	f.identified = true
	return f, nil
}

// maxMemberLen is the schema's maxLength of member_id.
const maxMemberLen = 64

// parseHexID parses an ID of 32 hex digits (cookie_id, network_id) into
// its 16 bytes.
func parseHexID(s string) (id [16]byte, ok bool) {
	if len(s) != 32 {
		return id, false
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

// memberKey is what the member set holds for a member ID: 128 bits of its
// SHA-256, as small as a cookie ID whatever the length of the member ID,
// and with no chance of two members meeting in practice.
func memberKey(member string) [16]byte {
	sum := sha256.Sum256([]byte(member))
	return [16]byte(sum[:16])
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
	// Network counts visitors across all the sites.
	Network Network `json:"network"`
	// Campaigns are the mail campaigns, by name; MailLinksInvalid counts
	// the records of mail links that did not open.
	Campaigns        []Campaign `json:"campaigns,omitempty"`
	MailLinksInvalid int64      `json:"mail_links_invalid,omitempty"`
	// Edges counts the records by the edge that wrote them (their edge
	// field), ordered by edge; "" counts records without one. Absent
	// when no record names its edge.
	Edges []EdgeRecords `json:"edges,omitempty"`
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
	// Unidentified counts the records that identify no visitor: consent
	// other than full, or full without a cookie_id.
	Unidentified int64 `json:"unidentified"`
	// Consent counts the records by consent; a record without the field
	// is full.
	Consent Consents `json:"consent"`
	// ConsentChanges counts the records marked consent_changed, where
	// the site requires consent: grants and withdrawals.
	ConsentChanges ConsentChanges `json:"consent_changes"`
	// TopPages are the most viewed paths, by views then path.
	TopPages []Page `json:"top_pages"`
	// Bots counts the records flagged as a bot's (any bot class), and
	// BotShare is their share of Records, from 0 to 1.
	Bots     int64   `json:"bots"`
	BotShare float64 `json:"bot_share"`
	// Browsers, OSes and Devices break down the records that are no
	// bot's and carry a ua: page views and visitors (distinct cookie_ids)
	// by the ua's browser, os and device ("unknown" where it has none),
	// most page views first, the names past -top summed up as "other". A
	// visitor seen with two browsers counts under each. Records without
	// ua (written before it existed, or of clients nothing is known of)
	// are left out.
	Browsers []Client `json:"browsers,omitempty"`
	OSes     []Client `json:"oses,omitempty"`
	Devices  []Client `json:"devices,omitempty"`
	// Anonymous counts the visitors of the records that carry an anon_id
	// (consent optout, gpc or pending), apart from Visitors: distinct anon_ids per
	// UTC day, and their sessions. Absent when no record has one.
	Anonymous *Anonymous `json:"anonymous,omitempty"`
}

// Client is one browser, OS or device class of a site's breakdown.
type Client struct {
	Name      string `json:"name"`
	PageViews int64  `json:"page_views"`
	Visitors  int64  `json:"visitors"`
}

// otherName sums up the names past -top in a breakdown.
const otherName = "other"

// EdgeRecords is the number of records one edge wrote.
type EdgeRecords struct {
	Edge    string `json:"edge"`
	Records int64  `json:"records"`
}

// Consents counts records by their consent.
type Consents struct {
	Full    int64 `json:"full"`
	OptOut  int64 `json:"optout"`
	GPC     int64 `json:"gpc"`
	Child   int64 `json:"child"`
	Pending int64 `json:"pending"`
}

// ConsentChanges counts the records at which a visitor's consent changed
// (consent_changed). Granted are the full ones: the consent endpoint's
// grant, or the first record identified after the consent platform's
// cookie granted it. Withdrawn are the optout ones: the consent
// endpoint's withdrawal. Refused are the pending ones: the consent
// platform's cookie said no to a browser that held the edge's identifier
// cookies, which that response deleted.
type ConsentChanges struct {
	Granted   int64 `json:"granted"`
	Withdrawn int64 `json:"withdrawn"`
	Refused   int64 `json:"refused"`
}

// Network is the report of all the sites together.
type Network struct {
	// Visitors counts distinct network_ids (the cookie_id of a record
	// without one), two IDs being one visitor when a record's
	// prev_network_id joins them, directly or through others.
	Visitors int64 `json:"visitors"`
	// Members counts distinct member_ids.
	Members int64 `json:"members"`
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
		Since:            c.cfg.Since,
		Until:            c.cfg.Until,
		Sites:            make([]Site, 0, len(c.sites)),
		Read:             c.read,
		Counted:          c.counted,
		Skipped:          c.skipped,
		NotDeduplicated:  c.late,
		Campaigns:        c.campaignReport(),
		MailLinksInvalid: c.mailInvalid,
		Network: Network{
			Visitors: c.networkVisitors(),
			Members:  int64(len(c.members)),
		},
	}
	for host, s := range c.sites {
		site := Site{
			Host:         host,
			Records:      s.records,
			PageViews:    s.pageViews,
			Visitors:     int64(len(s.visitors)),
			Unidentified: s.unidentified,
			Consent: Consents{
				Full:    s.consent[consentFull],
				OptOut:  s.consent[consentOptOut],
				GPC:     s.consent[consentGPC],
				Child:   s.consent[consentChild],
				Pending: s.consent[consentPending],
			},
			ConsentChanges: ConsentChanges{Granted: s.granted, Withdrawn: s.withdrawn, Refused: s.refused},
			TopPages:       make([]Page, 0, len(s.pages)),
		}
		for p, n := range s.pages {
			site.TopPages = append(site.TopPages, Page{Path: p, Views: n})
		}
		slices.SortFunc(site.TopPages, func(a, b Page) int {
			return cmp.Or(cmp.Compare(b.Views, a.Views), strings.Compare(a.Path, b.Path))
		})
		site.TopPages = site.TopPages[:min(len(site.TopPages), max(c.cfg.Top, 0))]
		site.Bots = s.bots
		if s.records > 0 {
			site.BotShare = float64(s.bots) / float64(s.records)
		}
		site.Browsers = s.breakdown(dimBrowser, c.cfg.Top)
		site.OSes = s.breakdown(dimOS, c.cfg.Top)
		site.Devices = s.breakdown(dimDevice, c.cfg.Top)
		site.Anonymous = s.anon.report()
		rep.Sites = append(rep.Sites, site)
	}
	slices.SortFunc(rep.Sites, func(a, b Site) int { return strings.Compare(a.Host, b.Host) })
	if c.anyEdge {
		for e, n := range c.edges {
			rep.Edges = append(rep.Edges, EdgeRecords{Edge: e, Records: n})
		}
		slices.SortFunc(rep.Edges, func(a, b EdgeRecords) int { return strings.Compare(a.Edge, b.Edge) })
	}
	return rep
}

// breakdown lists dimension d's names, most page views first, then most
// visitors, then by name; past top the rest are summed up as "other",
// whose visitors are distinct across the names it sums. Names come from
// what clients send (Client Hints brands), so they are many only when
// someone makes them up: -top bounds the output.
func (s *siteTally) breakdown(d, top int) []Client {
	if len(s.clients[d]) == 0 {
		return nil
	}
	out := make([]Client, 0, len(s.clients[d]))
	for name, ct := range s.clients[d] {
		out = append(out, Client{Name: name, PageViews: ct.pageViews, Visitors: int64(len(ct.visitors))})
	}
	slices.SortFunc(out, func(a, b Client) int {
		return cmp.Or(cmp.Compare(b.PageViews, a.PageViews), cmp.Compare(b.Visitors, a.Visitors), strings.Compare(a.Name, b.Name))
	})
	top = max(top, 1)
	if len(out) <= top {
		return out
	}
	other := Client{Name: otherName}
	visitors := make(map[[16]byte]struct{})
	for _, c := range out[top-1:] {
		other.PageViews += c.PageViews
		for v := range s.clients[d][c.Name].visitors {
			visitors[v] = struct{}{}
		}
	}
	other.Visitors = int64(len(visitors))
	return append(out[:top-1], other)
}

// networkVisitors counts the network IDs of the counted records, those
// merged into one counting once. Merges are applied here, after every
// record is read, so the order the records came in does not matter.
func (c *Counter) networkVisitors() int64 {
	if len(c.merged.parent) == 0 {
		return int64(len(c.networkIDs))
	}
	roots := make(map[[16]byte]struct{})
	for id := range c.networkIDs {
		roots[c.merged.find(id)] = struct{}{}
	}
	return int64(len(roots))
}

// unionFind joins IDs into sets (a disjoint-set forest). Only IDs that were
// merged are held; an ID it has never seen is a set of its own.
type unionFind struct {
	parent map[[16]byte][16]byte
}

// find returns the ID that stands for the set of id, halving the path to
// it on the way so that later finds are shorter.
func (u *unionFind) find(id [16]byte) [16]byte {
	for {
		p, ok := u.parent[id]
		if !ok {
			return id
		}
		gp, ok := u.parent[p]
		if !ok {
			return p
		}
		u.parent[id] = gp
		id = gp
	}
}

// union makes a and b one set.
func (u *unionFind) union(a, b [16]byte) {
	if ra, rb := u.find(a), u.find(b); ra != rb {
		u.parent[ra] = rb
	}
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
