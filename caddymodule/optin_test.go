package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Opting back in undoes a privacy choice: only the visitor, submitting a
// form of the site itself, does it. Opting out stays open to anyone.
// Each refusal has a control, accepted, that differs from it by a header.

const (
	chromeUA  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	firefoxUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
	safariUA  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15"
	iosUA     = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1"
)

// formSubmit is what a browser with Fetch Metadata sends when the visitor
// clicks the submit button of a form on https://www.b2s.com.
func formSubmit(ua string, except map[string]string) map[string]string {
	h := map[string]string{
		"User-Agent": ua, "Origin": "https://www.b2s.com", "Referer": "https://www.b2s.com/privacy",
		"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1",
		"Content-Type": "application/x-www-form-urlencoded",
	}
	for k, v := range except {
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	return h
}

// oldBrowser is what a browser without Fetch Metadata sends for a form.
func oldBrowser(hdr map[string]string) map[string]string {
	hdr["User-Agent"] = "Mozilla/5.0 (Windows NT 6.1; rv:60.0) Gecko/20100101 Firefox/60.0"
	hdr["Content-Type"] = "application/x-www-form-urlencoded"
	return hdr
}

// optInForm GETs the opt-in's form page at target and returns the nonce
// cookie it sets, as a Cookie header pair, and the form's token.
func optInForm(t *testing.T, c *Collect, target string) (nonce, token string) {
	t.Helper()
	w := serveCollect(t, c, httptest.NewRequest(http.MethodGet, target, nil), nil)
	for _, sc := range w.Result().Cookies() {
		if strings.HasSuffix(sc.Name, DefaultCookieName+optInNonceSuffix) {
			nonce = sc.Name + "=" + sc.Value
		}
	}
	m := regexp.MustCompile(`name=b2s_token value="([^"]+)"`).FindStringSubmatch(w.Body.String())
	if nonce == "" || m == nil {
		t.Fatalf("the opt-in's page set %q and answered %q: no nonce cookie or no token", w.Header().Values("Set-Cookie"), w.Body.String())
	}
	return nonce, m[1]
}

// onlyNonce reports whether h sets the opt-in's nonce cookie and nothing
// else.
func onlyNonce(h http.Header) bool {
	sc := h.Values("Set-Cookie")
	return len(sc) == 1 && strings.HasPrefix(sc[0], hostPrefix+DefaultCookieName+optInNonceSuffix+"=")
}

// optedIn reports whether h clears the opt-out cookie.
func optedIn(h http.Header) bool {
	for _, line := range h.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == DefaultCookieName+optOutSuffix && c.MaxAge < 0 {
			return true
		}
	}
	return false
}

