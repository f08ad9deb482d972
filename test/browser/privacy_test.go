package browser

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
)

// The privacy options' defaults and the plugin's other cookies, as the
// tests expect them.
const (
	optOutPath       = "/_b2s/optout"
	optInPath        = "/_b2s/optin"
	optOutCookieName = cookieName + "_optout"
	childCookieName  = cookieName + "_dnc"
	memberCookieName = cookieName + "_m"
	childHeader      = "X-B2S-Child"
	memberHeader     = "X-B2S-Member"
)

// Pages of the main site's origin for the privacy tests.
const (
	taggedPath  = "/tagged.html"   // a page with the tag
	signInPath  = "/signin"        // signs memberID in
	signOutPath = "/signout"       // signs the member out
	childPath   = "/child-account" // says the visitor is a child
	kidsPath    = "/kids/games"    // a child-directed page
)

// memberID is the member the sign-in page signs in.
const memberID = "m-1234"

// installPrivacyPages gives the main site's origin the pages above. The
// origin sends the child and member signals as response headers.
func (e *env) installPrivacyPages() {
	page := func(title string, h map[string]string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for k, v := range h {
				w.Header().Set(k, v)
			}
			writePage(w, title, "<h1>"+title+"</h1>")
		}
	}
	e.main.handle(taggedPath, func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "tagged", "<h1>tagged</h1>\n"+tagScript)
	})
	e.main.handle(signInPath, page("signed in", map[string]string{memberHeader: memberID}))
	e.main.handle(signOutPath, page("signed out", map[string]string{memberHeader: "-"}))
	e.main.handle(childPath, page("your account", map[string]string{childHeader: "1"}))
	e.main.handle(kidsPath, page("games", nil))
}

// pageviewOf matches the tag's pageview of the page at url.
func pageviewOf(url string) func(*record) bool {
	return func(r *record) bool { return r.Kind == "beacon" && r.Event == "pageview" && r.URL == url }
}

// wantConsent fails the test unless r has consent c (the record reader
// has checked what that consent allows it to carry).
func wantConsent(t *testing.T, what string, r *record, c string) {
	t.Helper()
	if r.Consent != c {
		t.Errorf("%s recorded with consent %q, want %s\n%s", what, r.Consent, c, r.raw)
	}
}

// noCookie fails the test if the browser holds the named cookie for url.
func noCookie(t *testing.T, b *browser, url, name string) {
	t.Helper()
	if v, ok := b.cookieValue(t, url, name); ok {
		t.Errorf("the browser holds %s=%s for %s, want none", name, v, url)
	}
}

// flagCookie checks the browser holds the named cookie for url with value
// 1, HttpOnly and Secure.
func flagCookie(t *testing.T, b *browser, url, name string) {
	t.Helper()
	c := b.cookie(t, url, name)
	if c.Value != "1" || !c.HTTPOnly || !c.Secure || c.Session {
		t.Errorf("%s=%q: HttpOnly %v, Secure %v, session %v; want 1, HttpOnly, Secure, persistent", name, c.Value, c.HTTPOnly, c.Secure, c.Session)
	}
}

// originSawNoID fails the test if the origin's request (the last one to
// path) carried a cookie ID, in the edge's header or in a b2sid cookie.
func originSawNoID(t *testing.T, o *origin, path string) {
	t.Helper()
	var last *seenRequest
	for _, r := range o.requests() {
		if r.path() == path {
			last = r
		}
	}
	if last == nil {
		t.Fatalf("the %s origin received no request of %s", o.name, path)
	}
	if id := last.Header.Get("X-B2S-Cookie-ID"); id != "" {
		t.Errorf("the %s origin got X-B2S-Cookie-ID %q with %s, want none", o.name, id, path)
	}
	if v, ok := last.cookie(cookieName); ok {
		t.Errorf("the %s origin got %s=%s with %s, want none", o.name, cookieName, v, path)
	}
}

