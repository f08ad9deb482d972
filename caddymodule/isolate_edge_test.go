package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// isolateConfig is a site with an advertiser's route behind b2s_isolate
// and, as a control, a route of the site's own upstream without it; both
// proxy to the same recording upstream, __UPSTREAM__.
var isolateConfig = edgeConfig{
	global: "auto_https off",
	kafka:  "flush_timeout 5s",
	sites: `http://localhost:__HTTP__ {
	b2s_collect
	# Evaluated as the response header is written, while the isolated
	# route runs: the request outside must still be the client's.
	header >X-Client-Cookie "{http.request.header.Cookie}"
	handle /ads/* {
		b2s_isolate {
			allow_cookies adnet_uid adnet_seg
			allow_cookies B2SID
		}
		reverse_proxy __UPSTREAM__ {
			header_up X-Ad-Visitor "{http.vars.b2s.cookie_id}"
		}
	}
	handle {
		reverse_proxy __UPSTREAM__ {
			header_up X-B2S-Cookie-ID {http.vars.b2s.cookie_id}
			header_up X-Ad-Visitor "{http.vars.b2s.cookie_id}"
		}
	}
}
`,
}

// upstreamSetCookies are what the upstream tries to set: the advertiser's
// allowed cookies, one it was not allowed, the plugin's (forged, and
// written in odd ways) and a name that differs from the plugin's in case
// only, which is another cookie.
var upstreamSetCookies = []string{
	"adnet_uid=u-ad; Path=/; Max-Age=3600",
	"adnet_seg=sports; Path=/ads",
	"tracker=t-1; Path=/",
	"b2sid=1.0123456789abcdef0123456789abcdef.5f5e1000.AAAAAAAAAAAAAAAAAAAAAA; Path=/; Max-Age=34560000",
	"b2sid_m=1; Path=/",
	"b2sid_optout=0; Path=/",
	" b2sid =spaced; Path=/",
	"b2sid",
	"B2SID=case; Path=/",
	"__Host-b2sid=1.0123456789abcdef0123456789abcdef.5f5e1000.AAAAAAAAAAAAAAAAAAAAAA; Path=/; Secure; HttpOnly",
	"__Host-b2sid_optout=; Path=/; Secure; Max-Age=0",
	"__host-b2sid_dnc=; Path=/; Secure; Max-Age=0",
}

// upstreamAllowedSetCookies are those of upstreamSetCookies that may
// reach the visitor from the advertiser's route.
var upstreamAllowedSetCookies = []string{
	"adnet_uid=u-ad; Path=/; Max-Age=3600",
	"adnet_seg=sports; Path=/ads",
	"B2SID=case; Path=/",
}

// recordingUpstream is an upstream that keeps every request it receives
// and answers with upstreamSetCookies and the X-B2S-* signals of the
// site's own upstream; /ads/early sends 103 Early Hints first and
// /ads/trailers sends trailers.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(context.Background()))
		u.mu.Unlock()
		h := w.Header()
		if r.URL.Path == "/ads/early" {
			h.Set("Link", "</ad.css>; rel=preload; as=style")
			h.Add("Set-Cookie", "b2sid=1.early; Path=/")
			h.Add("Set-Cookie", "adnet_uid=early; Path=/")
			h.Set("X-B2S-Member", "1")
			w.WriteHeader(http.StatusEarlyHints)
			clear(h)
		}
		for _, c := range upstreamSetCookies {
			h.Add("Set-Cookie", c)
		}
		h.Set("X-B2S-Member", "1")
		h.Set("X-B2S-Child", "0")
		h.Set("Cache-Control", "no-store")
		if r.URL.Path == "/ads/trailers" {
			h.Set("Trailer", "X-B2S-Child, X-Ad-Checksum")
			io.WriteString(w, "content with trailers")
			h.Set("X-B2S-Child", "1")
			h.Set("X-Ad-Checksum", "c0ffee")
			return
		}
		io.WriteString(w, "content")
	}))
	t.Cleanup(u.Close)
	return u
}

