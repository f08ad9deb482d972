package e2e

import (
	"bytes"
	"fmt"
	"image/gif"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/b2scom/b2s-edge/internal/recordschema"
)

func TestAVisitorIsIdentifiedByASignedFirstPartyCookie(t *testing.T) {
	e := newEnv(t, envOptions{})
	const (
		referer = "https://search.example/?q=b2s+suppliers"
		ua      = "Mozilla/5.0 (X11; e2e) 中文浏览器"
	)
	var id, value string

	t.Run("a first visit gets a cookie, a private response and a page record", func(t *testing.T) {
		r := e.request(t, "GET", "/products?t=first&q=a%20b&lang=zh",
			withHeader("Referer", referer), withHeader("User-Agent", ua),
			withHeader("X-B2S-Cookie-ID", "spoofed-by-the-client"))
		if r.status != http.StatusOK || string(r.body) != pageBody("/products") {
			t.Fatalf("response %d %q, want 200 and the upstream's page", r.status, r.body)
		}
		value, id, _ = issuedCookie(t, r)
		if value == "" {
			t.Fatal("no Set-Cookie on a first visit")
		}
		if cc := r.header.Values("Cache-Control"); !slices.Equal(cc, []string{"private, max-age=600"}) {
			t.Errorf("Cache-Control %q, want the upstream's public, max-age=600 made private", cc)
		}
		up := e.up.requests("first")
		if len(up) != 1 {
			t.Fatalf("upstream saw %d requests, want 1", len(up))
		}
		if got := up[0].Values("X-B2S-Cookie-ID"); !slices.Equal(got, []string{id}) {
			t.Errorf("upstream got X-B2S-Cookie-ID %q, want only the new ID %q", got, id)
		}
		rec := e.record(t, "first")
		e.expect(t, rec, r, want{
			kind: "page", method: "GET", url: "http://" + e.siteAddr + "/products?t=first&q=a%20b&lang=zh",
			referrer: referer, userAgent: ua, cookieID: id, cookieState: "new",
			status: 200, bytes: int64(len(r.body)),
		})
		if got := up[0].Get("X-B2S-Event-ID"); got != rec.EventID {
			t.Errorf("upstream got event ID %q, the record has %q", got, rec.EventID)
		}
	})
	if id == "" {
		t.FailNow()
	}

	t.Run("a return visit keeps the ID and leaves the response cacheable", func(t *testing.T) {
		r := e.request(t, "GET", "/suppliers?t=return", withCookie("theme=dark; "+cookieName+"="+value+"; _ga=GA1.2.3"))
		if r.status != http.StatusOK || string(r.body) != pageBody("/suppliers") {
			t.Fatalf("response %d %q, want 200 and the upstream's page", r.status, r.body)
		}
		if sc := r.header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("Set-Cookie %q on a return visit with a fresh, valid cookie", sc)
		}
		if cc := r.header.Values("Cache-Control"); !slices.Equal(cc, []string{"public, max-age=600"}) {
			t.Errorf("Cache-Control %q, want the upstream's public, max-age=600 untouched", cc)
		}
		if up := e.up.requests("return"); len(up) != 1 || up[0].Get("X-B2S-Cookie-ID") != id {
			t.Errorf("upstream requests %v, want one with X-B2S-Cookie-ID %s", up, id)
		}
		e.expect(t, e.record(t, "return"), r, want{
			kind: "page", method: "GET", url: "http://" + e.siteAddr + "/suppliers?t=return",
			cookieID: id, cookieState: "returning", status: 200, bytes: int64(len(r.body)),
		})
	})

	t.Run("a HEAD request is recorded with no bytes", func(t *testing.T) {
		r := e.request(t, "HEAD", "/products?t=head", withCookie(cookieName+"="+value))
		if r.status != http.StatusOK || len(r.body) != 0 {
			t.Fatalf("response %d with %d bytes, want 200 and none", r.status, len(r.body))
		}
		e.expect(t, e.record(t, "head"), r, want{
			kind: "page", method: "HEAD", url: "http://" + e.siteAddr + "/products?t=head",
			cookieID: id, cookieState: "returning", status: 200, bytes: 0,
		})
	})
}

