package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/logship"
)

// A link token joins a visitor only on the navigation that the link
// endpoint's redirect makes; it never goes further than the edge; and the
// cookie it is exchanged for does not show the network ID it carried.
// Each test has a control that shows it can fail.

// networkCollect is limitedCollect's b2s_collect in a network of
// b2s.com, b2smade.com and b2s.cn. The client limit is off: the limiter is the
// process's, and other tests use the same client IP.
func networkCollect(t *testing.T, now *time.Time) (*Collect, *logship.Spool) {
	t.Helper()
	c, sp := limitedCollect(t, &ClientLimit{Off: true}, now)
	c.app.Network = &Network{Sites: []string{"b2s.com", "b2smade.com", "b2s.cn"}}
	var err error
	if c.app.network, err = c.app.Network.provision(beacon.Keys{Sign: []byte(testKey1)}); err != nil {
		t.Fatal(err)
	}
	if err := c.app.Validate(); err != nil {
		t.Fatal(err)
	}
	return c, sp
}

// visitorCookie returns the visitor cookie value h sets over https (the
// __Host- name), or "".
func visitorCookie(h http.Header) string {
	for _, line := range h.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == hostPrefix+DefaultCookieName && c.MaxAge > 0 {
			return c.Value
		}
	}
	return ""
}

// issueToken has a visitor with cookie ID issuer on www.b2s.com follow
// the link endpoint to dest, and returns the URL it redirects to.
func issueToken(t *testing.T, c *Collect, sp *logship.Spool, issuer, dest string, now time.Time) *url.URL {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/go?to="+url.QueryEscape(dest), nil)
	r.Header.Set("Cookie", hostPrefix+DefaultCookieName+"="+c.app.signer.Sign(issuer, now))
	w := serveCollect(t, c, r, nil)
	loc, err := url.Parse(w.Header().Get("Location"))
	if w.Code != http.StatusFound || err != nil || loc.Query().Get(DefaultTokenParam) == "" {
		t.Fatalf("link endpoint answered %d to %q, want 302 with a token", w.Code, w.Header().Get("Location"))
	}
	takeRecords(t, sp)
	return loc
}

// Request headers of what a browser fetches, on www.b2smade.com, from a
// page of www.b2s.com.
var (
	fromB2S        = map[string]string{"Referer": "https://www.b2s.com/products"}
	navigationHdrs = map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}
)

func withHeaders(r *http.Request, sets ...map[string]string) *http.Request {
	for _, set := range sets {
		for k, v := range set {
			r.Header.Set(k, v)
		}
	}
	return r
}

