package beacon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/gif"
	"math"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/b2scom/b2s-edge/internal/recordschema"
)

func checkValidRecordJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	if len(b) > MaxRecordLen {
		t.Fatalf("record is %d bytes, more than MaxRecordLen (%d)", len(b), MaxRecordLen)
	}
	if !utf8.Valid(b) {
		t.Fatalf("record is not valid UTF-8: %q", b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("record is not valid JSON: %v\n%s", err, b)
	}
	if err := recordschema.Validate(b); err != nil {
		t.Fatal(err)
	}
	if err := recordschema.NoDuplicateKeys(b); err != nil {
		t.Fatal(err)
	}
	if s, ok := controlIn(m); ok {
		t.Fatalf("record string %q holds a control character: %s", s, b)
	}
	return m
}

// isControl reports whether a record string may not hold r: C0, DEL, C1
// and the line and paragraph separators.
func isControl(r rune) bool {
	return r < 0x20 || r >= 0x7f && r <= 0x9f || r == '\u2028' || r == '\u2029'
}

// controlIn returns a string (key or value) in v, decoded JSON, that holds
// a control character.
func controlIn(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, strings.IndexFunc(v, isControl) >= 0
	case map[string]any:
		for k, e := range v {
			if strings.IndexFunc(k, isControl) >= 0 {
				return k, true
			}
			if s, ok := controlIn(e); ok {
				return s, true
			}
		}
	case []any:
		for _, e := range v {
			if s, ok := controlIn(e); ok {
				return s, true
			}
		}
	}
	return "", false
}

// testEventID is a well-formed event ID for records built by hand.
const testEventID = "01a223f3-5444-7087-9173-23d24bee45ec"

func TestRecordEncodesEveryField(t *testing.T) {
	ts := time.Date(2026, 11, 28, 12, 30, 45, 123456789, time.FixedZone("CST", 8*3600))
	r := Record{
		EventID: "01a223f3-5444-7087-9173-23d24bee45ec", Time: ts, Kind: KindBeacon,
		Host: "www.b2s.com", Edge: "edge-fra-1", IP: "203.0.113.9", CookieID: "0123456789abcdef0123456789abcdef", CookieState: StateReset,
		Method: "GET", URL: "https://www.b2s.com/p", Referrer: "https://search.example/", UserAgent: "Mozilla/5.0",
		Status: 200, Bytes: 43, Event: "enquiry", Bot: BotCrawler,
		Geo:       Geo{Country: "CN", Subdivision: "GD", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579, HasCoords: true},
		ASN:       ASN{Number: 4134, Org: "Chinanet"},
		Anon:      AnonAnonymous | AnonVPN | AnonHosting | AnonTor | AnonProxy | AnonResidentialProxy,
		Params:    []Param{{"product", "42"}},
		NetworkID: "fedcba9876543210fedcba9876543210", PrevNetworkID: "00112233445566778899aabbccddeeff",
		MemberID: "m-1001", LinkedFrom: "www.b2smade.com", CrossSite: true, IPTruncated: true,
	}
	m := checkValidRecordJSON(t, r.AppendJSON(nil))
	want := map[string]any{
		"network_id": r.NetworkID, "prev_network_id": r.PrevNetworkID, "member_id": "m-1001",
		"linked_from": "www.b2smade.com", "cross_site": true, "ip_truncated": true, "consent": "full",
		"schema": 1.0, "event_id": r.EventID, "ts": "2026-11-28T04:30:45.123456Z", "kind": "beacon",
		"host": "www.b2s.com", "edge": "edge-fra-1", "ip": "203.0.113.9", "cookie_id": r.CookieID, "cookie_state": "reset",
		"method": "GET", "url": r.URL, "referrer": r.Referrer, "user_agent": "Mozilla/5.0",
		"status": 200.0, "bytes": 43.0, "event": "enquiry", "bot": "crawler",
		"geo":    map[string]any{"country": "CN", "subdivision": "GD", "city": "Shenzhen", "lat": 22.5431, "lon": 114.0579},
		"asn":    map[string]any{"number": 4134.0, "org": "Chinanet"},
		"anon":   map[string]any{"anonymous": true, "vpn": true, "hosting": true, "tor": true, "proxy": true, "residential_proxy": true},
		"params": map[string]any{"product": "42"},
	}
	for k, v := range want {
		got, _ := json.Marshal(m[k])
		exp, _ := json.Marshal(v)
		if !bytes.Equal(got, exp) {
			t.Errorf("%s = %s, want %s", k, got, exp)
		}
	}
	if len(m) != len(want) {
		t.Errorf("record has %d fields, want %d: %v", len(m), len(want), m)
	}
}

