package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/publicsuffix"

	"github.com/b2scom/b2s-edge/beacon"
)

// Defaults of the network and privacy options.
const (
	DefaultLinkPath     = "/_b2s/go"
	DefaultTokenParam   = "_b2s"
	DefaultTokenTTL     = caddy.Duration(30 * time.Second)
	DefaultOptOutPath   = "/_b2s/optout"
	DefaultOptInPath    = "/_b2s/optin"
	DefaultChildHeader  = "X-B2S-Child"
	DefaultMemberHeader = "X-B2S-Member"
	DefaultIPv4Prefix   = 24
	DefaultIPv6Prefix   = 48
)

// Names of the plugin's other cookies, after the visitor cookie's name.
const (
	optOutSuffix = "_optout" // the visitor opted out on this site
	childSuffix  = "_dnc"    // do not collect: the site marked the browser as a child's
	memberSuffix = "_m"      // <member ID>.<signature binding it to the cookie ID>
)

// Network lists the sites of the b2s.com network. Every site gets its own
// first-party cookie; a visitor who follows a link from one site to
// another through the link endpoint carries their network ID along in a
// sealed, single-use token, and records from every site then share one
// network_id. Beacons and POST beacons answer credentialed CORS requests
// from the network's origins.
type Network struct {
	// Sites are the network's hosts or registrable domains, e.g.
	// "b2s.com" (which covers www.b2s.com and every other subdomain) and
	// "b2smade.com". Required.
	Sites []string `json:"sites,omitempty"`

	// LinkPath is the link endpoint served on every site with
	// b2s_collect: <a href="/_b2s/go?to=https://www.b2smade.com/p">
	// redirects to the destination with a link token. Destinations must
	// be network sites: anything else gets 400, never a redirect.
	// Default "/_b2s/go".
	LinkPath string `json:"link_path,omitempty"`

	// TokenParam is the query parameter carrying the link token. The
	// destination exchanges it for its own cookie and redirects to the
	// same URL without it, before the page loads, so the token never
	// reaches the page, its scripts or a Referer. Default "_b2s".
	TokenParam string `json:"token_param,omitempty"`

	// TokenTTL is how long a link token is accepted. Each is accepted
	// once per proxy instance. Default 30s.
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`
}

// Privacy configures how the edge honours the privacy policy's promises.
// Opted-out, GPC and child records carry no cookie ID, network ID or
// member ID, and a truncated IP; no cookie is set for them.
type Privacy struct {
	// OptOutPath sets the opt-out cookie and deletes the visitor's
	// cookies on this site; OptInPath clears the opt-out. Both answer
	// GET and POST, redirect to ?return=<path or network URL> when given
	// and otherwise answer with a short page. Defaults "/_b2s/optout" and
	// "/_b2s/optin".
	OptOutPath string `json:"optout_path,omitempty"`
	OptInPath  string `json:"optin_path,omitempty"`

	// GPC treats a request with Sec-GPC: 1 (Global Privacy Control) as
	// opted out. Default true.
	GPC *bool `json:"gpc,omitempty"`

	// TruncateIP stores every record's IP cut to its network prefix,
	// after the GeoIP lookup (so the location stays as accurate). IPs of
	// opted-out, GPC and child records are always truncated. Default
	// false.
	TruncateIP bool `json:"truncate_ip,omitempty"`

	// IPv4Prefix and IPv6Prefix are the bits kept by truncation. Defaults
	// 24 and 48.
	IPv4Prefix int `json:"ipv4_prefix,omitempty"`
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`

	// ChildHeader is the response header by which the site tells the edge
	// that the visitor is a child (any value but "0"): the visitor's
	// cookies are deleted, the browser is marked do-not-collect, and the
	// header is removed before the response leaves. Default "X-B2S-Child".
	ChildHeader string `json:"child_header,omitempty"`

	// MemberHeader is the response header by which the site tells the
	// edge who signed in: its value, a member ID of up to 64 visible
	// ASCII characters, is linked to the visitor's cookie ID and carried
	// in records as member_id until the site sends the header empty or
	// "-" (sign-out). It is removed before the response leaves. Default
	// "X-B2S-Member".
	MemberHeader string `json:"member_header,omitempty"`
}