// signalStripped checks that the origin sent the header name with path's
// response (the last one) and that the browser's response had no such
// header.
func signalStripped(t *testing.T, e *env, b *browser, path, name string) {
	t.Helper()
	var sent []string
	for _, r := range e.main.requests() {
		if r.path() == path {
			sent = r.RespHeader.Values(name)
		}
	}
	if len(sent) == 0 {
		t.Fatalf("the origin's response of %s has no %s header: nothing to strip", path, name)
	}
	if got := header(b.response(t, e.url(mainHost, path)), name); len(got) != 0 {
		t.Errorf("the browser received %s: %q with %s; the edge must remove it", name, got, path)
	}
}

// TestOptOutAndBack: the opt-out link deletes the visitor's cookie and
// sets the opt-out cookie; from then on the main site's records (pages
// and the tag's pageviews) carry consent optout, no ID and a truncated IP,
// and the browser gets no cookie. The opt-out returns to a path or a
// network site only. Opting in clears the opt-out, and the next visit
// gets a new ID.
func TestOptOutAndBack(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(e *env, c *edgeConfig) { networkSites(c) }})
	e.installPrivacyPages()
	b := e.newBrowser(t, browserOptions{})
	home, tagged := e.url(mainHost, "/"), e.url(mainHost, taggedPath)

	b.navigate(t, home)
	id, _, err := verifyCookie(b.cookie(t, home, cookieName).Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}

	optOut := e.url(mainHost, optOutPath+"?return=/")
	if resp := b.navigate(t, optOut); resp.URL != home || resp.Status != 200 {
		t.Fatalf("the opt-out ended on %d %s, want 200 %s", resp.Status, resp.URL, home)
	}
	if r := b.response(t, optOut); r.Status != http.StatusSeeOther || !slices.Equal(header(r, "Location"), []string{"/"}) {
		t.Errorf("the opt-out answered %d, Location %q; want 303 to /", r.Status, header(r, "Location"))
	}
	noCookie(t, b, home, cookieName)
	flagCookie(t, b, home, optOutCookieName)
	originSawNoID(t, e.main, "/")

	b.navigate(t, tagged)
	noCookie(t, b, home, cookieName)

	homes := e.records.waitRecords(t, "two visits of the home page", 2, pageRecord(home))
	if homes[0].Consent != "full" || homes[0].CookieID != id {
		t.Errorf("the visit before the opt-out recorded with consent %q, cookie_id %q; want full, %s\n%s", homes[0].Consent, homes[0].CookieID, id, homes[0].raw)
	}
	wantConsent(t, "the visit after the opt-out", homes[1], "optout")
	if r := e.records.waitRecord(t, "the opt-out", pageRecord(optOut)); r.Status != http.StatusSeeOther {
		t.Errorf("the opt-out recorded with status %d, want 303\n%s", r.Status, r.raw)
	}
	wantConsent(t, "the tagged page", e.records.waitRecord(t, "the tagged page", pageRecord(tagged)), "optout")
	// The tag cannot read the HttpOnly opt-out cookie: it sends its
	// pageview, and the edge records it without an ID.
	wantConsent(t, "the tagged page's pageview", e.records.waitRecord(t, "the tagged page's pageview", pageviewOf(tagged)), "optout")

	// A return address off the network is not followed.
	elsewhere := e.url(mainHost, optOutPath+"?return="+url.QueryEscape(e.url(adHost, "/")))
	if resp := b.navigate(t, elsewhere); resp.URL != elsewhere || resp.Status != 200 {
		t.Errorf("the opt-out returning to the advertiser ended on %d %s, want 200 on the opt-out page", resp.Status, resp.URL)
	}
	if body := eval[string](t, b.ctx, "document.body.innerText"); !strings.Contains(body, "You have opted out") {
		t.Errorf("the opt-out page reads %q", body)
	}
	if got := e.ads.requests(); len(got) != 0 {
		t.Errorf("the advertiser received requests:\n%s", showRequests(got))
	}

	// Opting in, returning to the sister site: following the opt-in link
	// changes nothing (an ad server's redirect would do the same); the
	// visitor's click on its form does it.
	sisterHome := e.url(sisterHost, "/")
	optIn := e.url(mainHost, optInPath+"?return="+url.QueryEscape(sisterHome))
	if resp := b.navigate(t, optIn); resp.URL != optIn || resp.Status != 200 {
		t.Errorf("following the opt-in link ended on %d %s, want 200 on the opt-in form", resp.Status, resp.URL)
	}
	flagCookie(t, b, home, optOutCookieName)
	if resp := click(t, b, "form button"); resp.URL != sisterHome {
		t.Errorf("the opt-in ended on %s, want %s", resp.URL, sisterHome)
	}
	noCookie(t, b, home, optOutCookieName)
	b.navigate(t, home)
	id2, _, err := verifyCookie(b.cookie(t, home, cookieName).Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	if id2 == id {
		t.Errorf("the cookie after the opt-in has the ID of the one before, %s", id)
	}
	r := e.records.waitRecords(t, "three visits of the home page", 3, pageRecord(home))[2]
	if r.Consent != "full" || r.CookieID != id2 {
		t.Errorf("the visit after the opt-in recorded with consent %q, cookie_id %q; want full, the new cookie's %s\n%s", r.Consent, r.CookieID, id2, r.raw)
	}
	// The request that got the new cookie: this visit, or the browser's
	// request of /favicon.ico for the edge's opt-out page (which names no
	// icon), which may come as late as after the opt-in.
	e.records.waitRecord(t, "the new cookie's issue", func(r *record) bool { return r.CookieID == id2 && r.CookieState == "new" })
}