func TestRecordOmitsWhatIsUnknown(t *testing.T) {
	r := Record{EventID: testEventID, Kind: KindPage, Time: time.Unix(0, 0), Status: 404}
	m := checkValidRecordJSON(t, r.AppendJSON(nil))
	for _, k := range []string{"geo", "asn", "anon", "params", "event", "bot", "cookie_id", "cookie_state"} {
		if _, ok := m[k]; ok {
			t.Errorf("a page record without %s carries it: %v", k, m)
		}
	}
	r.Geo = Geo{Country: "HK"}
	m = checkValidRecordJSON(t, r.AppendJSON(nil))
	if g, _ := m["geo"].(map[string]any); len(g) != 1 || g["country"] != "HK" {
		t.Errorf("geo with a country only = %v, want just the country", m["geo"])
	}
}

func TestRecordWithoutConsentCarriesNoIdentifiers(t *testing.T) {
	for _, c := range []Consent{ConsentOptOut, ConsentGPC, ConsentChild} {
		r := Record{EventID: testEventID, Kind: KindPage, Time: time.Unix(0, 0), Status: 200, Consent: c,
			CookieID: "0123456789abcdef0123456789abcdef", NetworkID: "fedcba9876543210fedcba9876543210",
			PrevNetworkID: "00112233445566778899aabbccddeeff", MemberID: "m-1", IP: "203.0.113.0", IPTruncated: true}
		b := r.AppendJSON(nil)
		m := checkValidRecordJSON(t, b)
		if m["consent"] != c.String() || m["ip_truncated"] != true {
			t.Errorf("consent, ip_truncated = %v, %v; want %s, true", m["consent"], m["ip_truncated"], c)
		}
		for _, id := range []string{r.CookieID, r.NetworkID, r.PrevNetworkID, r.MemberID} {
			if bytes.Contains(b, []byte(id)) {
				t.Errorf("%s record carries identifier %s: %s", c, id, b)
			}
		}
	}
}

