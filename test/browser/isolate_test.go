package browser

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The main site serves advertisers' content under its own name, from an ad
// server behind b2s_isolate (configs/production/Caddyfile's /ads/ route),
// and, as the tests' control, the same ad server on a route without it.
const (
	isolatedPrefix = "/ads"
	openPrefix     = "/open"
	partnersPath   = "/partners.html" // main: a page with content from /ads/
	adSlotPath     = "/slot"          // ad server: what the page fetches
	adSlotText     = "an ad"          // ad server: the slot's body
)

// What the ad server sends with every answer, besides its own cookie,
// trying to act as b2s.com: b2s's cookies, the site's member and child
// signals, and another header of the plugin's.
const (
	forgedVisitorCookie = "1.0123456789abcdef0123456789abcdef.6a000000.AAAAAAAAAAAAAAAAAAAAAA"
	adMemberID          = "m-adnet"
)

// adServerAttempts are the Set-Cookie and X-B2S-* headers of the ad server's
// every answer.
var adServerAttempts = struct {
	cookies []*http.Cookie
	headers map[string]string
}{
	cookies: []*http.Cookie{
		{Name: cookieName, Value: forgedVisitorCookie},
		{Name: memberCookieName, Value: adMemberID + ".AAAAAAAAAAAAAAAAAAAAAA"},
		{Name: optOutCookieName, Value: "1"},
	},
	headers: map[string]string{
		memberHeader:      adMemberID,
		childHeader:       "1",
		"X-B2S-Cookie-ID": "0123456789abcdef0123456789abcdef",
	},
}

// installAdServer gives the ad server its routes under both prefixes: a
// frame and a script that report what they can read (adReporter) to
// <prefix>/report and <prefix>/px.gif, and a slot the page fetches. Every
// answer sets adnet_uid when the request has none, and makes the attempts
// above.
func installAdServer(o *origin) {
	hostile := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if _, err := r.Cookie(adCookieName); err != nil {
				http.SetCookie(w, &http.Cookie{Name: adCookieName, Value: randomHex(16), Path: "/", MaxAge: 3600,
					Secure: true, SameSite: http.SameSiteNoneMode})
			}
			for _, c := range adServerAttempts.cookies {
				c := *c
				c.Path, c.MaxAge, c.Secure, c.SameSite = "/", 3600, true, http.SameSiteNoneMode
				http.SetCookie(w, &c)
			}
			for k, v := range adServerAttempts.headers {
				w.Header().Set(k, v)
			}
			h(w, r)
		}
	}
	for _, p := range []string{isolatedPrefix, openPrefix} {
		o.handle(p+adFramePath, hostile(func(w http.ResponseWriter, r *http.Request) {
			writePage(w, "adnet ad", fmt.Sprintf("<p>An ad.</p>\n<script>\n%sadReport(\"frame\", location.origin + %q);\n</script>", adReporter, p))
		}))
		o.handle(p+adScriptPath, hostile(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprintf(w, "(function () {\n%sadReport(\"script\", location.origin + %q);\n})();\n", adReporter, p)
		}))
		o.handle(p+adSlotPath, hostile(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, adSlotText)
		}))
		o.handle(p+adReportPath, hostile(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}))
		o.handle(p+adPixelPath, hostile(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/gif")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(gif1x1)
		}))
	}
}

// isolatedRoutes are the main site's routes to the ad server at addr: the
// one of configs/production/Caddyfile, and the control without b2s_isolate.
func isolatedRoutes(addr string) []string {
	return []string{
		fmt.Sprintf("handle %s/* {\n\tb2s_isolate {\n\t\tallow_cookies %s\n\t}\n\treverse_proxy %s\n}", isolatedPrefix, adCookieName, addr),
		fmt.Sprintf("handle %s/* {\n\treverse_proxy %s\n}", openPrefix, addr),
	}
}

// installPartnersPage gives the main site's origin a page that embeds the
// ad server's frame and script from /ads/ and fetches its slot into
// window.slot (a promise of the body or the error).
func (e *env) installPartnersPage() {
	e.main.handle(partnersPath, func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, sitePref())
		writePage(w, "b2s.com: partners", fmt.Sprintf(`<h1>Partners</h1>
<iframe id="ad" src="%[1]s%[2]s" width="300" height="250"></iframe>
<script src="%[1]s%[3]s"></script>
<script>
window.slot = fetch("%[1]s%[4]s").then(function (r) { return r.text(); }, function (err) { return "error: " + err; });
</script>`, isolatedPrefix, adFramePath, adScriptPath, adSlotPath))
	})
}