// beaconSpy counts the page's calls of navigator.sendBeacon in
// window.beaconCalls.
const beaconSpy = `window.beaconCalls = [];
(function () {
	var send = Navigator.prototype.sendBeacon;
	Navigator.prototype.sendBeacon = function (u) { window.beaconCalls.push(String(u)); return send.apply(this, arguments); };
})();`

// TestGlobalPrivacyControl: a browser that sends Sec-GPC: 1 gets no cookie
// and its records carry consent gpc. Chromium has no GPC setting, so the
// test adds the header to every request, as a browser with GPC on does;
// where the page's scripts see navigator.globalPrivacyControl too, the tag
// sends nothing at all. Without the header, the same browser gets its
// cookie.
func TestGlobalPrivacyControl(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.installPrivacyPages()
	b := e.newBrowser(t, browserOptions{})
	home, tagged := e.url(mainHost, "/"), e.url(mainHost, taggedPath)
	b.onNewDocument(t, beaconSpy)
	b.setHeaders(t, map[string]string{"Sec-GPC": "1"})

	b.navigate(t, tagged)
	if gpc := eval[string](t, b.ctx, "String(navigator.globalPrivacyControl)"); gpc == "true" {
		t.Fatalf("navigator.globalPrivacyControl is already true: the first load would not show the edge enforcing the header")
	}
	noCookie(t, b, home, cookieName)
	if calls := eval[[]string](t, b.ctx, "window.beaconCalls"); len(calls) != 1 {
		t.Errorf("the tag called sendBeacon %d times, want once: %q", len(calls), calls)
	}
	wantConsent(t, "the page", e.records.waitRecord(t, "the page", pageRecord(tagged)), "gpc")
	wantConsent(t, "the pageview", e.records.waitRecord(t, "the pageview", pageviewOf(tagged)), "gpc")
	originSawNoID(t, e.main, taggedPath)

	// The script API says GPC too: the tag stays silent.
	b.onNewDocument(t, `Object.defineProperty(Navigator.prototype, "globalPrivacyControl", {get: function () { return true; }, configurable: true});`)
	b.navigate(t, tagged)
	if calls := eval[[]string](t, b.ctx, "window.beaconCalls"); len(calls) != 0 {
		t.Errorf("the tag called sendBeacon under navigator.globalPrivacyControl: %q", calls)
	}
	wantConsent(t, "the second load", e.records.waitRecords(t, "two loads", 2, pageRecord(tagged))[1], "gpc")
	noCookie(t, b, home, cookieName)

	// Without the header, full consent and a cookie.
	b.setHeaders(t, map[string]string{})
	b.navigate(t, home)
	id, _, err := verifyCookie(b.cookie(t, home, cookieName).Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.records.waitRecord(t, "the home page", pageRecord(home)); r.Consent != "full" || r.CookieID != id {
		t.Errorf("the home page without Sec-GPC recorded with consent %q, cookie_id %q; want full, %s\n%s", r.Consent, r.CookieID, id, r.raw)
	}
}

// TestChildSignals: on a child-directed path (collect off /kids/*) the
// edge neither reads nor sets the cookie and records consent child. A page
// whose origin answers X-B2S-Child: 1 marks the browser as a child's: the
// header never reaches the browser, the visitor's and member's cookies are
// deleted, the do-not-collect cookie is set, and every later record of the
// site carries consent child, with no cookie set.
func TestChildSignals(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(e *env, c *edgeConfig) {
		c.site(mainHost).CollectOptions = []string{"collect off /kids/*"}
	}})
	e.installPrivacyPages()
	b := e.newBrowser(t, browserOptions{})
	home, kids, tagged := e.url(mainHost, "/"), e.url(mainHost, kidsPath), e.url(mainHost, taggedPath)

	// A first visit on a child-directed page gets no cookie.
	b.navigate(t, kids)
	noCookie(t, b, home, cookieName)
	// A visitor with a cookie keeps it, but the page is not recorded
	// under it, nor does the origin learn it.
	b.navigate(t, home)
	bc := b.cookie(t, home, cookieName)
	id, _, err := verifyCookie(bc.Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	b.navigate(t, kids)
	if again := b.cookie(t, home, cookieName); again.Value != bc.Value {
		t.Errorf("the cookie changed on a child-directed page: %q, was %q", again.Value, bc.Value)
	}
	for _, r := range e.main.requests() {
		if r.path() == kidsPath && r.Header.Get("X-B2S-Cookie-ID") != "" {
			t.Errorf("the origin got X-B2S-Cookie-ID %q on a child-directed page", r.Header.Get("X-B2S-Cookie-ID"))
		}
	}
	for i, r := range e.records.waitRecords(t, "two child-directed pages", 2, pageRecord(kids)) {
		wantConsent(t, fmt.Sprintf("child-directed page %d", i+1), r, "child")
	}
	if r := e.records.waitRecord(t, "the home page", pageRecord(home)); r.Consent != "full" || r.CookieID != id {
		t.Errorf("the home page recorded with consent %q, cookie_id %q; want full, %s\n%s", r.Consent, r.CookieID, id, r.raw)
	}

	// The site says the visitor is a child (a signed-in member: the
	// member cookie goes too).
	b.navigate(t, e.url(mainHost, signInPath))
	b.cookie(t, home, memberCookieName)
	child := e.url(mainHost, childPath)
	b.navigate(t, child)
	signalStripped(t, e, b, childPath, childHeader)
	noCookie(t, b, home, cookieName)
	noCookie(t, b, home, memberCookieName)
	flagCookie(t, b, home, childCookieName)
	wantConsent(t, "the page that said child", e.records.waitRecord(t, "the page that said child", pageRecord(child)), "child")

	// From then on, everything is a child's.
	b.navigate(t, tagged)
	noCookie(t, b, home, cookieName)
	originSawNoID(t, e.main, taggedPath)
	wantConsent(t, "a later page", e.records.waitRecord(t, "a later page", pageRecord(tagged)), "child")
	wantConsent(t, "its pageview", e.records.waitRecord(t, "its pageview", pageviewOf(tagged)), "child")
}

