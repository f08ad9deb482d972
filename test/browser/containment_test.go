package browser

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// An advertiser behind b2s_isolate trying to undo the visitor's privacy
// choices and to take over their identity, and the same advertiser where
// the defence is off, as each test's control: on a route without
// b2s_isolate (/open/), or behind b2s_isolate with sandbox off
// (/unsandboxed/).
const (
	unsandboxedPrefix = "/unsandboxed"

	containClickPath  = "/click"       // ad server: 307 to the site's opt-in
	containClearPath  = "/clear"       // ad server: a page with Clear-Site-Data: "cookies"
	containFramePath  = "/optin-frame" // ad server: a document that POSTs to the opt-in
	containShadowPath = "/shadow.js"   // ad server: a script that adds a b2sid on /checkout
	containReportPath = "/report"

	promoPath    = "/promo.html"     // main: a form posting to the ad server's click (?p=<prefix>)
	framePage    = "/sponsored.html" // main: a page framing the ad server's document (?p=<prefix>)
	articlePath  = "/article.html"   // main: a page including the ad server's script (?p=<prefix>)
	checkoutPath = "/checkout/signin"
	cartPath     = "/checkout/cart"
)

// containedRoutes are the main site's three routes to the ad server at
// addr.
func containedRoutes(addr string) []string {
	return []string{
		fmt.Sprintf("handle %s/* {\n\tb2s_isolate {\n\t\tallow_cookies %s\n\t}\n\treverse_proxy %s\n}", isolatedPrefix, adCookieName, addr),
		fmt.Sprintf("handle %s/* {\n\treverse_proxy %s\n}", openPrefix, addr),
		fmt.Sprintf("handle %s/* {\n\tb2s_isolate {\n\t\tallow_cookies %s\n\t\tsandbox off\n\t}\n\treverse_proxy %s\n}", unsandboxedPrefix, adCookieName, addr),
	}
}

// frameReport is what the ad server's document reports: its POST to the
// opt-in (the status it could read, or the error) and its attempt to
// write a b2sid.
type frameReport struct {
	OptIn       string `json:"optin"`
	CookieWrite string `json:"cookie_write"`
}

// containEnv starts the edge with the three routes to a hostile ad
// server and the main site's pages that use them. shadow is the b2sid
// value the ad server's script plants, when set.
type containEnv struct {
	*env
	ads    *origin
	shadow string
	// shadowCookies are the cookies the ad server's script writes, each
	// a document.cookie assignment with shadow as the value; by default
	// a b2sid on /checkout.
	shadowCookies []string
}