// network is the provisioned Network.
type network struct {
	sites      []string // lowercase, no leading dot
	linkPath   string
	tokenParam string
	tokenTTL   time.Duration
	sealer     *beacon.LinkSealer
}

// privacy is the provisioned Privacy.
type privacy struct {
	optOutPath, optInPath     string
	gpc                       bool
	truncate                  bool
	v4, v6                    int
	childHeader, memberHeader string
	optOutName, childName     string
	memberName                string
}

// linkReplay remembers the link tokens used by this process, across
// reloads, so each is accepted once.
var linkReplay = beacon.NewReplay()

func (a *App) provisionPrivacy() error {
	p := a.Privacy
	if p == nil {
		p = new(Privacy)
	}
	pv := &privacy{
		optOutPath: or(p.OptOutPath, DefaultOptOutPath), optInPath: or(p.OptInPath, DefaultOptInPath),
		gpc: p.GPC == nil || *p.GPC, truncate: p.TruncateIP,
		v4: p.IPv4Prefix, v6: p.IPv6Prefix,
		childHeader:  http.CanonicalHeaderKey(or(p.ChildHeader, DefaultChildHeader)),
		memberHeader: http.CanonicalHeaderKey(or(p.MemberHeader, DefaultMemberHeader)),
		optOutName:   a.CookieName + optOutSuffix, childName: a.CookieName + childSuffix,
		memberName: a.CookieName + memberSuffix,
	}
	if pv.v4 == 0 {
		pv.v4 = DefaultIPv4Prefix
	}
	if pv.v6 == 0 {
		pv.v6 = DefaultIPv6Prefix
	}
	if pv.v4 < 0 || pv.v4 > 32 || pv.v6 < 0 || pv.v6 > 128 {
		return fmt.Errorf("b2s: privacy: truncate_ip keeps %d IPv4 and %d IPv6 bits; use 0-32 and 0-128, e.g. truncate_ip 24 48", pv.v4, pv.v6)
	}
	for _, path := range []string{pv.optOutPath, pv.optInPath} {
		if !strings.HasPrefix(path, "/") {
			return fmt.Errorf("b2s: privacy: path %q must start with /", path)
		}
	}
	if pv.optOutPath == pv.optInPath {
		return fmt.Errorf("b2s: privacy: optout_path and optin_path are both %q; give them different paths", pv.optOutPath)
	}
	for _, h := range []string{pv.childHeader, pv.memberHeader} {
		if !isToken(h) { // a header name is a token (RFC 9110, section 5.1)
			return fmt.Errorf("b2s: privacy: %q is not a header name; use e.g. X-B2S-Child", h)
		}
	}
	a.privacy = pv

	n := a.Network
	if n == nil {
		return nil
	}
	nw := &network{
		linkPath: or(n.LinkPath, DefaultLinkPath), tokenParam: or(n.TokenParam, DefaultTokenParam),
		tokenTTL: time.Duration(n.TokenTTL),
	}
	if nw.tokenTTL == 0 {
		nw.tokenTTL = time.Duration(DefaultTokenTTL)
	}
	if nw.tokenTTL < 0 || nw.tokenTTL > 10*time.Minute {
		return fmt.Errorf("b2s: network: token_ttl %v must be positive and at most 10m; a few seconds cover a redirect, e.g. token_ttl 30s", nw.tokenTTL)
	}
	if len(n.Sites) == 0 {
		return fmt.Errorf("b2s: network: sites is empty; list the network's hosts or registrable domains, e.g. sites b2s.com b2smade.com")
	}
	for _, s := range n.Sites {
		s = strings.TrimPrefix(strings.ToLower(s), ".")
		if !validDomain(s) {
			return fmt.Errorf("b2s: network: site %q is not a host name; list hosts or registrable domains, e.g. b2s.com", s)
		}
		if suffix, icann := publicsuffix.PublicSuffix(s); suffix == s && icann {
			return fmt.Errorf("b2s: network: site %q is a public suffix, shared by unrelated sites; list the network's own domains, e.g. b2s.com", s)
		}
		nw.sites = append(nw.sites, s)
	}
	if !strings.HasPrefix(nw.linkPath, "/") {
		return fmt.Errorf("b2s: network: link_path %q must start with /", nw.linkPath)
	}
	if nw.linkPath == pv.optOutPath || nw.linkPath == pv.optInPath {
		return fmt.Errorf("b2s: network: link_path %q is also a privacy path; give it its own", nw.linkPath)
	}
	if url.QueryEscape(nw.tokenParam) != nw.tokenParam || nw.tokenParam == "" {
		return fmt.Errorf("b2s: network: token_param %q must be a plain query parameter name, e.g. _b2s", nw.tokenParam)
	}
	sealer, err := beacon.NewLinkSealer(a.signerKeys...)
	if err != nil {
		return fmt.Errorf("b2s: network: %v", err)
	}
	nw.sealer = sealer
	a.network = nw
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// hostname is host without its port, lowercased.
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// has reports whether host (without port) is a network site or under one.
func (n *network) has(host string) bool { return n.siteOf(host) != "" }

// siteOf returns the network site entry host (without port) is or falls
// under, or "".
func (n *network) siteOf(host string) string {
	if n == nil {
		return ""
	}
	for _, s := range n.sites {
		if host == s || (len(host) > len(s) && strings.HasSuffix(host, s) && host[len(host)-len(s)-1] == '.') {
			return s
		}
	}
	return ""
}

// cookieDomainFor is the Domain of the plugin's cookies on r: the
// configured cookie_domain, or with "network" the network site r's host
// falls under.
func (c *Collect) cookieDomainFor(r *http.Request) string {
	if c.networkDomain {
		return c.app.network.siteOf(hostname(r.Host))
	}
	return c.CookieDomain
}

// destination checks a link's target: an absolute http(s) URL of a
// network site, written plainly. Anything that browsers and URL parsers
// might read differently (backslashes, control characters, user info,
// encoded hosts, other schemes, scheme-relative forms) is refused rather
// than normalised. A plain-http destination is accepted only from a
// plain-http request.
func (n *network) destination(raw string, tls bool) (*url.URL, bool) {
	if n == nil || !plainURL(raw) {
		return nil, false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return nil, false
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && !tls:
	default:
		return nil, false
	}
	if !strings.HasPrefix(raw, u.Scheme+"://"+u.Host) {
		return nil, false // the authority was not written plainly
	}
	for i := 0; i < len(u.Host); i++ {
		c := u.Host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':') {
			return nil, false
		}
	}
	if p := u.Port(); p != "" {
		if v, err := strconv.Atoi(p); err != nil || v < 1 || v > 65535 {
			return nil, false
		}
	}
	if strings.HasSuffix(u.Hostname(), ".") || !n.has(hostname(u.Host)) {
		return nil, false
	}
	return u, true
}

