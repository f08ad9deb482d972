package browser

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/b2scom/b2s-edge/internal/geotest"
)

// Consent as a visitor in the EU sees it: the edge's GeoIP database places
// the browser (127.0.0.1) in Germany, and the main site requires consent
// there (require_consent eu). The site's consent banner is the page's own
// script.

const (
	consentPath       = "/_b2s/consent"
	consentCookieName = cookieName + "_consent"
	// platformCookie is the cookie the site's banner sets.
	platformCookie = "site_consent"
	bannerPath     = "/banner.html"
)

// consentConfig places loopback in Germany and requires consent in the
// EU, reading the banner's cookie.
func consentConfig(e *env, c *edgeConfig) {
	db := filepath.Join(e.dir, "city.mmdb")
	if err := geotest.WriteCityDB(db, []geotest.City{{Network: "127.0.0.0/8", Continent: "EU", Country: "DE", CountryName: "Germany", City: "Berlin"}}); err != nil {
		e.t.Fatal(err)
	}
	c.B2S = append(c.B2S, "geoip "+db, "privacy {\n\trequire_consent eu\n\tconsent_cookie "+platformCookie+"\n}")
}

// installBanner gives the main site a page with the tag and a consent
// banner of two buttons: #accept, whose script sets the banner's own
// cookie, as a consent platform does, and #accept-tag, which calls the
// tag's b2s.consent(true) on the visitor's click.
func (e *env) installBanner() {
	e.main.handle(bannerPath, func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "banner", "<h1>banner</h1>\n"+tagScript+`
<button id=accept onclick="document.cookie='`+platformCookie+`=granted; path=/; max-age=15552000; SameSite=Lax; Secure'; this.textContent='thanks'">Accept</button>
<button id=accept-tag onclick="b2s.consent(true)">Accept (tag)</button>`)
	})
}

// changed reports whether r carries consent_changed.
func changed(r *record) bool {
	var m map[string]any
	_ = json.Unmarshal(r.raw, &m)
	return m["consent_changed"] == true
}