func TestOptInOnlyByTheVisitor(t *testing.T) {
	const (
		accepted = iota // 200 (303 with return) and the opt-out cookie cleared
		refused         // 403, no cookie
		asked           // 200, the page with the form, no cookie
	)
	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string]string
		want   int
	}{
		{name: "control: the visitor's click on a form of the site opts in", method: http.MethodPost, hdr: formSubmit(chromeUA, nil), want: accepted},
		{name: "control: so does Firefox's", method: http.MethodPost, hdr: formSubmit(firefoxUA, nil), want: accepted},
		{name: "control: Safari, which sends no Sec-Fetch-User, opts in by the form", method: http.MethodPost, hdr: formSubmit(safariUA, map[string]string{"Sec-Fetch-User": ""}), want: accepted},
		{name: "control: so does every browser on iOS, all WebKit", method: http.MethodPost, hdr: formSubmit(iosUA, map[string]string{"Sec-Fetch-User": ""}), want: accepted},

		{name: "a GET only asks, even from the site's own link", method: http.MethodGet, hdr: formSubmit(chromeUA, nil), want: asked},
		{name: "a HEAD only asks", method: http.MethodHead, hdr: formSubmit(chromeUA, nil), want: asked},
		{name: "a GET from another site's link or redirect only asks", method: http.MethodGet, hdr: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Referer": "https://ads.example/"}, want: asked},
		{name: "without Fetch Metadata, a GET with a foreign Referer only asks", method: http.MethodGet, hdr: oldBrowser(map[string]string{"Referer": "https://ads.example/"}), want: asked},
		{name: "without Fetch Metadata, a GET with the site's own Referer only asks", method: http.MethodGet, hdr: oldBrowser(map[string]string{"Referer": "https://www.b2s.com/privacy"}), want: asked},

		{name: "a script's fetch POST on the site's page is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Sec-Fetch-User": ""}), want: refused},
		{name: "a script's same-origin-mode fetch is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Mode": "same-origin", "Sec-Fetch-Dest": "empty", "Sec-Fetch-User": ""}), want: refused},
		{name: "a sendBeacon or no-cors fetch is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty", "Sec-Fetch-User": ""}), want: refused},
		{name: "a form a script submits, without the visitor's click, is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-User": ""}), want: refused},
		{name: "so is Firefox's", method: http.MethodPost, hdr: formSubmit(firefoxUA, map[string]string{"Sec-Fetch-User": ""}), want: refused},
		{name: "a form of the site in a frame is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Dest": "iframe"}), want: refused},
		{name: "a form of the site in Safari in a frame is refused", method: http.MethodPost, hdr: formSubmit(safariUA, map[string]string{"Sec-Fetch-Dest": "iframe", "Sec-Fetch-User": ""}), want: refused},
		{name: "a form on another site is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://ads.example", "Referer": "https://ads.example/"}), want: refused},
		{name: "a form on a network site is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://www.b2smade.com", "Referer": "https://www.b2smade.com/privacy"}), want: refused},
		{name: "a form on another subdomain of the site's domain is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://shop.b2s.com", "Referer": "https://shop.b2s.com/"}), want: refused},
		{name: "a POST redirected here from another origin is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "null"}), want: refused},
		{name: "a same-origin navigation whose Origin is another site is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Origin": "https://ads.example"}), want: refused},
		{name: "a browser with Fetch Metadata that does not say how it fetches is refused", method: http.MethodPost, hdr: formSubmit(chromeUA, map[string]string{"Sec-Fetch-Mode": "", "Sec-Fetch-Dest": ""}), want: refused},

		{name: "control: without Fetch Metadata, a POST whose Origin is this site opts in", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Origin": "https://www.b2s.com"}), want: accepted},
		{name: "control: without Fetch Metadata, a POST whose Referer is a page of this site opts in", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Referer": "https://www.b2s.com/privacy"}), want: accepted},
		{name: "without Fetch Metadata, a foreign Referer is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Referer": "https://ads.example/"}), want: refused},
		{name: "without Fetch Metadata, a subdomain's Referer is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Referer": "https://shop.b2s.com/privacy"}), want: refused},
		{name: "without Fetch Metadata, a network site's Referer is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Referer": "https://www.b2smade.com/privacy"}), want: refused},
		{name: "without Fetch Metadata, a Referer of a host that only starts like the site's is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Referer": "https://www.b2s.com.ads.example/"}), want: refused},
		{name: "without Fetch Metadata, a plain-http Referer of the site is refused over https", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Referer": "http://www.b2s.com/privacy"}), want: refused},
		{name: "without Fetch Metadata, a foreign Origin is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Origin": "https://ads.example", "Referer": "https://www.b2s.com/privacy"}), want: refused},
		{name: "without Fetch Metadata, a subdomain's Origin is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Origin": "https://shop.b2s.com"}), want: refused},
		{name: "without Fetch Metadata, a network site's Origin is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Origin": "https://www.b2smade.com"}), want: refused},
		{name: "without Fetch Metadata, an Origin of null is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{"Origin": "null", "Referer": "https://www.b2s.com/privacy"}), want: refused},
		{name: "without Fetch Metadata, a POST naming no page is refused", method: http.MethodPost, hdr: oldBrowser(map[string]string{}), want: refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			c, sp := networkCollect(t, &now)
			// Every POST carries the token of the opt-in's own form and
			// its nonce cookie: what is tested here is who sends it.
			nonce, token := optInForm(t, c, "https://www.b2s.com/_b2s/optin")
			takeRecord(t, sp)
			before := metricValue(t, privacySignal[signalOptIn])
			r := httptest.NewRequest(tc.method, "https://www.b2s.com/_b2s/optin", strings.NewReader(optInTokenField+"="+url.QueryEscape(token)))
			r.Header.Set("Cookie", DefaultCookieName+optOutSuffix+"=1; "+nonce)
			w := serveCollect(t, c, withHeaders(r, tc.hdr), nil)
			got, in := -1, optedIn(w.Header())
			switch {
			case w.Code == http.StatusOK && in:
				got = accepted
			case w.Code == http.StatusForbidden && len(w.Header().Values("Set-Cookie")) == 0:
				got = refused
			case w.Code == http.StatusOK && onlyNonce(w.Header()) && w.Header().Get("Content-Type") == "text/html; charset=utf-8":
				got = asked
				if tc.method == http.MethodGet && !strings.Contains(w.Body.String(), `<form method=post action="/_b2s/optin"><input type=hidden name=b2s_token value="`) {
					t.Errorf("the page that asks has no form that posts the opt-in: %q", w.Body.String())
				}
			}
			if got != tc.want {
				t.Errorf("answered %d, Set-Cookie %q, %q; want %v", w.Code, w.Header().Values("Set-Cookie"), w.Body.String(), [...]string{"the opt-in", "403", "the page that asks"}[tc.want])
			}
			wantSignal := 0.0
			if tc.want == accepted {
				wantSignal = 1
			}
			if d := metricValue(t, privacySignal[signalOptIn]) - before; d != wantSignal {
				t.Errorf("b2s_privacy_signals_total{signal=optin} moved by %v, want %v", d, wantSignal)
			}
			if rec := takeRecord(t, sp); rec.str("consent") != "optout" || rec.str("cookie_id") != "" {
				t.Errorf("the opt-in request recorded consent %q cookie_id %q, want optout and none (it came opted out)", rec.str("consent"), rec.str("cookie_id"))
			}
		})
	}
}