// fetchStatus is a script that fetches path from the page's origin and
// gives the status, or the error.
func fetchStatus(path string) string {
	return fmt.Sprintf(`fetch(%q).then(function (r) { return String(r.status); }, function (err) { return "error: " + err; })`, path)
}

// under matches the requests whose path starts with prefix + "/".
func under(prefix string) func(*seenRequest) bool {
	return func(r *seenRequest) bool { return strings.HasPrefix(r.path(), prefix+"/") }
}

// reportAt matches the POST report of the frame or script to prefix.
func reportAt(prefix, from string) func(*seenRequest) bool {
	return func(r *seenRequest) bool {
		if r.Method != http.MethodPost || r.path() != prefix+adReportPath {
			return false
		}
		rep, err := r.report()
		return err == nil && rep.From == from
	}
}

// pixelAt matches the image report of the frame or script to prefix.
func pixelAt(prefix, from string) func(*seenRequest) bool {
	return func(r *seenRequest) bool {
		return r.Method == http.MethodGet && strings.HasPrefix(r.URI, prefix+adPixelPath+"?from="+from+"&")
	}
}

// leaksIn returns those of needles found in what r's server learnt from
// it: request line, headers, body.
func leaksIn(r *seenRequest, needles ...string) []string {
	var found []string
	s := r.String()
	for _, n := range needles {
		if strings.Contains(s, n) {
			found = append(found, n)
		}
	}
	return found
}

func isPluginHeader(k string) bool { return strings.HasPrefix(strings.ToLower(k), "x-b2s-") }

// setCookieNames are the names of the cookies the Set-Cookie headers of h
// set.
func setCookieNames(h http.Header) []string {
	var names []string
	for _, c := range (&http.Response{Header: h}).Cookies() {
		names = append(names, c.Name)
	}
	return names
}

