package caddymodule

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/logship"
)

// The privacy promises hold when the request does not say enough: each
// test here has a control that shows it can fail.

const (
	failClosedIP          = "203.0.113.7"
	failClosedIPTruncated = "203.0.113.0"
)

// privacyCollect is limitedCollect's b2s_collect with the default client
// limit, a cookie_max_age of maxAge (0: the default) and collect off
// under the paths off, if any.
func privacyCollect(t *testing.T, now *time.Time, maxAge time.Duration, off ...string) (*Collect, *logship.Spool) {
	t.Helper()
	c, sp := limitedCollect(t, nil, now)
	if maxAge != 0 {
		c.app.CookieMaxAge, c.app.CookieRefresh = caddy.Duration(maxAge), caddy.Duration(time.Hour)
	}
	if len(off) > 0 {
		c.CollectOff, c.CollectOffPaths = true, off
		if err := c.bind(caddy.Context{}, c.app, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
	}
	return c, sp
}

// spooledRecord is a record as the spool holds it: its Kafka key and its
// fields.
type spooledRecord struct {
	key string
	rec map[string]any
}

func (s spooledRecord) str(field string) string { v, _ := s.rec[field].(string); return v }

// identified returns the identifiers a record carries, by field, its key
// included.
func (s spooledRecord) identified() map[string]string {
	out := map[string]string{}
	for _, f := range []string{"cookie_id", "network_id", "member_id", "prev_network_id"} {
		if v := s.str(f); v != "" {
			out[f] = v
		}
	}
	if s.key != "" {
		out["key"] = s.key
	}
	return out
}

// takeRecords returns the records spooled since the last call.
func takeRecords(t *testing.T, sp *logship.Spool) []spooledRecord {
	t.Helper()
	stop := make(chan struct{})
	close(stop)
	var out []spooledRecord
	for {
		entries, pos, err := sp.Read(stop, nil, 1<<20, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			return out
		}
		for _, e := range entries {
			var rec map[string]any
			if err := json.Unmarshal(e.Value, &rec); err != nil {
				t.Fatal(err)
			}
			out = append(out, spooledRecord{key: string(e.Key), rec: rec})
		}
		if err := sp.Ack(pos); err != nil {
			t.Fatal(err)
		}
	}
}

// takeRecord returns the one record spooled since the last call.
func takeRecord(t *testing.T, sp *logship.Spool) spooledRecord {
	t.Helper()
	recs := takeRecords(t, sp)
	if len(recs) != 1 {
		t.Fatalf("%d records spooled, want 1: %v", len(recs), recs)
	}
	return recs[0]
}

// withClientIP gives r Caddy's vars, with ip as the client IP, and a
// replacer (the path matcher of collect off needs one).
func withClientIP(r *http.Request, ip string) *http.Request {
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer()))
}

// serveCollect serves r from failClosedIP through c, with next behind it.
func serveCollect(t *testing.T, c *Collect, r *http.Request, next caddyhttp.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	if next == nil {
		next = func(w http.ResponseWriter, r *http.Request) error { _, err := io.WriteString(w, "page"); return err }
	}
	w := httptest.NewRecorder()
	if err := c.ServeHTTP(w, withClientIP(r, failClosedIP), next); err != nil {
		t.Fatal(err)
	}
	return w
}

// checkAnonymous fails unless rec has consent want, no identifier, no
// key and the truncated IP.
func checkAnonymous(t *testing.T, rec spooledRecord, want string) {
	t.Helper()
	if got := rec.str("consent"); got != want {
		t.Errorf("record consent %q, want %q", got, want)
	}
	if ids := rec.identified(); len(ids) > 0 {
		t.Errorf("record of consent %s carries identifiers %v", want, ids)
	}
	if ip, tr := rec.str("ip"), rec.rec["ip_truncated"]; ip != failClosedIPTruncated || tr != true {
		t.Errorf("record ip %q (ip_truncated %v), want %s, truncated", ip, tr, failClosedIPTruncated)
	}
}

