package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// privacyConfig is a network of two registrable domains, a
// child-directed site and path, and an upstream, __BACKEND__, that sends
// the member and child signals.
var privacyConfig = edgeConfig{
	global: `local_certs
	skip_install_trust`,
	b2s: `network {
			sites b2s.test b2smade.test
			token_ttl 20s
		}`,
	sites: `http://www.b2s.test:__HTTP__, http://shop.b2s.test:__HTTP__, http://www.b2smade.test:__HTTP__ {
	b2s_collect {
		cookie_domain network
		collect off /kids/*
	}
	reverse_proxy __BACKEND__
}

http://kids.b2s.test:__HTTP__ {
	b2s_collect {
		collect off
	}
	reverse_proxy __BACKEND__
}

https://main.b2s.test:__HTTPS__ {
	b2s_collect {
		same_site none
	}
	respond "main"
}
`,
}

// privacyEdge is a running Caddy with privacyConfig.
type privacyEdge struct {
	*edge
	upstream *upstreamLog
	main     string // https://main.b2s.test:port
}

// upstreamLog records what the site's upstream received.
type upstreamLog struct {
	mu   sync.Mutex
	urls []string
	hdrs []http.Header
}

func (u *upstreamLog) saw(s string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, v := range u.urls {
		if strings.Contains(v, s) {
			return true
		}
		for _, vs := range u.hdrs[i] {
			for _, v := range vs {
				if strings.Contains(v, s) {
					return true
				}
			}
		}
	}
	return false
}

func startPrivacyEdge(t *testing.T) *privacyEdge {
	t.Helper()
	topic := "b2s.privacy"
	brokers := startKafka(t, topic)
	log := &upstreamLog{}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.mu.Lock()
		log.urls = append(log.urls, r.URL.String())
		log.hdrs = append(log.hdrs, r.Header.Clone())
		log.mu.Unlock()
		switch r.URL.Path {
		case "/signin":
			w.Header().Set("X-B2S-Member", r.URL.Query().Get("member"))
		case "/signout":
			w.Header().Set("X-B2S-Member", "-")
		case "/child":
			w.Header().Set("X-B2S-Child", "1")
		}
		io.WriteString(w, "page")
	}))
	t.Cleanup(upstream.Close)
	e := &privacyEdge{
		edge:     loadEdge(t, privacyConfig, brokers, topic, "__BACKEND__", strings.TrimPrefix(upstream.URL, "http://")),
		upstream: log,
	}
	_, _, httpsP := testPorts(t)
	e.main = fmt.Sprintf("https://main.b2s.test:%d", httpsP)
	e.records = newRecordReader(t, brokers, topic)
	return e
}

// site is the base URL of host on the test's http port.
func (e *privacyEdge) site(host string) string { return fmt.Sprintf("http://%s:%d", host, e.port) }

// cookies returns the Set-Cookie lines of h by cookie name.
func setCookies(t *testing.T, h http.Header) map[string]*http.Cookie {
	t.Helper()
	out := map[string]*http.Cookie{}
	for _, line := range h.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		if _, dup := out[c.Name]; dup {
			t.Fatalf("two Set-Cookie lines for %s: %q", c.Name, h.Values("Set-Cookie"))
		}
		out[c.Name] = c
	}
	return out
}

