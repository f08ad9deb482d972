package caddymodule

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// serveConsent answers the consent endpoint (consent_path). A GET or HEAD
// asks, with a page whose form grants consent; its POST grants it, under
// the opt-in's rules (visitorOptIn and the form's token): only the
// visitor's own submission of a form of this origin. With ?withdraw a
// GET or POST from anywhere withdraws it, as the opt-out opts out:
// withdrawing takes nothing from the visitor.
func (c *Collect) serveConsent(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, jar *visitorCookies, now time.Time) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		h.Set("Allow", "GET, HEAD, POST")
		c.finishEndpoint(w, r, rec, ip, http.StatusMethodNotAllowed, "")
		return
	}
	if r.URL.Query().Has("withdraw") {
		c.withdrawConsent(w, r, rec, ip)
		return
	}
	if r.Method != http.MethodPost {
		c.confirmConsent(w, r, rec, ip)
		return
	}
	refuse := func(msg string) {
		consentDecision[consentRefused].Inc()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		c.finishEndpoint(w, r, rec, ip, http.StatusForbidden, msg)
	}
	switch {
	case !visitorOptIn(r):
		// Granting consent is the visitor's choice: another site, a
		// script or an ad on the site's pages, a frame must not make it.
		refuse("b2s: consent is accepted only from a form on this site that the visitor submits\n")
		return
	case !c.validOptInToken(w, r, now):
		refuse("b2s: consent is accepted only from its own form, submitted within 15 minutes: open " + c.app.privacy.consentPath + " and submit it\n")
		return
	case rec.Consent == beacon.ConsentChild:
		refuse("b2s: consent not recorded: this browser is marked as a child's, or the page is child-directed\n")
		return
	case rec.Consent == beacon.ConsentGPC:
		refuse("b2s: consent not recorded: this browser sends Global Privacy Control, which the site honours as an opt-out\n")
		return
	}
	// Granted: the request is identified, and its IP kept, as the next
	// ones will be.
	rec.Consent = beacon.ConsentFull
	if rec.IPTruncated && ip.IsValid() {
		rec.IP, rec.IPTruncated = ip.String(), false
		c.protectIP(rec, ip) // truncate_ip still applies
	}
	cookie := c.identify(r, now, rec, jar, nil)
	if rec.CookieID == "" {
		// Several visitor cookies, none trusted (identify): consent bound
		// to one of them could be a planted one's.
		rec.Consent = beacon.ConsentPending
		c.protectIP(rec, ip)
		refuse("b2s: consent not recorded: this browser holds several visitor cookies of this site; clear the site's cookies and try again\n")
		return
	}
	cookie.addTo(h)
	c.addCookie(h, r, kindConsent, c.consentValue(rec.CookieID), time.Duration(c.app.CookieMaxAge))
	if jar.optOut {
		c.addCookie(h, r, kindOptOut, "", 0)
	}
	c.dropOptInNonce(h, r)
	rec.ConsentChanged = true
	consentDecision[consentGranted].Inc()
	c.finishReturning(w, r, rec, ip, consentGrantedPage)
}

// withdrawConsent deletes the visitor's cookies, the edge's consent
// cookie included, and sets the opt-out cookie: from then on the visitor
// is opted out, until a grant or the opt-in clears it.
func (c *Collect) withdrawConsent(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr) {
	h := w.Header()
	if rec.Consent.Identifying() || rec.Consent == beacon.ConsentPending {
		rec.Consent = beacon.ConsentOptOut
		rec.ConsentChanged = true
		c.protectIP(rec, ip)
	}
	c.addCookie(h, r, kindOptOut, "1", time.Duration(c.app.CookieMaxAge))
	h["Set-Cookie"] = c.appendIdentifierDeletions(h["Set-Cookie"], r)
	consentDecision[consentWithdrawn].Inc()
	c.finishReturning(w, r, rec, ip, consentWithdrawnPage)
}

// confirmConsent answers a GET or HEAD of the consent path with a page
// whose form grants consent, with the same return, when the visitor
// submits it (serveTokenForm).
func (c *Collect) confirmConsent(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr) {
	c.serveTokenForm(w, r, rec, ip, c.app.privacy.consentPath, consentFormStart, consentFormEnd)
}

const (
	consentFormStart     = "<!doctype html><meta charset=utf-8><title>Consent</title><p>Consenting lets this site set its visitor cookie in this browser, and records of your visits carry it. You can withdraw at any time.</p><form method=post action=\""
	consentFormEnd       = "\"><button type=submit>I consent</button></form>\n"
	consentGrantedPage   = "<!doctype html><meta charset=utf-8><title>Consent given</title><p>Thank you: this site now sets its visitor cookie in this browser.</p>\n"
	consentWithdrawnPage = "<!doctype html><meta charset=utf-8><title>Consent withdrawn</title><p>You have withdrawn your consent: this site no longer sets its visitor cookie in this browser, and records of your visits carry no identifier and a shortened IP address.</p>\n"
)