// TestConsentByTheBannersCookie: before consent the browser gets no
// cookie, and the page and the tag's pageview are recorded pending; the
// banner's script sets its cookie on the visitor's click; the next load
// gets the visitor cookie, and its records are full, the first marked
// consent_changed.
func TestConsentByTheBannersCookie(t *testing.T) {
	e := newEnv(t, envOptions{configure: consentConfig})
	e.installBanner()
	b := e.newBrowser(t, browserOptions{})
	page := e.url(mainHost, bannerPath)

	b.navigate(t, page)
	wantConsent(t, "the page before consent", e.records.waitRecord(t, "the page", pageRecord(page)), "pending")
	wantConsent(t, "the pageview before consent", e.records.waitRecord(t, "the pageview", pageviewOf(page)), "pending")
	noCookie(t, b, page, cookieName)
	originSawNoID(t, e.main, bannerPath)

	act(t, b.ctx, "clicking #accept", chromedp.Click("#accept"))
	if v, ok := b.cookieValue(t, page, platformCookie); !ok || v != "granted" {
		t.Fatalf("the banner's cookie is %q (%v) after the click, want granted", v, ok)
	}
	b.navigate(t, page)
	id, _, err := verifyCookie(b.cookie(t, page, cookieName).Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	pages := e.records.waitRecords(t, "two loads of the page", 2, pageRecord(page))
	if r := pages[1]; r.Consent != "full" || r.CookieID != id || r.CookieState != "new" || !changed(r) {
		t.Errorf("the page after consent: %s; want full, cookie_id %s (new), consent_changed", r, id)
	}
	views := e.records.waitRecords(t, "two pageviews", 2, pageviewOf(page))
	if r := views[1]; r.Consent != "full" || r.CookieID != id || changed(r) {
		t.Errorf("the pageview after consent: %s; want full, cookie_id %s, no consent_changed", r, id)
	}
}

// TestConsentByTheTag: the visitor's click on a button that calls
// b2s.consent(true) grants consent at the edge's endpoint and comes back
// to the page, which the edge then identifies; b2s.consent(false)
// withdraws it, and the visitor is opted out. A script calling
// b2s.consent(true) without the visitor's click is the control: refused.
func TestConsentByTheTag(t *testing.T) {
	e := newEnv(t, envOptions{configure: consentConfig})
	e.installBanner()
	b := e.newBrowser(t, browserOptions{})
	page := e.url(mainHost, bannerPath)
	grantURL := e.url(mainHost, consentPath+"?return="+url.QueryEscape(bannerPath))

	b.navigate(t, page)
	wantConsent(t, "the page before consent", e.records.waitRecord(t, "the page", pageRecord(page)), "pending")

	// Control: the same call from a script, without a click.
	eval[any](t, b.ctx, "b2s.consent(true), null")
	refused := e.records.waitRecord(t, "the scripted grant", func(r *record) bool { return r.Kind == "page" && r.URL == grantURL && r.Method == http.MethodPost })
	if refused.Status != http.StatusForbidden || refused.Consent != "pending" {
		t.Errorf("a scripted b2s.consent(true): %s; want 403, pending", refused)
	}
	b.navigate(t, page) // the 403 page replaced it
	noCookie(t, b, page, cookieName)
	noCookie(t, b, page, consentCookieName)

	// The tag fetches the form's token before it submits the form, so the
	// navigation starts after the click has returned: wait for the page
	// it comes back to, served after the grant (its record), rather than
	// for a navigation the click itself would start.
	act(t, b.ctx, "clicking #accept-tag", chromedp.Click("#accept-tag"))
	e.records.waitRecords(t, "the page after the grant", 3, pageRecord(page))
	// The page is served; wait until the browser has loaded it and its
	// deferred tag, which the withdrawal below calls.
	// An evaluation while the document is replaced fails: it only means
	// not yet.
	loaded := func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === "complete" && typeof b2s === "object"`))
		return err == nil && ok
	}
	for deadline := time.Now().Add(actionTimeout); !loaded(); {
		if time.Now().After(deadline) {
			t.Fatalf("the page after the grant did not load its tag within %v", actionTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if href := eval[string](t, b.ctx, "location.href"); href != page {
		t.Fatalf("the grant ended on %s, want %s", href, page)
	}
	id, _, err := verifyCookie(b.cookie(t, page, cookieName).Value, e.secret)
	if err != nil {
		t.Fatal(err)
	}
	if c := b.cookie(t, page, consentCookieName); !c.HTTPOnly || !c.Secure || c.Session {
		t.Errorf("the consent cookie: HttpOnly %v, Secure %v, session %v; want HttpOnly, Secure, persistent", c.HTTPOnly, c.Secure, c.Session)
	}
	grants := e.records.waitRecords(t, "the grants", 2, func(r *record) bool { return r.Kind == "page" && r.URL == grantURL && r.Method == http.MethodPost })
	if r := grants[1]; r.Status != http.StatusSeeOther || r.Consent != "full" || r.CookieID != id || !changed(r) {
		t.Errorf("the visitor's grant: %s; want 303, full, cookie_id %s, consent_changed", r, id)
	}
	pages := e.records.waitRecords(t, "three loads of the page", 3, pageRecord(page))
	if r := pages[2]; r.Consent != "full" || r.CookieID != id || changed(r) {
		t.Errorf("the page after the grant: %s; want full, cookie_id %s, no consent_changed", r, id)
	}

	// Withdrawal through the tag.
	eval[any](t, b.ctx, "b2s.consent(false).then(function () { return null })", chromedp.EvalAwaitPromise)
	noCookie(t, b, page, cookieName)
	noCookie(t, b, page, consentCookieName)
	flagCookie(t, b, page, optOutCookieName)
	wd := e.records.waitRecord(t, "the withdrawal", func(r *record) bool { return r.URL == e.url(mainHost, consentPath+"?withdraw") })
	if wd.Consent != "optout" || !changed(wd) {
		t.Errorf("the withdrawal: %s; want optout, consent_changed", wd)
	}
	b.navigate(t, page)
	wantConsent(t, "the page after withdrawal", e.records.waitRecords(t, "four loads of the page", 4, pageRecord(page))[3], "optout")
}