func TestNetworkAndPrivacy(t *testing.T) {
	e := startPrivacyEdge(t)
	n := 0
	probe := func() string { n++; return fmt.Sprintf("q%d-%d", n, time.Now().UnixNano()) }
	get := func(t *testing.T, rawURL string, hdr map[string]string) response {
		t.Helper()
		return e.do(t, newRequest(t, http.MethodGet, rawURL, hdr))
	}
	// visitor gets a first cookie on host and returns its Cookie header
	// and record.
	visitor := func(t *testing.T, host string) (string, edgeRecord) {
		t.Helper()
		p := probe()
		resp := get(t, e.site(host)+"/?probe="+p, nil)
		c := setCookies(t, resp.header)[DefaultCookieName]
		if c == nil {
			t.Fatalf("no cookie for a first visit to %s: %q", host, resp.header.Values("Set-Cookie"))
		}
		if want := host[strings.IndexByte(host, '.')+1:]; c.Domain != want {
			t.Fatalf("first visit to %s: cookie Domain %q, want %q (cookie_domain network)", host, c.Domain, want)
		}
		return DefaultCookieName + "=" + c.Value, e.records.find(t, p).rec
	}

	t.Run("a link carries the visitor's network ID to a sister site, once", func(t *testing.T) {
		cookieA, recA := visitor(t, "www.b2s.test")
		if recA.NetworkID != recA.CookieID || recA.Consent != "full" {
			t.Fatalf("first visit: network_id %q, consent %q; want the cookie ID %q and full", recA.NetworkID, recA.Consent, recA.CookieID)
		}
		before := metricValue(t, linkResults[linkLinked])
		p := probe()
		dest := e.site("www.b2smade.test") + "/landing?x=1&probe=" + p
		resp := get(t, e.site("www.b2s.test")+"/_b2s/go?to="+url.QueryEscape(dest), map[string]string{"Cookie": cookieA})
		if resp.status != http.StatusFound {
			t.Fatalf("link endpoint: %d, want 302", resp.status)
		}
		loc, err := url.Parse(resp.header.Get("Location"))
		if err != nil || loc.Host != strings.TrimPrefix(e.site("www.b2smade.test"), "http://") || loc.Path != "/landing" {
			t.Fatalf("Location = %q, want the destination", resp.header.Get("Location"))
		}
		token := loc.Query().Get("_b2s")
		if token == "" || loc.Query().Get("x") != "1" || loc.Query().Get("probe") != p {
			t.Fatalf("Location %q: want the destination's query and a _b2s token", loc)
		}
		if strings.Contains(loc.String(), recA.CookieID) {
			t.Fatalf("Location %q shows the visitor's ID", loc)
		}

		// A token that arrives from anywhere but a network page (pasted
		// into a mail, linked from another site) joins nobody; it is
		// still stripped. Sent this way, it is not used up.
		foreign := metricValue(t, linkResults[linkForeignReferrer])
		for i, hdr := range []map[string]string{nil, {"Referer": "https://evil.example/"}} {
			resp := get(t, strings.Replace(loc.String(), p, fmt.Sprintf("%s-foreign%d", p, i), 1), hdr)
			if resp.status != http.StatusFound || strings.Contains(resp.header.Get("Location"), "_b2s") {
				t.Fatalf("token from %v: %d to %q, want a redirect without it", hdr, resp.status, resp.header.Get("Location"))
			}
			if c := setCookies(t, resp.header)[DefaultCookieName]; c != nil {
				if v, _ := signerOf(t, testKey1).Verify(c.Value); v.NetworkID == recA.NetworkID {
					t.Fatalf("a token arriving from %v joined the visitor", hdr)
				}
			}
		}
		if d := metricValue(t, linkResults[linkForeignReferrer]) - foreign; d != 2 {
			t.Errorf("b2s_link_tokens_total{result=foreign_referrer} moved by %v, want 2", d)
		}

		// The destination exchanges the token and strips it before the
		// page: the upstream never sees it.
		fromA := map[string]string{"Referer": e.site("www.b2s.test") + "/"}
		resp = get(t, loc.String(), fromA)
		if resp.status != http.StatusFound || resp.header.Get("Location") != "/landing?x=1&probe="+p {
			t.Fatalf("token exchange: %d to %q, want 302 to /landing?x=1&probe=%s", resp.status, resp.header.Get("Location"), p)
		}
		if got := resp.header.Get("Referrer-Policy"); got != "no-referrer" {
			t.Errorf("Referrer-Policy = %q, want no-referrer on the redirect", got)
		}
		cB := setCookies(t, resp.header)[DefaultCookieName]
		if cB == nil {
			t.Fatal("the sister site set no cookie on the token exchange")
		}
		// cookie_domain network: each site's cookie for its own network domain.
		if cB.Domain != "b2smade.test" {
			t.Errorf("sister cookie Domain = %q, want b2smade.test (its network site)", cB.Domain)
		}
		v, ok := signerOf(t, testKey1).Verify(cB.Value)
		if !ok || v.NetworkID != recA.NetworkID || v.ID == recA.CookieID {
			t.Fatalf("sister cookie %q: %+v, %v; want its own ID and network ID %s", cB.Value, v, ok, recA.NetworkID)
		}
		if e.upstream.saw(token) {
			t.Error("the upstream received the link token")
		}
		exch := e.records.find(t, p)
		if exch.rec.LinkedFrom != "www.b2s.test" || exch.rec.NetworkID != recA.NetworkID || exch.rec.CookieID != v.ID || strings.Contains(exch.rec.URL, token) {
			t.Errorf("exchange record: %+v; want linked_from www.b2s.test, network_id %s, cookie_id %s, url without the token", exch.rec, recA.NetworkID, v.ID)
		}
		if d := metricValue(t, linkResults[linkLinked]) - before; d != 1 {
			t.Errorf("b2s_link_tokens_total{result=linked} moved by %v, want 1", d)
		}

		// Later pages on the sister site carry the same network ID.
		p2 := probe()
		get(t, e.site("www.b2smade.test")+"/other?probe="+p2, map[string]string{"Cookie": DefaultCookieName + "=" + cB.Value})
		if r := e.records.find(t, p2).rec; r.NetworkID != recA.NetworkID || r.CookieID != v.ID || r.LinkedFrom != "" {
			t.Errorf("later sister-site record: network_id %q cookie_id %q linked_from %q; want %s, %s, none", r.NetworkID, r.CookieID, r.LinkedFrom, recA.NetworkID, v.ID)
		}

		// Replayed: redirected, but joins nothing.
		p3 := probe()
		q := loc.Query()
		q.Set("probe", p3)
		replay := *loc
		replay.RawQuery = q.Encode()
		resp = get(t, replay.String(), fromA)
		if resp.status != http.StatusFound || strings.Contains(resp.header.Get("Location"), "_b2s") {
			t.Fatalf("replayed token: %d to %q, want a redirect without it", resp.status, resp.header.Get("Location"))
		}
		if r := e.records.find(t, p3).rec; r.NetworkID == recA.NetworkID || r.LinkedFrom != "" {
			t.Errorf("a replayed token joined the visitor: %+v", r)
		}
	})

	t.Run("a visitor already known on the sister site is joined, and the old network ID recorded", func(t *testing.T) {
		cookieA, recA := visitor(t, "www.b2s.test")
		cookieB, recB := visitor(t, "www.b2smade.test")
		resp := get(t, e.site("www.b2s.test")+"/_b2s/go?to="+url.QueryEscape(e.site("www.b2smade.test")+"/"), map[string]string{"Cookie": cookieA})
		p := probe()
		resp = get(t, resp.header.Get("Location")+"&probe="+p, map[string]string{"Cookie": cookieB, "Referer": e.site("www.b2s.test") + "/"})
		r := e.records.find(t, p).rec
		if r.CookieID != recB.CookieID || r.NetworkID != recA.NetworkID || r.PrevNetworkID != recB.NetworkID {
			t.Errorf("record %+v; want cookie_id %s kept, network_id %s, prev_network_id %s", r, recB.CookieID, recA.NetworkID, recB.NetworkID)
		}
		c := setCookies(t, resp.header)[DefaultCookieName]
		if v, ok := signerOf(t, testKey1).Verify(c.Value); !ok || v.ID != recB.CookieID || v.NetworkID != recA.NetworkID {
			t.Errorf("re-set cookie %q: %+v; want ID %s, network %s", c.Value, v, recB.CookieID, recA.NetworkID)
		}
	})

	t.Run("the link endpoint redirects only to network sites", func(t *testing.T) {
		port := strconv.Itoa(e.port)
		for _, to := range []string{
			"", "//evil.example/", "/\\evil.example/", `\\evil.example`, "/%5Cevil.example",
			"http://evil.example/", "https://evil.example/www.b2s.test",
			"http://user@evil.example/", "http://www.b2s.test@evil.example/", "http://evil.example\\@www.b2s.test/",
			"http://evil.example#@www.b2s.test/", "http://evil.example?.b2s.test/", "http://evil.example%2f.b2s.test/",
			"http://%77ww.b2s.test/", "http://www.b2s.test%00.evil.example/", "http://www.b2s.test.evil.example/",
			"http://notb2s.test/", "http://b2s.test.:" + port + "/", "HTTP://www.b2s.test/", "http:/www.b2s.test/", "http:www.b2s.test",
			"https:\\\\evil.example", "javascript:alert(1)//www.b2s.test", "data:text/html,hi", "ftp://www.b2s.test/",
			" http://www.b2s.test/", "http://www.b2s.test/\n", "http://[::1]/", "http://127.0.0.1/", "http://www.b2s.test:99999/",
		} {
			resp := get(t, e.site("www.b2s.test")+"/_b2s/go?to="+url.QueryEscape(to), nil)
			if resp.status != http.StatusBadRequest || resp.header.Get("Location") != "" {
				t.Errorf("to=%q: %d, Location %q; want 400 and no redirect", to, resp.status, resp.header.Get("Location"))
			}
		}
		// A token smuggled into the destination is replaced by the visitor's own.
		resp := get(t, e.site("www.b2s.test")+"/_b2s/go?to="+url.QueryEscape(e.site("www.b2smade.test")+"/?_b2s=planted&a=1"), nil)
		if loc := resp.header.Get("Location"); strings.Contains(loc, "planted") || strings.Count(loc, "_b2s=") != 1 {
			t.Errorf("Location %q: want the planted token replaced", loc)
		}
		for _, to := range []string{e.site("shop.b2s.test") + "/a?b=c", e.site("www.b2smade.test"), "https://b2smade.test/"} {
			resp := get(t, e.site("www.b2s.test")+"/_b2s/go?to="+url.QueryEscape(to), nil)
			if resp.status != http.StatusFound || !strings.HasPrefix(resp.header.Get("Location"), to) {
				t.Errorf("to=%q: %d, Location %q; want a redirect there", to, resp.status, resp.header.Get("Location"))
			}
		}
	})

	t.Run("opt-out: no cookie, no identifiers, a truncated IP; opt-in clears it", func(t *testing.T) {
		cookieA, _ := visitor(t, "www.b2s.test")
		resp := get(t, e.site("www.b2s.test")+"/_b2s/optout?return=/thanks", map[string]string{"Cookie": cookieA})
		if resp.status != http.StatusSeeOther || resp.header.Get("Location") != "/thanks" {
			t.Fatalf("opt-out: %d to %q, want 303 to /thanks", resp.status, resp.header.Get("Location"))
		}
		sc := setCookies(t, resp.header)
		if c := sc["b2sid_optout"]; c == nil || c.Value != "1" || c.MaxAge <= 0 || !c.HttpOnly {
			t.Errorf("opt-out cookie = %+v, want b2sid_optout=1, long-lived, HttpOnly", c)
		}
		if c := sc[DefaultCookieName]; c == nil || c.MaxAge >= 0 {
			t.Errorf("visitor cookie = %+v, want it deleted", c)
		}
		// Deleted where it was set: a deletion for another Domain would
		// leave the visitor's cookie in place.
		for name, c := range sc {
			if c.Domain != "b2s.test" {
				t.Errorf("opt-out Set-Cookie for %s has Domain %q, want b2s.test like the visitor cookie", name, c.Domain)
			}
		}
		p := probe()
		resp = get(t, e.site("www.b2s.test")+"/page?probe="+p, map[string]string{"Cookie": cookieA + "; b2sid_optout=1"})
		if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("an opted-out visitor got %q", sc)
		}
		c := e.records.find(t, p)
		if r := c.rec; r.Consent != "optout" || r.CookieID != "" || r.NetworkID != "" || r.IP != "127.0.0.0" || !r.IPTruncated {
			t.Errorf("opted-out record %+v; want consent optout, no IDs, ip 127.0.0.0 truncated", r)
		}
		if c.key != "" {
			t.Errorf("opted-out record keyed by %q, want no key", c.key)
		}
		// Network-wide: each site's opt-out returns to the next one's.
		chain := e.site("www.b2smade.test") + "/_b2s/optout?return=" + url.QueryEscape(e.site("www.b2s.test")+"/privacy")
		resp = get(t, e.site("www.b2s.test")+"/_b2s/optout?return="+url.QueryEscape(chain), nil)
		if resp.status != http.StatusSeeOther || resp.header.Get("Location") != chain {
			t.Errorf("opt-out returning to a network site's opt-out: %d to %q, want 303 to %q", resp.status, resp.header.Get("Location"), chain)
		}
		p = probe()
		resp = get(t, e.site("www.b2s.test")+"/_b2s/optout?probe="+p, nil)
		if r := e.records.find(t, p).rec; r.Status != http.StatusOK || r.Bytes != int64(len(resp.body)) || r.Bytes == 0 {
			t.Errorf("opt-out page record: status %d, bytes %d; want 200 and the %d bytes sent", r.Status, r.Bytes, len(resp.body))
		}
		for _, ret := range []string{"//evil.example/", "/\\evil.example", "https://evil.example/"} {
			resp := get(t, e.site("www.b2s.test")+"/_b2s/optout?return="+url.QueryEscape(ret), nil)
			if resp.status != http.StatusOK || resp.header.Get("Location") != "" || !strings.Contains(string(resp.body), "opted out") {
				t.Errorf("opt-out with return=%q: %d to %q, %q; want the 200 page", ret, resp.status, resp.header.Get("Location"), resp.body)
			}
		}
		// Opting back in takes the visitor's own click on a form of this
		// very site: not another site's, not a network site's, not a GET.
		post := func(t *testing.T, hdr map[string]string) response {
			t.Helper()
			return e.do(t, newRequest(t, http.MethodPost, e.site("www.b2s.test")+"/_b2s/optin", hdr))
		}
		for _, hdr := range []map[string]string{
			{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"},
			{"Origin": "https://ads.example"},
			{"Origin": "null"},
			{"Origin": e.site("www.b2smade.test")},
			{"Referer": e.site("shop.b2s.test") + "/"},
		} {
			hdr["Cookie"] = "b2sid_optout=1"
			resp := post(t, hdr)
			if resp.status != http.StatusForbidden || len(resp.header.Values("Set-Cookie")) != 0 {
				t.Errorf("opt-in from elsewhere (%v): %d, Set-Cookie %q; want 403 and no cookie change", hdr, resp.status, resp.header.Values("Set-Cookie"))
			}
		}
		own := map[string]string{"Cookie": "b2sid_optout=1", "Origin": e.site("www.b2s.test"),
			"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1"}
		resp = get(t, e.site("www.b2s.test")+"/_b2s/optin", own)
		nonce := setCookies(t, resp.header)["b2sid_optin"]
		m := regexp.MustCompile(`name=b2s_token value="([^"]+)"`).FindSubmatch(resp.body)
		if resp.status != http.StatusOK || len(resp.header.Values("Set-Cookie")) != 1 || nonce == nil || m == nil || !strings.Contains(string(resp.body), "<form method=post") {
			t.Fatalf("opt-in by GET: %d, Set-Cookie %q; want 200, a form with a token and its nonce cookie only", resp.status, resp.header.Values("Set-Cookie"))
		}
		if resp = post(t, own); resp.status != http.StatusForbidden || len(resp.header.Values("Set-Cookie")) != 0 {
			t.Errorf("opt-in without the form's token: %d, Set-Cookie %q; want 403 and no cookie change", resp.status, resp.header.Values("Set-Cookie"))
		}
		own["Cookie"] += "; b2sid_optin=" + nonce.Value
		req := newRequest(t, http.MethodPost, e.site("www.b2s.test")+"/_b2s/optin", own)
		body := "b2s_token=" + url.QueryEscape(string(m[1]))
		req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp = e.do(t, req)
		if c := setCookies(t, resp.header)["b2sid_optout"]; resp.status != http.StatusOK || c == nil || c.MaxAge >= 0 {
			t.Errorf("opt-in: %d, %+v; want 200 and the opt-out cookie deleted", resp.status, c)
		}
	})

	t.Run("Sec-GPC: 1 is an opt-out", func(t *testing.T) {
		p := probe()
		resp := get(t, e.site("www.b2s.test")+"/?probe="+p, map[string]string{"Sec-GPC": "1"})
		if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("a GPC request got %q", sc)
		}
		if r := e.records.find(t, p).rec; r.Consent != "gpc" || r.CookieID != "" || !r.IPTruncated {
			t.Errorf("GPC record %+v; want consent gpc, no cookie ID, truncated IP", r)
		}
	})

	t.Run("child-directed site and path: no cookie, consent child", func(t *testing.T) {
		for _, u := range []string{e.site("kids.b2s.test") + "/", e.site("www.b2s.test") + "/kids/games"} {
			p := probe()
			cookieA := DefaultCookieName + "=" + signerOf(t, testKey1).Sign(beacon.NewID(), time.Now())
			resp := get(t, u+"?probe="+p, map[string]string{"Cookie": cookieA})
			if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("%s set %q", u, sc)
			}
			if r := e.records.find(t, p).rec; r.Consent != "child" || r.CookieID != "" || !r.IPTruncated {
				t.Errorf("%s record %+v; want consent child, no cookie ID", u, r)
			}
		}
	})

	t.Run("a beacon reporting a child-directed page collects no identifiers", func(t *testing.T) {
		kids := e.site("www.b2s.test") + "/kids/games"
		for name, req := range map[string]*http.Request{
			"u in the query": newRequest(t, http.MethodGet, e.site("www.b2s.test")+"/b.gif?u="+url.QueryEscape(kids)+"&probe=%s", nil),
			"the Referer":    newRequest(t, http.MethodGet, e.site("www.b2s.test")+"/b.gif?probe=%s", map[string]string{"Referer": kids}),
			"u in a POST":    newRequest(t, http.MethodPost, e.site("www.b2s.test")+"/b.gif?probe=%s", map[string]string{"Content-Type": "text/plain"}),
		} {
			p := probe()
			req.URL.RawQuery = strings.Replace(req.URL.RawQuery, "%s", p, 1)
			if req.Method == http.MethodPost {
				req.Body = io.NopCloser(strings.NewReader(`{"u":"` + kids + `"}`))
			}
			resp := e.do(t, req)
			if len(resp.header.Values("Set-Cookie")) != 0 {
				t.Errorf("%s: Set-Cookie %q, want none", name, resp.header.Values("Set-Cookie"))
			}
			if r := e.records.find(t, p).rec; r.Consent != "child" || r.CookieID != "" || !r.IPTruncated {
				t.Errorf("%s: record %+v; want consent child, no cookie ID", name, r)
			}
		}
		// A beacon for another page of the site is a visitor's as usual.
		p := probe()
		resp := get(t, e.site("www.b2s.test")+"/b.gif?u="+url.QueryEscape(e.site("www.b2s.test")+"/products")+"&probe="+p, nil)
		if len(resp.header.Values("Set-Cookie")) != 1 {
			t.Errorf("beacon of a grown-up page: Set-Cookie %q, want the visitor cookie", resp.header.Values("Set-Cookie"))
		}
		if r := e.records.find(t, p).rec; r.Consent != "full" || r.CookieID == "" {
			t.Errorf("beacon of a grown-up page: record %+v, want full consent with a cookie ID", r)
		}
	})

	t.Run("the site's child signal deletes the cookies and marks the browser", func(t *testing.T) {
		cookieA, recA := visitor(t, "www.b2s.test")
		p := probe()
		resp := get(t, e.site("www.b2s.test")+"/child?probe="+p, map[string]string{"Cookie": cookieA})
		if resp.header.Get("X-B2S-Child") != "" {
			t.Error("the child header reached the client")
		}
		sc := setCookies(t, resp.header)
		if c := sc[DefaultCookieName]; c == nil || c.MaxAge >= 0 {
			t.Errorf("visitor cookie %+v, want deleted", c)
		}
		if c := sc["b2sid_dnc"]; c == nil || c.Value != "1" || c.MaxAge <= 0 {
			t.Errorf("do-not-collect cookie %+v, want b2sid_dnc=1", c)
		}
		if got := resp.header.Get("Cache-Control"); got != "private" {
			t.Errorf("Cache-Control = %q, want private", got)
		}
		c := e.records.find(t, p)
		if r := c.rec; r.Consent != "child" || r.CookieID != "" || !r.IPTruncated || c.key != "" {
			t.Errorf("record of the signalling page %+v (key %q); want consent child and no identifiers", r, c.key)
		}
		p = probe()
		resp = get(t, e.site("www.b2s.test")+"/?probe="+p, map[string]string{"Cookie": cookieA + "; b2sid_dnc=1"})
		if len(resp.header.Values("Set-Cookie")) != 0 {
			t.Errorf("a marked browser got %q", resp.header.Values("Set-Cookie"))
		}
		if r := e.records.find(t, p).rec; r.Consent != "child" || r.CookieID == recA.CookieID {
			t.Errorf("marked browser's record %+v; want consent child", r)
		}
	})

	t.Run("members are linked from sign-in to sign-out", func(t *testing.T) {
		cookieA, recA := visitor(t, "www.b2s.test")
		p := probe()
		resp := get(t, e.site("www.b2s.test")+"/signin?member=m-1001&probe="+p, map[string]string{"Cookie": cookieA})
		if resp.header.Get("X-B2S-Member") != "" {
			t.Error("the member header reached the client")
		}
		m := setCookies(t, resp.header)["b2sid_m"]
		if m == nil || !strings.HasPrefix(m.Value, "m-1001.") || !m.HttpOnly {
			t.Fatalf("member cookie %+v, want b2sid_m=m-1001.<sig>, HttpOnly", m)
		}
		if r := e.records.find(t, p).rec; r.MemberID != "m-1001" || r.CookieID != recA.CookieID {
			t.Errorf("sign-in record %+v; want member_id m-1001 with cookie_id %s", r, recA.CookieID)
		}
		p = probe()
		get(t, e.site("www.b2s.test")+"/later?probe="+p, map[string]string{"Cookie": cookieA + "; b2sid_m=" + m.Value})
		if r := e.records.find(t, p).rec; r.MemberID != "m-1001" {
			t.Errorf("later record member_id %q, want m-1001", r.MemberID)
		}
		// The member cookie is bound to the visitor's cookie ID.
		other, _ := visitor(t, "www.b2s.test")
		p = probe()
		get(t, e.site("www.b2s.test")+"/later?probe="+p, map[string]string{"Cookie": other + "; b2sid_m=" + m.Value})
		if r := e.records.find(t, p).rec; r.MemberID != "" {
			t.Errorf("a member cookie copied to another visitor gave member_id %q", r.MemberID)
		}
		p = probe()
		resp = get(t, e.site("www.b2s.test")+"/signout?probe="+p, map[string]string{"Cookie": cookieA + "; b2sid_m=" + m.Value})
		if c := setCookies(t, resp.header)["b2sid_m"]; c == nil || c.MaxAge >= 0 {
			t.Errorf("sign-out: member cookie %+v, want deleted", c)
		}
		if r := e.records.find(t, p).rec; r.MemberID != "" {
			t.Errorf("sign-out record member_id %q, want none", r.MemberID)
		}
	})

	t.Run("network origins get credentialed CORS; others do not", func(t *testing.T) {
		for origin, want := range map[string]bool{
			"https://www.b2smade.test":    true,
			"https://shop.b2s.test:8443":  true,
			"http://www.b2smade.test":     false, // plain http from another host
			"https://evil.example":        false,
			"https://b2smade.test.evil":   false,
			"https://www.b2smade.test/x":  false,
			"https://u@www.b2smade.test":  false,
			"null":                        false,
			"https://www.b2smade.testing": false,
		} {
			resp := e.do(t, newRequest(t, http.MethodOptions, e.site("www.b2s.test")+"/b.gif", map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST"}))
			got := resp.header.Get("Access-Control-Allow-Origin")
			if want && (got != origin || resp.header.Get("Access-Control-Allow-Credentials") != "true") {
				t.Errorf("Origin %s: Allow-Origin %q, want it allowed with credentials", origin, got)
			}
			if !want && got != "" {
				t.Errorf("Origin %s: Allow-Origin %q, want none", origin, got)
			}
		}
	})

	t.Run("a cross-site beacon reads the cookie but never issues one", func(t *testing.T) {
		xs := map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
		p := probe()
		resp := get(t, e.main+"/b.gif?probe="+p, xs)
		if resp.status != http.StatusOK || len(resp.header.Values("Set-Cookie")) != 0 {
			t.Errorf("cross-site beacon without a cookie: %d, Set-Cookie %q; want the pixel and no cookie", resp.status, resp.header.Values("Set-Cookie"))
		}
		if r := e.records.find(t, p).rec; !r.CrossSite || r.CookieID != "" {
			t.Errorf("record %+v; want cross_site and no cookie ID", r)
		}
		// A first-party visit sets a SameSite=None cookie, which the
		// browser then sends with the cross-site beacon.
		resp = get(t, e.main+"/", nil)
		sc := resp.header.Values("Set-Cookie")
		if len(sc) != 1 || !strings.HasSuffix(sc[0], "; HttpOnly; SameSite=None; Secure") {
			t.Fatalf("main site Set-Cookie %q, want SameSite=None; Secure", sc)
		}
		c := setCookies(t, resp.header)[hostPrefix+DefaultCookieName]
		xs["Cookie"] = hostPrefix + DefaultCookieName + "=" + c.Value
		p = probe()
		get(t, e.main+"/b.gif?probe="+p, xs)
		v, _ := signerOf(t, testKey1).Verify(c.Value)
		if r := e.records.find(t, p).rec; !r.CrossSite || r.CookieID != v.ID {
			t.Errorf("record %+v; want cross_site with cookie_id %s", r, v.ID)
		}
		// The opt-out cookie goes wherever the visitor cookie goes: the
		// cross-site beacon honours it.
		resp = get(t, e.main+"/_b2s/optout", map[string]string{"Cookie": xs["Cookie"]})
		for _, line := range resp.header.Values("Set-Cookie") {
			if !strings.HasSuffix(line, "; HttpOnly; SameSite=None; Secure") {
				t.Errorf("main site opt-out Set-Cookie %q, want SameSite=None; Secure like its visitor cookie", line)
			}
		}
		xs["Cookie"] += "; __Host-b2sid_optout=1"
		p = probe()
		get(t, e.main+"/b.gif?probe="+p, xs)
		if r := e.records.find(t, p).rec; r.Consent != "optout" || r.CookieID != "" {
			t.Errorf("opted-out cross-site beacon record %+v; want consent optout, no cookie ID", r)
		}
	})
}

func TestStripToken(t *testing.T) {
	for _, c := range []struct{ in, rest, token string }{
		{"_b2s=T", "", "T"},
		{"a=1&_b2s=T&b=2", "a=1&b=2", "T"},
		{"a=1&%5Fb2s=T", "a=1", "T"},
		{"_b2s=T1&_b2s=T2&c", "c", ""}, // several: none trusted
		{"x_b2s=1&_b2sx=2&_b2s=T", "x_b2s=1&_b2sx=2", "T"},
	} {
		rest, token, found := stripToken(c.in, "_b2s")
		if !found || rest != c.rest || token != c.token {
			t.Errorf("stripToken(%q) = %q, %q, %v; want %q, %q", c.in, rest, token, found, c.rest, c.token)
		}
	}
	if _, _, found := stripToken("a=_b2s&b2s=1", "_b2s"); found {
		t.Error("found a token that is not there")
	}
}
