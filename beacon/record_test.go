package beacon

import (
	"bytes"
	"encoding/json"
	"image/gif"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/b2scom/b2s-edge/internal/recordschema"
)

func checkValidRecordJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
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
	return m
}

// testEventID is a well-formed event ID for records built by hand.
const testEventID = "01a223f3-5444-7087-9173-23d24bee45ec"

func TestRecordEncodesEveryField(t *testing.T) {
	ts := time.Date(2026, 11, 28, 12, 30, 45, 123456789, time.FixedZone("CST", 8*3600))
	r := Record{
		EventID: "01a223f3-5444-7087-9173-23d24bee45ec", Time: ts, Kind: KindBeacon,
		Host: "www.b2s.com", IP: "203.0.113.9", CookieID: "0123456789abcdef0123456789abcdef", CookieState: StateReset,
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
		"host": "www.b2s.com", "ip": "203.0.113.9", "cookie_id": r.CookieID, "cookie_state": "reset",
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

func TestRecordStringsAreEscapedAndBounded(t *testing.T) {
	hostile := "a\"b\\c\n\r\t\x00\x1f\x7f</script>\u2028\u2029\xff\xfe" + "é中"
	long := strings.Repeat("中", MaxURLLen) // 3 bytes each
	r := Record{EventID: testEventID, Status: 200, Kind: KindBeacon, Time: time.Unix(0, 0), URL: long, Referrer: hostile, UserAgent: strings.Repeat("x", 10_000),
		Event: hostile, Params: []Param{{hostile, hostile}, {strings.Repeat("k", 1000), strings.Repeat("v", 10_000)}},
		ASN: ASN{Number: 64512, Org: "a\"b\\c\n\u2028</script>" + strings.Repeat("中", MaxASNOrgLen)}}
	b := r.AppendJSON(nil)
	m := checkValidRecordJSON(t, b)
	if bytes.Contains(b, []byte("\u2028")) || bytes.Contains(b, []byte("\u2029")) {
		t.Error("U+2028/2029 left unescaped")
	}
	if got := m["referrer"].(string); got != "a\"b\\c\n\r\t\x00\x1f\x7f</script>\u2028\u2029\ufffd\ufffdé中" {
		t.Errorf("referrer decoded as %q", got)
	}
	if got := m["url"].(string); len(got) > MaxURLLen || len(got) < MaxURLLen-3 || !utf8.ValidString(got) {
		t.Errorf("url is %d bytes, want at most %d, cut at a character boundary", len(got), MaxURLLen)
	}
	if got := m["user_agent"].(string); len(got) != MaxUserAgentLen {
		t.Errorf("user_agent is %d bytes, want %d", len(got), MaxUserAgentLen)
	}
	if got := m["asn"].(map[string]any)["org"].(string); len(got) > MaxASNOrgLen || len(got) < MaxASNOrgLen-3 || !strings.HasPrefix(got, "a\"b\\c\n\u2028</script>中") || !utf8.ValidString(got) {
		t.Errorf("asn org is %d bytes (%q), want the escaped start and at most %d bytes, cut at a character boundary", len(got), got, MaxASNOrgLen)
	}
	for k, v := range m["params"].(map[string]any) {
		if len(k) > MaxParamKeyLen*3 || len(v.(string)) > MaxParamValLen {
			t.Errorf("param %q=%d bytes exceeds its bounds", k, len(v.(string)))
		}
	}
}

func TestParamKeysStayUniqueOnceBounded(t *testing.T) {
	long := strings.Repeat("k", MaxParamKeyLen)
	var q Query
	ParseQuery(long+"1=first&"+long+"2=second&%FF=a&%FE=b&%FF%FE=c", &q)
	r := Record{EventID: testEventID, Status: 200, Kind: KindBeacon, Time: time.Unix(0, 0), Params: q.Params}
	m := checkValidRecordJSON(t, r.AppendJSON(nil))
	params := m["params"].(map[string]any)
	if len(params) != 2 || params[long] != "first" || params["\ufffd"] != "a" {
		t.Fatalf("params = %v, want the first of each key that bounds alike", params)
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
// encode to a valid record.
func FuzzRecordJSON(f *testing.F) {
	f.Add("https://www.b2s.com/", "Mozilla/5.0", "k", "v", "Chinanet", uint32(4134), uint8(AnonVPN|AnonHosting))
	f.Add("\xff\x00\"\\", "\u2028", "", "\xc3", "", uint32(0), uint8(0))
	f.Add("", "", "", "", strings.Repeat("中", 50)+"\xe4", uint32(0), uint8(0xff))
	f.Fuzz(func(t *testing.T, url, ua, k, v, org string, asn uint32, anon uint8) {
		r := Record{EventID: NewEventID(time.Now()), Time: time.Now(), Status: 200, Kind: KindBeacon,
			URL: url, Referrer: url, UserAgent: ua, Host: ua, Method: k, IP: v, Event: k, Params: []Param{{k, v}},
			ASN: ASN{Number: asn, Org: org}, Anon: Anon(anon)}
		if k == "" {
			r.Params = nil
		}
		checkValidRecordJSON(t, r.AppendJSON(nil))
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
	plain := func(c byte) bool { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' }
	bg := []byte("abcdefgh")
	for pos := range 8 {
		for v := range 256 {
			w := bytes.Clone(bg)
			w[pos] = byte(v)
			if got := plain8(le64(string(w))); got != plain(byte(v)) {
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
			want = want && plain(w[i])
		}
		if got := plain8(le64(string(w[:]))); got != want {
			t.Fatalf("plain8(%q) = %v, want %v", w, got, want)
		}
	}
}

func TestAppendStringMatchesBytewise(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"a", "/products/cnc-spindle?ref=home", "\"", "\\", "\n", "\t", "\x00", "\x1f", "\x7f",
		"\x80", "\xff", "中", "\u2028", "\u2029", "\xe4\xb8", "é", "😀", " ", "~"}
	for range 200_000 {
		var sb strings.Builder
		for range r.IntN(12) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := sb.String()
		max := r.IntN(len(s) + 10)
		if got, want := appendString(nil, s, max), appendStringSkip(nil, s, max, false); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q, %d) = %s, want %s", s, max, got, want)
		}
	}
}