// newContainEnv starts the edge; collectOptions go in the main site's
// b2s_collect block.
func newContainEnv(t *testing.T, collectOptions ...string) *containEnv {
	ce := &containEnv{shadowCookies: []string{plainCookieName + "=%s; path=/checkout; secure; samesite=lax"}}
	ce.env = newEnv(t, envOptions{configure: func(e *env, c *edgeConfig) {
		ce.ads = newOrigin(t, "ad server")
		site := c.site(mainHost)
		site.CollectOptions = collectOptions
		site.Directives = append(site.Directives, containedRoutes(ce.ads.addr())...)
	}})
	ce.installPrivacyPages()
	for _, p := range []string{isolatedPrefix, openPrefix, unsandboxedPrefix} {
		ce.ads.handle(p+containClickPath, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", optInPath+"?return=/")
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusTemporaryRedirect) // keeps the POST, and the click's user activation
			fmt.Fprintf(w, "<a href=%q>Temporary Redirect</a>.\n", optInPath+"?return=/")
		})
		ce.ads.handle(p+containClearPath, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Clear-Site-Data", `"cookies"`)
			writePage(w, "an ad", "<p>An ad.</p>")
		})
		ce.ads.handle(p+containFramePath, func(w http.ResponseWriter, r *http.Request) {
			writePage(w, "an ad", fmt.Sprintf(`<p>An ad.</p>
<script>
var rep = {};
try { document.cookie = "b2sid=planted; path=/checkout; secure"; rep.cookie_write = "ok"; } catch (e) { rep.cookie_write = "error: " + e.name; }
fetch(%q, {method: "POST", credentials: "include"})
	.then(function (r) { return String(r.status); }, function (e) { return "error: " + e; })
	.then(function (s) {
		rep.optin = s;
		fetch(%q, {method: "POST", mode: "no-cors", body: JSON.stringify(rep)});
	});
</script>`, optInPath, p+containReportPath))
		})
		ce.ads.handle(p+containShadowPath, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			for _, c := range ce.shadowCookies {
				fmt.Fprintf(w, "document.cookie = %q;\n", fmt.Sprintf(c, ce.shadow))
			}
		})
		ce.ads.handle(p+containReportPath, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		})
	}
	ce.main.handle(promoPath, func(w http.ResponseWriter, r *http.Request) {
		// tok, when given, goes in the form as the opt-in's token field:
		// the control of the opt-in's token check.
		hidden := ""
		if tok := r.URL.Query().Get("tok"); tok != "" {
			hidden = fmt.Sprintf(`<input type="hidden" name="b2s_token" value="%s">`, html.EscapeString(tok))
		}
		writePage(w, "offers", fmt.Sprintf(`<form method="post" action="%s">%s<button id="go">See the offer</button></form>`,
			r.URL.Query().Get("p")+containClickPath, hidden))
	})
	ce.main.handle(framePage, func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "sponsored", fmt.Sprintf(`<iframe src="%s" width="300" height="250"></iframe>`, r.URL.Query().Get("p")+containFramePath))
	})
	ce.main.handle(articlePath, func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "an article", fmt.Sprintf(`<p>News.</p><script src="%s"></script>`, r.URL.Query().Get("p")+containShadowPath))
	})
	ce.main.handle(checkoutPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(memberHeader, memberID)
		writePage(w, "signed in", "<h1>signed in</h1>")
	})
	ce.main.handle(cartPath, func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "cart", "<h1>cart</h1>")
	})
	return ce
}

// optOut makes b's visitor opt out on the main site.
func (ce *containEnv) optOut(t *testing.T, b *browser) {
	t.Helper()
	b.navigate(t, ce.url(mainHost, "/"))
	b.navigate(t, ce.url(mainHost, optOutPath+"?return=/"))
	flagCookie(t, b, ce.url(mainHost, "/"), optOutCookieName)
	noCookie(t, b, ce.url(mainHost, "/"), cookieName)
}

// withAndWithout runs attack twice, each time with an edge and a browser
// of its own whose visitor opted out: on the defended route, and on the
// control's, where the defence is off.
func withAndWithout(t *testing.T, defended, control string, attack func(t *testing.T, ce *containEnv, b *browser, prefix string, defence bool)) {
	for _, tc := range []struct {
		prefix  string
		defence bool
	}{{defended, true}, {control, false}} {
		t.Run(tc.prefix, func(t *testing.T) {
			ce := newContainEnv(t)
			b := ce.newBrowser(t, browserOptions{})
			ce.optOut(t, b)
			attack(t, ce, b, tc.prefix, tc.defence)
		})
	}
}

