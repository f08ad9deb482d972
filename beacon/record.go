package beacon

import (
	"encoding/base64"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the record's schema version, written in every record as
// "schema". It changes only when a change would break a consumer (see the
// JSON Schema in configs/record.schema.json).
const SchemaVersion = 1

// Maximum sizes of record strings: the most bytes each takes in the
// record's JSON, between its quotes, after replacement and escaping (see
// appendString). A longer value is cut at a character boundary, never
// inside an escape, and the field is named in the record's "truncated"
// list. A value as a consumer decodes it is never longer in UTF-8 than
// its limit: the record escapes nothing but '"' and '\\'.
const (
	MaxHostLen      = 255
	MaxURLLen       = 2048
	MaxReferrerLen  = 2048
	MaxUserAgentLen = 512
	MaxMethodLen    = 16
	MaxEventLen     = 64
	MaxParamKeyLen  = 64
	MaxParamValLen  = 512
	MaxGeoNameLen   = 128
	MaxASNOrgLen    = 128
	MaxBotLen       = 32
	MaxEdgeLen      = 64

	// maxIDLen bounds event_id, ip and the visitor IDs, which the edge
	// makes or checks itself; maxKindLen bounds kind.
	maxIDLen   = 64
	maxKindLen = 16
)

// MaxRecordLen is the most bytes AppendJSON writes for one record. The
// limits above bound every field but params, whose parameters are written
// in order while the record stays within it; the rest are left out and
// "params" is named in "truncated". Under 14 times a typical record (about
// 600 bytes), it bounds what an outage costs the spool: when the limits
// counted bytes before escaping, a record of control bytes could take 95
// times.
const MaxRecordLen = 8 << 10

// Record kinds.
const (
	KindPage   = "page"
	KindBeacon = "beacon"
)

// Geo is the location a GeoIP database gives for the client IP.
type Geo struct {
	// Country is the ISO 3166-1 alpha-2 code, e.g. "CN".
	Country string
	// Subdivision is the ISO 3166-2 code of the largest subdivision without
	// the country prefix, e.g. "GD".
	Subdivision string
	// City is the city's English name.
	City string
	// Lat and Lon are in degrees; valid only when HasCoords.
	Lat, Lon  float64
	HasCoords bool
}

// Empty reports whether g holds nothing worth recording.
func (g *Geo) Empty() bool {
	return g.Country == "" && g.Subdivision == "" && g.City == "" && !g.HasCoords
}

// ASN is the autonomous system a GeoIP ASN database gives for the client
// IP: the network that announces it, which for a business visitor is often
// their company's or its provider's.
type ASN struct {
	// Number is the autonomous system number, e.g. 4134; 0 when unknown.
	Number uint32
	// Org is the organisation the number is registered to, e.g. "Chinanet".
	Org string
}

// Empty reports whether a holds nothing worth recording.
func (a *ASN) Empty() bool { return a.Number == 0 && a.Org == "" }

// Anon is what a GeoIP Anonymous IP database says of the client IP: a set
// of the flags below, zero when the IP is not listed.
type Anon uint8

// Anon flags, each one of the database's is_* fields.
const (
	// AnonAnonymous is is_anonymous: the IP belongs to an anonymizing
	// network of any kind, including one of the kinds below.
	AnonAnonymous Anon = 1 << iota
	// AnonVPN is is_anonymous_vpn: an anonymous VPN provider.
	AnonVPN
	// AnonHosting is is_hosting_provider: a hosting or VPN provider.
	AnonHosting
	// AnonTor is is_tor_exit_node: a Tor exit node.
	AnonTor
	// AnonProxy is is_public_proxy: a public proxy.
	AnonProxy
	// AnonResidentialProxy is is_residential_proxy: an anonymizing network
	// on a residential ISP's addresses.
	AnonResidentialProxy

	anonKnown = AnonAnonymous | AnonVPN | AnonHosting | AnonTor | AnonProxy | AnonResidentialProxy
)

// anonNames are the record's names of the Anon flags, in the order written.
var anonNames = [...]struct {
	flag Anon
	name string
}{
	{AnonAnonymous, "anonymous"},
	{AnonVPN, "vpn"},
	{AnonHosting, "hosting"},
	{AnonTor, "tor"},
	{AnonProxy, "proxy"},
	{AnonResidentialProxy, "residential_proxy"},
}

// Record describes one request seen at the edge. The zero value of every
// optional field means absent.
type Record struct {
	EventID string
	Time    time.Time
	Kind    string
	Host    string
	// Edge names the edge that wrote the record (the app's edge_id).
	Edge      string
	IP        string
	CookieID  string
	Method    string
	URL       string
	Referrer  string
	UserAgent string
	Status    int
	Bytes     int64
	Event     string
	// Bot is why the request looks automated (see ClassifyBot and the
	// Bot constants), or "" for a browser.
	Bot string
	// Client is the browser, OS and device (the record's ua).
	Client Client
	Geo    Geo
	// ASN and Anon (below) come from the optional ASN and Anonymous IP
	// databases.
	ASN    ASN
	Params []Param

	// NetworkID is the visitor's ID across the network's sites; written
	// with a cookie ID only.
	NetworkID string
	// MemberID is the signed-in member's account ID.
	MemberID string
	// The small fields sit together, so the record takes no padding for
	// each (it is copied into every page's writer, one allocation whose
	// size class it decides).
	CookieState CookieState
	Anon        Anon
	// Consent is what the record may carry; identifiers are written only
	// under ConsentFull.
	Consent Consent
	// IPTruncated says IP was cut to its network prefix.
	IPTruncated bool
	// ConsentChanged marks the record at which the visitor's consent
	// changed: the first one identified after consent was given where the
	// site requires it, and the consent endpoint's grant and withdrawal.
	ConsentChanged bool
	// CrossSite is a request made from another site's page (Sec-Fetch-Site:
	// cross-site), e.g. the main site's beacon on a sister site.
	CrossSite bool
	// LinkedFrom is the network site a link token brought the visitor
	// from, on the request that exchanged it.
	LinkedFrom string
	// PrevNetworkID is the network ID the visitor had on this site before
	// a link token joined them to another (only when it changed).
	PrevNetworkID string
	// Mail is what a record of a mail link carries (see mail.go); nil
	// for every other record.
	Mail *Mail

	// AnonID counts the visitors of records without identifying consent
	// (see AnonIDs); written only for such a record, and never for a
	// child's.
	AnonID AnonID
}

// NewEventID returns a UUIDv7 (RFC 9562, section 5.7): 48 bits of Unix
// milliseconds, then 74 random bits. IDs sort by time, which helps
// consumers that deduplicate over a window. The random bits come from the
// runtime's ChaCha8 generator, seeded from the OS: uniqueness is what
// matters here, and it costs no system call.
func NewEventID(now time.Time) string {
	ms := uint64(now.UnixMilli())
	hi, lo := rand.Uint64(), rand.Uint64()
	var u [16]byte
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6] = 0x70 | byte(hi>>60)&0x0f // version 7
	u[7] = byte(hi >> 52)
	u[8] = 0x80 | byte(lo>>58)&0x3f // variant 10
	for i := 9; i < 16; i++ {
		u[i] = byte(lo >> (8 * (i - 9)))
	}
	const digits = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = digits[c>>4], digits[c&0xf]
		j += 2
	}
	return string(s[:])
}

