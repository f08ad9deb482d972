package caddymodule

import (
	"net/http"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// The consent platform's cookie (consent_cookie) decides consent on every
// request, but the platform's script never touches the edge's HttpOnly
// cookies: the edge follows its decision here, once the request's consent
// is decided and the visitor identified. A refusal deletes the identifier
// cookies, as a withdrawal at the endpoint does; a grant sets the edge's
// consent cookie as a marker, so the first record identified under it is
// marked consent_changed even for an ID from before (set where no consent
// was needed).

// followPlatformGrant marks the first record identified under consent
// given through the platform's cookie, in a region that requires
// consent: when the request carries no consent cookie of the edge bound
// to the record's cookie ID (a new ID, an ID from before the consent, or a
// forged or copied consent cookie), the record gets consent_changed and
// the response the marker (consent_cookie.go), for cookie_max_age.
// Later requests carry it and are plain. A marker is set again with its
// ID cookie (refreshed, re-signed or moved), so it lives as long as the
// ID; a grant at the endpoint is left as it is.
func (c *Collect) followPlatformGrant(r *http.Request, rec *beacon.Record, jar *visitorCookies, p *pendingCookie) {
	if !jar.consentNeeded || !jar.platformSeen || !rec.Consent.Identifying() || rec.CookieID == "" {
		return
	}
	switch c.consentCookieFor(jar, rec.CookieID) {
	case proofEndpoint:
		return
	case proofMarker:
		if p.value == "" {
			return // the ID cookie stays as it is, and so does its marker
		}
	default:
		rec.ConsentChanged = true
	}
	p.more = c.appendCookie(p.more, r, kindConsent, c.markerValue(rec.CookieID), time.Duration(c.app.CookieMaxAge))
}

// followPlatformRefusal deletes the identifier cookies of a visitor whose
// platform cookie says not granted (consent pending), on the response to
// the first request that carries any, and marks its record
// consent_changed: the platform's withdrawal, or a refusal by a visitor
// identified before (where no consent was needed). It sets no opt-out
// cookie: the platform decides, and the visitor may grant again there.
// A visitor merely pending, without the platform's cookie, has decided
// nothing yet: their cookies stay, unread.
func (c *Collect) followPlatformRefusal(r *http.Request, rec *beacon.Record, jar *visitorCookies, p *pendingCookie) {
	if !jar.platformSeen || jar.platformGranted || rec.Consent != beacon.ConsentPending || !jar.holdsIdentifiers() {
		return
	}
	p.more = c.appendIdentifierDeletions(p.more, r)
	rec.ConsentChanged = true
}

// holdsIdentifiers reports whether the request carries any of the edge's
// identifier cookies: the visitor, member or consent cookie, under either
// name, valid or not.
func (jar *visitorCookies) holdsIdentifiers() bool {
	return jar.ids.seen || jar.legacy.seen || jar.otherID || jar.nmembers > 0 || jar.nconsents > 0
}

// appendIdentifierDeletions appends to lines the Set-Cookie values that
// delete the identifier cookies, under both names: the visitor, member
// and consent cookies. A withdrawal at the consent endpoint and the
// platform's refusal delete them alike.
func (c *Collect) appendIdentifierDeletions(lines []string, r *http.Request) []string {
	lines = c.appendCookie(lines, r, kindID, "", 0)
	lines = c.appendCookie(lines, r, kindMember, "", 0)
	return c.appendCookie(lines, r, kindConsent, "", 0)
}