// TestIsolatedAdvertiserRoute: the main site serves an ad server's frame,
// script and slot under /ads/, behind b2s_isolate with adnet_uid allowed,
// as configs/production/Caddyfile does. The ad server sets adnet_uid, and
// with every answer tries to set b2sid, b2sid_m and b2sid_optout and sends
// X-B2S-Member, X-B2S-Child and X-B2S-Cookie-ID. Nothing the ad server
// receives (headers, Cookie and Referer included, URLs, bodies, what its
// frame and script report from document.cookie, location and referrer)
// holds the visitor's b2sid or its ID (the frame, served in b2s_isolate's
// sandbox, cannot read the site's cookies at all); its adnet_uid, a
// first-party cookie here, goes back and forth whatever the third-party
// cookie setting; the browser keeps its b2sid and gets none of the other
// attempts, nor any X-B2S-* header; and b2s_collect, outside the route,
// records every /ads/ request under the visitor's ID (but the sandboxed
// frame's own, cross-site, without it), with full consent and no member. The
// control: the same ad server on a route without b2s_isolate receives the
// b2sid, and its child signal marks the browser.
func TestIsolatedAdvertiserRoute(t *testing.T) {
	for _, mode := range []thirdPartyCookies{thirdPartyBlocked, thirdPartyAllowed} {
		t.Run("third-party cookies "+mode.String(), func(t *testing.T) {
			var ads *origin
			e := newEnv(t, envOptions{configure: func(e *env, c *edgeConfig) {
				ads = newOrigin(t, "ad server")
				installAdServer(ads)
				site := c.site(mainHost)
				site.Directives = append(site.Directives, isolatedRoutes(ads.addr())...)
			}})
			e.installPartnersPage()
			b := e.newBrowser(t, browserOptions{thirdPartyCookies: mode})
			home, page := e.url(mainHost, "/"), e.url(mainHost, partnersPath)

			b.navigate(t, home)
			bc := b.cookie(t, home, cookieName)
			id, _, err := verifyCookie(bc.Value, e.secret)
			if err != nil {
				t.Fatal(err)
			}

			if resp := b.navigate(t, page); resp.Status != 200 {
				t.Fatalf("GET %s: status %d, want 200", page, resp.Status)
			}
			if got := eval[string](t, b.ctx, "window.slot", chromedp.EvalAwaitPromise); got != adSlotText {
				t.Errorf("the page's fetch of %s%s got %q, want %q", isolatedPrefix, adSlotPath, got, adSlotText)
			}
			got := ads.waitRequests(t, "the frame, the script, the slot and the reports",
				requestTo("GET", isolatedPrefix+adFramePath), requestTo("GET", isolatedPrefix+adScriptPath),
				requestTo("GET", isolatedPrefix+adSlotPath),
				reportAt(isolatedPrefix, "frame"), reportAt(isolatedPrefix, "script"),
				pixelAt(isolatedPrefix, "frame"), pixelAt(isolatedPrefix, "script"))
			frame, frameRep, scriptRep := got[0], got[3], got[4]

			// The next /ads/ request, once the first answers are in.
			again := isolatedPrefix + adSlotPath + "?again"
			if st := eval[string](t, b.ctx, fetchStatus(again), chromedp.EvalAwaitPromise); st != "200" {
				t.Errorf("fetching %s: %s, want 200", again, st)
			}
			next := ads.waitRequests(t, "the slot again", func(r *seenRequest) bool { return r.URI == again })[0]

			// The ad server made its attempts with every answer (else the
			// checks below would show nothing).
			for _, r := range ads.requests() {
				names := setCookieNames(r.RespHeader)
				for _, c := range adServerAttempts.cookies {
					if !slices.Contains(names, c.Name) {
						t.Errorf("the ad server's answer to %s sets %q, not %s", r.URI, names, c.Name)
					}
				}
				for k := range adServerAttempts.headers {
					if r.RespHeader.Get(k) == "" {
						t.Errorf("the ad server's answer to %s has no %s", r.URI, k)
					}
				}
			}

			// Nothing the ad server received holds b2sid, its value or its
			// ID.
			for _, r := range ads.requests() {
				if l := leaksIn(r, bc.Value, id, cookieName+"="); len(l) != 0 {
					t.Errorf("the ad server behind b2s_isolate received %q:\n%s", l, r)
				}
			}
			// What it did receive: the frame's Referer, and what a script
			// reads where the frame and the script run (so a readable b2sid
			// would show). The frame runs in b2s_isolate's sandbox, an
			// opaque origin: it cannot read the site's cookies at all. The
			// script runs in the page's origin and reads those that are
			// not HttpOnly.
			frameURL := e.url(mainHost, isolatedPrefix+adFramePath)
			if ref := frame.Header.Get("Referer"); ref != page {
				t.Errorf("the frame was requested with Referer %q, want the page %s", ref, page)
			}
			for _, c := range []struct {
				r                  *seenRequest
				location, referrer string
				cookies            bool
			}{{frameRep, frameURL, page, false}, {scriptRep, page, "", true}} {
				rep, err := c.r.report()
				if err != nil {
					t.Fatalf("report %q: %v", c.r.Body, err)
				}
				readable := !strings.HasPrefix(rep.Cookie, "error")
				if readable != c.cookies || c.cookies && !strings.Contains(rep.Cookie, sitePrefCookie) || rep.Location != c.location || rep.Referrer != c.referrer {
					t.Errorf("the %s reported cookie %q, location %q, referrer %q; want the cookies readable %v (%q among them), %q, %q",
						rep.From, rep.Cookie, rep.Location, rep.Referrer, c.cookies, sitePrefCookie, c.location, c.referrer)
				}
			}

			// adnet_uid: set by an answer, held for www.b2s.test, sent with
			// the next request.
			var set []string
			for _, r := range ads.requests() {
				for _, c := range (&http.Response{Header: r.RespHeader}).Cookies() {
					if c.Name == adCookieName {
						set = append(set, c.Value)
					}
				}
			}
			uid := b.cookie(t, page, adCookieName)
			if !slices.Contains(set, uid.Value) || uid.Domain != mainHost {
				t.Errorf("the browser holds %s=%s for domain %q; want one of the values the ad server set, %q, for %s",
					adCookieName, uid.Value, uid.Domain, set, mainHost)
			}
			if v, ok := next.cookie(adCookieName); !ok || v != uid.Value {
				t.Errorf("%s was requested with %s=%q (sent: %v), want %q", again, adCookieName, v, ok, uid.Value)
			}

			// The browser kept its b2sid and got none of the ad server's
			// other cookies or X-B2S-* headers.
			var ids []string
			for _, c := range b.cookies(t, home) {
				if c.Name == cookieName {
					ids = append(ids, c.Value)
				}
			}
			if !slices.Equal(ids, []string{bc.Value}) {
				t.Errorf("the browser holds b2sid %q after the ad server's answers, want only the one it had, %q", ids, bc.Value)
			} else if _, _, err := verifyCookie(ids[0], e.secret); err != nil {
				t.Error(err)
			}
			noCookie(t, b, home, memberCookieName)
			noCookie(t, b, home, optOutCookieName)
			noCookie(t, b, home, childCookieName)
			received, _ := b.received.snapshot()
			for _, r := range received {
				for k, v := range r.Headers {
					if isPluginHeader(k) {
						t.Errorf("the browser received %s: %v with %s", k, v, r.URL)
					}
				}
			}

			// b2s_collect, outside b2s_isolate, records every /ads/ request
			// under the visitor's ID, and the ad server's signals changed
			// nothing: not that record, not the next page's. The sandboxed
			// frame's own requests come from an opaque origin: cross-site,
			// without the site's SameSite cookie, so with no ID.
			adReqs := slices.DeleteFunc(ads.requests(), func(r *seenRequest) bool { return !under(isolatedPrefix)(r) })
			fromFrame := 0
			for _, r := range adReqs {
				if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
					fromFrame++
				}
			}
			if fromFrame == 0 {
				t.Errorf("no request of the frame's came cross-site: is it sandboxed?\n%s", showRequests(adReqs))
			}
			adsURL := e.url(mainHost, isolatedPrefix+"/")
			crossSite := 0
			for _, r := range e.records.waitRecords(t, "the /ads/ requests", len(adReqs), func(r *record) bool { return strings.HasPrefix(r.URL, adsURL) }) {
				want := id
				if r.CrossSite {
					crossSite++
					want = ""
				}
				if r.Kind != "page" || r.Consent != "full" || r.CookieID != want || want != "" && r.CookieState != "returning" || r.MemberID != "" {
					t.Errorf("%s recorded as %s with consent %q, cookie_id %q (%s), member_id %q, cross_site %v; want a page, full, %q, no member\n%s",
						r.URL, r.Kind, r.Consent, r.CookieID, r.CookieState, r.MemberID, r.CrossSite, want, r.raw)
				}
			}
			if crossSite != fromFrame {
				t.Errorf("%d /ads/ records are cross-site, want the frame's %d requests", crossSite, fromFrame)
			}
			b.navigate(t, home)
			if r := e.records.waitRecords(t, "two visits of the home page", 2, pageRecord(home))[1]; r.Consent != "full" || r.CookieID != id || r.MemberID != "" {
				t.Errorf("the home page after the ads recorded with consent %q, cookie_id %q, member_id %q; want full, %s, no member\n%s",
					r.Consent, r.CookieID, r.MemberID, id, r.raw)
			}

			// The control: the same ad server without b2s_isolate gets the
			// visitor's b2sid, and its child signal takes effect.
			open := openPrefix + adSlotPath
			if st := eval[string](t, b.ctx, fetchStatus(open), chromedp.EvalAwaitPromise); st != "200" {
				t.Errorf("fetching %s: %s, want 200", open, st)
			}
			ctl := ads.waitRequests(t, "the slot without b2s_isolate", requestTo("GET", open))[0]
			if l := leaksIn(ctl, bc.Value, id, cookieName+"="); len(l) != 3 {
				t.Errorf("control: the ad server without b2s_isolate received %q; want the b2sid cookie, its value and its ID:\n%s", l, ctl)
			}
			if r := e.records.waitRecord(t, "the slot without b2s_isolate", pageRecord(e.url(mainHost, open))); r.Consent != "child" {
				t.Errorf("control: the slot without b2s_isolate recorded with consent %q, want child: the ad server's %s taken as the site's\n%s",
					r.Consent, childHeader, r.raw)
			}
		})
	}
}