// checkFull fails unless rec has full consent, a cookie ID that is also
// its key, and the full IP.
func checkFull(t *testing.T, rec spooledRecord) {
	t.Helper()
	if got := rec.str("consent"); got != "full" {
		t.Errorf("record consent %q, want full", got)
	}
	if id := rec.str("cookie_id"); id == "" || rec.key != id {
		t.Errorf("record cookie_id %q with key %q, want an ID that is also the key", id, rec.key)
	}
	if ip := rec.str("ip"); ip != failClosedIP {
		t.Errorf("record ip %q, want the full %s", ip, failClosedIP)
	}
}

func visitorCookieSet(h http.Header) bool {
	for _, v := range h.Values("Set-Cookie") {
		if n, _ := setCookieName(v); n == DefaultCookieName && !strings.Contains(v, "Max-Age=0") {
			return true
		}
	}
	return false
}

// TestChildBeaconWithoutPage: with collect off for /kids/*, a beacon
// that does not say which page it reports is a child's. Each Referrer-
// Policy a child page may use is listed with what the browser then sends
// for the pixel on https://www.b2s.com/kids/game, of this site
// (same-origin) and of the main site's beacon on a sister site
// (cross-origin).
func TestChildBeaconWithoutPage(t *testing.T) {
	const child = "https://www.b2s.com/kids/game"
	for _, tc := range []struct {
		name, u, referer string
		child            bool
	}{
		{name: "no-referrer sends no Referer: a child's", referer: "", child: true},
		{name: "origin sends the origin only: a child's", referer: "https://www.b2s.com/", child: true},
		{name: "strict-origin sends the origin only: a child's", referer: "https://www.b2s.com/", child: true},
		{name: "origin-when-cross-origin sends the full URL to the same origin: a child's", referer: child, child: true},
		{name: "origin-when-cross-origin sends the origin only across origins: a child's", referer: "https://www.b2s.com/", child: true},
		{name: "strict-origin-when-cross-origin sends the full URL to the same origin: a child's", referer: child, child: true},
		{name: "strict-origin-when-cross-origin sends the origin only across origins: a child's", referer: "https://www.b2s.com/", child: true},
		{name: "same-origin sends the full URL to the same origin: a child's", referer: child, child: true},
		{name: "same-origin sends nothing across origins: a child's", referer: "", child: true},
		{name: "no-referrer-when-downgrade sends the full URL: a child's", referer: child, child: true},
		{name: "unsafe-url sends the full URL: a child's", referer: child, child: true},
		{name: "an origin without the final slash: a child's", referer: "https://www.b2s.com", child: true},
		{name: "a Referer that is not an http URL: a child's", referer: "android-app://com.b2s/kids", child: true},
		{name: "a Referer that does not parse: a child's", referer: "https://www.b2s.com/%zz", child: true},
		{name: "a u that is a child page: a child's", u: child, referer: "https://www.b2s.com/", child: true},
		{name: "a u that is a relative path without a slash: a child's", u: "kids/game", child: true},
		{name: "a u that is a path of a child page: a child's", u: "/kids/game?level=2", child: true},
		{name: "control: a Referer of another page counts in full", referer: "https://www.b2s.com/products/spindle", child: false},
		{name: "control: a u of another page counts in full over an origin-only Referer", u: "https://www.b2s.com/products/spindle", referer: "https://www.b2s.com/", child: false},
		{name: "control: a u of the home page counts in full", u: "https://www.b2s.com/", child: false},
		{name: "control: a u that is the path of another page counts in full", u: "/products", child: false},
		{name: "control: a Referer of the home page with a query is the full URL, counted in full", referer: "https://www.b2s.com/?utm_source=mail", child: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			c, sp := privacyCollect(t, &now, 0, "/kids/*")
			target := "/b.gif?e=pageview"
			if tc.u != "" {
				target += "&u=" + url.QueryEscape(tc.u)
			}
			r := httptest.NewRequest(http.MethodGet, target, nil)
			if tc.referer != "" {
				r.Header.Set("Referer", tc.referer)
			}
			w := serveCollect(t, c, r, nil)
			if w.Code != http.StatusOK || w.Body.Len() != len(beacon.Pixel) {
				t.Fatalf("beacon answered %d with %d bytes, want the pixel", w.Code, w.Body.Len())
			}
			rec := takeRecord(t, sp)
			if !tc.child {
				checkFull(t, rec)
				if !visitorCookieSet(w.Header()) {
					t.Errorf("Set-Cookie %q: want a new visitor cookie", w.Header().Values("Set-Cookie"))
				}
				return
			}
			checkAnonymous(t, rec, "child")
			if visitorCookieSet(w.Header()) {
				t.Errorf("a child's beacon set the visitor cookie: %q", w.Header().Values("Set-Cookie"))
			}
		})
	}

	t.Run("control: without collect off paths a beacon without a Referer counts in full", func(t *testing.T) {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, sp := privacyCollect(t, &now, 0)
		serveCollect(t, c, httptest.NewRequest(http.MethodGet, "/b.gif?e=pageview", nil), nil)
		checkFull(t, takeRecord(t, sp))
	})
}