// TestAdRedirectIntoTheOptIn: a visitor who opted out clicks an ad on the
// site's page (a form posting to the ad server's click URL); the ad
// server answers 307 to the site's opt-in, which the browser follows
// with the POST, the site's own origin and the click's user activation:
// the opt-in's Fetch Metadata and Origin checks cannot tell it from the
// visitor's own click. Behind b2s_isolate the redirect is refused (502,
// no Location) and the opt-in never requested. On a route of the site
// without b2s_isolate (/open/) the browser follows it, and the opt-in
// refuses it (403): the POST lacks the token of the opt-in's own form.
// Either way the opt-out stays, and the next page is recorded opted out.
// The control: the same redirected POST, its form carrying the token the
// opt-in's form gave this browser, opts in: the token alone stood
// between the attack and the opt-in.
func TestAdRedirectIntoTheOptIn(t *testing.T) {
	for _, tc := range []struct {
		name, prefix string
		token        bool // the promo form carries the visitor's opt-in token
		want         string
	}{
		{"b2s_isolate refuses the redirect", isolatedPrefix, false, "502"},
		{"the opt-in refuses the redirected POST without its form's token", openPrefix, false, "403"},
		{"control: with the form's token the redirected POST opts in", openPrefix, true, "optin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce := newContainEnv(t)
			b := ce.newBrowser(t, browserOptions{})
			ce.optOut(t, b)
			home := ce.url(mainHost, "/")
			promo := ce.url(mainHost, promoPath+"?p="+tc.prefix)
			if tc.token {
				// The visitor's browser opens the opt-in's form (it sets
				// the nonce cookie); its token goes into the promo form.
				b.navigate(t, ce.url(mainHost, optInPath))
				tok := eval[string](t, b.ctx, `document.querySelector("input[name=b2s_token]").value`)
				promo += "&tok=" + url.QueryEscape(tok)
			}
			b.navigate(t, promo)
			resp := click(t, b, "#go")
			ce.ads.waitRequests(t, "the click", requestTo(http.MethodPost, tc.prefix+containClickPath))
			optInURL := ce.url(mainHost, optInPath+"?return=/")
			switch tc.want {
			case "optin":
				if resp.URL != home {
					t.Errorf("control: the click ended on %d %s, want the opt-in's return to %s", resp.Status, resp.URL, home)
				}
				noCookie(t, b, home, optOutCookieName)
				return
			case "403":
				if resp.URL != optInURL || resp.Status != http.StatusForbidden {
					t.Errorf("the click ended on %d %s, want 403 at %s", resp.Status, resp.URL, optInURL)
				}
				if r := ce.records.waitRecord(t, "the redirected opt-in", pageRecord(optInURL)); r.Status != http.StatusForbidden || r.Method != http.MethodPost {
					t.Errorf("the redirected opt-in recorded as %s %d, want POST 403\n%s", r.Method, r.Status, r.raw)
				}
			case "502":
				clickURL := ce.url(mainHost, tc.prefix+containClickPath)
				if resp.URL != clickURL || resp.Status != http.StatusBadGateway || len(header(resp, "Location")) != 0 {
					t.Errorf("the click ended on %d %s, Location %q; want 502 at %s, no Location", resp.Status, resp.URL, header(resp, "Location"), clickURL)
				}
				for _, s := range b.sentURLs() {
					if strings.Contains(s, optInPath) {
						t.Errorf("the browser requested %s", s)
					}
				}
			}
			flagCookie(t, b, home, optOutCookieName)
			b.navigate(t, home)
			noCookie(t, b, home, cookieName)
			wantConsent(t, "the home page after the click", ce.records.waitRecords(t, "three visits of the home page", 3, pageRecord(home))[2], "optout")
		})
	}
}

// TestAdClearSiteData: a page of the ad server under /ads/ answers
// Clear-Site-Data: "cookies", which Chromium applies to the whole origin,
// HttpOnly cookies included. Behind b2s_isolate the header never reaches
// the browser: the opt-out and the do-not-collect cookies stay. The
// control, without b2s_isolate: both are gone.
func TestAdClearSiteData(t *testing.T) {
	withAndWithout(t, isolatedPrefix, openPrefix, func(t *testing.T, ce *containEnv, b *browser, prefix string, defence bool) {
		home := ce.url(mainHost, "/")
		b.navigate(t, ce.url(mainHost, childPath))
		flagCookie(t, b, home, childCookieName)

		clear := ce.url(mainHost, prefix+containClearPath)
		resp := b.navigate(t, clear)
		sent := ce.ads.waitRequests(t, "the ad page", requestTo(http.MethodGet, prefix+containClearPath))[0]
		if sent.RespHeader.Get("Clear-Site-Data") == "" {
			t.Fatal("the ad server sent no Clear-Site-Data: nothing to test")
		}
		if !defence {
			noCookie(t, b, home, optOutCookieName)
			noCookie(t, b, home, childCookieName)
			return
		}
		if v := header(resp, "Clear-Site-Data"); len(v) != 0 {
			t.Errorf("the browser received Clear-Site-Data %q", v)
		}
		flagCookie(t, b, home, optOutCookieName)
		flagCookie(t, b, home, childCookieName)
		b.navigate(t, home)
		noCookie(t, b, home, cookieName)
		r := ce.records.waitRecords(t, "three visits of the home page", 3, pageRecord(home))[2]
		if r.Consent != "child" && r.Consent != "optout" {
			t.Errorf("the home page after the ad recorded with consent %q, want child or optout\n%s", r.Consent, r.raw)
		}
	})
}