func TestRecordStrings(t *testing.T) {
	cases := []struct {
		name string
		in   string
		max  int
		want string // as a consumer decodes it
		cut  bool
	}{
		{"an empty string stays empty", "", 8, "", false},
		{"printable ASCII is kept as sent", "https://www.b2s.com/p?id=1&q=</script>", 2048, "https://www.b2s.com/p?id=1&q=</script>", false},
		{"quotes and backslashes are escaped and kept", `a"b\c`, 16, `a"b\c`, false},
		{"CR, LF and TAB become U+FFFD", "a\r\nb\tc", 16, "a\ufffd\ufffdb\ufffdc", false},
		{"NUL, ESC and the other C0 controls become U+FFFD", "\x00\x01\x1b\x1f", 16, strings.Repeat("\ufffd", 4), false},
		{"DEL becomes U+FFFD", "a\x7fb", 16, "a\ufffdb", false},
		{"C1 controls, NEL included, become U+FFFD", "\u0080\u0085\u009f", 16, strings.Repeat("\ufffd", 3), false},
		{"the line and paragraph separators become U+FFFD", "a\u2028b\u2029", 16, "a\ufffdb\ufffd", false},
		{"each byte of invalid UTF-8 becomes U+FFFD", "\xff\xfe\xe4\xb8(\xed\xa0\x80", 32, strings.Repeat("\ufffd", 4) + "(" + strings.Repeat("\ufffd", 3), false},
		{"other text is kept, U+00A0 and U+FFFD included", "é中😀\u00a0\ufffd\u200b", 32, "é中😀\u00a0\ufffd\u200b", false},
		{"a value at its limit is kept whole", "12345678", 8, "12345678", false},
		{"a longer value is cut to its limit", "123456789", 8, "12345678", true},
		{"escapes count toward the limit", `""""""`, 8, `""""`, true},
		{"replacements count toward the limit", "\x00\x00\x00", 8, "\ufffd\ufffd", true},
		{"an escape is never split", `abc"`, 4, "abc", true},
		{"a replacement is never split", "ab\r\n", 4, "ab", true},
		{"a character is never split", "a中", 3, "a", true},
		{"a long printable value is cut past the eight-byte steps", strings.Repeat("abcdefgh", 300) + `"`, 2047, strings.Repeat("abcdefgh", 300)[:2047], true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, cut := appendString(nil, c.in, c.max)
			var got string
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("appendString(%q) = %s, not a JSON string: %v", c.in, b, err)
			}
			if got != c.want || cut != c.cut {
				t.Errorf("appendString(%q, %d) decodes to %q, cut %v; want %q, cut %v", c.in, c.max, got, cut, c.want, c.cut)
			}
			if len(b)-2 > c.max {
				t.Errorf("appendString(%q, %d) = %s: %d bytes between the quotes", c.in, c.max, b, len(b)-2)
			}
			if bytes.Contains(b, []byte(`\u`)) && !bytes.Contains(b, []byte(`\\u`)) {
				t.Errorf("appendString(%q) = %s holds a \\u escape", c.in, b)
			}
			if bound := Bound(c.in, c.max); bound != c.want {
				t.Errorf("Bound(%q, %d) = %q, want %q", c.in, c.max, bound, c.want)
			}
		})
	}
}

func TestGeoCoordinates(t *testing.T) {
	cases := []struct {
		name     string
		lat, lon float64
		want     string // the geo object
	}{
		{"coordinates are written as given", 22.5431, 114.0579, `{"lat":22.5431,"lon":114.0579}`},
		{"the edges of the range are coordinates", -90, 180, `{"lat":-90,"lon":180}`},
		{"a tiny coordinate takes an exponent, not hundreds of zeros", 1e-300, -0.0001, `{"lat":1e-300,"lon":-0.0001}`},
		{"a latitude out of range is no location", 90.5, 0, `{}`},
		{"a longitude out of range is no location", 0, -181, `{}`},
		{"NaN is no location", math.NaN(), 0, `{}`},
		{"infinity is no location", 0, math.Inf(1), `{}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := Geo{Lat: c.lat, Lon: c.lon, HasCoords: true}
			if got, _ := g.appendJSON(nil); string(got) != c.want {
				t.Errorf("geo = %s, want %s", got, c.want)
			}
		})
	}
}

func TestRecordListsTheFieldsItCut(t *testing.T) {
	base := Record{EventID: testEventID, Kind: KindBeacon, Time: time.Unix(0, 0), Status: 200,
		URL: "https://www.b2s.com/", Params: []Param{{"k", "v"}}}
	long := strings.Repeat("x", 5000)
	cases := []struct {
		name   string
		change func(r *Record)
		want   []string
	}{
		{"a record cut nowhere has no list", func(r *Record) {}, nil},
		{"a URL over its limit is listed", func(r *Record) { r.URL = long }, []string{"url"}},
		{"a URL at its limit is not", func(r *Record) { r.URL = long[:MaxURLLen] }, nil},
		{"a URL of quotes at its limit in bytes is, once escaped", func(r *Record) { r.URL = strings.Repeat(`"`, MaxURLLen) }, []string{"url"}},
		{"nested names are listed with their object's", func(r *Record) {
			r.Geo, r.ASN = Geo{Country: "CN", City: long}, ASN{Number: 1, Org: long}
		}, []string{"geo.city", "asn.org"}},
		{"a cut parameter value lists params", func(r *Record) { r.Params = []Param{{"k", long}} }, []string{"params"}},
		// A kind that is cut is no beacon's, so this record has no params.
		{"every cut field is listed, in the record's order", func(r *Record) {
			r.Edge = long
			r.EventID, r.Kind, r.Host, r.IP, r.CookieID, r.NetworkID, r.PrevNetworkID, r.MemberID = long, KindBeacon+long, long, long, long, long, long, long
			r.LinkedFrom, r.Method, r.URL, r.Referrer, r.UserAgent, r.Event, r.Bot = long, long, long, long, long, long, long
			r.Geo, r.ASN, r.Params = Geo{Country: long, Subdivision: long, City: long}, ASN{Org: long}, []Param{{long, "v"}}
			r.Client = Client{Browser: "Chrome", Model: long}
		}, cutNames[:len(cutNames)-2]}, // nor a destination: no mail fields
		{"a cut client lists ua", func(r *Record) { r.Client = Client{OS: "Android", Model: long} }, []string{"ua"}},
		{"a client at its limits is not", func(r *Record) { r.Client = Client{OS: "Android", Model: long[:MaxClientLen]} }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := base
			c.change(&r)
			b := r.AppendJSON(nil)
			var m struct{ Truncated []string }
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Truncated, c.want) {
				t.Errorf("truncated = %q, want %q", m.Truncated, c.want)
			}
			if r.Kind == KindBeacon && len(r.EventID) == len(testEventID) {
				checkValidRecordJSON(t, b)
			}
		})
	}
}

func TestTruncatedListLenIsWhatItWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	sets := []cutSet{cutParams, 1<<numCut - 1, cutEventID}
	for i := range numCut {
		sets = append(sets, 1<<i, 1<<i|cutParams)
	}
	for range 10_000 {
		sets = append(sets, cutSet(r.Uint32())&(1<<numCut-1)|1)
	}
	for _, c := range sets {
		if got, want := c.listLen(), len(c.appendJSON(nil)); got != want {
			t.Fatalf("listLen(%b) = %d, appendJSON wrote %d", c, got, want)
		}
	}
}

// worstCaseRecord is a beacon's record with every field the edge takes
// from the request past its limit, full of what costs most to encode.
func worstCaseRecord() Record {
	long := fill("\"\x00\\\xff\u009f\u2029é\r", 8<<10)
	r := Record{EventID: testEventID, Time: time.Unix(0, 0), Kind: KindBeacon, Host: long, Edge: long, IP: "2001:db8::1",
		CookieID: "0123456789abcdef0123456789abcdef", NetworkID: "fedcba9876543210fedcba9876543210",
		PrevNetworkID: "00112233445566778899aabbccddeeff", MemberID: strings.Repeat("m", MaxMemberLen),
		LinkedFrom: long, CrossSite: true, IPTruncated: true, Method: long, URL: long, Referrer: long, UserAgent: long,
		Status: 200, Bytes: 43, Event: long, Bot: BotBeaconWithoutPage,
		Geo:  Geo{Country: long, Subdivision: long, City: long, Lat: -89.12345678901234, Lon: -179.12345678901234, HasCoords: true},
		ASN:  ASN{Number: math.MaxUint32, Org: long},
		Anon: anonKnown}
	for i := range MaxParams {
		r.Params = append(r.Params, Param{fmt.Sprintf("%02d", i) + long, long})
	}
	return r
}

func TestAppendJSONDoesNotAllocate(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Record
	}{
		{"a typical beacon", Record{EventID: testEventID, Kind: KindBeacon, Time: time.Now(), Host: "www.b2s.com", IP: "203.0.113.7",
			URL: "https://www.b2s.com/products?id=42", UserAgent: "Mozilla/5.0", Status: 200, Params: []Param{{"product", "42"}}}},
		{"the worst case", worstCaseRecord()},
	} {
		t.Run(c.name, func(t *testing.T) {
			buf := make([]byte, 0, MaxRecordLen+1024)
			if n := testing.AllocsPerRun(100, func() { buf = c.r.AppendJSON(buf[:0]) }); n != 0 {
				t.Fatalf("AppendJSON allocates %v times a record", n)
			}
			checkValidRecordJSON(t, buf)
		})
	}
}