// TestCookieLifetime: a cookie presented after its lifetime (signed or
// refreshed longer ago than cookie_max_age, plus the clock-skew
// allowance), or issued in the future, is not valid: the visitor gets a
// new ID, state reset.
func TestCookieLifetime(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name   string
		maxAge time.Duration // cookie_max_age; 0 for the default, 400 days
		issued time.Time
		valid  bool
	}{
		{name: "a cookie issued years ago is reset", issued: now.Add(-3 * 365 * day)},
		{name: "a cookie issued just past the default 400 days and the skew is reset", issued: now.Add(-400*day - cookieClockSkew - time.Second)},
		{name: "a cookie issued past a cookie_max_age of 30 days is reset", maxAge: 30 * day, issued: now.Add(-31 * day)},
		{name: "a cookie issued in the future beyond the skew is reset", issued: now.Add(cookieClockSkew + time.Minute)},
		{name: "a cookie issued in the far future is reset", issued: now.Add(10 * 365 * day)},
		{name: "control: a cookie within the default 400 days returns", issued: now.Add(-399 * day), valid: true},
		{name: "control: a cookie just within 400 days and the skew returns", issued: now.Add(-400*day - cookieClockSkew + time.Second), valid: true},
		{name: "control: a cookie within a cookie_max_age of 30 days returns", maxAge: 30 * day, issued: now.Add(-29 * day), valid: true},
		{name: "control: a cookie issued a little in the future, within the skew, returns", issued: now.Add(cookieClockSkew - time.Second), valid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			c, sp := privacyCollect(t, &clock, tc.maxAge)
			id := beacon.NewID()
			value := signerOf(t, testKey1).Sign(id, tc.issued)
			r := httptest.NewRequest(http.MethodGet, "/b.gif?e=pageview", nil)
			r.Header.Set("Referer", "https://www.b2s.com/products")
			r.Header.Set("Cookie", DefaultCookieName+"="+value)
			w := serveCollect(t, c, r, nil)
			rec := takeRecord(t, sp)
			gotID, state := rec.str("cookie_id"), rec.str("cookie_state")
			if tc.valid {
				if gotID != id || state != "returning" {
					t.Errorf("record cookie_id %q, state %q; want the cookie's %s, returning", gotID, state, id)
				}
				return
			}
			if gotID == id || gotID == "" || state != "reset" {
				t.Errorf("record cookie_id %q, state %q; want a new ID (not %s), reset", gotID, state, id)
			}
			if !visitorCookieSet(w.Header()) || strings.Contains(strings.Join(w.Header().Values("Set-Cookie"), " "), id) {
				t.Errorf("Set-Cookie %q: want a new visitor cookie without the old ID", w.Header().Values("Set-Cookie"))
			}
		})
	}
}