// received returns the requests the upstream got for path.
func (u *recordingUpstream) received(path string) []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []*http.Request
	for _, r := range u.seen {
		if r.URL.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// one returns the one request the upstream got for path.
func (u *recordingUpstream) one(t *testing.T, path string) *http.Request {
	t.Helper()
	got := u.received(path)
	if len(got) != 1 {
		t.Fatalf("the upstream got %d requests for %s, want 1", len(got), path)
	}
	return got[0]
}

// leaks returns where secret appears in what the upstream received: its
// URL or a header (name or value).
func leaks(r *http.Request, secret string) []string {
	var where []string
	if strings.Contains(r.RequestURI, secret) || strings.Contains(r.URL.String(), secret) {
		where = append(where, "URL "+r.RequestURI)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				where = append(where, k+": "+v)
			}
		}
	}
	return where
}

func isolateCounts(t *testing.T, admin string) removedCounts {
	t.Helper()
	m := scrapeMetrics(t, admin+"/metrics")
	var c removedCounts
	for what, p := range map[string]*int{"request_cookie": &c.reqCookie, "set_cookie": &c.setCookie, "header": &c.header} {
		v, ok := m[`b2s_isolate_removed_total{what="`+what+`"}`]
		if !ok {
			t.Fatalf(`b2s_isolate_removed_total{what=%q} is missing from the admin /metrics`, what)
		}
		*p = int(v)
	}
	return c
}

// setCookiesNamed returns the Set-Cookie values of h for cookie name.
func setCookiesNamed(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values("Set-Cookie") {
		if n, ok := setCookieName(v); ok && n == name {
			out = append(out, v)
		}
	}
	return out
}