func TestParamsStopWhereTheRecordReachesItsMaximum(t *testing.T) {
	r := Record{EventID: testEventID, Kind: KindBeacon, Time: time.Unix(0, 0), Status: 200, URL: "https://www.b2s.com/"}
	for i := range MaxParams {
		r.Params = append(r.Params, Param{fmt.Sprintf("p%02d", i), strings.Repeat("v", MaxParamValLen)})
	}
	b := r.AppendJSON(nil)
	var m struct {
		Params    map[string]string
		Truncated []string
	}
	checkValidRecordJSON(t, b)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(b) < MaxRecordLen-MaxParamValLen-20 {
		t.Errorf("record is %d bytes: a parameter that fits in %d was left out", len(b), MaxRecordLen)
	}
	if len(m.Params) == 0 || len(m.Params) == MaxParams || !slices.Equal(m.Truncated, []string{"params"}) {
		t.Fatalf("%d params kept, truncated %q; want some but not all, and params listed", len(m.Params), m.Truncated)
	}
	for i := range len(m.Params) {
		if _, ok := m.Params[fmt.Sprintf("p%02d", i)]; !ok {
			t.Fatalf("params kept are not the first %d: %v", len(m.Params), m.Params)
		}
	}
}

// hostile are the texts that grow most when encoded, or used to: control
// bytes, quotes, backslashes, invalid UTF-8, C1 and line separators.
var hostile = []struct{ name, unit string }{
	{"NUL", "\x00"}, {"CR LF", "\r\n"}, {"ESC", "\x1b"}, {"DEL", "\x7f"}, {"quote", `"`}, {"backslash", `\`},
	{"invalid UTF-8", "\xff"}, {"a cut UTF-8 sequence", "\xe4\xb8"}, {"a surrogate", "\xed\xa0\x80"}, {"C1 NEL", "\u0085"},
	{"line separator", "\u2028"}, {"CJK", "中"}, {"printable ASCII", "a"},
	{"a mix", "\"\x00\\\xff\u009f\u2029é\r"},
}

// fill repeats unit to at least n bytes.
func fill(unit string, n int) string { return strings.Repeat(unit, n/len(unit)+1) }

func TestWorstCaseRecordsStayWithinMaxRecordLen(t *testing.T) {
	largest := 0
	for _, h := range hostile {
		t.Run(h.name+" in a 16 KiB body, an 8 KiB query and long headers", func(t *testing.T) {
			// Each key starts with its number, so that none bound alike.
			form := func(n int) string {
				var sb strings.Builder
				for _, k := range []string{"u", "r", "e"} {
					sb.WriteString(k + "=" + fill(h.unit, MaxURLLen+100) + "&")
				}
				for i := 0; sb.Len() < n; i++ {
					fmt.Fprintf(&sb, "%02d%s=%s&", i, fill(h.unit, MaxParamKeyLen), fill(h.unit, MaxParamValLen))
				}
				return sb.String()[:n]
			}
			var q Query
			ParseBeacon(form(MaxQueryLen), "application/x-www-form-urlencoded", []byte(form(MaxBodyLen)), &q)
			hdr := fill(h.unit, 8<<10)
			r := Record{EventID: NewEventID(time.Now()), Time: time.Now(), Kind: KindBeacon, Host: hdr, IP: "2001:db8::1",
				CookieID: NewID(), NetworkID: NewID(), PrevNetworkID: NewID(), MemberID: strings.Repeat("m", MaxMemberLen),
				LinkedFrom: hdr, CrossSite: true, IPTruncated: true, Method: hdr, UserAgent: hdr, Status: 200, Bytes: 43,
				URL: q.URL, Referrer: q.Referrer, Event: q.Event, Params: q.Params}
			b := r.AppendJSON(nil)
			checkValidRecordJSON(t, b)
			largest = max(largest, len(b))
		})
		t.Run(h.name+" in every field of a record built whole", func(t *testing.T) {
			long := fill(h.unit, 8<<10)
			// Fields the edge makes or checks itself are hostile too, which
			// the schema refuses: this record checks the bound alone.
			r := Record{EventID: long, Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Kind: KindBeacon,
				Host: long, IP: long, CookieID: long, CookieState: StateReturning, NetworkID: long, PrevNetworkID: long,
				MemberID: long, LinkedFrom: long, CrossSite: true, IPTruncated: true, Method: long, URL: long, Referrer: long,
				UserAgent: long, Status: math.MinInt64, Bytes: math.MinInt64, Event: long, Bot: long,
				Geo:  Geo{Country: long, Subdivision: long, City: long, Lat: -89.12345678901234, Lon: -179.12345678901234, HasCoords: true},
				ASN:  ASN{Number: math.MaxUint32, Org: long},
				Anon: anonKnown}
			for i := range MaxParams {
				r.Params = append(r.Params, Param{fmt.Sprintf("%02d", i) + long, long})
			}
			b := r.AppendJSON(nil)
			if len(b) > MaxRecordLen {
				t.Fatalf("record is %d bytes, more than MaxRecordLen (%d)", len(b), MaxRecordLen)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("record is not valid JSON: %v", err)
			}
			if s, ok := controlIn(m); ok {
				t.Fatalf("record string %q holds a control character", s)
			}
			// Even then two parameters at their limits fit, as documented.
			if p, _ := m["params"].(map[string]any); len(p) < 2 {
				t.Errorf("%d parameters fit beside every other field at its limit (%d bytes), want 2", len(p), len(b))
			}
			largest = max(largest, len(b))
		})
	}
	t.Logf("largest record: %d bytes", largest)
}

func TestSchemaRefusesWhatTheRecordNeverHolds(t *testing.T) {
	r := Record{EventID: testEventID, Kind: KindBeacon, Time: time.Unix(0, 0), Status: 200, URL: "https://www.b2s.com/",
		Geo: Geo{City: "Shenzhen"}, Params: []Param{{"k", "v"}}}
	good := string(r.AppendJSON(nil))
	if err := recordschema.Validate([]byte(good)); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, old, new string }{
		{"a CR and LF in url", `"https://www.b2s.com/"`, `"https://www.b2s.com/\r\nx"`},
		{"a TAB in a parameter value", `"k":"v"`, `"k":"v\t"`},
		{"a NUL in a parameter key", `"k":"v"`, `"k\u0000":"v"`},
		{"a C1 NEL in geo.city", `"Shenzhen"`, `"Shen\u0085zhen"`},
		{"a line separator in url", `"https://www.b2s.com/"`, "\"https://www.b2s.com/\u2028\""},
		{"an unknown name in truncated", `,"params"`, `,"truncated":["query"],"params"`},
		{"an empty truncated list", `,"params"`, `,"truncated":[],"params"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := strings.Replace(good, c.old, c.new, 1)
			if bad == good {
				t.Fatalf("%s not found in %s", c.old, good)
			}
			if err := recordschema.Validate([]byte(bad)); err == nil {
				t.Fatalf("schema accepted %s", bad)
			}
		})
	}
}