// TestPrivateResponseLeavesNoCDNDirective: a response made private (it
// sets a cookie) keeps no directive for CDNs, which would override
// Cache-Control there (RFC 9213).
func TestPrivateResponseLeavesNoCDNDirective(t *testing.T) {
	cdn := map[string]string{
		"CDN-Cache-Control":            "public, max-age=3600",
		"Surrogate-Control":            "max-age=3600",
		"Cloudflare-CDN-Cache-Control": "max-age=3600",
		"Vercel-CDN-Cache-Control":     "max-age=3600",
	}
	site := func(w http.ResponseWriter, r *http.Request) error {
		for k, v := range cdn {
			w.Header().Set(k, v)
		}
		w.Header().Set("Cache-Control", "public, max-age=600")
		if r.URL.Path == "/signin" {
			w.Header().Set(DefaultMemberHeader, "m-1")
		}
		_, err := io.WriteString(w, "page")
		return err
	}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	fresh := signerOf(t, testKey1).Sign(beacon.NewID(), now.Add(-time.Minute))
	for _, tc := range []struct {
		name, path, cookie string
		private            bool
	}{
		{name: "a new visitor's page, which sets the cookie, keeps no CDN directive", path: "/", private: true},
		{name: "a member signing in, which sets the member cookie, keeps no CDN directive", path: "/signin", cookie: fresh, private: true},
		{name: "control: a returning visitor's page, which sets no cookie, keeps the CDN directives", path: "/", cookie: fresh},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			c, _ := privacyCollect(t, &clock, 0)
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.cookie != "" {
				r.Header.Set("Cookie", DefaultCookieName+"="+tc.cookie)
			}
			h := serveCollect(t, c, r, site).Header()
			for k, v := range cdn {
				got := h.Values(k)
				switch {
				case tc.private && len(got) > 0:
					t.Errorf("%s: %q reached the client with a private response (Cache-Control %q)", k, got, h.Get("Cache-Control"))
				case !tc.private && (len(got) != 1 || got[0] != v):
					t.Errorf("%s: %q, want the site's %q", k, got, v)
				}
			}
			if cc := h.Get("Cache-Control"); tc.private != strings.HasPrefix(cc, "private") {
				t.Errorf("Cache-Control %q; private: %v", cc, tc.private)
			}
		})
	}
}

