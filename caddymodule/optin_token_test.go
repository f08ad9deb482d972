package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// TestOptInToken: a POST that passes every check of the visitor's own
// action (a route of the site redirected the visitor's click there with
// 307, keeping the method, the origin and the click) opts in only with
// the token of the opt-in's own form, bound to the nonce cookie its GET
// set in this browser, before it expires. Each refusal is a 403 that
// changes nothing and is counted as token; its control, the same POST
// with the form's token, opts in.
func TestOptInToken(t *testing.T) {
	const optIn = "https://www.b2s.com/_b2s/optin"
	type post struct {
		target, body, cookie string
		after                time.Duration // since the form was served
	}
	for _, tc := range []struct {
		name   string
		post   func(nonce, token, otherNonce string) post
		accept bool
	}{
		{"control: the form's token and nonce opt in", func(n, tok, _ string) post {
			return post{optIn, optInTokenField + "=" + url.QueryEscape(tok), n, 0}
		}, true},
		{"control: the 307 attack, were the token in its body, would opt in", func(n, tok, _ string) post {
			return post{optIn + "?return=/", "q=offer&" + optInTokenField + "=" + url.QueryEscape(tok), n, 0}
		}, true},
		{"control: a form submitted after 14 minutes opts in", func(n, tok, _ string) post {
			return post{optIn, optInTokenField + "=" + url.QueryEscape(tok), n, 14 * time.Minute}
		}, true},
		{"a POST a site route redirected here with 307 is refused: its body has no token", func(n, _, _ string) post {
			return post{optIn + "?return=/", "q=offer", n, 0}
		}, false},
		{"an empty body is refused", func(n, _, _ string) post { return post{optIn, "", n, 0} }, false},
		{"a token in the URL is refused: whoever redirects writes the URL", func(n, tok, _ string) post {
			return post{optIn + "?" + optInTokenField + "=" + url.QueryEscape(tok), "", n, 0}
		}, false},
		{"a token without the nonce cookie is refused", func(_, tok, _ string) post {
			return post{optIn, optInTokenField + "=" + url.QueryEscape(tok), "", 0}
		}, false},
		{"a token with another browser's nonce is refused", func(_, tok, other string) post {
			return post{optIn, optInTokenField + "=" + url.QueryEscape(tok), other, 0}
		}, false},
		{"a nonce planted under the unprefixed name is not read over https", func(n, tok, _ string) post {
			return post{optIn, optInTokenField + "=" + url.QueryEscape(tok), strings.TrimPrefix(n, hostPrefix), 0}
		}, false},
		{"a form submitted after 16 minutes is refused", func(n, tok, _ string) post {
			return post{optIn, optInTokenField + "=" + url.QueryEscape(tok), n, 16 * time.Minute}
		}, false},
		{"a token whose expiry is moved later is refused", func(n, tok, _ string) post {
			exp, mac, _ := strings.Cut(tok, ".")
			e, _ := strconv.ParseInt(exp, 10, 64)
			return post{optIn, optInTokenField + "=" + url.QueryEscape(strconv.FormatInt(e+60, 10)+"."+mac), n, 0}
		}, false},
		{"a token whose expiry lies beyond a form's lifetime is refused, whatever its MAC", func(n, tok, _ string) post {
			_, mac, _ := strings.Cut(tok, ".")
			return post{optIn, optInTokenField + "=" + url.QueryEscape("99999999999."+mac), n, 0}
		}, false},
		{"a token with a changed MAC is refused", func(n, tok, _ string) post {
			b := []byte(tok)
			b[len(b)-2] ^= 1
			return post{optIn, optInTokenField + "=" + url.QueryEscape(string(b)), n, 0}
		}, false},
		{"a token with a short MAC is refused", func(n, tok, _ string) post {
			return post{optIn, optInTokenField + "=" + url.QueryEscape(tok[:len(tok)-3]), n, 0}
		}, false},
		{"a token without its expiry is refused", func(n, tok, _ string) post {
			_, mac, _ := strings.Cut(tok, ".")
			return post{optIn, optInTokenField + "=" + url.QueryEscape(mac), n, 0}
		}, false},
		{"two tokens are refused", func(n, tok, _ string) post {
			f := optInTokenField + "=" + url.QueryEscape(tok)
			return post{optIn, f + "&" + f, n, 0}
		}, false},
		{"the token on another host of the site is refused", func(n, tok, _ string) post {
			return post{"https://shop.b2s.com/_b2s/optin", optInTokenField + "=" + url.QueryEscape(tok), n, 0}
		}, false},
		{"a body longer than a form's is refused", func(n, tok, _ string) post {
			return post{optIn, "pad=" + strings.Repeat("x", optInMaxBody) + "&" + optInTokenField + "=" + url.QueryEscape(tok), n, 0}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			c, sp := networkCollect(t, &now)
			nonce, token := optInForm(t, c, optIn)
			other, _ := optInForm(t, c, optIn)
			takeRecords(t, sp)
			p := tc.post(nonce, token, other)
			now = now.Add(p.after)
			refusedBefore, signalBefore := metricValue(t, optInRefused[refusedToken]), metricValue(t, privacySignal[signalOptIn])
			r := httptest.NewRequest(http.MethodPost, p.target, strings.NewReader(p.body))
			cookie := "__Host-b2sid_optout=1"
			if p.cookie != "" {
				cookie += "; " + p.cookie
			}
			r.Header.Set("Cookie", cookie)
			hdr := formSubmit(chromeUA, nil)
			if u, _ := url.Parse(p.target); u.Host != "www.b2s.com" {
				hdr["Origin"], hdr["Referer"] = "https://"+u.Host, "https://"+u.Host+"/promo"
			}
			w := serveCollect(t, c, withHeaders(r, hdr), nil)
			if tc.accept {
				if w.Code >= 400 || !optedIn(w.Header()) {
					t.Fatalf("answered %d, Set-Cookie %q, %q; want the opt-in", w.Code, w.Header().Values("Set-Cookie"), w.Body.String())
				}
				// The form is good once: its nonce cookie is deleted.
				deleted := false
				for _, sc := range w.Result().Cookies() {
					deleted = deleted || sc.Name == hostPrefix+DefaultCookieName+optInNonceSuffix && sc.MaxAge < 0
				}
				if !deleted {
					t.Errorf("Set-Cookie %q does not delete the nonce cookie", w.Header().Values("Set-Cookie"))
				}
				return
			}
			if w.Code != http.StatusForbidden || len(w.Header().Values("Set-Cookie")) != 0 || w.Header().Get("Location") != "" {
				t.Errorf("answered %d, Set-Cookie %q, Location %q; want 403 and nothing set", w.Code, w.Header().Values("Set-Cookie"), w.Header().Get("Location"))
			}
			if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" || !strings.Contains(w.Body.String(), "open /_b2s/optin") {
				t.Errorf("answered %q, %q; want a plain page naming the opt-in's form", ct, w.Body.String())
			}
			if d := metricValue(t, optInRefused[refusedToken]) - refusedBefore; d != 1 {
				t.Errorf("b2s_optin_refused_total{reason=token} moved by %v, want 1", d)
			}
			if d := metricValue(t, privacySignal[signalOptIn]) - signalBefore; d != 0 {
				t.Errorf("b2s_privacy_signals_total{signal=optin} moved by %v, want 0", d)
			}
			if rec := takeRecord(t, sp); rec.str("consent") != "optout" || rec.rec["status"] != float64(http.StatusForbidden) {
				t.Errorf("the refused opt-in recorded consent %q, status %v; want optout, 403", rec.str("consent"), rec.rec["status"])
			}
		})
	}
}