// TestMemberSignInAndOut: a page whose origin answers X-B2S-Member: <id>
// signs the member in: the header never reaches the browser, the member
// cookie binds the member to the visitor's cookie ID, and the records
// carry member_id from that response until X-B2S-Member: - signs out. A
// member cookie naming another member is ignored.
func TestMemberSignInAndOut(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.installPrivacyPages()
	b := e.newBrowser(t, browserOptions{})
	home, tagged := e.url(mainHost, "/"), e.url(mainHost, taggedPath)
	signIn, signOut := e.url(mainHost, signInPath), e.url(mainHost, signOutPath)

	b.navigate(t, home)
	bc := b.cookie(t, home, cookieName)
	id, _, err := verifyCookie(bc.Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}

	b.navigate(t, signIn)
	signalStripped(t, e, b, signInPath, memberHeader)
	mc := b.cookie(t, home, memberCookieName)
	if m, err := verifyMemberCookie(mc.Value, id, e.secret); err != nil || m != memberID {
		t.Errorf("member cookie %q names %q (%v), want %s bound to %s", mc.Value, m, err, memberID, id)
	}
	if !mc.HTTPOnly || !mc.Secure || mc.Session {
		t.Errorf("member cookie: HttpOnly %v, Secure %v, session %v; want HttpOnly, Secure, persistent", mc.HTTPOnly, mc.Secure, mc.Session)
	}
	b.navigate(t, tagged)

	// A member cookie naming another member, with the signature of the
	// real one, is ignored; the real one counts again.
	forged := "m-9999" + mc.Value[strings.LastIndexByte(mc.Value, '.'):]
	setCookie := func(value string) {
		t.Helper()
		call(t, b, network.SetCookie, network.SetCookieParams{Name: memberCookieName, Value: value, URL: home, Path: "/",
			Secure: ptr(true), HTTPOnly: ptr(true), SameSite: network.CookieSameSiteLax})
		if got := b.cookie(t, home, memberCookieName).Value; got != value {
			t.Fatalf("member cookie %q after setting %q", got, value)
		}
	}
	setCookie(forged)
	b.navigate(t, home)
	setCookie(mc.Value)
	b.navigate(t, home)

	b.navigate(t, signOut)
	signalStripped(t, e, b, signOutPath, memberHeader)
	noCookie(t, b, home, memberCookieName)
	if again := b.cookie(t, home, cookieName); again.Value != bc.Value {
		t.Errorf("the visitor's cookie changed at sign-out: %q, was %q", again.Value, bc.Value)
	}
	b.navigate(t, home)

	for _, c := range []struct {
		what   string
		match  func(*record) bool
		nth    int
		member string
	}{
		{"the first visit", pageRecord(home), 0, ""},
		{"the sign-in", pageRecord(signIn), 0, memberID},
		{"the next page", pageRecord(tagged), 0, memberID},
		{"its pageview", pageviewOf(tagged), 0, memberID},
		{"the visit with another member's cookie", pageRecord(home), 1, ""},
		{"the visit with the member's cookie back", pageRecord(home), 2, memberID},
		{"the sign-out", pageRecord(signOut), 0, ""},
		{"the visit after it", pageRecord(home), 3, ""},
	} {
		r := e.records.waitRecords(t, c.what, c.nth+1, c.match)[c.nth]
		if r.Consent != "full" || r.CookieID != id || r.MemberID != c.member {
			t.Errorf("%s recorded with consent %q, cookie_id %q, member_id %q; want full, %s, %q\n%s", c.what, r.Consent, r.CookieID, r.MemberID, id, c.member, r.raw)
		}
	}
}

func ptr[T any](v T) *T { return &v }