func TestCookiesThatDoNotVerifyAreReplacedAndOlderKeysAreReSigned(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := time.Now()
	id, other := randomID(), randomID()
	valid := signCookie(currentKey, id, now)
	sigAt := len(valid) - 22
	flipped := valid[:sigAt] + string(flip(valid[sigAt])) + valid[sigAt+1:]
	lettered := "abcdef" + randomID()[6:]
	issuedAt := len(valid) - 22 - 1 - 8

	rejected := []struct {
		name   string
		cookie string // Cookie header
		forged string // the ID the forged cookie claims, never to be used
	}{
		{"a flipped signature character", cookieName + "=" + flipped, id},
		{"another ID under a valid signature", cookieName + "=" + strings.Replace(valid, id, other, 1), other},
		{"a changed issue time", cookieName + "=" + valid[:issuedAt] + "00000001" + valid[issuedAt+8:], id},
		{"a truncated value", cookieName + "=" + valid[:len(valid)-4], id},
		{"an upper-case ID", cookieName + "=" + strings.Replace(signCookie(currentKey, lettered, now), lettered, strings.ToUpper(lettered), 1), lettered},
		{"a value signed with a key the edge never had", cookieName + "=" + signCookie(unknownKey, id, now), id},
		{"garbage", cookieName + "=not%20a%20cookie", ""},
		{"an empty value", cookieName + "=", ""},
		{"a 4 KB value", cookieName + "=" + strings.Repeat("1", 4096), ""},
	}
	for i, c := range rejected {
		t.Run("a cookie with "+c.name+" is reset", func(t *testing.T) {
			m := fmt.Sprintf("reset-%d", i)
			r := e.request(t, "GET", "/page?t="+m, withCookie(c.cookie))
			if r.status != http.StatusOK {
				t.Fatalf("status %d, want 200", r.status)
			}
			_, newID, _ := issuedCookie(t, r)
			if newID == "" {
				t.Fatal("no Set-Cookie replaces a cookie that does not verify")
			}
			if newID == c.forged || newID == id {
				t.Fatalf("the new ID %s is the forged one", newID)
			}
			if cc := r.header.Get("Cache-Control"); strings.Contains(cc, "public") || !strings.HasPrefix(cc, "private") {
				t.Errorf("Cache-Control %q, want private", cc)
			}
			if up := e.up.requests(m); len(up) != 1 || up[0].Get("X-B2S-Cookie-ID") != newID {
				t.Errorf("upstream requests %v, want one with X-B2S-Cookie-ID %s", up, newID)
			}
			e.expect(t, e.record(t, m), r, want{
				kind: "page", method: "GET", url: "http://" + e.siteAddr + "/page?t=" + m,
				cookieID: newID, cookieState: "reset", status: 200, bytes: int64(len(r.body)),
			})
		})
	}

	t.Run("a valid value under another cookie name is a new visitor", func(t *testing.T) {
		r := e.request(t, "GET", "/page?t=other-name", withCookie("b2sid_old="+valid))
		_, newID, _ := issuedCookie(t, r)
		if newID == "" || newID == id {
			t.Fatalf("new ID %q, want a fresh one", newID)
		}
		e.expect(t, e.record(t, "other-name"), r, want{
			kind: "page", method: "GET", url: "http://" + e.siteAddr + "/page?t=other-name",
			cookieID: newID, cookieState: "new", status: 200, bytes: int64(len(r.body)),
		})
	})

	accepted := []struct {
		name    string
		id      string
		cookie  string
		reissue bool // the edge sets the cookie again, same ID, signed now with the current key
	}{
		{"signed with the current key is returning", id, cookieName + "=" + valid, false},
		{"signed with the older key is returning and re-signed", other, cookieName + "=" + signCookie(olderKey, other, now), true},
		{"issued longer ago than cookie_refresh is returning and re-issued", lettered, cookieName + "=" + signCookie(currentKey, lettered, now.Add(-49*time.Hour)), true},
		{"in quotes is returning", id, cookieName + `="` + valid + `"`, false},
		{"after a forged one of the same name is returning", id, cookieName + "=" + flipped + "; lang=en; " + cookieName + "=" + valid, false},
	}
	for i, c := range accepted {
		t.Run("a cookie "+c.name, func(t *testing.T) {
			m := fmt.Sprintf("accept-%d", i)
			r := e.request(t, "GET", "/page?t="+m, withCookie(c.cookie))
			_, gotID, _ := issuedCookie(t, r)
			cc := r.header.Get("Cache-Control")
			switch {
			case c.reissue && gotID != c.id:
				t.Errorf("Set-Cookie carries ID %q, want the same ID %s re-signed", gotID, c.id)
			case c.reissue && cc != "private, max-age=600":
				t.Errorf("Cache-Control %q with Set-Cookie, want private, max-age=600", cc)
			case !c.reissue && gotID != "":
				t.Errorf("Set-Cookie with ID %s for a valid, fresh cookie", gotID)
			case !c.reissue && cc != "public, max-age=600":
				t.Errorf("Cache-Control %q without Set-Cookie, want the upstream's public, max-age=600", cc)
			}
			if up := e.up.requests(m); len(up) != 1 || up[0].Get("X-B2S-Cookie-ID") != c.id {
				t.Errorf("upstream requests %v, want one with X-B2S-Cookie-ID %s", up, c.id)
			}
			e.expect(t, e.record(t, m), r, want{
				kind: "page", method: "GET", url: "http://" + e.siteAddr + "/page?t=" + m,
				cookieID: c.id, cookieState: "returning", status: 200, bytes: int64(len(r.body)),
			})
		})
	}
}

func flip(c byte) byte {
	if c == 'A' {
		return 'B'
	}
	return 'A'
}