// consent is what the request allows the record to carry: off
// (child-directed path or site), the do-not-collect mark, the opt-out
// cookie, then Sec-GPC.
func (c *Collect) consent(r *http.Request, jar *visitorCookies) beacon.Consent {
	pv := c.app.privacy
	switch {
	case c.collectOff(r), jar.child:
		return beacon.ConsentChild
	case jar.optOut:
		return beacon.ConsentOptOut
	case pv.gpc && r.Header.Get("Sec-Gpc") == "1":
		return beacon.ConsentGPC
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

// cookieLine builds a Set-Cookie value for one of the plugin's cookies,
// with the visitor cookie's attributes; maxAge 0 deletes it.
func (c *Collect) cookieLine(r *http.Request, name, value string, maxAge time.Duration) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('=')
	b.WriteString(value)
	b.WriteString("; Path=/")
	if d := c.cookieDomainFor(r); d != "" {
		b.WriteString("; Domain=")
		b.WriteString(d)
	}
	b.WriteString("; Max-Age=")
	b.WriteString(strconv.FormatInt(int64(maxAge/time.Second), 10))
	// The same SameSite as the visitor cookie: where a cross-site beacon
	// sends the visitor cookie, it sends the opt-out, child and member
	// cookies too.
	if r.TLS != nil {
		b.WriteString(c.attrs[1])
	} else {
		b.WriteString(c.attrs[0])
	}
	return b.String()
}

// serveOptOut answers the opt-out and opt-in endpoints.
func (c *Collect) serveOptOut(w http.ResponseWriter, r *http.Request, rec *beacon.Record, out bool) {
	a := c.app
	pv := a.privacy
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		h.Set("Allow", "GET, HEAD, POST")
		c.finishEndpoint(w, r, rec, http.StatusMethodNotAllowed, "")
		return
	}
	if !out && !c.sameSiteRequest(r) {
		// Opting back in undoes a privacy choice: another site's page
		// (an advertiser's image or form) must not do it for the visitor.
		// Opting out stays open to anyone.
		h.Set("Content-Type", "text/plain; charset=utf-8")
		c.finishEndpoint(w, r, rec, http.StatusForbidden, "b2s: opt-in is accepted only from this site's own pages\n")
		return
	}
	if out {
		h.Add("Set-Cookie", c.cookieLine(r, pv.optOutName, "1", time.Duration(a.CookieMaxAge)))
		h.Add("Set-Cookie", c.cookieLine(r, a.CookieName, "", 0))
		h.Add("Set-Cookie", c.cookieLine(r, pv.memberName, "", 0))
		privacySignal("optout").Inc()
	} else {
		h.Add("Set-Cookie", c.cookieLine(r, pv.optOutName, "", 0))
		privacySignal("optin").Inc()
	}
	h.Set("Cache-Control", "no-store")
	if to := r.URL.Query().Get("return"); to != "" {
		if loc, ok := c.returnTo(r, to); ok {
			h.Set("Location", loc)
			c.finishEndpoint(w, r, rec, http.StatusSeeOther, "")
			return
		}
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	msg := optedOutPage
	if !out {
		msg = optedInPage
	}
	c.finishEndpoint(w, r, rec, http.StatusOK, msg)
}

const (
	optedOutPage = "<!doctype html><meta charset=utf-8><title>Opted out</title><p>You have opted out: this site no longer sets its visitor cookie in this browser, and records of your visits carry no identifier and a shortened IP address.</p>\n"
	optedInPage  = "<!doctype html><meta charset=utf-8><title>Opted in</title><p>Your opt-out has been cleared for this site.</p>\n"
)

// sameSiteRequest reports whether r comes from this site or the visitor
// themselves: Sec-Fetch-Site (sent by current browsers) is not
// cross-site, and an Origin header, when sent, is this host or a network
// site's.
func (c *Collect) sameSiteRequest(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return false
	}
	origin := r.Header.Get("Origin")
	return origin == "" || c.ownOrigin(r, origin) // "null": a sandboxed frame or a redirect from elsewhere
}