// TestNoIdentifierWithoutConsent: the records of opted-out, GPC and child
// requests, the opt-out request itself included, carry no identifier, no
// Kafka key and a truncated IP.
func TestNoIdentifierWithoutConsent(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	id := beacon.NewID()
	valid := DefaultCookieName + "=" + signerOf(t, testKey1).Sign(id, now.Add(-time.Minute))
	for _, tc := range []struct {
		name, method, target, cookie, gpc string
		consent                           string // "" for full
	}{
		{name: "the opt-out request itself is recorded opted out", method: http.MethodGet, target: "/_b2s/optout", cookie: valid, consent: "optout"},
		{name: "the opt-out request by POST is recorded opted out", method: http.MethodPost, target: "/_b2s/optout", cookie: valid, consent: "optout"},
		{name: "the opt-out request of a new visitor is recorded opted out", method: http.MethodGet, target: "/_b2s/optout", consent: "optout"},
		{name: "an opted-out visitor's page is recorded opted out", method: http.MethodGet, target: "/page", cookie: valid + "; b2sid_optout=1", consent: "optout"},
		{name: "an opted-out visitor's beacon is recorded opted out", method: http.MethodGet, target: "/b.gif?e=pageview", cookie: valid + "; b2sid_optout=1", consent: "optout"},
		{name: "a GPC page is recorded gpc", method: http.MethodGet, target: "/page", cookie: valid, gpc: "1", consent: "gpc"},
		{name: "a GPC beacon is recorded gpc", method: http.MethodGet, target: "/b.gif?e=pageview", cookie: valid, gpc: "1", consent: "gpc"},
		{name: "a GPC opt-out is recorded gpc", method: http.MethodGet, target: "/_b2s/optout", cookie: valid, gpc: "1", consent: "gpc"},
		{name: "a marked child's page is recorded child", method: http.MethodGet, target: "/page", cookie: valid + "; b2sid_dnc=1", consent: "child"},
		{name: "a child page is recorded child", method: http.MethodGet, target: "/kids/game", cookie: valid, consent: "child"},
		{name: "control: a page of a visitor who consents is recorded in full", method: http.MethodGet, target: "/page", cookie: valid},
		{name: "control: a beacon of a visitor who consents is recorded in full", method: http.MethodGet, target: "/b.gif?e=pageview", cookie: valid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			c, sp := privacyCollect(t, &clock, 0, "/kids/*")
			r := httptest.NewRequest(tc.method, tc.target, nil)
			r.Header.Set("Referer", "https://www.b2s.com/products")
			if tc.cookie != "" {
				r.Header.Set("Cookie", tc.cookie)
			}
			if tc.gpc != "" {
				r.Header.Set("Sec-GPC", tc.gpc)
			}
			w := serveCollect(t, c, r, nil)
			rec := takeRecord(t, sp)
			if tc.consent == "" {
				checkFull(t, rec)
				if rec.str("cookie_id") != id {
					t.Errorf("record cookie_id %q, want the visitor's %s", rec.str("cookie_id"), id)
				}
				return
			}
			checkAnonymous(t, rec, tc.consent)
			if visitorCookieSet(w.Header()) {
				t.Errorf("Set-Cookie %q: a visitor cookie without consent", w.Header().Values("Set-Cookie"))
			}
		})
	}
}

// TestOptOutReturnDropsLinkToken: the opt-out's return destination loses
// its link token, which would otherwise be exchanged there for the
// identifier the visitor just refused.
func TestOptOutReturnDropsLinkToken(t *testing.T) {
	for _, tc := range []struct {
		name, to, want string
	}{
		{name: "the token is removed and the other parameters kept", to: "/x?a=1&_b2s=tok&b=2", want: "/x?a=1&b=2"},
		{name: "a query of the token alone is removed with its question mark", to: "/x?_b2s=tok", want: "/x"},
		{name: "the fragment is kept", to: "/x?_b2s=tok#top", want: "/x#top"},
		{name: "an escaped name of the token is removed too", to: "/x?%5Fb2s=tok&a=1", want: "/x?a=1"},
		{name: "every copy of the token is removed", to: "/x?_b2s=1&_b2s=2", want: "/x"},
		{name: "control: a destination without the token is kept", to: "/x?a=1&b2s=tok#top", want: "/x?a=1&b2s=tok#top"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			c, _ := privacyCollect(t, &now, 0)
			w := serveCollect(t, c, httptest.NewRequest(http.MethodGet, "/_b2s/optout?return="+url.QueryEscape(tc.to), nil), nil)
			if w.Code != http.StatusSeeOther || w.Header().Get("Location") != tc.want {
				t.Errorf("opt-out answered %d, Location %q; want 303 to %q", w.Code, w.Header().Get("Location"), tc.want)
			}
		})
	}
}