// TestIsolateBehindCaddy runs b2s_collect, b2s_isolate and reverse_proxy
// in Caddy in front of a real upstream and a Kafka-protocol broker: the
// advertiser's upstream never gets the visitor's b2s.com cookie or ID,
// nor sets a cookie of the plugin or an X-B2S-* header, while its own
// cookies pass both ways and b2s_collect identifies and records the
// visitor as before.
func TestIsolateBehindCaddy(t *testing.T) {
	const topic = "b2s.isolate"
	brokers := startKafka(t, topic)
	upstream := newRecordingUpstream(t)
	e := loadEdge(t, isolateConfig, brokers, topic, "__UPSTREAM__", strings.TrimPrefix(upstream.URL, "http://"))
	records := newRecordReader(t, brokers, topic)
	client, base, adminURL := e.client, e.base, e.admin

	// A returning visitor: a valid cookie, issued just now.
	id := beacon.NewID()
	cookie := signerOf(t, testKey1).Sign(id, time.Now())
	clientCookie := "b2sid=" + cookie + "; adnet_uid=u-1; tracker=t; b2sid_x=1; B2SID=case; adnet_seg=\"s 1\""
	visitor := map[string]string{
		"Cookie":          clientCookie,
		"X-B2S-Member":    "1",
		"X-B2S-Cookie-ID": id,
	}

	t.Run("the advertiser gets its own cookies only, and sets its own only", func(t *testing.T) {
		before, beforeDirect := isolateCounts(t, adminURL), readRemoved(t)
		resp := doRequest(t, client, newRequest(t, http.MethodGet, base+"/ads/slot?probe=ads-1", visitor))
		if resp.status != http.StatusOK || string(resp.body) != "content" {
			t.Fatalf("GET /ads/slot = %d %q, want 200 from the upstream", resp.status, resp.body)
		}

		got := upstream.one(t, "/ads/slot")
		if c, want := got.Header.Values("Cookie"), []string{`adnet_uid=u-1; B2SID=case; adnet_seg="s 1"`}; !slices.Equal(c, want) {
			t.Errorf("the upstream got Cookie %q, want %q", c, want)
		}
		for _, secret := range []string{cookie, id} {
			if where := leaks(got, secret); len(where) > 0 {
				t.Errorf("the upstream got the visitor's b2s.com cookie or ID in %q", where)
			}
		}
		for k := range got.Header {
			if isB2SHeader(k) {
				t.Errorf("the upstream got the plugin's header %s: %q", k, got.Header[k])
			}
		}

		if c := resp.header.Values("Set-Cookie"); !slices.Equal(c, upstreamAllowedSetCookies) {
			t.Errorf("Set-Cookie = %q, want the advertiser's allowed cookies only, %q (a fresh valid cookie is not set again)", c, upstreamAllowedSetCookies)
		}
		for _, k := range []string{"X-B2S-Member", "X-B2S-Child"} {
			if v := resp.header.Values(k); len(v) > 0 {
				t.Errorf("the upstream's %s: %q reached the client", k, v)
			}
		}
		if got := resp.header.Get("X-Client-Cookie"); got != clientCookie {
			t.Errorf("handlers outside b2s_isolate read the Cookie header %q, want the one the client sent, %q", got, clientCookie)
		}

		rec := records.find(t, "ads-1")
		if rec.rec.CookieID != id || rec.rec.CookieState != "returning" || rec.rec.Status != http.StatusOK || rec.rec.Kind != "page" {
			t.Errorf("record = %+v; want a page with the visitor's cookie_id %s, returning, status 200", rec.rec, id)
		}
		// Request: b2sid, tracker, b2sid_x; X-B2S-Member and
		// X-B2S-Cookie-ID. Response: tracker, b2sid, b2sid_m,
		// b2sid_optout, " b2sid ", the nameless cookie, __Host-b2sid,
		// __Host-b2sid_optout, __host-b2sid_dnc; X-B2S-Member and
		// X-B2S-Child.
		want := removedCounts{reqCookie: 3, setCookie: 9, header: 2 + 2}
		checkRemoved(t, beforeDirect, want)
		after := isolateCounts(t, adminURL) // registered in Caddy's registry
		if d := (removedCounts{after.reqCookie - before.reqCookie, after.setCookie - before.setCookie, after.header - before.header}); d != want {
			t.Errorf("b2s_isolate_removed_total on the admin /metrics moved by %+v, want %+v", d, want)
		}
	})

	t.Run("a new visitor gets b2s_collect's cookie on the advertiser's route, and the advertiser not its ID", func(t *testing.T) {
		resp := doRequest(t, client, newRequest(t, http.MethodGet, base+"/ads/new?probe=ads-2", nil))
		if resp.status != http.StatusOK {
			t.Fatalf("GET /ads/new = %d, want 200", resp.status)
		}
		ours := setCookiesNamed(resp.header, DefaultCookieName)
		if len(ours) != 1 {
			t.Fatalf("Set-Cookie for b2sid = %q, want one, b2s_collect's", ours)
		}
		c, err := http.ParseSetCookie(ours[0])
		if err != nil {
			t.Fatal(err)
		}
		v, ok := signerOf(t, testKey1).Verify(c.Value)
		if !ok {
			t.Fatalf("the b2sid cookie set, %q, does not verify: not b2s_collect's", ours[0])
		}
		for _, name := range []string{"b2sid_m", "b2sid_optout", "tracker"} {
			if got := setCookiesNamed(resp.header, name); len(got) > 0 {
				t.Errorf("the upstream set %q", got)
			}
		}
		if got := setCookiesNamed(resp.header, "adnet_uid"); len(got) != 1 {
			t.Errorf("Set-Cookie for adnet_uid = %q, want the advertiser's", got)
		}
		got := upstream.one(t, "/ads/new")
		for _, secret := range []string{v.ID, c.Value} {
			if where := leaks(got, secret); len(where) > 0 {
				t.Errorf("the upstream got the new visitor's cookie or ID in %q", where)
			}
		}
		if got := got.Header.Get("X-Ad-Visitor"); got != "" {
			t.Errorf("{http.vars.b2s.cookie_id} inside b2s_isolate is %q, want empty", got)
		}
		if rec := records.find(t, "ads-2"); rec.rec.CookieID != v.ID || rec.rec.CookieState != "new" {
			t.Errorf("record = %+v; want the new cookie's ID %s, new", rec.rec, v.ID)
		}
	})

	t.Run("the site's own route, without b2s_isolate, passes everything: the checks above can fail", func(t *testing.T) {
		resp := doRequest(t, client, newRequest(t, http.MethodGet, base+"/site?probe=site-1", visitor))
		got := upstream.one(t, "/site")
		if where := leaks(got, cookie); len(where) == 0 {
			t.Error("the site's upstream did not get the visitor's cookie")
		}
		if v := got.Header.Get("X-Ad-Visitor"); v != id {
			t.Errorf("{http.vars.b2s.cookie_id} outside b2s_isolate is %q, want %s", v, id)
		}
		// The site's own Set-Cookie lines pass; its X-B2S-Member is the
		// member signal, which b2s_collect takes (and removes).
		if len(setCookiesNamed(resp.header, "b2sid_optout")) != 1 || len(setCookiesNamed(resp.header, "tracker")) != 1 {
			t.Errorf("Set-Cookie %q: want the upstream's b2sid_optout and tracker, unfiltered", resp.header.Values("Set-Cookie"))
		}
		if rec := records.find(t, "site-1"); rec.rec.MemberID != "1" {
			t.Errorf("record of the site's route: member_id %q, want 1 from the site's X-B2S-Member", rec.rec.MemberID)
		}
	})

	t.Run("103 Early Hints from the advertiser pass without the plugin's cookie or headers", func(t *testing.T) {
		var hints textproto.MIMEHeader
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if code == http.StatusEarlyHints {
				hints = h
			}
			return nil
		}}
		req := newRequest(t, http.MethodGet, base+"/ads/early?probe=ads-3", visitor)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp := doRequest(t, client, req)
		if resp.status != http.StatusOK {
			t.Fatalf("GET /ads/early = %d, want 200", resp.status)
		}
		if hints == nil {
			t.Fatal("no 103 Early Hints reached the client")
		}
		h := http.Header(hints)
		if h.Get("Link") != "" {
			t.Errorf("103 headers %q carry the upstream's Link; want it removed (a preload requests the site as the site)", h)
		}
		if c := h.Values("Set-Cookie"); !slices.Equal(c, []string{"adnet_uid=early; Path=/"}) {
			t.Errorf("103 Set-Cookie = %q, want the advertiser's only", c)
		}
		if v := h.Values("X-B2S-Member"); len(v) > 0 {
			t.Errorf("103 X-B2S-Member = %q, want none", v)
		}
		if c := resp.header.Values("Set-Cookie"); !slices.Equal(c, upstreamAllowedSetCookies) {
			t.Errorf("Set-Cookie = %q, want %q", c, upstreamAllowedSetCookies)
		}
	})

	t.Run("trailers from the advertiser pass without X-B2S-*", func(t *testing.T) {
		resp, err := client.Do(newRequest(t, http.MethodGet, base+"/ads/trailers?probe=ads-4", visitor))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		if got := resp.Trailer.Get("X-Ad-Checksum"); got != "c0ffee" {
			t.Errorf("trailer X-Ad-Checksum = %q, want the upstream's: trailers must still pass (trailers %q)", got, resp.Trailer)
		}
		if got := resp.Trailer.Values("X-B2S-Child"); len(got) > 0 {
			t.Errorf("trailer X-B2S-Child = %q, want none", got)
		}
		if got := resp.Header.Values("X-B2S-Child"); len(got) > 0 {
			t.Errorf("X-B2S-Child = %q, want none", got)
		}
	})
}