// TestLinkTokenOnlyOnNavigation: a token is exchanged on the top-level
// navigation of the link endpoint's redirect, never on a request that a
// page makes for an image, a frame or a script, nor on a HEAD. Those
// still lose the token on the way (302 without it) and do not use it up.
func TestLinkTokenOnlyOnNavigation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string]string
		linked bool
	}{
		{name: "control: the navigation from a network page exchanges the token", method: http.MethodGet, hdr: navigationHdrs, linked: true},
		{name: "control: without Fetch Metadata, a GET from a network page exchanges it", method: http.MethodGet, linked: true},
		{name: "an image on a network page does not", method: http.MethodGet, hdr: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}},
		{name: "a frame on a network page does not", method: http.MethodGet, hdr: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}},
		{name: "a script's fetch on a network page does not", method: http.MethodGet, hdr: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}},
		{name: "a stylesheet of a browser that sends no Sec-Fetch-Dest does not", method: http.MethodGet, hdr: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}},
		{name: "a HEAD does not", method: http.MethodHead},
		{name: "a navigation from another site does not", method: http.MethodGet, hdr: map[string]string{"Referer": "https://evil.example/", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}},
		{name: "a navigation from a page of the landing site itself (an ad it serves) does not", method: http.MethodGet, hdr: map[string]string{"Referer": "https://www.b2smade.com/ads/frame", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}},
		{name: "a navigation from a third network site does not", method: http.MethodGet, hdr: map[string]string{"Referer": "https://www.b2s.cn/", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}},
		{name: "control: a navigation from another host of the issuing site exchanges it", method: http.MethodGet, hdr: map[string]string{"Referer": "https://b2s.com/", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, linked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			c, sp := networkCollect(t, &now)
			issuer := beacon.NewID()
			loc := issueToken(t, c, sp, issuer, "https://www.b2smade.com/landing?x=1", now)
			linked, foreign := metricValue(t, linkResults[linkLinked]), metricValue(t, linkResults[linkForeignReferrer])

			w := serveCollect(t, c, withHeaders(httptest.NewRequest(tc.method, loc.String(), nil), fromB2S, tc.hdr), nil)
			if w.Code != http.StatusFound || w.Header().Get("Location") != "/landing?x=1" {
				t.Fatalf("answered %d to %q, want 302 to /landing?x=1", w.Code, w.Header().Get("Location"))
			}
			v, _ := c.app.signer.Verify(visitorCookie(w.Header()))
			rec := takeRecord(t, sp)
			if got := v.NetworkID == issuer; got != tc.linked {
				t.Errorf("cookie %+v joined to the issuer's network ID: %v, want %v", v, got, tc.linked)
			}
			if got := rec.str("linked_from") == "www.b2s.com" && rec.str("network_id") == issuer; got != tc.linked {
				t.Errorf("record linked_from %q network_id %q: linked %v, want %v", rec.str("linked_from"), rec.str("network_id"), got, tc.linked)
			}
			wantLinked, wantForeign := 0.0, 1.0
			if tc.linked {
				wantLinked, wantForeign = 1, 0
			}
			if d := metricValue(t, linkResults[linkLinked]) - linked; d != wantLinked {
				t.Errorf("b2s_link_tokens_total{result=linked} moved by %v, want %v", d, wantLinked)
			}
			if d := metricValue(t, linkResults[linkForeignReferrer]) - foreign; d != wantForeign {
				t.Errorf("b2s_link_tokens_total{result=foreign_referrer} moved by %v, want %v", d, wantForeign)
			}
			if tc.linked {
				return
			}
			// Not used up: the visitor's own navigation still links.
			w = serveCollect(t, c, withHeaders(httptest.NewRequest(http.MethodGet, loc.String(), nil), fromB2S, navigationHdrs), nil)
			if v, _ := c.app.signer.Verify(visitorCookie(w.Header())); v.NetworkID != issuer {
				t.Errorf("the navigation after it got %+v, want network ID %s", v, issuer)
			}
		})
	}
}

// TestLinkTokenNeverPassedOn: whatever the method, a request that
// carries a token reaches the upstream, and its record, without it. A
// request other than GET and HEAD is passed on, never exchanged.
func TestLinkTokenNeverPassedOn(t *testing.T) {
	for _, tc := range []struct {
		name, method, query string
		wantQuery           string
		leaks               bool
	}{
		{name: "a POST with a token: the upstream and the record get the URL without it", method: http.MethodPost, query: "a=1&_b2s=%s&b=2", wantQuery: "a=1&b=2"},
		{name: "a POST with only a token: no query left", method: http.MethodPost, query: "_b2s=%s", wantQuery: ""},
		{name: "a POST with an escaped token name", method: http.MethodPost, query: "%%5Fb2s=%s&a=1", wantQuery: "a=1"},
		{name: "a PUT with two tokens", method: http.MethodPut, query: "_b2s=%s&_b2s=x", wantQuery: ""},
		{name: "a DELETE with a token", method: http.MethodDelete, query: "_b2s=%s", wantQuery: ""},
		{name: "control: another parameter holding the token reaches the upstream", method: http.MethodPost, query: "a=1&_b2sx=%s", wantQuery: "a=1&_b2sx=%s", leaks: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			c, sp := networkCollect(t, &now)
			issuer := beacon.NewID()
			token := issueToken(t, c, sp, issuer, "https://www.b2smade.com/form", now).Query().Get(DefaultTokenParam)
			linked := metricValue(t, linkResults[linkLinked])

			var seenURL, seenURI string
			next := func(w http.ResponseWriter, r *http.Request) error {
				seenURL, seenURI = r.URL.String(), r.RequestURI
				_, err := io.WriteString(w, "page")
				return err
			}
			target := "https://www.b2smade.com/form?" + fmt.Sprintf(tc.query, token)
			r := withHeaders(httptest.NewRequest(tc.method, target, strings.NewReader("q=1")), fromB2S, navigationHdrs)
			w := serveCollect(t, c, r, next)
			if w.Code != http.StatusOK || w.Body.String() != "page" {
				t.Fatalf("answered %d %q, want the upstream's page", w.Code, w.Body.String())
			}
			rec := takeRecord(t, sp)
			leaked := map[string]bool{
				"the upstream's URL":         strings.Contains(seenURL, token),
				"the upstream's request URI": strings.Contains(seenURI, token),
				"the record's url":           strings.Contains(rec.str("url"), token),
			}
			for where, got := range leaked {
				if got != tc.leaks {
					t.Errorf("the token in %s: %v, want %v (URL %q, URI %q, record url %q)", where, got, tc.leaks, seenURL, seenURI, rec.str("url"))
				}
			}
			wantQuery := tc.wantQuery
			if strings.Contains(wantQuery, "%s") {
				wantQuery = fmt.Sprintf(wantQuery, token)
			}
			wantURL := "https://www.b2smade.com/form"
			if wantQuery != "" {
				wantURL += "?" + wantQuery
			}
			if seenURL != wantURL || rec.str("url") != wantURL {
				t.Errorf("upstream got %q, record url %q; want %q", seenURL, rec.str("url"), wantURL)
			}
			if v, _ := c.app.signer.Verify(visitorCookie(w.Header())); v.NetworkID == issuer || rec.str("network_id") == issuer || rec.str("linked_from") != "" {
				t.Errorf("a %s joined the visitor: cookie %+v, record network_id %q linked_from %q", tc.method, v, rec.str("network_id"), rec.str("linked_from"))
			}
			if d := metricValue(t, linkResults[linkLinked]) - linked; d != 0 {
				t.Errorf("b2s_link_tokens_total{result=linked} moved by %v, want 0", d)
			}
		})
	}
}