// TestSandboxedAdCannotReachTheOptIn: an ad document framed by a page of
// the site POSTs to the opt-in with credentials and tries to write a
// b2sid. Behind b2s_isolate it runs in the sandbox's opaque origin: the
// write throws, the POST is a cross-site request whose answer it cannot
// read, and the opt-out stays. The control, behind b2s_isolate with
// sandbox off: the document runs as the site, writes its cookie, and
// reads the opt-in's answer, whatever the opt-in then decides.
func TestSandboxedAdCannotReachTheOptIn(t *testing.T) {
	withAndWithout(t, isolatedPrefix, unsandboxedPrefix, func(t *testing.T, ce *containEnv, b *browser, prefix string, defence bool) {
		home := ce.url(mainHost, "/")

		b.navigate(t, ce.url(mainHost, framePage+"?p="+prefix))
		got := ce.ads.waitRequests(t, "the ad's report", requestTo(http.MethodPost, prefix+containReportPath))[0]
		var rep frameReport
		if err := json.Unmarshal(got.Body, &rep); err != nil {
			t.Fatalf("report %q: %v", got.Body, err)
		}
		if !defence {
			if strings.HasPrefix(rep.OptIn, "error") || rep.CookieWrite != "ok" {
				t.Errorf("control: without the sandbox the ad read the opt-in's answer as %q and wrote a cookie: %q; want a status and ok", rep.OptIn, rep.CookieWrite)
			}
			return
		}
		if !strings.HasPrefix(rep.OptIn, "error") || !strings.HasPrefix(rep.CookieWrite, "error") {
			t.Errorf("the sandboxed ad read the opt-in's answer as %q and wrote a cookie: %q; want errors for both", rep.OptIn, rep.CookieWrite)
		}
		flagCookie(t, b, home, optOutCookieName)
		for _, c := range b.cookies(t, ce.url(mainHost, cartPath)) {
			if c.Name == cookieName || c.Name == plainCookieName {
				t.Errorf("the browser holds %s=%s for %s", c.Name, c.Value, c.Path)
			}
		}
	})
}

