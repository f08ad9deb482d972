package browser

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The network options' defaults, as the tests expect them.
const (
	linkPath   = "/_b2s/go"
	tokenParam = "_b2s"
)

// networkSites makes the main and the sister site one network.
func networkSites(c *edgeConfig) {
	c.B2S = append(c.B2S, "network {\n\tsites b2s.test b2smade.test\n}")
}

// linkTo is the link endpoint's URL, on host, to destination.
func (e *env) linkTo(host, destination string) string {
	return e.url(host, linkPath+"?to="+url.QueryEscape(destination))
}

// recordOf matches the records of host (with the port, as the records name
// it) that match also.
func (e *env) recordOf(host string, also func(*record) bool) func(*record) bool {
	h := fmt.Sprintf("%s:%d", host, e.port)
	return func(r *record) bool { return r.Host == h && also(r) }
}

// TestCrossingToTheSisterSite: a visitor of the main site clicks a link to
// the sister site through the link endpoint. The browser lands on the
// sister site's page with no link token in its address, history or
// referrer; the token never reaches the sister site's origin, the page's
// scripts or the advertiser embedded there; and every record of the sister
// site carries the main site's network ID under the sister site's own
// cookie ID. The token is good once. Crossing again after the main site
// gave the visitor a new ID joins the sister site's visitor to it, and the
// exchange records the network ID it replaced.
func TestCrossingToTheSisterSite(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(e *env, c *edgeConfig) { networkSites(c) }})
	start := e.url(mainHost, "/network.html")
	landing := e.url(sisterHost, "/landing")
	link := e.linkTo(mainHost, landing)
	e.main.handle("/network.html", func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "b2s.com", fmt.Sprintf(`<h1>b2s.com</h1>
<p><a id="go" href="%s">Made by b2s</a></p>`, html.EscapeString(strings.TrimPrefix(link, e.origin(mainHost)))))
	})
	e.sister.handle("/landing", func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "b2smade.com", "<h1 id=\"landing\">b2smade.com</h1>\n"+tagScript+"\n"+e.adSlots())
	})
	b := e.newBrowser(t, browserOptions{})

	b.navigate(t, start)
	mainID, _, err := verifyCookie(b.cookie(t, start, cookieName).Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}

	resp := click(t, b, chromedp.ID("go"))
	if resp.Status != 200 || resp.URL != landing {
		t.Fatalf("the click ended on %d %s, want 200 %s", resp.Status, resp.URL, landing)
	}

	// The way there: the link endpoint's redirect with the token, then the
	// sister site's redirect without it.
	var token string
	sent, _ := b.sent.snapshot()
	for _, r := range sent {
		if u, err := url.Parse(r.URL); err == nil && strings.HasPrefix(r.URL, landing+"?") && u.Query().Has(tokenParam) {
			token = u.Query().Get(tokenParam)
		}
	}
	if token == "" {
		t.Fatalf("the browser never requested %s with a %s token; it requested:\n%s", landing, tokenParam, showSent(b))
	}
	withToken := landing + "?" + tokenParam + "=" + token
	if r := b.response(t, link); r.Status != http.StatusFound || !slices.Equal(header(r, "Location"), []string{withToken}) {
		t.Errorf("the link endpoint answered %d, Location %q; want 302 to %s", r.Status, header(r, "Location"), withToken)
	}
	if r := b.response(t, withToken); r.Status != http.StatusFound || !slices.Equal(header(r, "Location"), []string{"/landing"}) ||
		!slices.Equal(header(r, "Referrer-Policy"), []string{"no-referrer"}) || !slices.Equal(header(r, "Cache-Control"), []string{"no-store"}) {
		t.Errorf("the sister site answered the token with %d, Location %q, Referrer-Policy %q, Cache-Control %q; want 302 to /landing, no-referrer, no-store",
			r.Status, header(r, "Location"), header(r, "Referrer-Policy"), header(r, "Cache-Control"))
	}

	// Nothing the page or the visitor sees holds the token.
	if href := eval[string](t, b.ctx, "location.href"); href != landing {
		t.Errorf("location.href = %q, want %q", href, landing)
	}
	if ref := eval[string](t, b.ctx, "document.referrer"); ref != "" {
		t.Errorf("document.referrer = %q, want none (the exchange answers with Referrer-Policy: no-referrer)", ref)
	}
	hist := b.history(t)
	if len(hist) == 0 || hist[len(hist)-1] != landing {
		t.Errorf("history %q, want %s last", hist, landing)
	}
	for _, h := range hist {
		if strings.Contains(h, token) || strings.Contains(h, tokenParam+"=") {
			t.Errorf("history entry %q holds the token", h)
		}
	}

	// The sister site's own cookie, joined to the main site's ID.
	sc, err := verifyAnyCookie(b.cookie(t, landing, cookieName).Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	sisterID := sc.ID
	if sc.Version != 3 || sc.NetworkID != mainID || sisterID == mainID {
		t.Errorf("sister site's cookie: version %d, ID %s, network ID %s; want version 3 (the network ID sealed) with a new ID and the main site's ID %s as network ID",
			sc.Version, sc.ID, sc.NetworkID, mainID)
	}

	// The records.
	mainPage := e.records.waitRecord(t, "the main site's page", pageRecord(start))
	linkRec := e.records.waitRecord(t, "the link", pageRecord(link))
	exchange := e.records.waitRecord(t, "the token's exchange", e.recordOf(sisterHost, func(r *record) bool { return r.Status == http.StatusFound }))
	page := e.records.waitRecord(t, "the landing page", func(r *record) bool { return pageRecord(landing)(r) && r.Status == 200 })
	pageview := e.records.waitRecord(t, "the landing page's pageview", e.recordOf(sisterHost, func(r *record) bool { return r.Event == "pageview" }))
	for _, r := range []*record{mainPage, linkRec} {
		if r.CookieID != mainID || r.NetworkID != mainID || r.Consent != "full" {
			t.Errorf("main site record with cookie_id %q, network_id %q, consent %q; want %s, %s, full\n%s", r.CookieID, r.NetworkID, r.Consent, mainID, mainID, r.raw)
		}
	}
	if linkRec.Status != http.StatusFound {
		t.Errorf("link recorded with status %d, want 302\n%s", linkRec.Status, linkRec.raw)
	}
	if exchange.URL != landing || exchange.LinkedFrom != mainHost || exchange.CookieState != "new" || exchange.PrevNetworkID != "" {
		t.Errorf("exchange recorded with url %q, linked_from %q, cookie_state %q, prev_network_id %q; want %s, %s, new, none\n%s",
			exchange.URL, exchange.LinkedFrom, exchange.CookieState, exchange.PrevNetworkID, landing, mainHost, exchange.raw)
	}
	if page.CookieState != "returning" || page.LinkedFrom != "" {
		t.Errorf("landing page recorded with cookie_state %q, linked_from %q; want returning, none\n%s", page.CookieState, page.LinkedFrom, page.raw)
	}
	if pageview.URL != landing {
		t.Errorf("pageview recorded with url %q, want %s\n%s", pageview.URL, landing, pageview.raw)
	}
	sister := e.recordOf(sisterHost, func(*record) bool { return true })
	for _, r := range e.records.all() {
		if sister(r) && (r.CookieID != sisterID || r.NetworkID != mainID) {
			t.Errorf("sister site record with cookie_id %q, network_id %q; want the sister site's %s and the main site's %s\n%s",
				r.CookieID, r.NetworkID, sisterID, mainID, r.raw)
		}
		if strings.Contains(string(r.raw), token) {
			t.Errorf("a record holds the token:\n%s", r.raw)
		}
	}

	// The sister site's origin got the page without the token, and with
	// the visitor's sister ID.
	got := e.sister.waitRequests(t, "the landing page", requestTo("GET", "/landing"))
	if id := got[0].Header.Get("X-B2S-Cookie-ID"); id != sisterID {
		t.Errorf("the sister origin got X-B2S-Cookie-ID %q, want %s", id, sisterID)
	}
	for _, r := range e.sister.requests() {
		if s := r.String(); strings.Contains(s, token) || strings.Contains(s, tokenParam+"=") {
			t.Errorf("the sister origin received the token:\n%s", s)
		}
	}
	for _, r := range e.main.requests() {
		if r.path() == linkPath {
			t.Errorf("the main origin received the link endpoint's request %s: the edge answers it", r.URI)
		}
	}

	// The advertiser on the landing page: its frame and script ran there,
	// saw the page's address, and received neither the token nor an ID.
	ads := e.ads.waitRequests(t, "the frame's and the script's reports", reportFrom("frame"), reportFrom("script"), pixelFrom("frame"), pixelFrom("script"))
	if rep, err := ads[1].report(); err != nil || rep.Location != landing {
		t.Errorf("the advertiser's script reported location %q (%v), want %s", rep.Location, err, landing)
	}
	advertiserLeaks(t, e, token, tokenParam+"=", mainID, sisterID, cookieName+"=")

	// The token is good once: replayed, by a client without a cookie, it
	// is stripped all the same but joins nothing.
	resp2, err := e.client().Get(withToken)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	var replayID string
	for _, c := range resp2.Cookies() {
		if c.Name == cookieName {
			if replayID, _, err = verifyCookie(c.Value, e.secret); err != nil {
				t.Errorf("replay: %v", err)
			}
		}
	}
	if resp2.StatusCode != http.StatusFound || resp2.Header.Get("Location") != "/landing" || replayID == "" {
		t.Errorf("replayed token answered with %d, Location %q, cookie ID %q; want 302 to /landing and a cookie of a visitor not linked",
			resp2.StatusCode, resp2.Header.Get("Location"), replayID)
	}
	replay := e.records.waitRecord(t, "the replayed token", e.recordOf(sisterHost, func(r *record) bool { return r.CookieID == replayID && replayID != "" }))
	if replay.LinkedFrom != "" || replay.NetworkID != replayID || replay.URL != landing {
		t.Errorf("replay recorded with linked_from %q, network_id %q, url %q; want none, its own cookie ID %s, %s\n%s",
			replay.LinkedFrom, replay.NetworkID, replay.URL, replayID, landing, replay.raw)
	}

	// The main site forgets the visitor (cookies cleared there) and gives
	// a new ID; crossing again joins the sister site's visitor to it.
	b.deleteCookie(t, start, cookieName)
	b.navigate(t, start)
	mainID2, _, err := verifyCookie(b.cookie(t, start, cookieName).Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	if mainID2 == mainID {
		t.Fatalf("the main site gave the same ID %s again", mainID)
	}
	if resp := click(t, b, chromedp.ID("go")); resp.URL != landing {
		t.Fatalf("the second click ended on %s, want %s", resp.URL, landing)
	}
	if sc2, err := verifyAnyCookie(b.cookie(t, landing, cookieName).Value, e.secret); err != nil || sc2.ID != sisterID || sc2.NetworkID != mainID2 {
		t.Errorf("sister site's cookie after the second crossing: ID %s, network ID %s (%v); want the same ID %s, network ID %s",
			sc2.ID, sc2.NetworkID, err, sisterID, mainID2)
	}
	relinked := e.records.waitRecord(t, "the second exchange", e.recordOf(sisterHost, func(r *record) bool {
		return r.Status == http.StatusFound && r.LinkedFrom != "" && r != exchange
	}))
	if relinked.CookieID != sisterID || relinked.CookieState != "returning" || relinked.NetworkID != mainID2 || relinked.PrevNetworkID != mainID {
		t.Errorf("second exchange recorded with cookie_id %q (%s), network_id %q, prev_network_id %q; want %s, returning, %s, %s\n%s",
			relinked.CookieID, relinked.CookieState, relinked.NetworkID, relinked.PrevNetworkID, sisterID, mainID2, mainID, relinked.raw)
	}
	if last := e.records.waitRecords(t, "two landing pages", 2, func(r *record) bool { return pageRecord(landing)(r) && r.Status == 200 })[1]; last.NetworkID != mainID2 {
		t.Errorf("landing page after the second crossing recorded with network_id %q, want %s\n%s", last.NetworkID, mainID2, last.raw)
	}
}

// advertiserLeaks fails the test for each of leaks found in anything the
// advertiser's server received.
func advertiserLeaks(t *testing.T, e *env, leaks ...string) {
	t.Helper()
	for _, r := range e.ads.requests() {
		s := r.String()
		for _, leak := range leaks {
			if strings.Contains(s, leak) {
				t.Errorf("the advertiser received %q:\n%s", leak, s)
			}
		}
	}
}

func showSent(b *browser) string {
	var s strings.Builder
	sent, _ := b.sent.snapshot()
	for _, r := range sent {
		fmt.Fprintf(&s, "  %s %s\n", r.Method, r.URL)
	}
	return s.String()
}

// TestLinkEndpointRefusesOtherDestinations: the link endpoint redirects to
// network sites only. Every way of writing another site's address that a
// browser might follow (scheme-relative, backslashes, user info, encoded
// or odd characters in the host, other schemes, plain http from an https
// page) gets a 400 page on the main site: the browser stays there and the
// advertiser, the other site named, receives no request. A network site
// (the last case) is followed.
func TestLinkEndpointRefusesOtherDestinations(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(e *env, c *edgeConfig) { networkSites(c) }})
	b := e.newBrowser(t, browserOptions{})
	ad := fmt.Sprintf("%s:%d", adHost, e.port)
	attempts := []struct {
		name string
		to   string // the to= parameter; raw sends it as written, else escaped
		raw  bool
	}{
		{"another site", "https://" + ad + "/", false},
		{"another site, upper case", "HTTPS://" + strings.ToUpper(ad) + "/", false},
		{"scheme-relative", "//" + ad + "/", false},
		{"scheme-relative, as written", "//" + ad + "/", true},
		{"slash and backslash", "/\\" + ad + "/", false},
		{"backslashes for slashes", "https:\\\\" + ad + "\\", false},
		{"backslash before a network domain", "https://" + ad + "\\.b2s.test/", false},
		{"network site as user info", "https://www.b2s.test@" + ad + "/", false},
		{"network site as user info after a backslash", "https://" + ad + "\\@www.b2s.test/", false},
		{"encoded slash in the host", "https://" + adHost + "%2f.b2s.test:" + fmt.Sprint(e.port) + "/", false},
		{"encoded at sign in the host", "https://www.b2s.test%40" + ad + "/", false},
		{"network domain in the fragment", "https://" + ad + "#.b2s.test", false},
		{"network domain in the query", "https://" + ad + "?.b2smade.test", false},
		{"network domain in the path", "https://" + ad + "/.b2s.test/", false},
		{"network domain as a subdomain of another", "https://www.b2s.test." + ad + "/", false},
		{"no slashes after the scheme", "https:" + ad + "/", false},
		{"tab in the scheme", "htt\tps://" + ad + "/", false},
		{"leading space", " https://" + ad + "/", false},
		{"newline in the host", "https://" + adHost + "\n:" + fmt.Sprint(e.port) + "/", false},
		{"IP address", fmt.Sprintf("https://127.0.0.1:%d/", e.port), false},
		{"javascript", "javascript:location='https://" + ad + "/'", false},
		{"javascript after a network URL", "javascript://www.b2s.test/%0alocation='https://" + ad + "/'", false},
		{"data", "data:text/html,<script>location='https://" + ad + "/'</script>", false},
		{"plain http to a network site", fmt.Sprintf("http://%s:%d/", sisterHost, e.httpPort), false},
		{"nothing", "", false},
	}
	for _, a := range attempts {
		u := e.url(mainHost, linkPath+"?to="+url.QueryEscape(a.to))
		if a.raw {
			u = e.url(mainHost, linkPath+"?to="+a.to)
		}
		resp := b.navigate(t, u)
		href := eval[string](t, b.ctx, "location.href")
		loc, err := url.Parse(href)
		if err != nil || resp.Status != http.StatusBadRequest || loc.Host != fmt.Sprintf("%s:%d", mainHost, e.port) || loc.Path != linkPath {
			t.Errorf("%s: to=%q ended on %d %s; want 400 on %s%s", a.name, a.to, resp.Status, href, e.origin(mainHost), linkPath)
		}
		if body := eval[string](t, b.ctx, "document.body.innerText"); !strings.Contains(body, "must be an absolute URL of a site of the network") {
			t.Errorf("%s: the 400 page reads %q", a.name, body)
		}
	}
	// Every attempt is recorded as refused.
	e.records.waitRecords(t, "the refused links", len(attempts), e.recordOf(mainHost, func(r *record) bool {
		return strings.HasPrefix(r.URL, e.url(mainHost, linkPath+"?")) && r.Status == http.StatusBadRequest
	}))

	// A network site is followed, with a token, stripped on arrival.
	// (Typed into the address bar, the link carries no Referer from a
	// network page, so the token joins nobody: see the crossing test for
	// a link followed from a page.)
	home := e.url(sisterHost, "/")
	if resp := b.navigate(t, e.linkTo(mainHost, home)); resp.Status != 200 || resp.URL != home {
		t.Errorf("a link to %s ended on %d %s", home, resp.Status, resp.URL)
	}
	e.records.waitRecord(t, "the sister site's exchange", e.recordOf(sisterHost, func(r *record) bool {
		return r.URL == home && r.Status == http.StatusFound && r.LinkedFrom == ""
	}))

	if got := e.ads.requests(); len(got) != 0 {
		t.Errorf("the advertiser received requests:\n%s", showRequests(got))
	}
}

