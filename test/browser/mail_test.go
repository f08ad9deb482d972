package browser

import (
	"html"
	"net/http"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/mailink"
)

// landingPath is the page a mail's click link leads to.
const landingPath = "/landing"

// installMailPages gives the main site a landing page and the advertiser's
// origin (here a webmail) a page showing a mail with a click link.
func (e *env) installMailPages(t *testing.T, link string) {
	e.main.handle(landingPath, func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "landing", "<h1>offers</h1>")
	})
	e.ads.handle("/inbox", func(w http.ResponseWriter, r *http.Request) {
		writePage(w, "inbox", `<a id="offer" href="`+html.EscapeString(link)+`">See the offers</a>`)
	})
}

// clickURL seals a click for member to the main site's landing page with
// the edge's secret, as the mailer does.
func (e *env) clickURL(t *testing.T, member, marker string) (click, dest string) {
	t.Helper()
	s, err := mailink.New([]byte(e.secret))
	if err != nil {
		t.Fatal(err)
	}
	dest = e.url(mainHost, landingPath+"?m="+marker)
	now := time.Now()
	u, err := s.URLsFor(mailink.Message{Origin: e.origin(mainHost), Campaign: "browser-" + marker, Member: member,
		Destinations: []string{dest}, Issued: now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return u.Clicks[0], dest
}

// TestMailClickLanding: a reader clicks a mail's link in a webmail; the
// click lands on the site. Without an opt-out, the click is recorded with
// the member and no cookie, and the landing as any first visit, with the
// browser's new cookie and no member: the click joins nothing. With the
// opt-out in place, the click records no member and the landing sets no
// cookie, the opt-out cookie staying.
func TestMailClickLanding(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.installPrivacyPages()
	for _, optedOut := range []bool{false, true} {
		name := map[bool]string{false: "without an opt-out", true: "with an opt-out"}[optedOut]
		t.Run(name, func(t *testing.T) {
			marker := map[bool]string{false: "plain", true: "optout"}[optedOut]
			link, dest := e.clickURL(t, "m-77", marker)
			e.installMailPages(t, link)
			b := e.newBrowser(t, browserOptions{})
			home := e.url(mainHost, "/")
			if optedOut {
				b.navigate(t, e.url(mainHost, optOutPath))
				flagCookie(t, b, home, optOutCookieName)
			}
			b.navigate(t, e.url(adHost, "/inbox"))
			if resp := click(t, b, "#offer"); resp.URL != dest || resp.Status != http.StatusOK {
				t.Fatalf("the click ended on %d %s, want 200 %s", resp.Status, resp.URL, dest)
			}
			if r := b.response(t, link); r.Status != http.StatusFound || len(header(r, "Set-Cookie")) != 0 {
				t.Errorf("the click answered %d with Set-Cookie %q; want 302 and no cookie", r.Status, header(r, "Set-Cookie"))
			}
			clickRec := e.records.waitRecord(t, "the click", func(r *record) bool { return r.Kind == "click" && r.Campaign == "browser-"+marker })
			landing := e.records.waitRecord(t, "the landing", pageRecord(dest))
			if clickRec.Destination != dest || clickRec.CookieID != "" {
				t.Errorf("the click's record: destination %q, cookie_id %q\n%s", clickRec.Destination, clickRec.CookieID, clickRec.raw)
			}
			if landing.MemberID != "" {
				t.Errorf("the landing's record names member %q: the click joined the browser to the member\n%s", landing.MemberID, landing.raw)
			}
			if !optedOut {
				wantConsent(t, "the click", clickRec, "full")
				if clickRec.MemberID != "m-77" {
					t.Errorf("the click's record names member %q, want m-77\n%s", clickRec.MemberID, clickRec.raw)
				}
				wantConsent(t, "the landing", landing, "full")
				if landing.CookieState != "new" || b.cookie(t, home, cookieName).Value == "" {
					t.Errorf("the landing's record: cookie_state %q; want a first visit's new cookie", landing.CookieState)
				}
				return
			}
			wantConsent(t, "the click", clickRec, "optout")
			wantConsent(t, "the landing", landing, "optout")
			noCookie(t, b, home, cookieName)
			flagCookie(t, b, home, optOutCookieName)
		})
	}
}