// checkPixel checks the beacon's answer: always the 43-byte GIF, never
// stored by any cache.
func checkPixel(t *testing.T, r *reply, head bool) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("beacon status %d, want 200", r.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "image/gif" {
		t.Errorf("beacon Content-Type %q, want image/gif", ct)
	}
	if cl := r.header.Get("Content-Length"); cl != fmt.Sprint(pixelLen) {
		t.Errorf("beacon Content-Length %q, want %d", cl, pixelLen)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("beacon Cache-Control %q, want no-store", cc)
	}
	if head {
		if len(r.body) != 0 {
			t.Errorf("HEAD beacon has a %d-byte body", len(r.body))
		}
		return
	}
	if len(r.body) != pixelLen {
		t.Fatalf("beacon body is %d bytes, want %d", len(r.body), pixelLen)
	}
	img, err := gif.Decode(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("beacon body is not a GIF: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1 || b.Dy() != 1 {
		t.Errorf("beacon image is %dx%d, want 1x1", b.Dx(), b.Dy())
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Errorf("beacon pixel alpha %d, want transparent", a)
	}
}

func TestTheBeaconAlwaysAnswersAPixelAndRecordsBoundedFields(t *testing.T) {
	e := newEnv(t, envOptions{})
	const page = "https://www.b2s.com/products?id=42"
	const pageQ = "https%3A%2F%2Fwww.b2s.com%2Fproducts%3Fid%3D42"
	visitor := randomID()
	visitorCookie := cookieName + "=" + signCookie(currentKey, visitor, time.Now())
	lookalike := randomID()
	lookalikeCookie := signCookie(currentKey, lookalike, time.Now())

	// A PUT is refused, first, so that its record, were there one, would
	// be spooled before any of the others below and read with them.
	r := e.request(t, "PUT", beaconPath+"?t=b-put&e=put")
	if r.status != http.StatusMethodNotAllowed {
		t.Errorf("PUT beacon status %d, want 405", r.status)
	}
	if a := r.header.Get("Allow"); a != "GET, HEAD, POST, OPTIONS" {
		t.Errorf("PUT beacon Allow %q, want GET, HEAD, POST, OPTIONS", a)
	}

	var manyParams strings.Builder
	for i := range 50 {
		fmt.Fprintf(&manyParams, "&p%02d=%d", i, i)
	}
	wantMany := map[string]string{"t": "b-50"}
	for i := range 31 {
		wantMany[fmt.Sprintf("p%02d", i)] = fmt.Sprint(i)
	}
	k64 := strings.Repeat("k", 64)

	cases := []struct {
		name   string
		method string
		target string // after /b.gif?; sent byte for byte when raw
		raw    bool
		opts   []reqOpt
		cookie bool // sent as the returning visitor
		want   want // kind, method, status, bytes, ip, user agent and cookie are filled in
		check  func(t *testing.T, r *record)
	}{
		{name: "GET reports u, r, e and the other parameters", method: "GET",
			target: "t=b-get&u=" + pageQ + "&r=https%3A%2F%2Fsearch.example%2F%3Fq%3Db2s&e=enquiry&product=42&lang=zh-CN&q=a+b%2Bc",
			want: want{url: page, referrer: "https://search.example/?q=b2s", event: "enquiry",
				params: map[string]string{"t": "b-get", "product": "42", "lang": "zh-CN", "q": "a b+c"}}},
		{name: "HEAD records the same without a body", method: "HEAD",
			target: "t=b-head&u=" + pageQ + "&e=view",
			want:   want{url: page, event: "view", params: map[string]string{"t": "b-head"}}},
		{name: "without u the Referer is the reported page", method: "GET",
			target: "t=b-referer&e=view", opts: []reqOpt{withHeader("Referer", page)},
			want: want{url: page, event: "view", params: map[string]string{"t": "b-referer"}}},
		{name: "without u or Referer nothing is reported", method: "GET",
			target: "t=b-bare",
			want:   want{params: map[string]string{"t": "b-bare"}}},
		{name: "a returning visitor keeps its ID", method: "GET", cookie: true,
			target: "t=b-returning&u=" + pageQ,
			want:   want{url: page, params: map[string]string{"t": "b-returning"}}},
		{name: "malformed escapes are kept as sent", method: "GET",
			target: "t=b-escapes&e=%zz&k=%&half=%E4%B8&ok=%E4%B8%AD&u=%",
			want: want{url: "%", event: "%zz",
				params: map[string]string{"t": "b-escapes", "k": "%", "half": "\ufffd\ufffd", "ok": "中"}}},
		{name: "control characters and line separators become U+FFFD, quotes and backslashes are kept", method: "GET",
			target: "t=b-control&e=a%22b%5Cc%00&ctl=%00%01%1F%7F%0A%0D%09&js=%3C%2Fscript%3E%E2%80%A8%E2%80%A9&r=%0D%0ASet-Cookie%3A+x%3D1",
			want: want{event: "a\"b\\c\ufffd", referrer: "\ufffd\ufffdSet-Cookie: x=1",
				params: map[string]string{"t": "b-control", "ctl": strings.Repeat("\ufffd", 7), "js": "</script>\ufffd\ufffd"}},
			check: func(t *testing.T, r *record) {
				if bytes.Contains(r.raw, []byte("\u2028")) || bytes.Contains(r.raw, []byte("\u2029")) {
					t.Errorf("U+2028 or U+2029 left unescaped in %s", r.raw)
				}
			}},
		{name: "raw invalid UTF-8 becomes U+FFFD", method: "GET", raw: true,
			target: "t=b-raw&e=\xff\xfe&u=https://www.b2s.com/\xc3(&k\xff=v\xed\xa0\x80",
			want: want{url: "https://www.b2s.com/\ufffd(", event: "\ufffd\ufffd",
				params: map[string]string{"t": "b-raw", "k\ufffd": "v\ufffd\ufffd\ufffd"}}},
		{name: "a 10 KB value is cut to 512 bytes, a long event to 64 and a long User-Agent to 512", method: "GET",
			target: "t=b-10k&e=" + strings.Repeat("e", 100) + "&big=" + strings.Repeat("x", 10_000) + "&late=1",
			opts:   []reqOpt{withHeader("User-Agent", strings.Repeat("u", 2000))},
			want: want{event: strings.Repeat("e", 64), userAgent: strings.Repeat("u", 512),
				params: map[string]string{"t": "b-10k", "big": strings.Repeat("x", 512)}}},
		{name: "a 5 KB Referer standing in for u is cut to 2048 bytes", method: "GET",
			target: "t=b-long-referer", opts: []reqOpt{withHeader("Referer", "https://www.b2s.com/?q="+strings.Repeat("r", 5000))},
			want: want{url: ("https://www.b2s.com/?q=" + strings.Repeat("r", 5000))[:2048],
				params: map[string]string{"t": "b-long-referer"}}},
		{name: "a multi-byte value is cut at a character boundary", method: "GET",
			target: "t=b-cjk&v=" + strings.Repeat("%E4%B8%AD", 300),
			want:   want{params: map[string]string{"t": "b-cjk", "v": strings.Repeat("中", 170)}}},
		{name: "50 extra parameters keep the first 32", method: "GET",
			target: "t=b-50" + manyParams.String(),
			want:   want{params: wantMany}},
		{name: "a u longer than 2048 bytes is cut", method: "GET",
			target: "t=b-long-u&u=https://www.b2s.com/" + strings.Repeat("a", 3000),
			want: want{url: ("https://www.b2s.com/" + strings.Repeat("a", 3000))[:2048],
				params: map[string]string{"t": "b-long-u"}}},
		{name: "a key longer than 64 bytes is cut", method: "GET",
			target: "t=b-long-key&" + strings.Repeat("k", 100) + "=v",
			want:   want{params: map[string]string{"t": "b-long-key", k64: "v"}}},
		{name: "the query cannot choose the cookie ID", method: "GET",
			target: "t=b-lookalike&b2sid=" + url.QueryEscape(lookalikeCookie) + "&cookie_id=" + lookalike,
			want: want{params: map[string]string{"t": "b-lookalike",
				"b2sid": lookalikeCookie, "cookie_id": lookalike}},
			check: func(t *testing.T, r *record) {
				if r.CookieID == lookalike {
					t.Errorf("the beacon took its cookie ID %s from the query", lookalike)
				}
			}},
	}

	type sent struct {
		reply  *reply
		marker string
	}
	var markers []string
	var replies []sent
	for _, c := range cases {
		m := strings.TrimPrefix(c.target, "t=")
		m, _, _ = strings.Cut(m, "&")
		markers = append(markers, m)
		t.Run(c.name+" (response)", func(t *testing.T) {
			var r *reply
			opts := c.opts
			if c.cookie {
				opts = append(opts, withCookie(visitorCookie))
			}
			if c.raw {
				r = e.rawRequest(t, beaconPath+"?"+c.target)
			} else {
				r = e.request(t, c.method, beaconPath+"?"+c.target, opts...)
			}
			checkPixel(t, r, c.method == "HEAD")
			replies = append(replies, sent{r, m})
		})
	}
	if t.Failed() {
		t.FailNow()
	}

	recs := e.records(t, e.topic, markers...)
	for i, c := range cases {
		t.Run(c.name+" (record)", func(t *testing.T) {
			r, rec := replies[i].reply, recs[markers[i]]
			w := c.want
			w.kind, w.method, w.status, w.bytes = "beacon", c.method, 200, pixelLen
			if c.method == "HEAD" {
				w.bytes = 0
			}
			_, newID, _ := issuedCookie(t, r)
			w.cookieID, w.cookieState = newID, "new"
			if c.cookie {
				if newID != "" {
					t.Errorf("Set-Cookie for a returning visitor with a fresh cookie")
				}
				w.cookieID, w.cookieState = visitor, "returning"
			} else if newID == "" {
				t.Errorf("no Set-Cookie on a new visitor's beacon")
			}
			e.expect(t, rec, r, w)
			if len(rec.Params) > 32 {
				t.Errorf("%d params, more than 32", len(rec.Params))
			}
			for k, v := range rec.Params {
				if len(k) > 64 || len(v) > 512 || !utf8.ValidString(k) || !utf8.ValidString(v) {
					t.Errorf("param %q (%d bytes) = %d bytes, beyond the bounds", k, len(k), len(v))
				}
			}
			if c.check != nil {
				c.check(t, rec)
			}
		})
	}

	all, err := e.readTopic(e.topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if r.marker() == "b-post" || r.Event == "post" {
			t.Errorf("a refused POST beacon was recorded: %s", r.raw)
		}
	}
	if len(all) != len(cases) {
		t.Errorf("topic holds %d records, want %d", len(all), len(cases))
	}
}

// Two parameter keys that differ as sent may be the same once the record
// bounds them (64 bytes, invalid UTF-8 as U+FFFD); the record must still
// hold each key once, the first occurrence, as for keys repeated as sent.
// A JSON object with a repeated key is read differently by each consumer.
func TestBeaconParameterKeysStayUniqueInTheRecord(t *testing.T) {
	e := newEnv(t, envOptions{})
	k64 := strings.Repeat("k", 64)
	cases := []struct {
		name, query, key string
	}{
		{"keys that differ only past byte 64", "t=keys-long&" + k64 + "1=first&" + k64 + "2=second", k64},
		{"keys that are different invalid UTF-8", "t=keys-utf8&%FF=first&%FE=second", "\ufffd"},
	}
	for _, c := range cases {
		t.Run(c.name+" give one key, the first", func(t *testing.T) {
			m := strings.TrimPrefix(strings.SplitN(c.query, "&", 2)[0], "t=")
			r := e.request(t, "GET", beaconPath+"?"+c.query)
			checkPixel(t, r, false)
			_, id, _ := issuedCookie(t, r)
			rec := e.record(t, m)
			if err := recordschema.NoDuplicateKeys(rec.raw); err != nil {
				t.Errorf("params repeat a key: %v", err)
			}
			e.expect(t, rec, r, want{kind: "beacon", method: "GET", cookieID: id, cookieState: "new",
				status: 200, bytes: pixelLen, params: map[string]string{"t": m, c.key: "first"}})
		})
	}
}

func TestClientIPAndLocationComeFromTrustedXForwardedFor(t *testing.T) {
	e := newEnv(t, envOptions{})
	cases := []struct {
		name string
		xff  string
		from string // local address to connect from; default 127.0.0.1, a trusted proxy
		ip   string
		geo  *geoRec
	}{
		{"an IPv4 address in Shenzhen", "203.0.113.7", "", "203.0.113.7", &geoShenzhen},
		{"an IPv4 address in Hong Kong", "198.51.100.20", "", "198.51.100.20", &geoHongKong},
		{"an IPv6 address in Taipei", "2001:db8::1", "", "2001:db8::1", &geoTaipei},
		{"an IPv6 address with a port", "[2001:db8::2]:443", "", "2001:db8::2", &geoTaipei},
		{"an IPv4 address with a port", "203.0.113.8:4711", "", "203.0.113.8", &geoShenzhen},
		{"an IPv4-mapped IPv6 address", "::ffff:198.51.100.21", "", "198.51.100.21", &geoHongKong},
		{"an address the database does not know", "192.0.2.1", "", "192.0.2.1", nil},
		{"garbage falls back to the peer", "not-an-ip, <script>", "", "127.0.0.1", nil},
		{"an empty value falls back to the peer", "", "", "127.0.0.1", nil},
		{"an untrusted peer's header is ignored", "203.0.113.7", "127.0.0.2", "127.0.0.2", nil},
	}
	for i, c := range cases {
		for _, kind := range []string{"page", "beacon"} {
			t.Run(c.name+" ("+kind+")", func(t *testing.T) {
				m := fmt.Sprintf("xff-%s-%d", kind, i)
				opts := []reqOpt{withHeader("X-Forwarded-For", c.xff)}
				if c.from != "" {
					opts = append(opts, fromIP(c.from))
				}
				w := want{kind: kind, method: "GET", ip: c.ip, geo: c.geo, cookieState: "new", status: 200}
				var r *reply
				if kind == "page" {
					r = e.request(t, "GET", "/page?t="+m, opts...)
					w.url, w.bytes = "http://"+e.siteAddr+"/page?t="+m, int64(len(r.body))
				} else {
					r = e.request(t, "GET", beaconPath+"?t="+m, opts...)
					checkPixel(t, r, false)
					w.bytes, w.params = pixelLen, map[string]string{"t": m}
				}
				if r.status != http.StatusOK {
					t.Fatalf("status %d, want 200", r.status)
				}
				_, w.cookieID, _ = issuedCookie(t, r)
				rec := e.record(t, m)
				e.expect(t, rec, r, w)
				if c.geo == nil && rec.has("geo") {
					t.Errorf("record has a geo field for %s: %s", c.ip, rec.raw)
				}
			})
		}
	}
	if e.caddy.Exited() {
		t.Fatalf("caddy exited: %v", e.caddy.WaitErr)
	}
}

func TestUpstreamStatusesAndSizesAreRecorded(t *testing.T) {
	e := newEnv(t, envOptions{})
	cases := []struct {
		name         string
		path         string
		status       int
		body         string
		cacheControl string // "" means not checked
		location     string
	}{
		{"a 404 from the upstream", "/missing", 404, missingBody, "private", ""},
		{"a 302 from the upstream, passed on and not followed", "/moved", 302, movedBody, "private", "/page"},
		{"a 256 KiB page", "/big", 200, string(bytes.Repeat([]byte("b2s"), bigBodyLen/3+1)[:bigBodyLen]), "private, max-age=600", ""},
		{"an unreachable upstream, a 502 from the proxy", "/down/here", 502, "", "", ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := fmt.Sprintf("status-%d", i)
			r := e.request(t, "GET", c.path+"?t="+m)
			if r.status != c.status || string(r.body) != c.body {
				t.Fatalf("response %d with %d bytes, want %d with %d", r.status, len(r.body), c.status, len(c.body))
			}
			if c.cacheControl != "" {
				if cc := r.header.Values("Cache-Control"); !slices.Equal(cc, []string{c.cacheControl}) {
					t.Errorf("Cache-Control %q, want %q", cc, c.cacheControl)
				}
			}
			if loc := r.header.Get("Location"); loc != c.location {
				t.Errorf("Location %q, want %q", loc, c.location)
			}
			_, id, _ := issuedCookie(t, r)
			rec := e.record(t, m)
			switch {
			case id == "" && c.status < 500:
				t.Errorf("no Set-Cookie for a new visitor on a %d", c.status)
			case id == "":
				// An error response may go without the cookie (see
				// TestAnErrorPageNeverSharesANewVisitorsCookie); the
				// record still has the ID it would have had.
				id = rec.CookieID
			}
			e.expect(t, rec, r, want{
				kind: "page", method: "GET", url: "http://" + e.siteAddr + c.path + "?t=" + m,
				cookieID: id, cookieState: "new", status: c.status, bytes: int64(len(c.body)),
			})
		})
	}
}

