package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Edges of the privacy endpoints that a visitor or an attacker can
// observe, each pinned by a test: the link endpoint's destination guard,
// the cookie it gives a first-time visitor, and the lifetime of the
// opt-out's cookie.

// TestLinkDestinationHostCharacters: the link endpoint redirects only to
// a network host written plainly. A host that url.Parse accepts but that
// holds other characters (";" before a network suffix, a "_" or "!" in a
// label) is refused with 400, never a redirect: browsers read such
// authorities in their own ways. The controls: the same URLs written
// plainly are redirected to.
func TestLinkDestinationHostCharacters(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c, _ := networkCollect(t, &now)
	for _, tc := range []struct {
		to string
		ok bool
	}{
		{"https://www.b2smade.com/p", true},
		{"https://shop-1.b2smade.com:8443/p", true},
		{"https://evil.example;.b2smade.com/", false},
		{"https://evil.example!.b2smade.com/", false},
		{"https://evil_example.b2smade.com/", false},
	} {
		if u, err := url.Parse(tc.to); !tc.ok && err != nil {
			t.Fatalf("url.Parse(%q) fails (%v): the case tests nothing past it", tc.to, err)
		} else if !tc.ok && !strings.HasSuffix(u.Hostname(), ".b2smade.com") {
			t.Fatalf("url.Parse(%q) reads host %q, not under b2smade.com: the case tests nothing past the site check", tc.to, u.Hostname())
		}
		r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/go?to="+url.QueryEscape(tc.to), nil)
		w := servePrefixTest(t, c, r, nil, 60)
		loc := w.Header().Get("Location")
		switch {
		case tc.ok && (w.Code != http.StatusFound || !strings.HasPrefix(loc, tc.to)):
			t.Errorf("control: link to %q answered %d, Location %q; want 302 there", tc.to, w.Code, loc)
		case !tc.ok && (w.Code != http.StatusBadRequest || loc != ""):
			t.Errorf("link to %q answered %d, Location %q; want 400 and no Location", tc.to, w.Code, loc)
		}
		// The opt-out's return follows the same rule.
		r = httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/optout?return="+url.QueryEscape(tc.to), nil)
		w = servePrefixTest(t, c, r, nil, 60)
		if got := w.Header().Get("Location"); (got != "") != tc.ok {
			t.Errorf("opt-out returning to %q: Location %q; want a redirect %v", tc.to, got, tc.ok)
		}
	}
}

// TestLinkGivesFirstTimeVisitorACookie: a visitor without a cookie who
// follows the link endpoint gets this site's cookie on the redirect, and
// the token carries that cookie's network ID: back on this site, the
// same browser is the same visitor. The control: a returning visitor
// with a fresh cookie gets no new one.
func TestLinkGivesFirstTimeVisitorACookie(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c, sp := networkCollect(t, &now)
	r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/go?to="+url.QueryEscape("https://www.b2smade.com/p"), nil)
	w := servePrefixTest(t, c, r, nil, 61)
	v := visitorCookie(w.Header())
	vv, ok := c.app.signer.Verify(v)
	if w.Code != http.StatusFound || !ok {
		t.Fatalf("a first-time visitor's link answered %d, Set-Cookie %q; want 302 with a valid visitor cookie", w.Code, w.Header().Values("Set-Cookie"))
	}
	rec := takeRecord(t, sp)
	if rec.str("cookie_id") != vv.ID || rec.str("cookie_state") != "new" {
		t.Errorf("the link recorded cookie_id %q, state %q; want the new cookie's %s, new", rec.str("cookie_id"), rec.str("cookie_state"), vv.ID)
	}
	loc, _ := url.Parse(w.Header().Get("Location"))
	l, err := c.app.network.sealer.Open(loc.Query().Get(DefaultTokenParam), "www.b2smade.com", now)
	if err != nil || l.NetworkID != vv.ID {
		t.Errorf("the token carries network ID %q (%v), want the new cookie's %s", l.NetworkID, err, vv.ID)
	}

	r = httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/go?to="+url.QueryEscape("https://www.b2smade.com/p"), nil)
	r.Header.Set("Cookie", hostPrefix+DefaultCookieName+"="+v)
	if w := servePrefixTest(t, c, r, nil, 61); len(w.Header().Values("Set-Cookie")) != 0 {
		t.Errorf("control: a returning visitor's link set %q, want nothing", w.Header().Values("Set-Cookie"))
	}
	takeRecords(t, sp)
}