// TestOptInPage: the page a GET of the opt-in answers posts the opt-in
// with the same return, stripped of a link token; it cannot be framed.
func TestOptInPage(t *testing.T) {
	for _, tc := range []struct {
		name, ret, action string
	}{
		{name: "without return, the form posts to the opt-in path", ret: "", action: "/_b2s/optin"},
		{name: "a path of the site to return to is kept", ret: "/privacy?a=1&b=2", action: "/_b2s/optin?return=" + url.QueryEscape("/privacy?a=1&b=2")},
		{name: "a network URL to return to is kept", ret: "https://www.b2smade.com/privacy", action: "/_b2s/optin?return=" + url.QueryEscape("https://www.b2smade.com/privacy")},
		{name: "a link token in the return is dropped", ret: "/privacy?_b2s=tok&a=1", action: "/_b2s/optin?return=" + url.QueryEscape("/privacy?a=1")},
		{name: "a return elsewhere is dropped", ret: "https://ads.example/", action: "/_b2s/optin"},
		{name: "markup in a return is escaped", ret: `/x"><script>alert(1)</script>`, action: "/_b2s/optin?return=" + url.QueryEscape(`/x"><script>alert(1)</script>`)},
	} {
		// The consent endpoint's form page is the same page (serveTokenForm).
		for _, path := range []string{"/_b2s/optin", DefaultConsentPath} {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
				c, _ := networkCollect(t, &now)
				target := "https://www.b2s.com" + path
				if tc.ret != "" {
					target += "?return=" + url.QueryEscape(tc.ret)
				}
				w := serveCollect(t, c, httptest.NewRequest(http.MethodGet, target, nil), nil)
				action := strings.Replace(tc.action, "/_b2s/optin", path, 1)
				if want := `<form method=post action="` + strings.ReplaceAll(action, "&", "&amp;") + `">`; !strings.Contains(w.Body.String(), want) {
					t.Errorf("page %q, want the form %s", w.Body.String(), want)
				}
				if strings.Contains(w.Body.String(), "<script") {
					t.Errorf("page %q carries markup from the query", w.Body.String())
				}
				for k, v := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
					if got := w.Header().Get(k); got != v {
						t.Errorf("%s: %q, want %q", k, got, v)
					}
				}
				if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
					t.Errorf("Content-Security-Policy %q, want frame-ancestors 'none'", csp)
				}
			})
		}
	}
	t.Run("the accepted opt-in returns where the form said", func(t *testing.T) {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, _ := networkCollect(t, &now)
		target := "https://www.b2s.com/_b2s/optin?return=" + url.QueryEscape("https://www.b2smade.com/privacy")
		nonce, token := optInForm(t, c, target)
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(optInTokenField+"="+url.QueryEscape(token)))
		r.Header.Set("Cookie", nonce)
		w := serveCollect(t, c, withHeaders(r, formSubmit(chromeUA, nil)), nil)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "https://www.b2smade.com/privacy" || !optedIn(w.Header()) {
			t.Errorf("answered %d to %q, Set-Cookie %q; want 303 there and the opt-out cleared", w.Code, w.Header().Get("Location"), w.Header().Values("Set-Cookie"))
		}
	})
}