// TestSiteSignalsAsTrailers: the child and member signals the site sends
// after the body never reach the client. A child trailer comes too late
// for the cookie, but the record is a child's; a member trailer is
// ignored.
func TestSiteSignalsAsTrailers(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		site    func(w http.ResponseWriter)
		gone    []string // trailers that must not arrive
		kept    map[string]string
		consent string
	}{
		{
			name: "a declared child trailer is removed and makes the record a child's",
			site: func(w http.ResponseWriter) {
				w.Header().Set("Trailer", "X-B2S-Child, X-Checksum")
				io.WriteString(w, "page")
				w.Header().Set("X-B2S-Child", "1")
				w.Header().Set("X-Checksum", "abc")
			},
			gone: []string{"X-B2S-Child"}, kept: map[string]string{"X-Checksum": "abc"}, consent: "child",
		},
		{
			name: "an undeclared child trailer is removed and makes the record a child's",
			site: func(w http.ResponseWriter) {
				io.WriteString(w, "page")
				http.NewResponseController(w).Flush() // chunked: undeclared trailers go out
				w.Header().Set(http.TrailerPrefix+"X-B2S-Child", "1")
				w.Header().Set(http.TrailerPrefix+"X-Checksum", "abc")
			},
			gone: []string{"X-B2S-Child"}, kept: map[string]string{"X-Checksum": "abc"}, consent: "child",
		},
		{
			name: "member trailers, declared or not, are removed and ignored",
			site: func(w http.ResponseWriter) {
				w.Header().Set("Trailer", "X-B2S-Member")
				io.WriteString(w, "page")
				http.NewResponseController(w).Flush()
				w.Header().Set("X-B2S-Member", "m-1")
				w.Header().Set(http.TrailerPrefix+"X-B2S-Member", "m-2")
			},
			gone: []string{"X-B2S-Member"}, consent: "full",
		},
		{
			name: "control: a child trailer of 0 is removed and leaves the record in full",
			site: func(w http.ResponseWriter) {
				io.WriteString(w, "page")
				http.NewResponseController(w).Flush()
				w.Header().Set(http.TrailerPrefix+"X-B2S-Child", "0")
				w.Header().Set(http.TrailerPrefix+"X-Checksum", "abc")
			},
			gone: []string{"X-B2S-Child"}, kept: map[string]string{"X-Checksum": "abc"}, consent: "full",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			c, sp := privacyCollect(t, &clock, 0)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				err := c.ServeHTTP(w, withClientIP(r, failClosedIP), caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
					tc.site(w)
					return nil
				}))
				if err != nil {
					t.Error(err)
				}
			}))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL + "/page")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(resp.Body); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for _, k := range tc.gone {
				if v := resp.Trailer.Values(k); len(v) > 0 {
					t.Errorf("trailer %s: %q reached the client", k, v)
				}
				if strings.Contains(strings.ToLower(strings.Join(resp.Header.Values("Trailer"), ",")), strings.ToLower(k)) {
					t.Errorf("the response declares the trailer %s: %q", k, resp.Header.Values("Trailer"))
				}
			}
			for k, v := range tc.kept {
				if got := resp.Trailer.Get(k); got != v {
					t.Errorf("trailer %s: %q, want the site's %q (trailers %q)", k, got, v, resp.Trailer)
				}
			}
			rec := takeRecord(t, sp)
			if tc.consent == "full" {
				checkFull(t, rec)
				if m := rec.str("member_id"); m != "" {
					t.Errorf("record member_id %q from a trailer, want none", m)
				}
				return
			}
			checkAnonymous(t, rec, tc.consent)
		})
	}

	t.Run("a child header on a response with nothing written is acted on and removed", func(t *testing.T) {
		clock := now
		c, sp := privacyCollect(t, &clock, 0)
		fresh := signerOf(t, testKey1).Sign(beacon.NewID(), now.Add(-time.Minute))
		r := httptest.NewRequest(http.MethodGet, "/page", nil)
		r.Header.Set("Cookie", DefaultCookieName+"="+fresh)
		w := serveCollect(t, c, r, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("X-B2S-Child", "1")
			return nil
		})
		if v := w.Header().Values("X-B2S-Child"); len(v) > 0 {
			t.Errorf("X-B2S-Child: %q reached the client", v)
		}
		if _, ok := setCookies(t, w.Header())[DefaultCookieName+childSuffix]; !ok {
			t.Errorf("Set-Cookie %q: want the do-not-collect mark", w.Header().Values("Set-Cookie"))
		}
		checkAnonymous(t, takeRecord(t, sp), "child")
	})
}