// AppendJSON appends r as one JSON object to b, at most MaxRecordLen
// bytes. The output is always valid JSON whatever the field values hold,
// and no string in it holds a control character (see appendString).
func (r *Record) AppendJSON(b []byte) []byte {
	start := len(b)
	var cut cutSet
	str := func(b []byte, s string, max int, f cutSet) []byte {
		b, c := appendString(b, s, max)
		if c {
			cut |= f
		}
		return b
	}
	b = append(b, `{"schema":`...)
	b = strconv.AppendInt(b, SchemaVersion, 10)
	b = append(b, `,"event_id":`...)
	b = str(b, r.EventID, maxIDLen, cutEventID)
	b = append(b, `,"ts":"`...)
	b = appendTimestamp(b, r.Time)
	b = append(b, `","kind":`...)
	b = str(b, r.Kind, maxKindLen, cutKind)
	b = append(b, `,"host":`...)
	b = str(b, r.Host, MaxHostLen, cutHost)
	if r.Edge != "" {
		b = append(b, `,"edge":`...)
		b = str(b, r.Edge, MaxEdgeLen, cutEdge)
	}
	b = append(b, `,"ip":`...)
	b = str(b, r.IP, maxIDLen, cutIP)
	if r.IPTruncated {
		b = append(b, `,"ip_truncated":true`...)
	}
	b = append(b, `,"consent":"`...)
	b = append(b, r.Consent.String()...)
	b = append(b, '"')
	// A change of consent is a grant (full), a withdrawal (optout) or
	// the consent platform's refusal (pending); a child's or a GPC
	// record tells none, whatever set the flag.
	if r.ConsentChanged && (r.Consent == ConsentFull || r.Consent == ConsentOptOut || r.Consent == ConsentPending) {
		b = append(b, `,"consent_changed":true`...)
	}
	if r.CookieID != "" && r.Consent.Identifying() {
		b = append(b, `,"cookie_id":`...)
		b = str(b, r.CookieID, maxIDLen, cutCookieID)
		b = append(b, `,"cookie_state":"`...)
		b = append(b, r.CookieState.String()...)
		b = append(b, '"')
		if r.NetworkID != "" {
			b = append(b, `,"network_id":`...)
			b = str(b, r.NetworkID, maxIDLen, cutNetworkID)
		}
		if r.PrevNetworkID != "" {
			b = append(b, `,"prev_network_id":`...)
			b = str(b, r.PrevNetworkID, maxIDLen, cutPrevNetworkID)
		}
		if r.MemberID != "" {
			b = append(b, `,"member_id":`...)
			b = str(b, r.MemberID, MaxMemberLen, cutMemberID)
		}
	}
	if !r.AnonID.IsZero() && !r.Consent.Identifying() && r.Consent != ConsentChild {
		b = append(b, `,"anon_id":"`...)
		b = base64.RawURLEncoding.AppendEncode(b, r.AnonID[:])
		b = append(b, '"')
	}
	if r.LinkedFrom != "" {
		b = append(b, `,"linked_from":`...)
		b = str(b, r.LinkedFrom, MaxHostLen, cutLinkedFrom)
	}
	if r.CrossSite {
		b = append(b, `,"cross_site":true`...)
	}
	b = append(b, `,"method":`...)
	b = str(b, r.Method, MaxMethodLen, cutMethod)
	b = append(b, `,"url":`...)
	b = str(b, r.URL, MaxURLLen, cutURL)
	b = append(b, `,"referrer":`...)
	b = str(b, r.Referrer, MaxReferrerLen, cutReferrer)
	b = append(b, `,"user_agent":`...)
	b = str(b, r.UserAgent, MaxUserAgentLen, cutUserAgent)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	if r.Event != "" {
		b = append(b, `,"event":`...)
		b = str(b, r.Event, MaxEventLen, cutEvent)
	}
	if r.Bot != "" {
		b = append(b, `,"bot":`...)
		b = str(b, r.Bot, MaxBotLen, cutBot)
	}
	if !r.Client.Empty() {
		var c cutSet
		b, c = r.Client.appendJSON(append(b, `,"ua":`...))
		cut |= c
	}
	if !r.Geo.Empty() {
		var c cutSet
		b, c = r.Geo.appendJSON(append(b, `,"geo":`...))
		cut |= c
	}
	if !r.ASN.Empty() {
		var c cutSet
		b, c = r.ASN.appendJSON(append(b, `,"asn":`...))
		cut |= c
	}
	if r.Anon&anonKnown != 0 {
		b = r.Anon.appendJSON(append(b, `,"anon":`...))
	}
	if r.Mail != nil {
		b, cut = r.Mail.appendJSON(b, r, start, cut)
	}
	if r.Kind == KindBeacon {
		b = append(b, `,"params":{`...)
		// A parameter is written whole or not at all, leaving room for
		// the closing braces and a "truncated" list naming params.
		limit := start + MaxRecordLen - len(`}}`) - (cut | cutParams).listLen()
		for i, p := range r.Params {
			mark := len(b)
			if i > 0 {
				b = append(b, ',')
			}
			var ck, cv bool
			b, ck = appendString(b, p.Key, MaxParamKeyLen)
			b = append(b, ':')
			b, cv = appendString(b, p.Value, MaxParamValLen)
			if len(b) > limit {
				b = b[:mark]
				cut |= cutParams
				break
			}
			if ck || cv {
				cut |= cutParams
			}
		}
		b = append(b, '}')
	}
	if cut != 0 {
		b = cut.appendJSON(b)
	}
	return append(b, '}')
}

