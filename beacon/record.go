package beacon

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the record's schema version, written in every record as
// "schema". It changes only when a change would break a consumer (see the
// JSON Schema in configs/record.schema.json).
const SchemaVersion = 1

// Maximum lengths of record strings, in bytes of UTF-8. Longer values are
// cut at a character boundary; invalid UTF-8 is replaced by U+FFFD first.
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
)

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
	EventID     string
	Time        time.Time
	Kind        string
	Host        string
	IP          string
	CookieID    string
	CookieState CookieState
	Method      string
	URL         string
	Referrer    string
	UserAgent   string
	Status      int
	Bytes       int64
	Event       string
	// Bot is why the request looks automated (see ClassifyBot and the
	// Bot constants), or "" for a browser.
	Bot string
	Geo Geo
	// ASN and Anon come from the optional ASN and Anonymous IP databases.
	ASN    ASN
	Anon   Anon
	Params []Param

	// NetworkID is the visitor's ID across the network's sites; written
	// with a cookie ID only.
	NetworkID string
	// MemberID is the signed-in member's account ID.
	MemberID string
	// Consent is what the record may carry; identifiers are written only
	// under ConsentFull.
	Consent Consent
	// IPTruncated says IP was cut to its network prefix.
	IPTruncated bool
	// CrossSite is a request made from another site's page (Sec-Fetch-Site:
	// cross-site), e.g. the main site's beacon on a sister site.
	CrossSite bool
	// LinkedFrom is the network site a link token brought the visitor
	// from, on the request that exchanged it.
	LinkedFrom string
	// PrevNetworkID is the network ID the visitor had on this site before
	// a link token joined them to another (only when it changed).
	PrevNetworkID string
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

// AppendJSON appends r as one JSON object to b. The output is always valid
// JSON whatever the field values hold.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"schema":`...)
	b = strconv.AppendInt(b, SchemaVersion, 10)
	b = append(b, `,"event_id":`...)
	b = appendString(b, r.EventID, 64)
	b = append(b, `,"ts":"`...)
	b = appendTimestamp(b, r.Time)
	b = append(b, `","kind":`...)
	b = appendString(b, r.Kind, 16)
	b = append(b, `,"host":`...)
	b = appendString(b, r.Host, MaxHostLen)
	b = append(b, `,"ip":`...)
	b = appendString(b, r.IP, 64)
	if r.IPTruncated {
		b = append(b, `,"ip_truncated":true`...)
	}
	b = append(b, `,"consent":"`...)
	b = append(b, r.Consent.String()...)
	b = append(b, '"')
	if r.CookieID != "" && r.Consent.Identifying() {
		b = append(b, `,"cookie_id":`...)
		b = appendString(b, r.CookieID, 64)
		b = append(b, `,"cookie_state":"`...)
		b = append(b, r.CookieState.String()...)
		b = append(b, '"')
		if r.NetworkID != "" {
			b = append(b, `,"network_id":`...)
			b = appendString(b, r.NetworkID, 64)
		}
		if r.PrevNetworkID != "" {
			b = append(b, `,"prev_network_id":`...)
			b = appendString(b, r.PrevNetworkID, 64)
		}
		if r.MemberID != "" {
			b = append(b, `,"member_id":`...)
			b = appendString(b, r.MemberID, MaxMemberLen)
		}
	}
	if r.LinkedFrom != "" {
		b = append(b, `,"linked_from":`...)
		b = appendString(b, r.LinkedFrom, MaxHostLen)
	}
	if r.CrossSite {
		b = append(b, `,"cross_site":true`...)
	}
	b = append(b, `,"method":`...)
	b = appendString(b, r.Method, MaxMethodLen)
	b = append(b, `,"url":`...)
	b = appendString(b, r.URL, MaxURLLen)
	b = append(b, `,"referrer":`...)
	b = appendString(b, r.Referrer, MaxReferrerLen)
	b = append(b, `,"user_agent":`...)
	b = appendString(b, r.UserAgent, MaxUserAgentLen)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	if r.Event != "" {
		b = append(b, `,"event":`...)
		b = appendString(b, r.Event, MaxEventLen)
	}
	if r.Bot != "" {
		b = append(b, `,"bot":`...)
		b = appendString(b, r.Bot, MaxBotLen)
	}
	if !r.Geo.Empty() {
		b = r.Geo.appendJSON(append(b, `,"geo":`...))
	}
	if !r.ASN.Empty() {
		b = r.ASN.appendJSON(append(b, `,"asn":`...))
	}
	if r.Anon&anonKnown != 0 {
		b = r.Anon.appendJSON(append(b, `,"anon":`...))
	}
	if r.Kind == KindBeacon {
		b = append(b, `,"params":{`...)
		for i, p := range r.Params {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, p.Key, MaxParamKeyLen)
			b = append(b, ':')
			b = appendString(b, p.Value, MaxParamValLen)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func (g *Geo) appendJSON(b []byte) []byte {
	b = append(b, '{')
	sep := false
	field := func(name, v string) {
		if v == "" {
			return
		}
		if sep {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
		b = appendString(b, v, MaxGeoNameLen)
		sep = true
	}
	field("country", g.Country)
	field("subdivision", g.Subdivision)
	field("city", g.City)
	if g.HasCoords && isFinite(g.Lat) && isFinite(g.Lon) {
		if sep {
			b = append(b, ',')
		}
		b = append(b, `"lat":`...)
		b = strconv.AppendFloat(b, g.Lat, 'f', -1, 64)
		b = append(b, `,"lon":`...)
		b = strconv.AppendFloat(b, g.Lon, 'f', -1, 64)
	}
	return append(b, '}')
}

func (a *ASN) appendJSON(b []byte) []byte {
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
		b = appendString(b, a.Org, MaxASNOrgLen)
	}
	return append(b, '}')
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

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Bound returns s as a record stores it: invalid UTF-8 replaced by U+FFFD,
// then cut to at most max bytes at a character boundary.
func Bound(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// appendString appends s as a JSON string (RFC 8259, section 7), taking at
// most max bytes of s and cutting at a character boundary. Invalid UTF-8
// becomes U+FFFD, so the output is always valid UTF-8.
func appendString(b []byte, s string, max int) []byte { return appendStringSkip(b, s, max, true) }

// appendStringSkip is appendString, with skip false the byte-at-a-time
// reference its eight-byte fast path is tested against.
func appendStringSkip(b []byte, s string, max int, skip bool) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	n := 0 // bytes of s consumed
	start := 0
	// Most of a record's text (URLs, User-Agents) is printable ASCII with
	// nothing to escape: skip it eight bytes at a time.
	fast := -1
	if skip {
		fast = min(len(s), max) - 8
	}
	for n < len(s) {
		if n <= fast && plain8(le64(s[n:])) {
			n += 8
			continue
		}
		c := s[n]
		if c < utf8.RuneSelf {
			if n+1 > max {
				break
			}
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				n++
				continue
			}
			b = append(b, s[start:n]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			n++
			start = n
			continue
		}
		r, size := utf8.DecodeRuneInString(s[n:])
		if n+size > max {
			break
		}
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:n]...)
			b = append(b, `\ufffd`...)
			n++
			start = n
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript parsers
		// that consumers may feed records to.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:n]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			n += size
			start = n
			continue
		}
		n += size
	}
	b = append(b, s[start:n]...)
	return append(b, '"')
}

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
