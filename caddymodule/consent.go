package caddymodule

import (
	"net/http"
	"net/netip"
	"net/url"

	"github.com/b2scom/b2s-edge/beacon"
)

// consent decides what the request allows its record to carry, before any
// identifier is read or set: off (a child-directed path or site), the
// do-not-collect mark, the opt-out cookie, Sec-GPC, then, for a beacon,
// whether the page it reports (page: its u, else the Referer) is under
// the collect off paths.
func (c *Collect) consent(r *http.Request, jar *visitorCookies, isBeacon bool, page string) beacon.Consent {
	pv := c.app.privacy
	switch {
	case c.collectOff(r), jar.child:
		return beacon.ConsentChild
	case jar.optOut:
		return beacon.ConsentOptOut
	case pv.gpc && r.Header.Get("Sec-Gpc") == "1":
		return beacon.ConsentGPC
	case isBeacon && c.offPageBeacon(r, page):
		return beacon.ConsentChild
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

// offPageBeacon reports whether a beacon reports a page under the
// collect off paths (the beacon's own path is site-wide): the page named
// by u in its query or body (page), else the Referer.
func (c *Collect) offPageBeacon(r *http.Request, page string) bool {
	if !c.CollectOff || len(c.offPaths) == 0 {
		return false
	}
	if page == "" {
		page = r.Header.Get("Referer")
	}
	u, err := url.Parse(page)
	if err != nil || page == "" {
		return false
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
