package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/b2scom/b2s-edge/beacon"
)

// Tests pinning the edges of the privacy code that its other tests leave
// open: each case sits on one side of a limit, and its neighbour on the
// other side is its control (docs/privacy-mutation.md).

// TestLinkDestinationLimits: the link endpoint redirects to a network
// URL whose host uses letters of either case, digits, an explicit port
// from 1 to 65535, up to beacon.MaxURLLen bytes; a port of 0 or 65536, a
// byte longer, a space, a host ending in a dot, or plain http from an
// https page gets 400 and no Location. The opt-out's return follows the
// same rule.
func TestLinkDestinationLimits(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c, _ := networkCollect(t, &now)
	long := func(n int) string {
		const head = "https://www.b2smade.com/"
		return head + strings.Repeat("p", n-len(head))
	}
	for _, tc := range []struct {
		to    string
		plain bool // the request comes over plain http
		ok    bool
	}{
		{"https://az.b2smade.com/p", false, true},
		{"https://AZ.B2SMADE.COM/p", false, true},
		{"https://09.b2smade.com/p", false, true},
		{"https://www.b2smade.com:1/p", false, true},
		{"https://www.b2smade.com:65535/p", false, true},
		{"https://www.b2smade.com:0/p", false, false},
		{"https://www.b2smade.com:65536/p", false, false},
		{long(beacon.MaxURLLen), false, true},
		{long(beacon.MaxURLLen + 1), false, false},
		{"https://www.b2smade.com/a~b", false, true},
		{"https://www.b2smade.com/a b", false, false},
		{"https://www.b2smade.com./p", false, false},
		{"https://user@www.b2smade.com/p", false, false},
		{"http://www.b2smade.com/p", false, false},
		{"http://www.b2smade.com/p", true, true},
		{"ftp://www.b2smade.com/p", true, false},
	} {
		scheme := "https"
		if tc.plain {
			scheme = "http"
		}
		r := httptest.NewRequest(http.MethodGet, scheme+"://www.b2s.com/_b2s/go?to="+url.QueryEscape(tc.to), nil)
		w := servePrefixTest(t, c, r, nil, 61)
		loc := w.Header().Get("Location")
		switch {
		case tc.ok && (w.Code != http.StatusFound || !strings.HasPrefix(strings.ToLower(loc), strings.ToLower(tc.to))):
			t.Errorf("%s: link to %.80q answered %d, Location %.80q; want 302 there", scheme, tc.to, w.Code, loc)
		case !tc.ok && (w.Code != http.StatusBadRequest || loc != ""):
			t.Errorf("%s: link to %.80q answered %d, Location %.80q; want 400 and no Location", scheme, tc.to, w.Code, loc)
		}
		r = httptest.NewRequest(http.MethodGet, scheme+"://www.b2s.com/_b2s/optout?return="+url.QueryEscape(tc.to), nil)
		w = servePrefixTest(t, c, r, nil, 61)
		if got := w.Header().Get("Location"); (got != "") != tc.ok {
			t.Errorf("%s: opt-out returning to %.80q: Location %.80q; want a redirect %v", scheme, tc.to, got, tc.ok)
		}
	}
}