// cutSet is the set of fields of a record whose values were cut to their
// limits, which the record lists as "truncated".
type cutSet uint32

const (
	cutEventID cutSet = 1 << iota
	cutKind
	cutHost
	cutEdge
	cutIP
	cutCookieID
	cutNetworkID
	cutPrevNetworkID
	cutMemberID
	cutLinkedFrom
	cutMethod
	cutURL
	cutReferrer
	cutUserAgent
	cutEvent
	cutBot
	cutUA
	cutGeoCountry
	cutGeoSubdivision
	cutGeoCity
	cutASNOrg
	cutParams
	cutDestination

	numCut = iota
)

// cutNames are the names "truncated" lists, in the order of the cutSet
// bits and of the list.
var cutNames = [numCut]string{
	"event_id", "kind", "host", "edge", "ip", "cookie_id", "network_id", "prev_network_id", "member_id", "linked_from",
	"method", "url", "referrer", "user_agent", "event", "bot", "ua", "geo.country", "geo.subdivision", "geo.city",
	"asn.org", "params", "destination",
}

// appendJSON writes the "truncated" member, comma first.
func (c cutSet) appendJSON(b []byte) []byte {
	b = append(b, `,"truncated":[`...)
	sep := false
	for i, name := range cutNames {
		if c&(1<<i) == 0 {
			continue
		}
		if sep {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"')
		sep = true
	}
	return append(b, ']')
}

// listLen is the length of what appendJSON writes for c.
func (c cutSet) listLen() int {
	if c == cutParams {
		return len(`,"truncated":["params"]`)
	}
	n := len(`,"truncated":[]`) - 1 // less the comma the first name lacks
	for i, name := range cutNames {
		if c&(1<<i) != 0 {
			n += len(name) + len(`,""`)
		}
	}
	return n
}

// appendJSON writes g and reports which of its names were cut.
func (g *Geo) appendJSON(b []byte) ([]byte, cutSet) {
	var cut cutSet
	b = append(b, '{')
	sep := false
	field := func(name, v string, f cutSet) {
		if v == "" {
			return
		}
		if sep {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		var c bool
		if b, c = appendString(b, v, MaxGeoNameLen); c {
			cut |= f
		}
		sep = true
	}
	field("country", g.Country, cutGeoCountry)
	field("subdivision", g.Subdivision, cutGeoSubdivision)
	field("city", g.City, cutGeoCity)
	// Coordinates out of range (or NaN) are no location. 'g' writes one
	// under 1e-4 with an exponent, where 'f' would write hundreds of
	// zeros, and any other as 'f' does.
	if g.HasCoords && g.Lat >= -90 && g.Lat <= 90 && g.Lon >= -180 && g.Lon <= 180 {
		if sep {
			b = append(b, ',')
		}
		b = append(b, `"lat":`...)
		b = strconv.AppendFloat(b, g.Lat, 'g', -1, 64)
		b = append(b, `,"lon":`...)
		b = strconv.AppendFloat(b, g.Lon, 'g', -1, 64)
	}
	return append(b, '}'), cut
}

// appendJSON writes c and reports whether any of its strings was cut.
func (c *Client) appendJSON(b []byte) ([]byte, cutSet) {
	var cut cutSet
	b = append(b, '{')
	sep := false
	for _, f := range [...]struct{ name, v string }{
		{"browser", c.Browser}, {"browser_version", c.BrowserVersion}, {"os", c.OS},
		{"os_version", c.OSVersion}, {"device", c.Device}, {"model", c.Model},
	} {
		if f.v == "" || f.name == "device" && !validDevice(f.v) {
			continue
		}
		if sep {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.name...)
		b = append(b, `":`...)
		var cc bool
		if b, cc = appendString(b, f.v, MaxClientLen); cc {
			cut = cutUA
		}
		sep = true
	}
	return append(b, '}'), cut
}

// validDevice reports whether d is one of the Device constants, the
// schema's enum.
func validDevice(d string) bool {
	return d == DeviceDesktop || d == DeviceMobile || d == DeviceTablet || d == DeviceTV
}

// appendJSON writes a and reports whether its org was cut.
func (a *ASN) appendJSON(b []byte) ([]byte, cutSet) {
	var cut cutSet
	b = append(b, '{')
	if a.Number != 0 {
		b = append(b, `"number":`...)
		b = strconv.AppendUint(b, uint64(a.Number), 10)
	}
	if a.Org != "" {
		if a.Number != 0 {
			b = append(b, ',')
		}
		b = append(b, `"org":`...)
		var c bool
		if b, c = appendString(b, a.Org, MaxASNOrgLen); c {
			cut = cutASNOrg
		}
	}
	return append(b, '}'), cut
}

// appendJSON writes the flags that are set, each as true.
func (a Anon) appendJSON(b []byte) []byte {
	b = append(b, '{')
	sep := false
	for _, f := range anonNames {
		if a&f.flag == 0 {
			continue
		}
		if sep {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.name...)
		b = append(b, `":true`...)
		sep = true
	}
	return append(b, '}')
}

// Bound returns s as a record stores it (see appendString): control
// characters and invalid UTF-8 replaced by U+FFFD, then cut at a character
// boundary so that its JSON encoding takes at most max bytes.
func Bound(s string, max int) string {
	if len(s) <= max {
		i := 0
		for i < len(s) && plain(s[i]) {
			i++
		}
		if i == len(s) {
			return s
		}
	}
	var buf [128]byte
	b, _ := appendString(buf[:0], s, max)
	b = b[1 : len(b)-1]
	esc := indexByte(unsafeString(b), '\\') >= 0
	if !esc && string(b) == s {
		return s
	}
	// Undo the only escapes, \" and \\.
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' {
			i++
		}
		out = append(out, b[i])
	}
	return unsafeString(out) // out is not written again
}