func TestLongRequestLinesAreCutInTheRecord(t *testing.T) {
	e := newEnv(t, envOptions{})
	t.Run("a 5 KB URL is cut to 2048 bytes", func(t *testing.T) {
		target := "/page?t=long-url&pad=" + strings.Repeat("p", 5000)
		r := e.request(t, "GET", target)
		_, id, _ := issuedCookie(t, r)
		e.expect(t, e.record(t, "long-url"), r, want{
			kind: "page", method: "GET", url: ("http://" + e.siteAddr + target)[:2048],
			cookieID: id, cookieState: "new", status: 200, bytes: int64(len(r.body)),
		})
	})
	t.Run("a 20-byte method is cut to 16", func(t *testing.T) {
		method := "PROPFINDEXTENDEDXYZW"
		r := e.request(t, method, "/page?t=long-method")
		_, id, _ := issuedCookie(t, r)
		e.expect(t, e.record(t, "long-method"), r, want{
			kind: "page", method: method[:16], url: "http://" + e.siteAddr + "/page?t=long-method",
			cookieID: id, cookieState: "new", status: r.status, bytes: int64(len(r.body)),
		})
	})
}

// A site may answer errors with its own, cacheable page (handle_errors).
// If that page carries a new visitor's Set-Cookie, a shared cache would
// hand the visitor's ID to everyone: it must carry none, or be private.
func TestAnErrorPageNeverSharesANewVisitorsCookie(t *testing.T) {
	e := newEnv(t, envOptions{siteExtra: `handle_errors {
		header Cache-Control "public, max-age=60"
		respond "upstream unavailable" 502
	}`})
	r := e.request(t, "GET", "/down/here?t=error-page")
	if r.status != http.StatusBadGateway || string(r.body) != "upstream unavailable" {
		t.Fatalf("response %d %q, want the site's 502 error page", r.status, r.body)
	}
	_, id, _ := issuedCookie(t, r)
	cc := r.header.Get("Cache-Control")
	if id != "" && (strings.Contains(cc, "public") || !(strings.HasPrefix(cc, "private") || cc == "no-store")) {
		t.Errorf("the error page sets the cookie of visitor %s with Cache-Control %q: a shared cache may serve it to everyone", id, cc)
	}
	rec := e.record(t, "error-page")
	if rec.Kind != "page" || rec.CookieState != "new" || (id != "" && rec.CookieID != id) {
		t.Errorf("record kind %s, cookie %s (%s); want a page of a new visitor, cookie %q", rec.Kind, rec.CookieID, rec.CookieState, id)
	}
}