// plainURL reports whether s can be a redirect target as written: not
// empty, at most beacon.MaxURLLen bytes, and none of what browsers and
// URL parsers read differently (control characters, spaces, backslashes,
// non-ASCII bytes).
func plainURL(s string) bool {
	if s == "" || len(s) > beacon.MaxURLLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// returnTo accepts a path on this site ("/x", not "//x" or "/\x") or a
// network URL as the place to return to.
func (c *Collect) returnTo(r *http.Request, to string) (string, bool) {
	if strings.HasPrefix(to, "/") && !strings.HasPrefix(to, "//") {
		return to, plainURL(to)
	}
	if u, ok := c.app.network.destination(to, r.TLS != nil); ok {
		return u.String(), true
	}
	return "", false
}

// serveLink answers the link endpoint: a redirect to a network site with
// a token carrying the visitor's network ID. The token is left out for a
// visitor without consent, and for a destination on this host.
func (c *Collect) serveLink(w http.ResponseWriter, r *http.Request, rec *beacon.Record, jar *visitorCookies, now time.Time) {
	a := c.app
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		c.finishEndpoint(w, r, rec, http.StatusMethodNotAllowed, "")
		return
	}
	dest, ok := a.network.destination(r.URL.Query().Get("to"), r.TLS != nil)
	if !ok {
		linkResult("bad_destination").Inc()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		c.finishEndpoint(w, r, rec, http.StatusBadRequest, "b2s: the link's destination (to=) must be an absolute URL of a site of the network\n")
		return
	}
	if rec.Consent.Identifying() {
		cookie := c.identify(r, now, rec, jar, nil)
		if cookie.value != "" {
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
				linkResult("issued").Inc()
			}
		}
	}
	h.Set("Location", dest.String())
	c.finishEndpoint(w, r, rec, http.StatusFound, "")
}