func TestParamKeysStayUniqueOnceBounded(t *testing.T) {
	long := strings.Repeat("k", MaxParamKeyLen)
	cases := []struct {
		name, query string
		want        map[string]any
	}{
		{"keys that differ only past their limit are one key, the first",
			long + "1=first&" + long + "2=second", map[string]any{long: "first"}},
		{"keys that are different invalid bytes are one key",
			"%FF=a&%FE=b&%FF%FE=c", map[string]any{"\ufffd": "a", "\ufffd\ufffd": "c"}},
		{"keys that differ only in control characters are one key",
			"a%0D=cr&a%0A=lf&a%C2%85=nel&a%E2%80%A8=ls&a%EF%BF%BD=fffd", map[string]any{"a\ufffd": "cr"}},
		{"keys that differ only past their limit once escaped are one key",
			strings.Repeat("%22", MaxParamKeyLen/2) + "1=first&" + strings.Repeat("%22", MaxParamKeyLen/2) + "2=second",
			map[string]any{strings.Repeat(`"`, MaxParamKeyLen/2): "first"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var q Query
			ParseQuery(c.query, &q)
			r := Record{EventID: testEventID, Status: 200, Kind: KindBeacon, Time: time.Unix(0, 0), Params: q.Params}
			m := checkValidRecordJSON(t, r.AppendJSON(nil))
			if !reflect.DeepEqual(m["params"], c.want) {
				t.Fatalf("params = %q, want %q", m["params"], c.want)
			}
		})
	}
}