// TestOptOutCookieLifetime: the opt-out and do-not-collect marks last as
// long as the visitor cookie would (cookie_max_age, 400 days by
// default); the cookies the opt-out deletes are deleted (Max-Age=0).
func TestOptOutCookieLifetime(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, maxAge := range []time.Duration{0, 30 * 24 * time.Hour} {
		c, _ := privacyCollect(t, &now, maxAge)
		want := int(time.Duration(c.app.CookieMaxAge) / time.Second)
		for _, scheme := range []string{"https", "http"} {
			r := httptest.NewRequest(http.MethodGet, scheme+"://www.b2s.com/_b2s/optout", nil)
			w := servePrefixTest(t, c, r, nil, 62)
			for _, line := range w.Header().Values("Set-Cookie") {
				sc, err := http.ParseSetCookie(line)
				if err != nil {
					t.Fatal(err)
				}
				raw := line[strings.Index(line, "Max-Age="):]
				switch {
				case strings.HasSuffix(sc.Name, optOutSuffix) && sc.Value == "1":
					if sc.MaxAge != want {
						t.Errorf("%s: %s lives %d s, want %d (cookie_max_age)", scheme, sc.Name, sc.MaxAge, want)
					}
				case !strings.HasPrefix(raw, "Max-Age=0;"):
					t.Errorf("%s: %q deletes nothing, want Max-Age=0", scheme, line)
				}
			}
		}
	}
}

// TestTruncationPrefixes: an opted-out visitor's IP is cut to 24 bits
// (IPv4) and 48 bits (IPv6) by default, or to the configured prefixes;
// prefixes up to the whole address (32, 128) and down to nothing (0 is
// the default) load, and anything outside 0-32 and 0-128 fails the load.
func TestTruncationPrefixes(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v4, v6       int
		ip, want     string
		provisionErr bool
	}{
		{ip: "203.0.113.77", want: "203.0.113.0"},
		{ip: "2001:db8:1234:5678::1", want: "2001:db8:1234::"},
		{v4: 16, v6: 32, ip: "203.0.113.77", want: "203.0.0.0"},
		{v4: 16, v6: 32, ip: "2001:db8:1234:5678::1", want: "2001:db8::"},
		{v4: 32, v6: 128, ip: "203.0.113.77", want: "203.0.113.77"},
		{v4: 32, v6: 128, ip: "2001:db8:1234:5678::1", want: "2001:db8:1234:5678::1"},
		{v4: 33, v6: 48, provisionErr: true},
		{v4: 24, v6: 129, provisionErr: true},
		{v4: -1, v6: 48, provisionErr: true},
		{v4: 24, v6: -1, provisionErr: true},
	} {
		pv := (&Privacy{IPv4Prefix: tc.v4, IPv6Prefix: tc.v6}).provision(DefaultCookieName)
		if err := pv.validate(); (err != nil) != tc.provisionErr {
			t.Errorf("truncate_ip %d %d: validate() = %v, want an error %v", tc.v4, tc.v6, err, tc.provisionErr)
		}
		if tc.provisionErr {
			continue
		}
		c, sp := privacyCollect(t, &now, 0)
		c.app.privacy = pv
		r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/optout", nil)
		w := httptest.NewRecorder()
		if err := c.ServeHTTP(w, withClientIP(r, tc.ip), nil); err != nil {
			t.Fatal(err)
		}
		if rec := takeRecord(t, sp); rec.str("ip") != tc.want || rec.rec["ip_truncated"] != true {
			t.Errorf("truncate_ip %d %d: the opt-out from %s recorded IP %q (truncated %v), want %s", tc.v4, tc.v6, tc.ip, rec.str("ip"), rec.rec["ip_truncated"], tc.want)
		}
	}
}