// TestOptOutLocalReturnBytes: the opt-out returns to a path of the site
// written with printable ASCII only ("~", 0x7e, and "!", 0x21, are the
// controls); a space, DEL (0x7f) or a non-ASCII byte is never put in a
// Location.
func TestOptOutLocalReturnBytes(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c, _ := networkCollect(t, &now)
	for _, tc := range []struct {
		to string
		ok bool
	}{
		{"/thanks~", true},
		{"/thanks!", true},
		{"/thanks\x7f", false},
		{"/thanks\x80", false},
		{"/thanks now", false},
		{"/thanks\x1f", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/optout?return="+url.QueryEscape(tc.to), nil)
		w := servePrefixTest(t, c, r, nil, 62)
		if got := w.Header().Get("Location"); (got == tc.to) != tc.ok || (!tc.ok && got != "") {
			t.Errorf("opt-out returning to %q: Location %q; want a redirect there %v", tc.to, got, tc.ok)
		}
	}
}

// TestNetworkOptionLimits: a network loads with a token lifetime of
// exactly 10m, sites of 63-byte labels and 253 bytes, letters a to z and
// digits 0 to 9; one step past each limit fails the load with a message
// naming the option.
func TestNetworkOptionLimits(t *testing.T) {
	label := func(c byte, n int) string { return strings.Repeat(string(c), n) }
	load := func(network map[string]any) string {
		b, err := json.Marshal(map[string]any{
			"secrets": []string{testKey1},
			"spool":   t.TempDir(),
			"kafka":   map[string]any{"brokers": []string{"127.0.0.1:9"}},
			"network": network,
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	sites := func(s ...string) map[string]any { return map[string]any{"sites": s} }
	for _, tc := range []struct {
		name    string
		network map[string]any
		want    []string
	}{
		{"control: a token lifetime of 10m loads", map[string]any{"sites": []string{"b2s.com"}, "token_ttl": "10m"}, nil},
		{"a token lifetime of 10m1s is refused", map[string]any{"sites": []string{"b2s.com"}, "token_ttl": "10m1s"}, []string{"token_ttl", "at most 10m"}},
		{"a negative token lifetime is refused", map[string]any{"sites": []string{"b2s.com"}, "token_ttl": "-1s"}, []string{"token_ttl", "must be positive"}},
		{"control: sites with every letter and digit and a leading dot load", sites("abcdefghijklmnopqrstuvwxyz.com", "b2s-0123456789.com", ".b2smade.com"), nil},
		{"control: a site of 63-byte labels, 253 bytes, loads", sites(label('a', 63) + "." + label('b', 63) + "." + label('c', 63) + "." + label('d', 61)), nil},
		{"a site of 254 bytes is refused", sites(label('a', 63) + "." + label('b', 63) + "." + label('c', 63) + "." + label('d', 62)), []string{"is not a host name"}},
		{"a label of 64 bytes is refused", sites(label('a', 64) + ".com"), []string{"is not a host name"}},
		{"a label starting with a hyphen is refused", sites("-b2s.com"), []string{`site "-b2s.com" is not a host name`}},
		{"a label ending with a hyphen is refused", sites("b2s-.com"), []string{`site "b2s-.com" is not a host name`}},
		{"an empty label is refused", sites("b2s..com"), []string{`site "b2s..com" is not a host name`}},
		{"a site ending in a dot is refused", sites("b2s.com."), []string{`site "b2s.com." is not a host name`}},
		{"an underscore is refused", sites("b2s_made.com"), []string{`site "b2s_made.com" is not a host name`}},
		{"a byte past z is refused", sites("b2s{.com"), []string{`is not a host name`}},
		{"a byte past 9 is refused", sites("b2s:1.com"), []string{`is not a host name`}},
		{"an empty site is refused", sites(""), []string{`site "" is not a host name`}},
		{"a link path without a slash is refused", map[string]any{"sites": []string{"b2s.com"}, "link_path": "go"}, []string{`link_path "go" must start with /`}},
		{"a link path on the opt-in is refused", map[string]any{"sites": []string{"b2s.com"}, "link_path": "/_b2s/optin"}, []string{"link_path", "also a privacy path"}},
		{"a token parameter needing escapes is refused", map[string]any{"sites": []string{"b2s.com"}, "token_param": "a b"}, []string{"token_param", "plain query parameter name"}},
		{"control: a plain token parameter loads", map[string]any{"sites": []string{"b2s.com"}, "token_param": "tk"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) { checkLoad(t, load(tc.network), "", tc.want) })
	}
}

// TestOptInTokenLastSecond: the opt-in's form is good up to and
// including its expiry, 15 minutes after the form was served; a second
// later it is refused with 403 and the visitor stays opted out.
func TestOptInTokenLastSecond(t *testing.T) {
	const optIn = "https://www.b2s.com/_b2s/optin"
	for _, tc := range []struct {
		after  time.Duration
		accept bool
	}{
		{optInTokenTTL, true},
		{optInTokenTTL + time.Second, false},
	} {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, _ := networkCollect(t, &now)
		nonce, token := optInForm(t, c, optIn)
		now = now.Add(tc.after)
		r := httptest.NewRequest(http.MethodPost, optIn, strings.NewReader(optInTokenField+"="+url.QueryEscape(token)))
		r.Header.Set("Cookie", "__Host-b2sid_optout=1; "+nonce)
		w := serveCollect(t, c, withHeaders(r, formSubmit(chromeUA, nil)), nil)
		if got := w.Code < 400 && optedIn(w.Header()); got != tc.accept {
			t.Errorf("a form posted %v after it was served: answered %d, Set-Cookie %q; opted in %v, want %v", tc.after, w.Code, w.Header().Values("Set-Cookie"), got, tc.accept)
		}
		if !tc.accept && w.Code != http.StatusForbidden {
			t.Errorf("a form posted %v after it was served: answered %d, want 403", tc.after, w.Code)
		}
	}
}

// TestOptInNonceDeletion: the opt-in deletes its form's nonce cookie with
// the attributes it was set with, or a browser would keep it: over https
// the deletion of __Host-b2sid_optin is Secure (a __Host- cookie without
// Secure is refused), over plain http that of b2sid_optin is not (a
// Secure cookie from plain http is refused).
func TestOptInNonceDeletion(t *testing.T) {
	for _, scheme := range []string{"https", "http"} {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, _ := networkCollect(t, &now)
		target := scheme + "://www.b2s.com/_b2s/optin"
		nonce, token := optInForm(t, c, target)
		name, optOut := DefaultCookieName+optInNonceSuffix, DefaultCookieName+optOutSuffix
		if scheme == "https" {
			name, optOut = hostPrefix+name, hostPrefix+optOut
		}
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(optInTokenField+"="+url.QueryEscape(token)))
		r.Header.Set("Cookie", optOut+"=1; "+nonce)
		hdr := formSubmit(chromeUA, map[string]string{"Origin": scheme + "://www.b2s.com", "Referer": scheme + "://www.b2s.com/privacy"})
		w := serveCollect(t, c, withHeaders(r, hdr), nil)
		if w.Code >= 400 || !optedIn(w.Header()) {
			t.Fatalf("%s: answered %d, Set-Cookie %q; want the opt-in", scheme, w.Code, w.Header().Values("Set-Cookie"))
		}
		var del *http.Cookie
		for _, sc := range w.Result().Cookies() {
			if sc.Name == name {
				del = sc
			}
		}
		if del == nil || del.MaxAge >= 0 || del.Value != "" || del.Path != "/" || del.Domain != "" || !del.HttpOnly ||
			del.SameSite != http.SameSiteStrictMode || del.Secure != (scheme == "https") {
			t.Errorf("%s: Set-Cookie %q; want %s deleted, Path=/, HttpOnly, SameSite=Strict, Secure %v", scheme, w.Header().Values("Set-Cookie"), name, scheme == "https")
		}
	}
}

// TestCookieExactLimits: a visitor cookie issued exactly cookie_max_age
// plus the clock-skew allowance ago, or exactly the allowance in the
// future, still returns; one issued exactly cookie_refresh ago returns
// without a new Set-Cookie, a second older it is set again with the same
// ID. TestCookieLifetime has the cases a second past each limit. The
// allowance is five minutes: a cookie 4m59s past either limit returns.
func TestCookieExactLimits(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name   string
		issued time.Time
		set    bool // a new Set-Cookie, same ID
	}{
		{"a cookie issued exactly 400 days and the skew ago returns", now.Add(-400*day - cookieClockSkew), true},
		{"a cookie issued exactly the skew in the future returns", now.Add(cookieClockSkew), false},
		{"a cookie issued exactly cookie_refresh ago returns as it is", now.Add(-day), false},
		{"control: a cookie issued a second more than cookie_refresh ago is set again", now.Add(-day - time.Second), true},
		// The allowance is five minutes, the edges' clocks' drift: written
		// out, so that the constant cannot shrink unnoticed.
		{"a cookie stamped 4m59s ahead by another edge's clock returns", now.Add(4*time.Minute + 59*time.Second), false},
		{"a cookie issued 400 days and 4m59s ago returns", now.Add(-400*day - 4*time.Minute - 59*time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			c, sp := privacyCollect(t, &clock, 0)
			id := beacon.NewID()
			r := httptest.NewRequest(http.MethodGet, "/b.gif?e=pageview", nil)
			r.Header.Set("Referer", "https://www.b2s.com/products")
			r.Header.Set("Cookie", DefaultCookieName+"="+signerOf(t, testKey1).Sign(id, tc.issued))
			w := serveCollect(t, c, r, nil)
			rec := takeRecord(t, sp)
			if gotID, state := rec.str("cookie_id"), rec.str("cookie_state"); gotID != id || state != "returning" {
				t.Errorf("record cookie_id %q, state %q; want the cookie's %s, returning", gotID, state, id)
			}
			sc := strings.Join(w.Header().Values("Set-Cookie"), " ")
			if got := visitorCookieSet(w.Header()); got != tc.set || (got && !strings.Contains(sc, id)) {
				t.Errorf("Set-Cookie %q: want a visitor cookie with ID %s %v", sc, id, tc.set)
			}
		})
	}
}

// TestCookieNameLimits: a cookie_name of 64 bytes of letters of either
// case, digits, "-", "_" and "." loads; 65 bytes, an empty name, or a
// byte just outside each range fails the load naming cookie_name.
func TestCookieNameLimits(t *testing.T) {
	load := func(name string) string {
		b, err := json.Marshal(map[string]any{
			"secrets":     []string{testKey1},
			"spool":       t.TempDir(),
			"kafka":       map[string]any{"brokers": []string{"127.0.0.1:9"}},
			"cookie_name": name,
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const chars = "azAZ09-_."
	refused := []string{"cookie_name", "not a valid cookie name"}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{chars + strings.Repeat("x", 64-len(chars)), nil},
		{"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", nil},
		{chars + strings.Repeat("x", 65-len(chars)), refused},
		{"b2s`", refused}, {"b2s{", refused}, {"b2s@", refused}, {"b2s[", refused},
		{"b2s/", refused}, {"b2s:", refused}, {"b2s+", refused}, {"b2s,", refused},
	} {
		t.Run(tc.name, func(t *testing.T) { checkLoad(t, load(tc.name), "", tc.want) })
	}
}

// TestManyMemberCookies: of the member cookies a request carries, the
// first four are read: the visitor's own among them counts, whatever
// follows; one sent after four copies bound to another ID is not read,
// and the visitor is then no member on this request.
func TestManyMemberCookies(t *testing.T) {
	now := time.Now()
	c, _ := limitedCollect(t, nil, &now)
	signer := c.app.signer
	visitor, attacker := beacon.NewID(), beacon.NewID()
	member := func(id, m string) string { return "b2sid_m=" + m + "." + signer.SignMember(id, m) }
	copies := strings.Repeat(member(attacker, "m-evil")+"; ", len(visitorCookies{}.members))
	for _, tc := range []struct {
		name, cookie, want string
	}{
		{"the visitor's member cookie first, then four copies", member(visitor, "m-1") + "; " + copies, "m-1"},
		{"the visitor's member cookie fourth", strings.Repeat(member(attacker, "m-evil")+"; ", 3) + member(visitor, "m-1") + "; " + copies, "m-1"},
		{"the visitor's member cookie fifth", copies + member(visitor, "m-1"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://www.b2s.com/checkout/signin", nil)
			r.Header.Set("Cookie", "b2sid="+signer.Sign(visitor, now.Add(-time.Hour))+"; "+tc.cookie)
			var jar visitorCookies
			c.readCookies(r, &jar)
			var rec beacon.Record
			rec.Consent = beacon.ConsentFull
			c.identify(r, now, &rec, &jar, nil)
			c.readMember(&rec, &jar)
			if rec.CookieID != visitor || rec.MemberID != tc.want {
				t.Errorf("cookie_id %q, member_id %q; want %q, %q", rec.CookieID, rec.MemberID, visitor, tc.want)
			}
		})
	}
}

// TestSeveralVisitorCookiesLogged: when several visitor cookies with
// different IDs come and none is trusted, a debug log says so and how
// many there were; one cookie alone logs nothing (the control).
func TestSeveralVisitorCookiesLogged(t *testing.T) {
	now := time.Now()
	c, _ := limitedCollect(t, nil, &now)
	core, logs := observer.New(zapcore.DebugLevel)
	c.logger = zap.New(core)
	vc := c.app.signer.Sign(beacon.NewID(), now.Add(-time.Hour))
	ac := c.app.signer.Sign(beacon.NewID(), now.Add(-time.Hour))
	for _, tc := range []struct {
		cookie string
		want   int // cookies in the log; 0 for no log
	}{
		{"b2sid=" + vc, 0},
		{"b2sid=" + ac + "; b2sid=" + vc, 2},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://www.b2s.com/checkout", nil)
		r.Header.Set("Cookie", tc.cookie)
		var jar visitorCookies
		c.readCookies(r, &jar)
		var rec beacon.Record
		c.identify(r, now, &rec, &jar, nil)
		got := logs.FilterMessage("several visitor cookies: none trusted").TakeAll()
		switch {
		case tc.want == 0 && len(got) != 0:
			t.Errorf("cookie %q logged %v, want nothing", tc.cookie, got)
		case tc.want != 0 && (len(got) != 1 || got[0].ContextMap()["cookies"] != int64(tc.want)):
			t.Errorf("cookie %q logged %v, want one entry with cookies=%d", tc.cookie, got, tc.want)
		}
	}
}

// TestOwnsCookieBarePrefix: a cookie named only "__Host-" or "__Secure-"
// (a prefix and an empty name) is not the plugin's, even with a
// cookie_name that the prefix itself starts with ("_"); the control,
// the prefix and that name, is.
func TestOwnsCookieBarePrefix(t *testing.T) {
	a := &App{CookieName: "_"}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"__Host-", false},
		{"__Secure-", false},
		{"__Host-_", true},
		{"__Secure-__optout", true},
		{"_", true},
	} {
		if got := a.ownsCookie(tc.name); got != tc.want {
			t.Errorf("cookie_name _: ownsCookie(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