func TestNewEventIDIsAUniqueUUIDv7(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	now := time.UnixMilli(1_795_899_479_108)
	seen := map[string]bool{}
	for range 10_000 {
		id := NewEventID(now)
		if !re.MatchString(id) {
			t.Fatalf("NewEventID = %q, not a UUIDv7", id)
		}
		if seen[id] {
			t.Fatalf("NewEventID repeated %q", id)
		}
		seen[id] = true
	}
	if id := NewEventID(now); id[:13] != "01a223f3-5444" {
		t.Fatalf("the first 48 bits are not the time in ms: %s", id)
	}
}

func TestPixelIsATransparent1x1GIF(t *testing.T) {
	img, err := gif.Decode(bytes.NewReader(Pixel))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Fatalf("pixel is %dx%d", b.Dx(), b.Dy())
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Fatalf("pixel alpha = %d, want transparent", a)
	}
}

// FuzzRecordJSON checks that any strings, AS numbers and anonymity flags
// encode to a valid record within MaxRecordLen, whose strings hold no
// control character and are what Bound keeps, and whose "truncated" list
// names the fields that were cut.
func FuzzRecordJSON(f *testing.F) {
	f.Add("https://www.b2s.com/", "Mozilla/5.0", "k", "v", "Chinanet", uint32(4134), uint8(AnonVPN|AnonHosting))
	f.Add("\xff\x00\"\\", "\u2028", "", "\xc3", "", uint32(0), uint8(0))
	f.Add("", "", "", "", strings.Repeat("中", 50)+"\xe4", uint32(0), uint8(0xff))
	f.Add(strings.Repeat("\r\n", 2000), strings.Repeat("\x1b\u0085", 300), strings.Repeat(`"`, 70), strings.Repeat("\x00", 600), strings.Repeat(`\`, 100), uint32(1), uint8(1))
	f.Fuzz(func(t *testing.T, url, ua, k, v, org string, asn uint32, anon uint8) {
		r := Record{EventID: NewEventID(time.Now()), Time: time.Now(), Status: 200, Kind: KindBeacon,
			URL: url, Referrer: url, UserAgent: ua, Host: ua, Method: k, IP: v, Event: k,
			ASN: ASN{Number: asn, Org: org}, Anon: Anon(anon)}
		if k != "" {
			// Many parameters, so that long ones meet MaxRecordLen.
			for i := range MaxParams {
				r.Params = append(r.Params, Param{fmt.Sprintf("%02d", i) + k, v})
			}
		}
		m := checkValidRecordJSON(t, r.AppendJSON(nil))
		truncated := map[string]bool{}
		if l, ok := m["truncated"].([]any); ok {
			for _, name := range l {
				truncated[name.(string)] = true
			}
		}
		for _, c := range []struct {
			field, in string
			max       int
		}{{"url", url, MaxURLLen}, {"referrer", url, MaxReferrerLen}, {"user_agent", ua, MaxUserAgentLen},
			{"host", ua, MaxHostLen}, {"method", k, MaxMethodLen}, {"ip", v, maxIDLen}} {
			_, cut := appendString(nil, c.in, c.max)
			if got := m[c.field]; got != Bound(c.in, c.max) || truncated[c.field] != cut {
				t.Fatalf("%s = %q, listed as cut %v; want %q, cut %v", c.field, got, truncated[c.field], Bound(c.in, c.max), cut)
			}
		}
		params := m["params"].(map[string]any)
		if len(params) < len(r.Params) && !truncated["params"] {
			t.Fatalf("%d of %d params written, yet params is not listed as cut", len(params), len(r.Params))
		}
	})
}

func TestTimestampMatchesTheLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	times := []time.Time{
		{}, time.Unix(0, 0), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 29, 1, 2, 3, 4000, time.FixedZone("CST", 8*3600)),
	}
	for range 100000 {
		times = append(times, time.Unix(r.Int64N(400<<30)-(100<<30), r.Int64N(1e9)).In(time.FixedZone("", int(r.Int64N(50000)-25000))))
	}
	for _, tm := range times {
		if got, want := string(appendTimestamp(nil, tm)), tm.UTC().Format(tsLayout); got != want {
			t.Fatalf("%v: %s, want %s", tm, got, want)
		}
	}
}

func TestPlain8MatchesEveryByte(t *testing.T) {
	printable := func(c byte) bool { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' }
	bg := []byte("abcdefgh")
	for pos := range 8 {
		for v := range 256 {
			w := bytes.Clone(bg)
			w[pos] = byte(v)
			if got := plain8(le64(string(w))); got != printable(byte(v)) {
				t.Fatalf("plain8(%q) = %v, byte %#x at %d", w, got, v, pos)
			}
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 1_000_000 {
		var w [8]byte
		want := true
		for i := range w {
			// Mostly printable, so that all-plain words come up often.
			if r.IntN(4) == 0 {
				w[i] = byte(r.IntN(256))
			} else {
				w[i] = byte(0x20 + r.IntN(0x5f))
			}
			want = want && printable(w[i])
		}
		if got := plain8(le64(string(w[:]))); got != want {
			t.Fatalf("plain8(%q) = %v, want %v", w, got, want)
		}
	}
}

// appendStringReference is appendString written a character at a time,
// for clarity: the reference its eight-byte steps are tested against.
func appendStringReference(s string, max int) ([]byte, bool) {
	out := []byte{'"'}
	used := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		enc := s[i : i+size]
		switch {
		case r == utf8.RuneError && size == 1 || isControl(r):
			enc = "\uFFFD"
		case r == '"' || r == '\\':
			enc = `\` + enc
		}
		if used+len(enc) > max {
			return append(out, '"'), true
		}
		out = append(out, enc...)
		used += len(enc)
		i += size
	}
	return append(out, '"'), false
}

func TestAppendStringMatchesBytewise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"a", "/products/cnc-spindle?ref=home", "\"", "\\", "\n", "\t", "\x00", "\x1f", "\x7f",
		"\x80", "\xff", "中", "\u2028", "\u2029", "\xe4\xb8", "é", "😀", " ", "~", "\u0085", "\u009f", "\u00a0", "\ufffd"}
	for range 200_000 {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := sb.String()
		max := r.IntN(len(s) + 10)
		got, gotCut := appendString(nil, s, max)
		want, wantCut := appendStringReference(s, max)
		if !bytes.Equal(got, want) || gotCut != wantCut {
			t.Fatalf("appendString(%q, %d) = %s, %v; want %s, %v", s, max, got, gotCut, want, wantCut)
		}
		// Bound keeps what the record writes, and writing it again cuts
		// nothing: parameter keys bounded when parsed stay unique.
		bound, boundCut := appendString(nil, Bound(s, max), max)
		if !bytes.Equal(bound, got) || boundCut {
			t.Fatalf("Bound(%q, %d) is written %s, cut %v; want %s, not cut", s, max, bound, boundCut, got)
		}
	}
}