// TestPrivacyEndpointMethods: the opt-out and opt-in answer GET, HEAD and
// POST; any other method gets 405 with Allow, and changes nothing.
func TestPrivacyEndpointMethods(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c, _ := privacyCollect(t, &now, 0)
	for _, path := range []string{"/_b2s/optout", "/_b2s/optin"} {
		for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			w := servePrefixTest(t, c, httptest.NewRequest(m, "https://www.b2s.com"+path, nil), nil, 63)
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD, POST" || len(w.Header().Values("Set-Cookie")) != 0 {
				t.Errorf("%s %s answered %d, Allow %q, Set-Cookie %q; want 405, GET, HEAD, POST, nothing set", m, path, w.Code, w.Header().Get("Allow"), w.Header().Values("Set-Cookie"))
			}
		}
		// The controls: GET answers.
		if w := servePrefixTest(t, c, httptest.NewRequest(http.MethodGet, "https://www.b2s.com"+path, nil), nil, 63); w.Code != http.StatusOK {
			t.Errorf("control: GET %s answered %d, want 200", path, w.Code)
		}
	}
}

// TestOptInOriginShapes: from a browser without Fetch Metadata, carrying
// the form's token, an opt-in is accepted only when its Origin is
// exactly this site's origin (scheme, host, port; nothing else), or,
// without an Origin, when its Referer is a page of it. An Origin with
// user info, a path, a query or a fragment is no browser's and is
// refused; so is a Referer with user info or without a host.
func TestOptInOriginShapes(t *testing.T) {
	for _, tc := range []struct {
		origin, referer string
		scheme          string
		accept          bool
	}{
		{origin: "https://www.b2s.com", scheme: "https", accept: true},
		{origin: "https://WWW.B2S.COM", scheme: "https", accept: true},
		{referer: "https://www.b2s.com/privacy", scheme: "https", accept: true},
		{origin: "http://www.b2s.com", scheme: "http", accept: true},
		{referer: "http://www.b2s.com/privacy", scheme: "http", accept: true},
		{origin: "https://user@www.b2s.com", scheme: "https"},
		{origin: "https://www.b2s.com/privacy", scheme: "https"},
		{origin: "https://www.b2s.com?x=1", scheme: "https"},
		{origin: "https://www.b2s.com#f", scheme: "https"},
		{origin: "https://www.b2s.com:8443", scheme: "https"},
		{origin: "http://www.b2s.com", scheme: "https"},
		{origin: "ftp://www.b2s.com", scheme: "https"},
		{referer: "https://user@www.b2s.com/privacy", scheme: "https"},
		{referer: "https:www.b2s.com/privacy", scheme: "https"},
		{referer: "/privacy", scheme: "https"},
	} {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, sp := networkCollect(t, &now)
		target := tc.scheme + "://www.b2s.com/_b2s/optin"
		nonce, token := optInForm(t, c, target)
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(optInTokenField+"="+url.QueryEscape(token)))
		r.Header.Set("Cookie", "b2sid_optout=1; "+nonce)
		hdr := oldBrowser(map[string]string{})
		if tc.origin != "" {
			hdr["Origin"] = tc.origin
		}
		if tc.referer != "" {
			hdr["Referer"] = tc.referer
		}
		w := serveCollect(t, c, withHeaders(r, hdr), nil)
		takeRecords(t, sp)
		if got := w.Code < 400 && optedIn(w.Header()); got != tc.accept {
			t.Errorf("over %s, Origin %q, Referer %q: answered %d, opted in %v; want %v", tc.scheme, tc.origin, tc.referer, w.Code, got, tc.accept)
		}
	}
}