// appendString appends s to b as a record stores a string: a JSON string
// (RFC 8259, section 7) of at most max bytes between its quotes, and
// reports whether s was cut to fit. Analysts export records to TSV and
// line-oriented tools, where a raw CR, LF, TAB or NUL in a decoded value
// breaks a row, valid JSON though it is; so every control character is
// replaced by U+FFFD: C0 (U+0000-U+001F, TAB, CR and LF included), DEL
// (U+007F), C1 (U+0080-U+009F, NEL included) and the line and paragraph
// separators U+2028 and U+2029, which JavaScript and Python's splitlines
// end lines at. Each byte of invalid UTF-8 becomes U+FFFD too. The
// replacement is written as UTF-8 (3 bytes), so the only escapes left are
// \" and \\, and an input byte costs at most 3 output bytes. s is cut at
// a character boundary, never inside an escape or a replacement.
func appendString(b []byte, s string, max int) ([]byte, bool) {
	b = append(b, '"')
	n := 0     // bytes of s consumed
	start := 0 // bytes of s written
	// lim is where s must end to fit: max, less what escapes and
	// replacements have added so far.
	lim := max
scan:
	for n < len(s) {
		// Most of a record's text (URLs, User-Agents) is printable ASCII
		// with nothing to escape: skip it eight bytes at a time, then
		// byte by byte, as far as it fits.
		end := min(len(s), lim)
		for n+8 <= end && plain8(le64(s[n:])) {
			n += 8
		}
		for n < end && plain(s[n]) {
			n++
		}
		if n == len(s) {
			break
		}
		c := s[n]
		size := 1
		switch {
		case c >= utf8.RuneSelf:
			var r rune
			r, size = utf8.DecodeRuneInString(s[n:])
			if !(r == utf8.RuneError && size == 1 || r <= 0x9f || r == '\u2028' || r == '\u2029') {
				if n+size > end {
					break scan
				}
				n += size
				continue
			}
		case c == '"' || c == '\\':
			if n+2 > lim {
				break scan
			}
			b = append(b, s[start:n]...)
			b = append(b, '\\', c)
			lim--
			n++
			start = n
			continue
		case plain(c): // at end, with no room left
			break scan
		}
		if n+len(replacement) > lim {
			break
		}
		b = append(b, s[start:n]...)
		b = append(b, replacement...)
		lim -= len(replacement) - size
		n += size
		start = n
	}
	b = append(b, s[start:n]...)
	return append(b, '"'), n < len(s)
}

