package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// TestSeveralVisitorCookies: a script of the site's origin (an ad's) can
// add a b2sid of its own, a valid one copied from its own browser, on a
// narrower path or another domain; the browser then sends it with the
// visitor's, before or after it. The edge cannot tell which one it set:
// several different valid IDs identify nobody, carry no member, and set
// no cookie (which would replace the visitor's own).
func TestSeveralVisitorCookies(t *testing.T) {
	now := time.Now()
	c, _ := limitedCollect(t, nil, &now)
	signer := c.app.signer
	visitor, attacker := beacon.NewID(), beacon.NewID()
	vc, ac := signer.Sign(visitor, now.Add(-time.Hour)), signer.Sign(attacker, now.Add(-time.Hour))
	member := func(id, m string) string { return "b2sid_m=" + m + "." + signer.SignMember(id, m) }
	expired := signer.Sign(attacker, now.Add(-time.Duration(c.app.CookieMaxAge)-time.Hour))

	for _, tc := range []struct {
		name       string
		cookie     string
		wantID     string // empty: nobody identified
		wantMember string
		wantSet    bool
	}{
		{"one cookie identifies the visitor", "b2sid=" + vc, visitor, "", false},
		{"the same ID twice (a host-only and a domain cookie) identifies the visitor", "b2sid=" + vc + "; b2sid=" + vc, visitor, "", false},
		{"a copy on a narrower path, sent first, identifies nobody", "b2sid=" + ac + "; b2sid=" + vc, "", "", false},
		{"a copy on another domain, sent after, identifies nobody", "b2sid=" + vc + "; b2sid=" + ac, "", "", false},
		{"a copy with the visitor's member cookie identifies nobody and carries no member",
			"b2sid=" + ac + "; b2sid=" + vc + "; " + member(visitor, "m-1"), "", "", false},
		{"a forged value beside the visitor's is skipped", "b2sid=1.forged; b2sid=" + vc, visitor, "", false},
		{"an expired copy beside the visitor's is skipped", "b2sid=" + expired + "; b2sid=" + vc, visitor, "", false},
		{"more cookies than are read identify nobody, even all alike",
			strings.Repeat("b2sid="+ac+"; ", len(visitorCookies{}.ids.vals)) + "b2sid=" + vc, "", "", false},
		{"a member cookie copied from the attacker does not displace the visitor's",
			member(attacker, "m-evil") + "; b2sid=" + vc + "; " + member(visitor, "m-1"), visitor, "m-1", false},
		{"a member cookie bound to another ID counts for nothing",
			"b2sid=" + vc + "; " + member(attacker, "m-evil"), visitor, "", false},
	} {
		// Over plain http the cookies are unprefixed; over https, the
		// same rules hold among __Host- cookies (a script can add none,
		// but a copy may come from elsewhere: a client that is no
		// browser, a jar overflowed and refilled).
		for _, scheme := range []string{"http", "https"} {
			t.Run(scheme+"/"+tc.name, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodGet, scheme+"://www.b2s.com/checkout/signin", nil)
				cookie := tc.cookie
				if scheme == "https" {
					cookie = strings.ReplaceAll(cookie, "b2sid", "__Host-b2sid")
				}
				r.Header.Set("Cookie", cookie)
				var jar visitorCookies
				c.readCookies(r, &jar)
				var rec beacon.Record
				rec.Consent = beacon.ConsentFull
				p := c.identify(r, now, &rec, &jar, nil)
				c.readMember(&rec, &jar)
				if rec.CookieID != tc.wantID || rec.MemberID != tc.wantMember || p.set() != tc.wantSet {
					t.Errorf("cookie_id %q, member_id %q, Set-Cookie %q %q; want %q, %q, set %v",
						rec.CookieID, rec.MemberID, p.value, p.del, tc.wantID, tc.wantMember, tc.wantSet)
				}
			})
		}
	}
}
