package caddymodule

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// consent decides what the request allows its record to carry, before any
// identifier is read or set: off (a child-directed path or site), the
// do-not-collect mark or, for a beacon, a page it reports (page: its u,
// else the Referer) under the collect off paths, then the opt-out cookie
// and Sec-GPC, then the consent platform's cookie saying not granted, and
// last whether the visitor's country (from GeoIP, "" for unknown)
// requires consent they have not given. A child's record stays a child's
// whatever else the request says: it carries no anon_id, which other
// records without consent do (pending ones included).
//
// The platform's refusal counts wherever the visitor is: the site's own
// platform has recorded that this browser is not to be identified, and a
// GeoIP country is a guess (fail closed).
func (c *Collect) consent(r *http.Request, jar *visitorCookies, isBeacon bool, page, country string, now time.Time) beacon.Consent {
	pv := c.app.privacy
	if jar.platformSeen { // only with consent_cookie
		jar.platformGranted = pv.platformGranted(jar.platform)
	}
	switch {
	case c.collectOff(r), jar.child, isBeacon && c.offPageBeacon(r, page):
		return beacon.ConsentChild
	case jar.optOut:
		return beacon.ConsentOptOut
	case pv.gpc && r.Header.Get("Sec-Gpc") == "1":
		return beacon.ConsentGPC
	case jar.platformSeen && !jar.platformGranted:
		jar.consentNeeded = pv.needsConsent(country)
		return beacon.ConsentPending
	case pv.needsConsent(country):
		jar.consentNeeded = true
		if !c.consented(jar, now) {
			return beacon.ConsentPending
		}
	}
	return beacon.ConsentFull
}

// collectOff reports whether collection is off for r's path.
func (c *Collect) collectOff(r *http.Request) bool {
	if !c.CollectOff {
		return false
	}
	if len(c.offPaths) == 0 {
		return true
	}
	ok, _ := c.offPaths.MatchWithError(r)
	return ok
}

// offPageBeacon reports whether a beacon may report a page under the
// collect off paths (the beacon's own path is site-wide): the page named
// by u in its query or body (page), else the Referer. It fails closed:
// with collect off paths, a beacon whose page is unknown counts as one
// from a child's page. Unknown is no u and no Referer (Referrer-Policy
// no-referrer, or a client that sends none), a value that does not parse
// as an absolute path or http(s) URL, and a Referer of path "/" without a
// query, which is all the origin, strict-origin and (cross-origin)
// origin-when-cross-origin and strict-origin-when-cross-origin policies
// send (the Referrer Policy spec, section 3): a child page and the home
// page look alike there. Give the pixel of a home page a u to have it
// counted in full.
func (c *Collect) offPageBeacon(r *http.Request, page string) bool {
	if !c.CollectOff || len(c.offPaths) == 0 {
		return false
	}
	fromReferer := page == ""
	if fromReferer {
		page = r.Header.Get("Referer")
	}
	u, err := url.Parse(page)
	switch {
	case err != nil, page == "":
		return true
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(u.Path, "/") && !fromReferer:
		// An absolute path in u: the page reports itself.
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return true
	case fromReferer && (u.Path == "" || u.Path == "/") && u.RawQuery == "":
		return true // only an origin: any page of the site
	}
	if u.Path == "" {
		u.Path = "/"
	}
	pr := *r // the matcher reads the path; the rest (placeholders) stays r's
	pr.URL = u
	ok, _ := c.offPaths.MatchWithError(&pr)
	return ok
}

// protectIP truncates the record's IP when the site asks for it, and
// always for a record without consent.
func (c *Collect) protectIP(rec *beacon.Record, ip netip.Addr) {
	pv := c.app.privacy
	if !ip.IsValid() || rec.IPTruncated || (!pv.truncate && rec.Consent.Identifying()) {
		return
	}
	rec.IP = beacon.TruncateIP(ip, pv.v4, pv.v6).String()
	rec.IPTruncated = true
}