// TestOptInNonceCookie: the form page's nonce cookie is HttpOnly,
// SameSite=Strict and lives as long as the form is good; over https it is
// a __Host- cookie (Secure, Path=/, no Domain) whatever cookie_domain
// says, over plain http it is unprefixed, and its token counts only
// there.
func TestOptInNonceCookie(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c, _ := networkCollect(t, &now)
	c.CookieDomain = "b2s.com"
	for _, tc := range []struct{ target, name string }{
		{"https://www.b2s.com/_b2s/optin", "__Host-b2sid_optin"},
		{"http://www.b2s.com/_b2s/optin", "b2sid_optin"},
	} {
		w := serveCollect(t, c, httptest.NewRequest(http.MethodGet, tc.target, nil), nil)
		cs := w.Result().Cookies()
		https := strings.HasPrefix(tc.target, "https")
		if len(cs) != 1 || cs[0].Name != tc.name || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" ||
			cs[0].Domain != "" || cs[0].MaxAge != int(optInTokenTTL/time.Second) || cs[0].Secure != https {
			t.Errorf("GET %s set %q; want one %s, HttpOnly, SameSite=Strict, Path=/, no Domain, Max-Age=900, Secure %v", tc.target, w.Header().Values("Set-Cookie"), tc.name, https)
		}
	}
	// Over plain http, the unprefixed nonce and its token opt in.
	nonce, token := optInForm(t, c, "http://www.b2s.com/_b2s/optin")
	r := httptest.NewRequest(http.MethodPost, "http://www.b2s.com/_b2s/optin", strings.NewReader(optInTokenField+"="+url.QueryEscape(token)))
	r.Header.Set("Cookie", "b2sid_optout=1; "+nonce)
	hdr := formSubmit(chromeUA, map[string]string{"Origin": "http://www.b2s.com", "Referer": "http://www.b2s.com/privacy"})
	if w := serveCollect(t, c, withHeaders(r, hdr), nil); w.Code >= 400 || !optedIn(w.Header()) {
		t.Errorf("plain http: answered %d, Set-Cookie %q; want the opt-in", w.Code, w.Header().Values("Set-Cookie"))
	}
}