// TestLinkEndpointMethods: the link endpoint redirects on GET and HEAD;
// any other method, a POST a page or a script might send, gets 405 with
// Allow and no Location (no token).
func TestLinkEndpointMethods(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c, _ := networkCollect(t, &now)
	target := "https://www.b2s.com/_b2s/go?to=" + url.QueryEscape("https://www.b2smade.com/p")
	for _, tc := range []struct {
		method string
		want   int
	}{
		{http.MethodGet, http.StatusFound},
		{http.MethodHead, http.StatusFound},
		{http.MethodPost, http.StatusMethodNotAllowed},
		{http.MethodPut, http.StatusMethodNotAllowed},
		{http.MethodDelete, http.StatusMethodNotAllowed},
	} {
		w := servePrefixTest(t, c, httptest.NewRequest(tc.method, target, nil), nil, 64)
		if w.Code != tc.want {
			t.Errorf("%s of the link endpoint answered %d, want %d", tc.method, w.Code, tc.want)
		}
		if tc.want == http.StatusMethodNotAllowed && (w.Header().Get("Allow") != "GET, HEAD" || w.Header().Get("Location") != "") {
			t.Errorf("%s: Allow %q, Location %q; want GET, HEAD and no Location", tc.method, w.Header().Get("Allow"), w.Header().Get("Location"))
		}
	}
}

// TestLinkTokenRefusals: a landing with a token that expired, that was
// minted for another host, or that is not a token at all joins nobody:
// the visitor gets a cookie of their own, not the issuer's network ID,
// the record has no linked_from, and each refusal is counted under its
// reason. The control: the same token, in time and on its host, links.
func TestLinkTokenRefusals(t *testing.T) {
	issuer := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name     string
		host     string
		after    time.Duration
		mangle   bool
		result   linkResult
		wantLink bool
	}{
		{name: "control: in time, on its host", host: "www.b2smade.com", result: linkLinked, wantLink: true},
		{name: "expired", host: "www.b2smade.com", after: time.Minute, result: linkExpired},
		{name: "minted for another host", host: "shop.b2smade.com", result: linkWrongHost},
		{name: "not a token", host: "www.b2smade.com", mangle: true, result: linkInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			c, sp := networkCollect(t, &now)
			loc := issueToken(t, c, sp, issuer, "https://www.b2smade.com/p", now)
			tok := loc.Query().Get(DefaultTokenParam)
			if tc.mangle {
				tok = "x" + tok[1:]
			}
			now = now.Add(tc.after)
			before := metricValue(t, linkResults[tc.result])
			r := httptest.NewRequest(http.MethodGet, "https://"+tc.host+"/p?"+DefaultTokenParam+"="+url.QueryEscape(tok), nil)
			w := servePrefixTest(t, c, withHeaders(r, fromB2S, navigationHdrs), nil, 65)
			v, ok := c.app.signer.Verify(visitorCookie(w.Header()))
			if w.Code != http.StatusFound || !ok {
				t.Fatalf("the landing answered %d, Set-Cookie %q; want 302 with a cookie", w.Code, w.Header().Values("Set-Cookie"))
			}
			if linked := v.NetworkID == issuer; linked != tc.wantLink {
				t.Errorf("the cookie's network ID is %q; joined to the issuer's: %v, want %v", v.NetworkID, linked, tc.wantLink)
			}
			rec := takeRecord(t, sp)
			if (rec.str("linked_from") != "") != tc.wantLink {
				t.Errorf("the landing recorded linked_from %q; want one %v", rec.str("linked_from"), tc.wantLink)
			}
			if d := metricValue(t, linkResults[tc.result]) - before; d != 1 {
				t.Errorf("b2s_link_tokens_total for this result moved by %v, want 1", d)
			}
		})
	}
}