// fromNetwork reports whether r's Referer is a page of a network site,
// as it is when the visitor followed a link endpoint's redirect from one.
func (c *Collect) fromNetwork(r *http.Request) bool {
	u, err := url.Parse(r.Header.Get("Referer"))
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && c.app.network.has(hostname(u.Host))
}

// stripToken returns r's query without the link token parameter, and the
// token; when there are several, token is empty: none is trusted.
func stripToken(rawQuery, param string) (rest, token string, found bool) {
	var b strings.Builder
	for q := rawQuery; q != ""; {
		var part string
		part, q, _ = strings.Cut(q, "&")
		key, val, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == param {
			if !found {
				token, _ = url.QueryUnescape(val)
			} else {
				token = ""
			}
			found = true
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(part)
	}
	return b.String(), token, found
}

// serveLinked exchanges a link token for this site's cookie, joined to
// the token's network ID, and redirects to the same URL without the
// token before the page loads.
func (c *Collect) serveLinked(w http.ResponseWriter, r *http.Request, rec *beacon.Record, jar *visitorCookies, rest, token string, now time.Time) {
	a := c.app
	h := w.Header()
	if rec.Consent.Identifying() {
		var link *beacon.Link
		l, err := a.network.sealer.Open(token, hostname(r.Host), now)
		switch {
		case err == beacon.ErrLinkExpired:
			linkResult("expired").Inc()
		case err == beacon.ErrLinkHost:
			linkResult("wrong_host").Inc()
		case err != nil:
			linkResult("invalid").Inc()
		case !c.fromNetwork(r):
			// A token copied out of someone's address bar and handed
			// to a victim (in a mail, on another site) would join the
			// victim to the sender: only a navigation from a network
			// page links.
			linkResult("foreign_referrer").Inc()
		case !linkReplay.Use(l, now):
			linkResult("replayed").Inc()
		default:
			linkResult("linked").Inc()
			link = &l
			rec.LinkedFrom = l.From
		}
		cookie := c.identify(r, now, rec, jar, link)
		if cookie.value != "" {
			cookie.addTo(h)
		}
	}
	loc := r.URL.EscapedPath()
	if rest != "" {
		loc += "?" + rest
	}
	if strings.HasPrefix(loc, "//") {
		loc = "/" + strings.TrimLeft(loc, "/") // never a scheme-relative URL
	}
	h.Set("Location", loc)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	c.finishEndpoint(w, r, rec, http.StatusFound, "")
}

// finishEndpoint records a response the plugin answers itself (not the
// beacon), then writes it: status and body.
func (c *Collect) finishEndpoint(w http.ResponseWriter, r *http.Request, rec *beacon.Record, status int, body string) {
	rec.Kind = beacon.KindPage
	rec.Status = status
	if r.Method != http.MethodHead {
		rec.Bytes = int64(len(body))
	}
	c.emit(rec)
	recordsPage.Inc()
	if body != "" {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if body != "" && r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}

// Metrics of the network and privacy features.
var (
	linkTokens     *prometheus.CounterVec
	privacySignals *prometheus.CounterVec
)

func privacyCollectors() []prometheus.Collector {
	linkTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "b2s", Name: "link_tokens_total",
		Help: "Link tokens, by result: issued, linked (exchanged for a cookie), expired, replayed, wrong_host, invalid, foreign_referrer (not arriving from a network page), bad_destination (a link endpoint request refused).",
	}, []string{"result"})
	privacySignals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "b2s", Name: "privacy_signals_total",
		Help: "Privacy signals acted on: optout, optin, child (the site's child header), member (sign-in), signout.",
	}, []string{"signal"})
	// Every known label value starts at 0, so that rates and alerts see a
	// series from the first scrape.
	for _, r := range []string{"issued", "linked", "expired", "replayed", "wrong_host", "invalid", "foreign_referrer", "bad_destination"} {
		linkTokens.WithLabelValues(r)
	}
	for _, sig := range []string{"optout", "optin", "child", "member", "signout"} {
		privacySignals.WithLabelValues(sig)
	}
	return []prometheus.Collector{linkTokens, privacySignals}
}

func linkResult(r string) prometheus.Counter {
	metricsOnce.Do(buildMetrics)
	return linkTokens.WithLabelValues(r)
}

func privacySignal(s string) prometheus.Counter {
	metricsOnce.Do(buildMetrics)
	return privacySignals.WithLabelValues(s)
}