// TestOptInTokenAcrossARotation: in the middle of a rolling key rotation
// the edges of a fleet sign with different keys; a form fetched from one
// edge is taken by another that verifies the first one's signing key, in
// either direction. Its control, an edge that does not hold the key the
// form was made with, refuses it (fails closed: the visitor stays opted
// out).
func TestOptInTokenAcrossARotation(t *testing.T) {
	const optIn = "https://www.b2s.com/_b2s/optin"
	old, next := []byte(testKey1), []byte(testKey2)
	edge := func(keys beacon.Keys) *Collect {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, sp := limitedCollect(t, &ClientLimit{Off: true}, &now)
		if err := c.app.setupKeys(keys, sp); err != nil {
			t.Fatal(err)
		}
		return c
	}
	rotated := edge(beacon.Keys{Sign: next, Older: [][]byte{old}})    // step 2 done here
	verifying := edge(beacon.Keys{Sign: old, Verify: [][]byte{next}}) // step 1 done here
	behind := edge(beacon.Keys{Sign: old})                            // not even step 1
	for _, tc := range []struct {
		name     string
		from, to *Collect
		accept   bool
	}{
		{"a form of the rotated edge posted to one that verifies its key", rotated, verifying, true},
		{"a form of the verifying edge posted to the rotated one", verifying, rotated, true},
		{"control: a form of the rotated edge posted to one without its key", rotated, behind, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nonce, token := optInForm(t, tc.from, optIn)
			r := httptest.NewRequest(http.MethodPost, optIn, strings.NewReader(optInTokenField+"="+url.QueryEscape(token)))
			r.Header.Set("Cookie", "__Host-b2sid_optout=1; "+nonce)
			w := serveCollect(t, tc.to, withHeaders(r, formSubmit(chromeUA, nil)), nil)
			if got := w.Code < 400 && optedIn(w.Header()); got != tc.accept {
				t.Fatalf("answered %d, Set-Cookie %q; opted in %v, want %v", w.Code, w.Header().Values("Set-Cookie"), got, tc.accept)
			}
		})
	}
}