// TestAdScriptShadowsTheVisitorCookie: with cookie_prefix off (the
// visitor cookie is b2sid), a page of the site includes the ad
// server's script from /ads/ (it runs in the page's origin: no sandbox
// applies to a script), which adds a b2sid of its own on /checkout,
// holding a valid value the advertiser got in its own browser. The
// browser then sends both there, the advertiser's first. A member signing
// in on /checkout is never recorded under the advertiser's ID nor bound
// to it: the edge trusts neither of two IDs; the visitor's cookie stays,
// and their pages elsewhere, and a sign-in there, carry their own ID and
// member. The control: what the site's origin received on /checkout, the
// advertiser's cookie first, which an edge taking the first valid cookie
// would have recorded.
func TestAdScriptShadowsTheVisitorCookie(t *testing.T) {
	ce := newContainEnv(t, "cookie_prefix off")
	home := ce.url(mainHost, "/")
	// The advertiser's own valid cookie, from its own visit.
	resp, err := ce.client().Get(home)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == plainCookieName {
			ce.shadow = c.Value
		}
	}
	theirs, _, err := verifyCookie(ce.shadow, ce.secret)
	if err != nil {
		t.Fatal(err)
	}

	b := ce.newBrowser(t, browserOptions{})
	b.navigate(t, home)
	own := b.cookie(t, home, plainCookieName).Value
	id, _, err := verifyCookie(own, ce.secret)
	if err != nil {
		t.Fatal(err)
	}

	b.navigate(t, ce.url(mainHost, articlePath+"?p="+isolatedPrefix))
	ce.ads.waitRequests(t, "the ad script", requestTo(http.MethodGet, isolatedPrefix+containShadowPath))
	var values []string
	for _, c := range b.cookies(t, ce.url(mainHost, checkoutPath)) {
		if c.Name == plainCookieName {
			values = append(values, c.Value)
		}
	}
	if len(values) != 2 {
		t.Fatalf("the browser holds b2sid %q for /checkout, want the visitor's and the advertiser's: the script planted nothing", values)
	}

	signIn := ce.url(mainHost, checkoutPath)
	b.navigate(t, signIn)
	// The control: the advertiser's cookie came first.
	var sent *seenRequest
	for _, r := range ce.main.requests() {
		if r.path() == checkoutPath {
			sent = r
		}
	}
	if sent == nil {
		t.Fatal("the origin received no sign-in")
	}
	c := strings.Join(sent.Header.Values("Cookie"), "; ")
	if i, j := strings.Index(c, plainCookieName+"="+ce.shadow), strings.Index(c, plainCookieName+"="+own); i < 0 || j < 0 || i > j {
		t.Errorf("control: the sign-in was sent with Cookie %q; want the advertiser's b2sid before the visitor's", c)
	}
	// Two IDs: neither is trusted, so the member is bound to none.
	r := ce.records.waitRecord(t, "the sign-in", pageRecord(signIn))
	if r.Consent != "full" || r.CookieID != "" || r.MemberID != "" {
		t.Errorf("the sign-in recorded with consent %q, cookie_id %q, member_id %q; want full, none, none (the advertiser's ID is %s, the visitor's %s)\n%s",
			r.Consent, r.CookieID, r.MemberID, theirs, id, r.raw)
	}
	if v, ok := b.cookieValue(t, home, plainCookieName+"_m"); ok {
		if _, err := verifyMemberCookie(v, theirs, ce.secret); err == nil {
			t.Errorf("the member cookie %q is bound to the advertiser's ID", v)
		}
	}
	if got := b.cookie(t, home, plainCookieName).Value; got != own {
		t.Errorf("the visitor's b2sid is %q after the sign-in, want their own %q", got, own)
	}

	// Where the advertiser's cookie is not sent, the visitor signs in and
	// is recorded as themselves; on /checkout, as nobody.
	b.navigate(t, ce.url(mainHost, signInPath))
	mc := b.cookie(t, home, plainCookieName+"_m")
	if m, err := verifyMemberCookie(mc.Value, id, ce.secret); err != nil || m != memberID {
		t.Errorf("member cookie %q names %q (%v), want %s bound to %s", mc.Value, m, err, memberID, id)
	}
	cart := ce.url(mainHost, cartPath)
	b.navigate(t, cart)
	b.navigate(t, home)
	if r := ce.records.waitRecord(t, "the cart", pageRecord(cart)); r.Consent != "full" || r.CookieID != "" || r.MemberID != "" {
		t.Errorf("the cart recorded with consent %q, cookie_id %q, member_id %q; want full, none, none\n%s", r.Consent, r.CookieID, r.MemberID, r.raw)
	}
	// The advertiser's visit, the visitor's first and this one.
	if r := ce.records.waitRecords(t, "three visits of the home page", 3, pageRecord(home))[2]; r.Consent != "full" || r.CookieID != id || r.MemberID != memberID {
		t.Errorf("the home page recorded with consent %q, cookie_id %q, member_id %q; want full, %s, %s\n%s", r.Consent, r.CookieID, r.MemberID, id, memberID, r.raw)
	}
}