// plain reports whether a JSON string holds c as it is: printable ASCII
// other than '"' and '\\'.
func plain(c byte) bool { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' }

// replacement is U+FFFD as UTF-8.
const replacement = "\uFFFD"

// plain8 reports whether all eight bytes of w are printable ASCII that a
// JSON string holds as they are: none below 0x20, none of '"', '\\' and
// DEL (0x7f), none from 0x80 (UTF-8 to check). The tests are the classic
// SWAR ones (a byte is zero in x iff its high bit survives in
// (x-0x01..) &^ x); they may mark bytes above a true match wrongly, never
// report a match that is not there.
func plain8(w uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	zero := func(x uint64) uint64 { return (x - lo) &^ x & hi }
	return (w&hi)|
		((w-0x20*lo)&^w&hi)| // a byte below 0x20
		zero(w^('"'*lo))|zero(w^('\\'*lo))|zero(w^(0x7f*lo)) == 0
}

// le64 reads the first eight bytes of s, little-endian.
func le64(s string) uint64 { return binary.LittleEndian.Uint64(unsafeBytes(s[:8])) }

// tsLayout is the record's timestamp: UTC, microseconds.
const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

// appendTimestamp appends t as tsLayout does, without the layout
// interpreter (a quarter of the record's encoding time otherwise). Years
// outside 0000-9999 take the general path.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, tsLayout)
	}
	hour, min, sec := t.Clock()
	us := t.Nanosecond() / 1000
	var d [27]byte
	put := func(at, v, width int) {
		for i := at + width - 1; i >= at; i-- {
			d[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	d[4] = '-'
	put(5, int(month), 2)
	d[7] = '-'
	put(8, day, 2)
	d[10] = 'T'
	put(11, hour, 2)
	d[13] = ':'
	put(14, min, 2)
	d[16] = ':'
	put(17, sec, 2)
	d[19] = '.'
	put(20, us, 6)
	d[26] = 'Z'
	return append(b, d[:]...)
}
