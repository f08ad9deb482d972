package browser

import (
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
	if first.CookieID != id || first.CookieState != "new" || first.Host != e.origin(mainHost)[len("https://"):] || first.Status != 200 {
		t.Errorf("first visit recorded as cookie_id %q, cookie_state %q, host %q, status %d; want %q, new, %s:%d, 200\n%s",
			first.CookieID, first.CookieState, first.Host, first.Status, id, mainHost, e.port, first.raw)
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