// TestAdScriptCannotShadowTheHostCookie: a page of the site includes the
// ad server's script from a route with sandbox off; it writes the
// advertiser's own valid visitor cookie value as b2sid on /checkout and
// on /, and as __Host-b2sid on / and on /checkout. With cookie_prefix
// host (the default) the visitor's cookie is __Host-b2sid: the browser
// refuses both __Host- writes (the visitor's is HttpOnly, and the prefix
// forbids a narrower path), the edge trusts no unprefixed b2sid beside a
// __Host-b2sid, and the visitor who signs in on /checkout is recorded as
// themselves, with their member bound to their own ID. The control, with
// cookie_prefix off: the b2sid on /checkout sits beside the visitor's,
// and the sign-in there identifies nobody: the attack took the visitor's
// identity away on that path.
func TestAdScriptCannotShadowTheHostCookie(t *testing.T) {
	for _, tc := range []struct {
		name    string
		options []string
		own     string // the visitor cookie's name
		defence bool
	}{
		{"cookie_prefix host", nil, cookieName, true},
		{"control: cookie_prefix off", []string{"cookie_prefix off"}, plainCookieName, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ce := newContainEnv(t, tc.options...)
			ce.shadowCookies = []string{
				plainCookieName + "=%s; path=/checkout; secure; samesite=lax",
				plainCookieName + "=%s; path=/; secure; samesite=lax",
				cookieName + "=%s; path=/; secure; samesite=lax",
				cookieName + "=%s; path=/checkout; secure; samesite=lax",
			}
			home := ce.url(mainHost, "/")
			// The advertiser's own valid cookie, from its own visit.
			resp, err := ce.client().Get(home)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for _, c := range resp.Cookies() {
				if c.Name == tc.own {
					ce.shadow = c.Value
				}
			}
			theirs, _, err := verifyCookie(ce.shadow, ce.secret)
			if err != nil {
				t.Fatal(err)
			}

			b := ce.newBrowser(t, browserOptions{})
			b.navigate(t, home)
			own := b.cookie(t, home, tc.own).Value
			id, _, err := verifyCookie(own, ce.secret)
			if err != nil {
				t.Fatal(err)
			}
			b.navigate(t, ce.url(mainHost, articlePath+"?p="+unsandboxedPrefix))
			ce.ads.waitRequests(t, "the ad script", requestTo(http.MethodGet, unsandboxedPrefix+containShadowPath))
			var planted []string
			for _, c := range b.cookies(t, ce.url(mainHost, checkoutPath)) {
				if (c.Name == cookieName || c.Name == plainCookieName) && c.Value == ce.shadow {
					planted = append(planted, c.Name+" on "+c.Path)
				}
			}
			if len(planted) == 0 {
				t.Fatal("the script planted no cookie: nothing to test")
			}
			t.Logf("the script planted %q", planted)
			for _, p := range planted {
				if strings.HasPrefix(p, cookieName+" ") && tc.defence {
					t.Errorf("the browser accepted a script's %s", p)
				}
			}

			signIn := ce.url(mainHost, checkoutPath)
			b.navigate(t, signIn)
			r := ce.records.waitRecord(t, "the sign-in", pageRecord(signIn))
			if !tc.defence {
				if r.CookieID != "" || r.MemberID != "" {
					t.Errorf("control: the sign-in recorded with cookie_id %q, member_id %q; want none, none: the planted b2sid beside the visitor's\n%s", r.CookieID, r.MemberID, r.raw)
				}
				return
			}
			if r.Consent != "full" || r.CookieID != id || r.MemberID != memberID {
				t.Errorf("the sign-in recorded with consent %q, cookie_id %q, member_id %q; want full, the visitor's %s, %s (the advertiser's ID is %s)\n%s",
					r.Consent, r.CookieID, r.MemberID, id, memberID, theirs, r.raw)
			}
			mc := b.cookie(t, home, memberCookieName)
			if m, err := verifyMemberCookie(mc.Value, id, ce.secret); err != nil || m != memberID {
				t.Errorf("member cookie %q names %q (%v), want %s bound to the visitor's %s", mc.Value, m, err, memberID, id)
			}
			if got := b.cookie(t, home, cookieName).Value; got != own {
				t.Errorf("the visitor's %s is %q after the sign-in, want their own %q", cookieName, got, own)
			}
			// The edge deleted the b2sid planted on /, which it can
			// reach; the one on /checkout stays, ignored.
			if v, ok := b.cookieValue(t, home, plainCookieName); ok {
				t.Errorf("the browser still holds the planted %s=%s on /", plainCookieName, v)
			}
		})
	}
}

// sentURLs are the URLs of every request the tab sent.
func (b *browser) sentURLs() []string {
	reqs, _ := b.sent.snapshot()
	var urls []string
	for _, r := range reqs {
		urls = append(urls, r.URL)
	}
	return urls
}
