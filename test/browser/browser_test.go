package browser

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
)

// TestCookieAndRecords: a first visit gets the signed b2sid cookie as an
// HttpOnly, Secure, SameSite=Lax cookie that lives 400 days and that the
// page's scripts cannot read; the edge records the visit under the cookie's
// ID, and the next visit as returning under the same ID. The sister site,
// another registrable domain, never gets the main site's cookie.
func TestCookieAndRecords(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.newBrowser(t, browserOptions{})
	home := e.url(mainHost, "/")

	before := time.Now()
	if resp := b.navigate(t, home); resp.Status != 200 {
		t.Fatalf("GET %s: status %d, want 200", home, resp.Status)
	}
	after := time.Now()

	c := b.cookie(t, home, cookieName)
	id, issued, err := verifyCookie(c.Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	if issued.Before(before.Truncate(time.Second)) || issued.After(after) {
		t.Errorf("cookie issued at %v, outside the visit %v..%v", issued, before, after)
	}
	if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || c.Session {
		t.Errorf("b2sid: HttpOnly %v, Secure %v, SameSite %q, Path %q, session %v; want HttpOnly, Secure, Lax, /, persistent",
			c.HTTPOnly, c.Secure, c.SameSite, c.Path, c.Session)
	}
	// Host-only: the browser reports a host-only cookie's domain without
	// a leading dot.
	if c.Domain != mainHost {
		t.Errorf("b2sid domain %q, want the host-only %q", c.Domain, mainHost)
	}
	expires := time.Unix(int64(c.Expires), 0)
	if lo, hi := before.Add(cookieMaxAge).Add(-time.Second), after.Add(cookieMaxAge).Add(time.Second); expires.Before(lo) || expires.After(hi) {
		t.Errorf("b2sid expires %v, want 400 days after the visit: %v..%v", expires, lo, hi)
	}

	// Scripts read the page's other cookie, never b2sid.
	docCookie := eval[string](t, b.ctx, "document.cookie")
	if !strings.Contains(docCookie, sitePrefCookie) {
		t.Errorf("document.cookie = %q lacks %q, the page's script-readable cookie", docCookie, sitePrefCookie)
	}
	if strings.Contains(docCookie, cookieName) || strings.Contains(docCookie, id) {
		t.Errorf("document.cookie = %q shows the HttpOnly b2sid", docCookie)
	}

	first := e.records.waitRecord(t, "the first visit", pageRecord(home))
	if host := fmt.Sprintf("%s:%d", mainHost, e.port); first.CookieID != id || first.CookieState != "new" ||
		first.Host != host || first.Method != "GET" || first.Status != 200 {
		t.Errorf("first visit recorded as cookie_id %q, cookie_state %q, host %q, %s, status %d; want %q, new, %s, GET, 200\n%s",
			first.CookieID, first.CookieState, first.Host, first.Method, first.Status, id, host, first.raw)
	}

	b.navigate(t, home)
	visits := e.records.waitRecords(t, "two visits", 2, pageRecord(home))
	if second := visits[1]; second.CookieID != id || second.CookieState != "returning" {
		t.Errorf("second visit recorded as cookie_id %q, cookie_state %q; want %q, returning\n%s", second.CookieID, second.CookieState, id, second.raw)
	}
	if again := b.cookie(t, home, cookieName); again.Value != c.Value {
		t.Errorf("b2sid changed on the second visit: %q, was %q", again.Value, c.Value)
	}

	// The sister site is another site: its own cookie, its own ID.
	sister := e.url(sisterHost, "/")
	b.navigate(t, sister)
	sc := b.cookie(t, sister, cookieName)
	sid, _, err := verifyCookie(sc.Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	if sid == id || sc.Domain != sisterHost {
		t.Errorf("sister site's b2sid: ID %s on domain %q; want a new ID (the main site's is %s) on %q", sid, sc.Domain, id, sisterHost)
	}
	if r := e.records.waitRecord(t, "the sister site's visit", pageRecord(sister)); r.CookieID != sid || r.CookieState != "new" {
		t.Errorf("sister site's visit recorded as cookie_id %q, cookie_state %q; want %q, new\n%s", r.CookieID, r.CookieState, sid, r.raw)
	}
}

// TestAdvertiserNeverSeesTheVisitorsID: a b2s page embeds an advertiser's
// frame and script, and the b2s tag. The advertiser's server logs every
// request it gets, and its frame and script report everything a script can
// read where they run (cookies, location, referrer, storage). Neither the
// b2sid cookie nor its ID shows up anywhere in that, while the page's own
// records arrive. The advertiser's own cookie comes back from its frame
// only when the profile allows third-party cookies.
func TestAdvertiserNeverSeesTheVisitorsID(t *testing.T) {
	for _, c := range []struct {
		name         string
		mode         thirdPartyCookies
		adCookieBack bool // whether the frame's cookie comes back to the advertiser
	}{
		{"third-party cookies blocked", thirdPartyBlocked, false},
		{"third-party cookies allowed", thirdPartyAllowed, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			b := e.newBrowser(t, browserOptions{thirdPartyCookies: c.mode})
			page := e.url(mainHost, adsPagePath)
			if resp := b.navigate(t, page); resp.Status != 200 {
				t.Fatalf("GET %s: status %d, want 200", page, resp.Status)
			}
			bc := b.cookie(t, page, cookieName)
			id, _, err := verifyCookie(bc.Value, e.secret)
			if err != nil {
				t.Fatal(err)
			}

			// The page's own records: the page, and the tag's pageview.
			pr := e.records.waitRecord(t, "the page", pageRecord(page))
			br := e.records.waitRecord(t, "the tag's pageview", func(r *record) bool {
				return r.Kind == "beacon" && r.Event == "pageview"
			})
			if pr.CookieID != id || pr.CookieState != "new" {
				t.Errorf("page recorded as cookie_id %q, cookie_state %q; want %q, new\n%s", pr.CookieID, pr.CookieState, id, pr.raw)
			}
			if br.CookieID != id || br.CookieState != "returning" || br.Method != "POST" || br.URL != page || br.Status != 204 {
				t.Errorf("pageview recorded as cookie_id %q, cookie_state %q, %s %q, status %d; want %q, returning, a POST of %q, 204\n%s",
					br.CookieID, br.CookieState, br.Method, br.URL, br.Status, id, page, br.raw)
			}

			got := e.ads.waitRequests(t, "the frame, the script and their reports",
				requestTo("GET", adFramePath), requestTo("GET", adScriptPath),
				reportFrom("frame"), reportFrom("script"), pixelFrom("frame"), pixelFrom("script"))
			frame, frameRep, scriptRep := got[0], got[2], got[3]

			// Nothing the advertiser received names b2sid, its value or its
			// ID: no header (Cookie, Referer, anything the edge adds), no
			// URL, no body.
			for _, r := range e.ads.requests() {
				s := r.String()
				for _, leak := range []string{bc.Value, id, cookieName + "="} {
					if strings.Contains(s, leak) {
						t.Errorf("the advertiser received %q:\n%s", leak, s)
					}
				}
			}
			// What a script on the page reads does reach the advertiser: the
			// page's script-readable cookie, the page's full URL.
			rep, err := scriptRep.report()
			if err != nil {
				t.Fatalf("script report %q: %v", scriptRep.Body, err)
			}
			if !strings.Contains(rep.Cookie, sitePrefCookie) || rep.Location != page {
				t.Errorf("the script reported cookie %q and location %q; want %q in the cookie and location %q: its report would not show a readable b2sid",
					rep.Cookie, rep.Location, sitePrefCookie, page)
			}
			if ref := frame.Header.Get("Referer"); ref != e.origin(mainHost)+"/" {
				t.Errorf("the frame was requested with Referer %q, want the page's origin %q only", ref, e.origin(mainHost)+"/")
			}

			// The edge recorded the b2s page and its pageview, nothing of the
			// advertiser's.
			for _, r := range e.records.all() {
				if r != pr && r != br {
					t.Errorf("unexpected record %s", r)
				}
			}

			// The advertiser's own cookie: set by its frame, sent back by the
			// frame's report only where third-party cookies are allowed.
			setCookie := (&http.Response{Header: frame.RespHeader}).Cookies()
			if len(setCookie) != 1 || setCookie[0].Name != adCookieName {
				t.Fatalf("the frame's response set %v, want one %s (the browser sent no cookie: %q)", setCookie, adCookieName, frame.Header.Get("Cookie"))
			}
			adUID := setCookie[0].Value
			sent, ok := frameRep.cookie(adCookieName)
			frameCookie := eval[string](t, b.frame(t, e.url(adHost, adFramePath)), "document.cookie")
			frep, err := frameRep.report()
			if err != nil {
				t.Fatalf("frame report %q: %v", frameRep.Body, err)
			}
			var jar []string
			for _, ck := range b.cookies(t, e.url(adHost, "/")) {
				jar = append(jar, ck.Name+"="+ck.Value)
			}
			want := adCookieName + "=" + adUID
			if c.adCookieBack {
				if !ok || sent != adUID {
					t.Errorf("the frame's report sent %s %q (present %v), want %q", adCookieName, sent, ok, adUID)
				}
				if frameCookie != want || frep.Cookie != want {
					t.Errorf("document.cookie in the frame: %q by DevTools, %q reported; want %q", frameCookie, frep.Cookie, want)
				}
				if !slices.Contains(jar, want) {
					t.Errorf("the browser holds %q for the advertiser, want %q among them", jar, want)
				}
			} else {
				for _, r := range e.ads.requests() {
					if v, ok := r.cookie(adCookieName); ok {
						t.Errorf("%s %s sent %s=%s with third-party cookies blocked", r.Method, r.URI, adCookieName, v)
					}
				}
				if frameCookie != "" || frep.Cookie != "" {
					t.Errorf("document.cookie in the frame: %q by DevTools, %q reported; want it empty", frameCookie, frep.Cookie)
				}
				if len(jar) != 0 {
					t.Errorf("the browser holds %q for the advertiser, want nothing", jar)
				}
			}
		})
	}
}