// legacyNetworkCookie is a cookie value as the edge wrote it for a linked
// visitor before the network ID was sealed: version 2, the network ID
// in clear.
func legacyNetworkCookie(key, id, nid string, issued time.Time) string {
	msg := fmt.Sprintf("2.%s.%08x.%s", id, uint32(issued.Unix()), nid)
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return msg + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// TestLinkedCookieHidesNetworkID: whoever redeems a token (the visitor,
// or someone who got hold of it) gets a cookie that does not show the
// network ID it carried, which for a visitor of the network's first site
// is that site's cookie ID. Cookies already issued with the network ID in
// clear still read.
func TestLinkedCookieHidesNetworkID(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	shows := func(value, id string) bool {
		for _, part := range []string{id, id[:16], id[16:]} {
			if strings.Contains(strings.ToLower(value), part) {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		name   string
		cookie func(t *testing.T, c *Collect, sp *logship.Spool, issuer string) string
		shows  bool
	}{
		{
			name: "the cookie a redeemer gets does not contain the issuer's cookie ID",
			cookie: func(t *testing.T, c *Collect, sp *logship.Spool, issuer string) string {
				loc := issueToken(t, c, sp, issuer, "https://www.b2smade.com/", now)
				w := serveCollect(t, c, withHeaders(httptest.NewRequest(http.MethodGet, loc.String(), nil), fromB2S, navigationHdrs), nil)
				takeRecords(t, sp)
				return visitorCookie(w.Header())
			},
		},
		{
			name: "control: the cookie as it was written before does",
			cookie: func(t *testing.T, c *Collect, sp *logship.Spool, issuer string) string {
				return legacyNetworkCookie(testKey1, beacon.NewID(), issuer, now)
			},
			shows: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sp := networkCollect(t, &now)
			issuer := beacon.NewID()
			value := tc.cookie(t, c, sp, issuer)
			if got := shows(value, issuer); got != tc.shows {
				t.Errorf("cookie %q shows the issuer's ID %s: %v, want %v", value, issuer, got, tc.shows)
			}
			// Either way the edge reads the network ID from it.
			v, ok := c.app.signer.Verify(value)
			if !ok || v.NetworkID != issuer || v.ID == issuer {
				t.Fatalf("Verify(%q) = %+v, %v; want its own ID and network ID %s", value, v, ok, issuer)
			}
			r := httptest.NewRequest(http.MethodGet, "https://www.b2smade.com/next", nil)
			r.Header.Set("Cookie", DefaultCookieName+"="+value)
			serveCollect(t, c, r, nil)
			if rec := takeRecord(t, sp); rec.str("cookie_id") != v.ID || rec.str("network_id") != issuer {
				t.Errorf("next page recorded cookie_id %q network_id %q, want %s and %s", rec.str("cookie_id"), rec.str("network_id"), v.ID, issuer)
			}
		})
	}
}