func TestEveryRecordIsValidUniqueTimelyAndKeyedByVisitor(t *testing.T) {
	e := newEnv(t, envOptions{})
	const visitors, perVisitor = 12, 6
	type sent struct {
		marker string
		reply  *reply
	}
	var mu sync.Mutex
	byVisitor := map[int][]sent{}
	ids := make([]string, visitors)
	var wg sync.WaitGroup
	for v := range visitors {
		wg.Go(func() {
			var cookie string
			for i := range perVisitor {
				m := fmt.Sprintf("v%02d-%d", v, i)
				target := "/page?t=" + m
				if i%2 == 1 {
					target = beaconPath + "?t=" + m + "&e=view"
				}
				var opts []reqOpt
				if cookie != "" {
					opts = append(opts, withCookie(cookieName+"="+cookie))
				}
				r, err := e.tryRequest("GET", target, opts...)
				if err != nil {
					t.Error(err)
					return
				}
				if i == 0 {
					cookie, ids[v], _ = issuedCookie(t, r)
				}
				mu.Lock()
				byVisitor[v] = append(byVisitor[v], sent{m, r})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var markers []string
	for v := range visitors {
		for _, s := range byVisitor[v] {
			markers = append(markers, s.marker)
		}
	}
	recs := e.records(t, e.topic, markers...)
	partitions := map[int]bool{}
	for v := range visitors {
		part := -1
		for i, s := range byVisitor[v] {
			r := recs[s.marker]
			if r.CookieID != ids[v] {
				t.Errorf("visitor %d's record %s has cookie_id %s, want %s", v, s.marker, r.CookieID, ids[v])
			}
			if state := map[bool]string{true: "new", false: "returning"}[i == 0]; r.CookieState != state {
				t.Errorf("record %s cookie_state %s, want %s", s.marker, r.CookieState, state)
			}
			if r.time.Before(s.reply.sent.Truncate(time.Microsecond)) || r.time.After(s.reply.done) {
				t.Errorf("record %s ts %s outside its request's window", s.marker, r.TS)
			}
			if part >= 0 && r.partition != part {
				t.Errorf("visitor %d's records are in partitions %d and %d: one key must map to one partition", v, part, r.partition)
			}
			part = r.partition
			partitions[part] = true
		}
	}
	if len(partitions) < 2 {
		t.Errorf("%d visitors' records all landed in partition(s) %v of 3: the key does not spread them", visitors, partitions)
	}
	all, err := e.readTopic(e.topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != visitors*perVisitor {
		t.Errorf("topic holds %d records, want exactly %d", len(all), visitors*perVisitor)
	}
	seen := map[string]bool{}
	for _, r := range all {
		if seen[r.EventID] {
			t.Errorf("event_id %s repeated", r.EventID)
		}
		seen[r.EventID] = true
	}
}

func TestMetricsCountWhatTheEdgeRecordedAndShipped(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := e.metrics(t)
	for _, k := range []string{`b2s_records_total{kind="page"}`, `b2s_records_total{kind="beacon"}`, `b2s_records_shipped_total`} {
		if v, ok := before[k]; !ok || v != 0 {
			t.Fatalf("%s = %v (present %v) before any request, want 0", k, v, ok)
		}
	}
	id := randomID()
	cookie := withCookie(cookieName + "=" + signCookie(currentKey, id, time.Now()))
	var markers []string
	send := func(method, target string, opts ...reqOpt) {
		e.request(t, method, target, opts...)
		if m := strings.TrimPrefix(target[strings.Index(target, "?"):], "?t="); method != "PUT" {
			markers = append(markers, m)
		}
	}
	for i := range 3 {
		send("GET", fmt.Sprintf("/page?t=new-%d", i)) // new
	}
	send("GET", "/missing?t=new-404") // new
	for i := range 2 {
		send("GET", fmt.Sprintf("/page?t=returning-%d", i), cookie)
	}
	send("GET", "/page?t=reset", withCookie(cookieName+"=forged"))
	send("GET", "/page?t=resign", withCookie(cookieName+"="+signCookie(olderKey, randomID(), time.Now())))
	send("GET", "/page?t=refresh", withCookie(cookieName+"="+signCookie(currentKey, randomID(), time.Now().Add(-25*time.Hour))))
	for i := range 4 {
		send("GET", fmt.Sprintf("%s?t=beacon-%d", beaconPath, i), cookie)
	}
	for i := range 2 {
		send("HEAD", fmt.Sprintf("%s?t=beacon-head-%d", beaconPath, i)) // new
	}
	send("PUT", beaconPath+"?t=beacon-put") // refused before the cookie: no record, no cookie
	e.records(t, e.topic, markers...)

	e.waitMetrics(t, map[string]float64{
		`b2s_records_total{kind="page"}`:                  9,
		`b2s_records_total{kind="beacon"}`:                6,
		`b2s_records_spooled_total`:                       15,
		`b2s_records_shipped_total`:                       15,
		`b2s_records_dropped_total{reason="spool_full"}`:  0,
		`b2s_records_dropped_total{reason="spool_error"}`: 0,
		`b2s_kafka_write_errors_total`:                    0,
		`b2s_spool_repairs_total`:                         0,
		`b2s_shipper_lag_seconds`:                         0,
		`b2s_sink_degraded`:                               0,
		`b2s_spool_max_bytes`:                             1 << 30, // the default
		`b2s_cookies_set_total{reason="new"}`:             3 + 1 + 2,
		`b2s_cookies_set_total{reason="reset"}`:           1,
		`b2s_cookies_set_total{reason="resign"}`:          1,
		`b2s_cookies_set_total{reason="refresh"}`:         1,
	})
	if got := e.pages.Load() + e.beacons.Load(); got != 15 {
		t.Errorf("the harness counted %d records, want 15", got)
	}
}

func TestRecordsWaitOutAStalledOrStoppedBroker(t *testing.T) {
	e := newEnv(t, envOptions{persistBroker: true})
	beacon := func(t *testing.T, m string) {
		t.Helper()
		r := e.request(t, "GET", beaconPath+"?t="+m+"&e=outage")
		checkPixel(t, r, false)
		if d := r.done.Sub(r.sent); d > time.Second {
			t.Errorf("beacon %s took %v with the broker unavailable: the request path waits on Kafka", m, d)
		}
	}
	markers := func(prefix string, n int) []string {
		var ms []string
		for i := range n {
			ms = append(ms, fmt.Sprintf("%s-%02d", prefix, i))
		}
		return ms
	}
	before, stalled, down := markers("before", 5), markers("stalled", 10), markers("down", 20)
	for _, m := range before {
		beacon(t, m)
	}
	e.records(t, e.topic, before...)

	ok := t.Run("a stalled broker delays records, not responses", func(t *testing.T) {
		e.broker.Signal(t, syscall.SIGSTOP)
		defer e.broker.Cmd.Process.Signal(syscall.SIGCONT)
		shipped := e.metrics(t)["b2s_records_shipped_total"]
		for _, m := range stalled {
			beacon(t, m)
		}
		if got := e.metrics(t)["b2s_records_shipped_total"]; got != shipped {
			t.Errorf("shipped went from %v to %v while the broker was stopped", shipped, got)
		}
		e.broker.Signal(t, syscall.SIGCONT)
		e.records(t, e.topic, stalled...)
	})
	if !ok {
		t.FailNow()
	}

	t.Run("a stopped broker delays records, not responses, and they wait in the spool", func(t *testing.T) {
		m0 := e.waitMetrics(t, map[string]float64{`b2s_shipper_lag_seconds`: 0, `b2s_sink_degraded`: 0})
		if status, rep := e.health(t); status != http.StatusOK {
			t.Errorf("health %d %+v with the broker up and the shipper caught up, want 200", status, rep)
		}
		e.stopBroker()
		for _, m := range down {
			beacon(t, m)
		}
		// The edge tries, fails and keeps the records in the spool.
		deadline := time.Now().Add(15 * time.Second)
		for e.metrics(t)["b2s_kafka_write_errors_total"] <= m0["b2s_kafka_write_errors_total"] {
			if time.Now().After(deadline) {
				t.Fatal("no Kafka write error counted while the broker is down")
			}
			time.Sleep(pollEvery)
		}
		m := e.metrics(t)
		if m["b2s_records_shipped_total"] != m0["b2s_records_shipped_total"] {
			t.Errorf("shipped went from %v to %v while the broker was down", m0["b2s_records_shipped_total"], m["b2s_records_shipped_total"])
		}
		if got, want := m["b2s_records_spooled_total"], m0["b2s_records_spooled_total"]+float64(len(down)); got != want {
			t.Errorf("spooled %v while the broker is down, want %v", got, want)
		}
		// Each record is a few hundred bytes: the spool grew by at least
		// 100 bytes a record.
		if grew := m["b2s_spool_bytes"] - m0["b2s_spool_bytes"]; grew < 100*float64(len(down)) {
			t.Errorf("the spool grew by %v bytes for %d records while the broker is down", grew, len(down))
		}
		if lag := m["b2s_shipper_lag_seconds"]; lag <= 0 {
			t.Errorf("shipper lag %v while records wait for a broker that is down, want > 0", lag)
		}
		if d := m["b2s_sink_degraded"]; d != 1 {
			t.Errorf("b2s_sink_degraded = %v while the broker is down, want 1", d)
		}
		status, rep := e.health(t)
		if status != http.StatusServiceUnavailable || rep.Status != "degraded" || !slices.Contains(rep.Reasons, "kafka_failing") ||
			rep.LagSeconds <= 0 || rep.SpoolBytes < int64(m["b2s_spool_bytes"]) {
			t.Errorf("health %d %+v while the broker is down, want 503 degraded for kafka_failing, with the lag and the spool's bytes", status, rep)
		}
		e.startBroker(e.brokerAddr)
		e.records(t, e.topic, slices.Concat(before, stalled, down)...)
		e.waitMetrics(t, map[string]float64{`b2s_shipper_lag_seconds`: 0, `b2s_sink_degraded`: 0})
		if status, rep := e.health(t); status != http.StatusOK || rep.Status != "ok" || len(rep.Reasons) != 0 {
			t.Errorf("health %d %+v after the broker came back and the spool drained, want 200 ok", status, rep)
		}
	})

	all, err := e.readTopic(e.topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(before) + len(stalled) + len(down); len(all) != n {
		t.Errorf("topic holds %d records, want exactly %d", len(all), n)
	}
	if t.Failed() {
		t.FailNow()
	}
	// Compare the counters now: the last subtest stops the edge.
	e.checkCounters()

	t.Run("stopping the edge delivers what it has spooled", func(t *testing.T) {
		e.broker.Signal(t, syscall.SIGSTOP)
		defer e.broker.Cmd.Process.Signal(syscall.SIGCONT)
		last := markers("last", 10)
		for _, m := range last {
			beacon(t, m)
		}
		e.caddy.Signal(t, syscall.SIGTERM)
		time.Sleep(300 * time.Millisecond)
		if e.caddy.Exited() {
			t.Errorf("caddy exited before its spool could reach the stalled broker: %v", e.caddy.WaitErr)
		}
		e.broker.Signal(t, syscall.SIGCONT)
		select {
		case <-e.caddy.Done:
		case <-time.After(15 * time.Second):
			t.Fatal("caddy did not exit within 15s of SIGTERM")
		}
		if e.caddy.WaitErr != nil {
			t.Errorf("caddy exited with %v", e.caddy.WaitErr)
		}
		e.records(t, e.topic, last...)
	})
}

func TestReloadsHandOverWithoutLosingOrDuplicatingRecords(t *testing.T) {
	newTopic := "e2e.reload.v2." + randomID()[:8]
	e := newEnv(t, envOptions{extraTopics: []string{newTopic}})
	oldTopic := e.topic

	// traffic sends beacons back to back until stop is closed, and
	// returns them with their request windows.
	type sent struct {
		marker string
		reply  *reply
	}
	//
	// A request the connection failed under (reset as the old server let
	// its listener go, on a loaded machine) got no answer: its record may
	// or may not exist, and is not required, but never twice (locate).
	// More than two such failures in one reload fail the test.
	traffic := func(prefix string, stop <-chan struct{}) func() []sent {
		var out []sent
		done := make(chan struct{})
		go func() {
			defer close(done)
			unanswered := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := fmt.Sprintf("%s-%03d", prefix, i)
				r, err := e.tryRequest("GET", beaconPath+"?t="+m)
				if err != nil {
					unanswered++
					t.Logf("during a reload, no answer: %v", err)
					if unanswered > 2 {
						t.Errorf("during a reload, %d beacons got no answer; the last: %v", unanswered, err)
						return
					}
					continue
				}
				if r.status != 200 {
					t.Errorf("during a reload: beacon %s answered %d", m, r.status)
				}
				out = append(out, sent{m, r})
				time.Sleep(5 * time.Millisecond)
			}
		}()
		return func() []sent { <-done; return out }
	}
	sendN := func(prefix string, n int) []string {
		var ms []string
		for i := range n {
			m := fmt.Sprintf("%s-%02d", prefix, i)
			checkPixel(t, e.request(t, "GET", beaconPath+"?t="+m), false)
			ms = append(ms, m)
		}
		return ms
	}
	// locate reads both topics and returns where each marker is, failing
	// on any marker found more than once.
	locate := func(t *testing.T, need []string) map[string]string {
		t.Helper()
		deadline := time.Now().Add(recordWait)
		for {
			where := map[string]string{}
			count := map[string]int{}
			var readErr error
			for _, topic := range []string{oldTopic, newTopic} {
				recs, err := e.readTopic(topic)
				if err != nil {
					readErr = err
				}
				for _, r := range recs {
					where[r.marker()] = topic
					count[r.marker()]++
				}
			}
			missing := 0
			for _, m := range need {
				if count[m] == 0 {
					missing++
				}
			}
			if missing == 0 && readErr == nil {
				for m, n := range count {
					if n > 1 {
						t.Errorf("marker %s recorded %d times across the topics", m, n)
					}
				}
				return where
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d records missing from both topics after %v (read error: %v)", missing, len(need), recordWait, readErr)
			}
			time.Sleep(pollEvery)
		}
	}

	t.Run("a reload that changes the topic ships earlier records to the old topic and later ones to the new", func(t *testing.T) {
		pre := sendN("pre", 10)
		stop := make(chan struct{})
		during := traffic("during", stop)
		time.Sleep(100 * time.Millisecond)
		e.writeCaddyfile(caddyConfig{Topic: newTopic})
		reloadStart := time.Now()
		if err := e.reload(); err != nil {
			t.Fatal(err)
		}
		reloadEnd := time.Now()
		time.Sleep(100 * time.Millisecond)
		close(stop)
		mid := during()
		post := sendN("post", 10)

		need := slices.Concat(pre, post)
		for _, s := range mid {
			need = append(need, s.marker)
		}
		where := locate(t, need)
		for _, m := range pre {
			if where[m] != oldTopic {
				t.Errorf("%s, sent before the reload, is in %q, want the old topic", m, where[m])
			}
		}
		for _, m := range post {
			if where[m] != newTopic {
				t.Errorf("%s, sent after the reload, is in %q, want the new topic", m, where[m])
			}
		}
		var inOld, inNew int
		for _, s := range mid {
			switch {
			case s.reply.done.Before(reloadStart) && where[s.marker] != oldTopic:
				t.Errorf("%s, answered before the reload began, is in %q", s.marker, where[s.marker])
			case s.reply.sent.After(reloadEnd) && where[s.marker] != newTopic:
				t.Errorf("%s, sent after the reload ended, is in %q", s.marker, where[s.marker])
			}
			if where[s.marker] == oldTopic {
				inOld++
			} else {
				inNew++
			}
		}
		t.Logf("%d beacons sent during the reload: %d shipped to the old topic, %d to the new", len(mid), inOld, inNew)
		if inOld == 0 || inNew == 0 {
			t.Errorf("of %d beacons sent during the reload, %d went to the old topic and %d to the new: the traffic did not straddle it", len(mid), inOld, inNew)
		}
	})

	t.Run("a reload that keeps the Kafka settings keeps shipping to the same topic", func(t *testing.T) {
		stop := make(chan struct{})
		during := traffic("same", stop)
		time.Sleep(100 * time.Millisecond)
		e.writeCaddyfile(caddyConfig{Topic: newTopic, SiteExtra: "header X-E2E-Config second"})
		if err := e.reload(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		close(stop)
		mid := during()
		r := e.request(t, "GET", "/page?t=after-same")
		if r.header.Get("X-E2E-Config") != "second" {
			t.Fatalf("the reloaded config is not in effect: response headers %v", r.header)
		}
		need := []string{"after-same"}
		for _, s := range mid {
			need = append(need, s.marker)
		}
		where := locate(t, need)
		for _, m := range need {
			if where[m] != newTopic {
				t.Errorf("%s is in %q, want %s", m, where[m], newTopic)
			}
		}
	})

	t.Run("a reload that fails keeps the running config shipping", func(t *testing.T) {
		e.writeCaddyfile(caddyConfig{Topic: "e2e.never.used", CollectExtra: "beacon no-leading-slash"})
		err := e.reload()
		if err == nil {
			t.Fatal("caddy reload accepted a beacon path without a leading slash")
		}
		if !strings.Contains(err.Error(), "must start with /") {
			t.Errorf("caddy reload failed, but not on the beacon path: %v", err)
		}
		ms := sendN("after-failed", 5)
		where := locate(t, ms)
		for _, m := range ms {
			if where[m] != newTopic {
				t.Errorf("%s is in %q, want %s", m, where[m], newTopic)
			}
		}
	})
}

func TestSendBeaconPostsAreRecordedAndAnsweredWithNoContent(t *testing.T) {
	e := newEnv(t, envOptions{})
	const page = "https://www.b2s.com/products?id=42"
	origin := "http://" + e.siteAddr
	cases := []struct {
		name, marker string
		opts         []reqOpt
		want         want
	}{
		{name: "a JSON string as text/plain, as sendBeacon sends it, from the same site", marker: "post-json",
			opts: []reqOpt{withHeader("Origin", origin),
				withBody("text/plain;charset=UTF-8", `{"u":"`+page+`","r":"https://search.example/","e":"pageview","product":42}`)},
			want: want{url: page, referrer: "https://search.example/", event: "pageview",
				params: map[string]string{"product": "42", "t": "post-json"}}},
		{name: "a form whose e wins over the query's", marker: "post-form",
			opts: []reqOpt{withHeader("Referer", page), withBody("application/x-www-form-urlencoded", "e=enquiry&e=second&lang=zh-CN")},
			want: want{url: page, event: "enquiry", params: map[string]string{"lang": "zh-CN", "t": "post-form"}}},
		{name: "a broken JSON body with what could be read, and the query's e", marker: "post-broken",
			opts: []reqOpt{withHeader("Referer", page), withBody("application/json", `{"product":"42","e":`)},
			want: want{url: page, event: "from-query", params: map[string]string{"product": "42", "t": "post-broken"}}},
	}
	replies := map[string]*reply{}
	var markers []string
	for _, c := range cases {
		r := e.request(t, "POST", beaconPath+"?t="+c.marker+"&e=from-query", c.opts...)
		if r.status != http.StatusNoContent || len(r.body) != 0 || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: status %d, %d body bytes, Cache-Control %q; want 204, none, no-store", c.name, r.status, len(r.body), r.header.Get("Cache-Control"))
		}
		replies[c.marker] = r
		markers = append(markers, c.marker)
	}
	if got := replies["post-json"].header.Get("Access-Control-Allow-Origin"); got != origin {
		t.Errorf("Access-Control-Allow-Origin = %q for the same site, want %q", got, origin)
	}
	if got := replies["post-form"].header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("Access-Control-Allow-Origin = %q without an Origin, want none", got)
	}
	big := e.request(t, "POST", beaconPath+"?t=post-big", withBody("text/plain", strings.Repeat("x", 16<<10+1)))
	if big.status != http.StatusRequestEntityTooLarge || big.header.Get("Set-Cookie") != "" {
		t.Errorf("a 16 KiB + 1 body: status %d, Set-Cookie %q; want 413 and none", big.status, big.header.Get("Set-Cookie"))
	}
	recs := e.records(t, e.topic, markers...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := replies[c.marker]
			w := c.want
			w.kind, w.method, w.status, w.bytes = "beacon", "POST", http.StatusNoContent, 0
			_, w.cookieID, _ = issuedCookie(t, r)
			w.cookieState = "new"
			if w.cookieID == "" {
				t.Errorf("no Set-Cookie on a new visitor's POST beacon")
			}
			e.expect(t, recs[c.marker], r, w)
		})
	}
}
