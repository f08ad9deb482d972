package caddymodule

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// linkReplay remembers the link tokens used by this process, across
// reloads, so each is accepted once.
var linkReplay = beacon.NewReplay()

// serveLink answers the link endpoint: a redirect to a network site with
// a token carrying the visitor's network ID. The token is left out for a
// visitor without consent, and for a destination on this host.
func (c *Collect) serveLink(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, jar *visitorCookies, now time.Time) {
	a := c.app
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		c.finishEndpoint(w, r, rec, ip, http.StatusMethodNotAllowed, "")
		return
	}
	dest, ok := a.network.destination(r.URL.Query().Get("to"), r.TLS != nil)
	if !ok {
		linkResults[linkBadDestination].Inc()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		c.finishEndpoint(w, r, rec, ip, http.StatusBadRequest, "b2s: the link's destination (to=) must be an absolute URL of a site of the network\n")
		return
	}
	if rec.Consent.Identifying() {
		cookie := c.identify(r, now, rec, jar, nil)
		if cookie.set() {
			cookie.addTo(h)
		}
		from, to := hostname(r.Host), hostname(dest.Host)
		if from != to && rec.NetworkID != "" {
			tok, err := a.network.sealer.Seal(rec.NetworkID, from, to, now, a.network.tokenTTL)
			if err == nil {
				// Any token already in the destination is dropped (it
				// would join the visitor to someone else's network ID),
				// ours appended, so the query keeps its order.
				dest.RawQuery, _, _ = stripToken(dest.RawQuery, a.network.tokenParam)
				if dest.RawQuery != "" {
					dest.RawQuery += "&"
				}
				dest.RawQuery += a.network.tokenParam + "=" + tok
				linkResults[linkIssued].Inc()
			}
		}
	}
	h.Set("Location", dest.String())
	c.finishEndpoint(w, r, rec, ip, http.StatusFound, "")
}

// fromSite reports whether r's Referer is a page of the network site
// that from (a token's source host) falls under, as it is when the
// visitor followed that site's link endpoint's redirect. A page of the
// landing site itself (an ad it serves, navigating the visitor with a
// token someone else minted) is not.
func (c *Collect) fromSite(r *http.Request, from string) bool {
	u, err := url.Parse(r.Header.Get("Referer"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return false
	}
	site := c.app.network.siteOf(hostname(u.Host))
	return site != "" && site == c.app.network.siteOf(from)
}

// linkNavigation reports whether r is what following a link endpoint's
// redirect makes: a GET of a top-level document (Sec-Fetch-Mode navigate
// and Sec-Fetch-Dest document, where the browser sends them) from a page
// of the site that issued the token (from). An image, a frame, a script's
// fetch or a HEAD that carries a token is none: a page elsewhere that
// embeds a token's URL must not join the visitor.
func (c *Collect) linkNavigation(r *http.Request, from string) bool {
	h := r.Header
	if r.Method != http.MethodGet {
		return false
	}
	if m := h["Sec-Fetch-Mode"]; len(m) > 0 && m[0] != "navigate" {
		return false
	}
	if d := h["Sec-Fetch-Dest"]; len(d) > 0 && d[0] != "document" {
		return false
	}
	return c.fromSite(r, from)
}

// dropToken removes the link token parameter from r's URL, so that it
// reaches neither the upstream nor a record, whatever the method, and
// returns it (empty when there were several: none is trusted).
func dropToken(r *http.Request, param string) (token string, found bool) {
	rest, token, found := stripToken(r.URL.RawQuery, param)
	if found {
		r.URL.RawQuery = rest
		r.URL.ForceQuery = false
		r.RequestURI = r.URL.RequestURI() // as Caddy's rewrite keeps it
	}
	return token, found
}

// mayHoldToken reports, cheaply, whether rawQuery may hold the link token
// parameter param, written plainly or percent-encoded.
func mayHoldToken(rawQuery, param string) bool {
	return strings.Contains(rawQuery, param) || strings.IndexByte(rawQuery, '%') >= 0
}

// stripToken returns r's query without the link token parameter, and the
// token; when there are several, token is empty: none is trusted. A
// query without the token is returned as it is, without a copy.
func stripToken(rawQuery, param string) (rest, token string, found bool) {
	var b strings.Builder
	for q := rawQuery; q != ""; {
		at := len(rawQuery) - len(q)
		var part string
		part, q, _ = strings.Cut(q, "&")
		key, val, _ := strings.Cut(part, "=")
		if key != param && (strings.IndexByte(key, '%') < 0 || unescaped(key) != param) {
			if found {
				if b.Len() > 0 {
					b.WriteByte('&')
				}
				b.WriteString(part)
			}
			continue
		}
		if !found {
			b.WriteString(strings.TrimSuffix(rawQuery[:at], "&"))
			token, _ = url.QueryUnescape(val)
		} else {
			token = ""
		}
		found = true
	}
	if !found {
		return rawQuery, "", false
	}
	return b.String(), token, true
}

func unescaped(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// serveLinked exchanges a link token, already removed from r's URL, for
// this site's cookie, joined to the token's network ID, and redirects to
// the same URL without the token before the page loads.
func (c *Collect) serveLinked(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, jar *visitorCookies, token string, now time.Time) {
	a := c.app
	h := w.Header()
	if rec.Consent.Identifying() {
		var link *beacon.Link
		l, err := a.network.sealer.Open(token, hostname(r.Host), now)
		switch {
		case err == beacon.ErrLinkExpired:
			linkResults[linkExpired].Inc()
		case err == beacon.ErrLinkHost:
			linkResults[linkWrongHost].Inc()
		case err != nil:
			linkResults[linkInvalid].Inc()
		case !c.linkNavigation(r, l.From):
			// A token copied out of someone's address bar and handed
			// to a victim (in a mail, on another site), or embedded in
			// another page as an image, would join the victim to the
			// sender: only a navigation from a network page links. The
			// token is not used up.
			linkResults[linkForeignReferrer].Inc()
		case !linkReplay.Use(l, now):
			linkResults[linkReplayed].Inc()
		default:
			linkResults[linkLinked].Inc()
			link = &l
			rec.LinkedFrom = l.From
		}
		cookie := c.identify(r, now, rec, jar, link)
		if cookie.set() {
			cookie.addTo(h)
		}
	}
	loc := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	if strings.HasPrefix(loc, "//") {
		loc = "/" + strings.TrimLeft(loc, "/") // never a scheme-relative URL
	}
	h.Set("Location", loc)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	c.finishEndpoint(w, r, rec, ip, http.StatusFound, "")
}