// TestOptOutOpenAndItsReturnSafe: anyone may opt the visitor out (a
// choice in the visitor's favour), but its return leads only to a path of
// the site or a network URL, over https from https, never carrying a link
// token.
func TestOptOutOpenAndItsReturnSafe(t *testing.T) {
	for _, tc := range []struct {
		name, ret, want string // want: the Location, "" for the 200 page
		hdr             map[string]string
	}{
		{name: "control: a path of the site", ret: "/thanks", want: "/thanks"},
		{name: "control: a network URL", ret: "https://www.b2smade.com/_b2s/optout", want: "https://www.b2smade.com/_b2s/optout"},
		{name: "control: an image on another site opts out too", ret: "/thanks", want: "/thanks", hdr: map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image", "Referer": "https://ads.example/"}},
		{name: "a link token in the return is dropped", ret: "https://www.b2smade.com/p?_b2s=tok&a=1", want: "https://www.b2smade.com/p?a=1"},
		{name: "a scheme-relative URL", ret: "//ads.example/"},
		{name: "a backslash path", ret: "/\\ads.example"},
		{name: "a tab in the path", ret: "/\t/ads.example"},
		{name: "a line break, to write a header", ret: "/x\r\nSet-Cookie: b2sid_optout=; Max-Age=0"},
		{name: "a foreign URL", ret: "https://ads.example/"},
		{name: "a host that only ends like a network site", ret: "https://www.b2smade.com.ads.example/"},
		{name: "user info before a network host", ret: "https://www.b2smade.com@ads.example/"},
		{name: "a network host behind a backslash", ret: "https://ads.example\\@www.b2smade.com/"},
		{name: "plain http from https", ret: "http://www.b2smade.com/"},
		{name: "a script URL", ret: "javascript:alert(1)//www.b2smade.com"},
		{name: "a data URL", ret: "data:text/html,hi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			c, _ := networkCollect(t, &now)
			r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/optout?return="+url.QueryEscape(tc.ret), nil)
			w := serveCollect(t, c, withHeaders(r, tc.hdr), nil)
			wantCode := http.StatusSeeOther
			if tc.want == "" {
				wantCode = http.StatusOK
			}
			if w.Code != wantCode || w.Header().Get("Location") != tc.want {
				t.Errorf("answered %d to %q, want %d to %q", w.Code, w.Header().Get("Location"), wantCode, tc.want)
			}
			optedOut := false
			for _, line := range w.Header().Values("Set-Cookie") {
				if c, err := http.ParseSetCookie(line); err == nil && c.Name == hostPrefix+DefaultCookieName+optOutSuffix && c.Value == "1" {
					optedOut = true
				}
			}
			if !optedOut {
				t.Errorf("Set-Cookie %q, want the opt-out cookie", w.Header().Values("Set-Cookie"))
			}
		})
	}
}