// TestMainSiteBeaconOnTheSisterSite: a sister site's page embeds the main
// site's beacon three ways: an image, a sendBeacon and a credentialed
// fetch (which needs CORS). The beacon's requests are cross-site, so the
// edge never issues a cookie on them; it records the main site's cookie
// where the browser sends it: with third-party cookies allowed and the
// main site's cookie SameSite=None. Everywhere the pixel loads and the
// fetch may read the answer; a page of the advertiser may not. The member
// and opt-out cookies follow the visitor cookie's SameSite, so where the
// beacons carry the visitor's ID, a member signed in on the main site is
// recorded with them, and after opting out there they carry consent
// optout, no ID and a truncated IP.
func TestMainSiteBeaconOnTheSisterSite(t *testing.T) {
	for _, c := range []struct {
		name       string
		mode       thirdPartyCookies
		sameSite   string // the main site's same_site option
		wantCookie bool   // whether the beacons carry the main site's cookie
	}{
		{"same_site none, third-party cookies allowed", thirdPartyAllowed, "none", true},
		{"same_site none, third-party cookies blocked", thirdPartyBlocked, "none", false},
		{"same_site lax, third-party cookies allowed", thirdPartyAllowed, "lax", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{configure: func(e *env, cfg *edgeConfig) {
				networkSites(cfg)
				cfg.site(mainHost).CollectOptions = []string{"same_site " + c.sameSite}
			}})
			embed, adPage := e.url(sisterHost, "/embed.html"), e.url(adHost, "/embed.html")
			e.sister.handle("/embed.html", func(w http.ResponseWriter, r *http.Request) {
				writePage(w, "b2smade.com", crossSiteBeacons(e, e.url(sisterHost, r.URL.RequestURI())))
			})
			e.ads.handle("/embed.html", func(w http.ResponseWriter, r *http.Request) {
				writePage(w, "adnet", crossSiteBeacons(e, adPage))
			})
			b := e.newBrowser(t, browserOptions{thirdPartyCookies: c.mode})

			home := e.url(mainHost, "/")
			b.navigate(t, home)
			mc := b.cookie(t, home, cookieName)
			id, _, err := verifyCookie(mc.Value, e.secret)
			if err != nil {
				t.Fatal(err)
			}
			wantSameSite := map[string]string{"none": "None", "lax": "Lax"}[c.sameSite]
			if string(mc.SameSite) != wantSameSite || !mc.Secure {
				t.Errorf("main site's cookie: SameSite %q, Secure %v; want %s, Secure", mc.SameSite, mc.Secure, wantSameSite)
			}

			// beaconsOn loads the sister site's page at pageURL and returns
			// the records of its image, sendBeacon and fetch beacons.
			events := []string{"image", "sendbeacon", "cors"}
			beaconsOn := func(pageURL string) []*record {
				t.Helper()
				b.navigate(t, pageURL)
				if w := eval[int](t, b.ctx, `document.getElementById("px").naturalWidth`); w != 1 {
					t.Errorf("the pixel's naturalWidth is %d, want 1: it did not load", w)
				}
				if sent := eval[bool](t, b.ctx, "window.beaconSent"); !sent {
					t.Errorf("sendBeacon returned false")
				}
				if got := eval[string](t, b.ctx, "window.cors", chromedp.EvalAwaitPromise); got != "204" {
					t.Errorf("the credentialed fetch from the sister site got %q, want 204, readable", got)
				}
				var rs []*record
				for _, event := range events {
					rs = append(rs, e.records.waitRecord(t, "the "+event+" beacon of "+pageURL,
						e.recordOf(mainHost, func(r *record) bool { return r.Event == event && r.URL == pageURL })))
				}
				return rs
			}

			for i, r := range beaconsOn(embed) {
				event := events[i]
				want := ""
				if c.wantCookie {
					want = id
				}
				if r.Kind != "beacon" || !r.CrossSite || r.CookieID != want || r.URL != embed || r.Consent != "full" {
					t.Errorf("%s beacon recorded as %s, cross_site %v, cookie_id %q, url %q, consent %q; want a beacon, cross_site, cookie_id %q, %s, full\n%s",
						event, r.Kind, r.CrossSite, r.CookieID, r.URL, r.Consent, want, embed, r.raw)
				}
				if r.CookieID != "" && (r.CookieState != "returning" || r.NetworkID != id) {
					t.Errorf("%s beacon recorded with cookie_state %q, network_id %q; want returning, %s\n%s", event, r.CookieState, r.NetworkID, id, r.raw)
				}
			}
			if again := b.cookie(t, home, cookieName); again.Value != mc.Value {
				t.Errorf("the main site's cookie changed on the sister site's page: %q, was %q", again.Value, mc.Value)
			}

			// The advertiser's page may send the beacon but not read the
			// answer of a credentialed fetch.
			b.navigate(t, adPage)
			if got := eval[string](t, b.ctx, "window.cors", chromedp.EvalAwaitPromise); !strings.HasPrefix(got, "error") {
				t.Errorf("the credentialed fetch from the advertiser's page got %q, want a CORS error", got)
			}

			// The member and opt-out cookies have the visitor cookie's
			// SameSite: where the browser sends the one with the beacon, it
			// sends the others. Signed in on the main site, the beacons carry
			// the member; opted out there, they carry no identifier and a
			// truncated IP. Where the browser sends none of them, the beacons
			// carry no identifier either way.
			e.installPrivacyPages()
			b.navigate(t, e.url(mainHost, signInPath))
			if m := b.cookie(t, home, memberCookieName); string(m.SameSite) != wantSameSite || !m.Secure {
				t.Errorf("main site's member cookie: SameSite %q, Secure %v; want %s, Secure", m.SameSite, m.Secure, wantSameSite)
			}
			asMember := embed + "?as=member"
			for i, r := range beaconsOn(asMember) {
				wantID, wantMember := "", ""
				if c.wantCookie {
					wantID, wantMember = id, memberID
				}
				if r.Consent != "full" || r.CookieID != wantID || r.MemberID != wantMember {
					t.Errorf("%s beacon of a member recorded with consent %q, cookie_id %q, member_id %q; want full, %q, %q\n%s",
						events[i], r.Consent, r.CookieID, r.MemberID, wantID, wantMember, r.raw)
				}
			}

			b.navigate(t, e.url(mainHost, optOutPath+"?return=/"))
			flagCookie(t, b, home, optOutCookieName)
			if o := b.cookie(t, home, optOutCookieName); string(o.SameSite) != wantSameSite {
				t.Errorf("main site's opt-out cookie: SameSite %q, want %s", o.SameSite, wantSameSite)
			}
			optedOut := embed + "?as=optout"
			for i, r := range beaconsOn(optedOut) {
				switch {
				case c.wantCookie:
					if r.Consent != "optout" || r.CookieID != "" || r.MemberID != "" || r.IP != truncatedLoopback || !r.IPTruncated {
						t.Errorf("%s beacon after the opt-out recorded with consent %q, cookie_id %q, member_id %q, ip %q, ip_truncated %v; want optout, none, none, %s, truncated\n%s",
							events[i], r.Consent, r.CookieID, r.MemberID, r.IP, r.IPTruncated, truncatedLoopback, r.raw)
					}
				case r.Consent != "full" || r.CookieID != "" || r.MemberID != "":
					t.Errorf("%s beacon after the opt-out, the browser sending no cookie of the main site, recorded with consent %q, cookie_id %q, member_id %q; want full (nothing tells the edge), none, none\n%s",
						events[i], r.Consent, r.CookieID, r.MemberID, r.raw)
				}
			}
			noCookie(t, b, home, cookieName)
		})
	}
}

// crossSiteBeacons is a page body that sends the main site's beacon as an
// image (event image), with sendBeacon (event sendbeacon) and with a
// credentialed fetch of JSON, which needs a CORS preflight (event cors),
// each naming the page, at pageURL. window.beaconSent is what sendBeacon
// returned, window.cors a promise of the fetch's status or its error.
func crossSiteBeacons(e *env, pageURL string) string {
	bcn := e.url(mainHost, "/b.gif")
	return fmt.Sprintf(`<h1>A page with the main site's beacon</h1>
<img id="px" src="%s" alt="">
<script>
var b = %q, u = location.href;
window.beaconSent = navigator.sendBeacon(b, JSON.stringify({e: "sendbeacon", u: u}));
window.cors = fetch(b, {method: "POST", credentials: "include", headers: {"Content-Type": "application/json"},
	body: JSON.stringify({e: "cors", u: u})}).then(function (r) { return String(r.status); }, function (err) { return "error: " + err; });
</script>`, html.EscapeString(bcn+"?e=image&u="+url.QueryEscape(pageURL)), bcn)
}
