package caddymodule

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/mailink"
)

func init() {
	caddy.RegisterModule(Collect{})
}

// DefaultBeaconPath is where the 1x1 beacon is served unless configured.
const DefaultBeaconPath = "/b.gif"

// Placeholders set on every request b2s_collect passes on to the next
// handler (not on the beacon and the plugin's own endpoints, which it
// answers itself). Empty when the visitor's consent excludes identifiers.
const (
	// VarCookieID holds the visitor's cookie ID: {http.vars.b2s.cookie_id}.
	VarCookieID = "b2s.cookie_id"
	// VarCookieState holds new, returning or reset: {http.vars.b2s.cookie_state}.
	VarCookieState = "b2s.cookie_state"
	// VarEventID holds the record's event_id: {http.vars.b2s.event_id}.
	VarEventID = "b2s.event_id"
)

// Collect is the `b2s_collect` handler. On every request it reads the
// visitor's signed cookie, issuing or replacing it when it is missing or
// does not verify, and records the request. On the beacon path it answers
// GET and HEAD itself with a 1x1 transparent GIF and POST (sendBeacon)
// with 204, after the record is in the spool, and answers CORS preflights;
// everything else goes on to the next handler and is recorded,
// when the response is done, as a page with the response's status and
// size. Records go to the b2s app's spool, and from there to Kafka: a
// request never waits on Kafka.
type Collect struct {
	// Beacon is the path of the 1x1 beacon. Default "/b.gif".
	Beacon string `json:"beacon,omitempty"`

	// Script is the path of the JavaScript tag, which sends a pageview
	// with sendBeacon on load and on single-page-app navigations. Default:
	// the beacon path with its extension replaced by .js, e.g. "/b.js". It
	// is served to everyone alike (cacheable for an hour, with an ETag),
	// without a cookie or a record.
	Script string `json:"script,omitempty"`

	// CookieDomain is the cookie's Domain attribute, so that the cookie is
	// sent to every subdomain, e.g. "b2s.com". Default: none, a host-only
	// cookie. It must be the site's host or a parent of it, or browsers
	// ignore the cookie. "network" takes, for each request, the entry of
	// the b2s app's network sites the host falls under (www.b2s.com under
	// b2s.com gets Domain=b2s.com): one site block can then serve several
	// sites of the network, each with its own cookie. A host outside the
	// network gets a host-only cookie.
	CookieDomain string `json:"cookie_domain,omitempty"`

	// CookiePrefix is host (the default) or off. With host, over https
	// and without cookie_domain, the plugin's cookies are named with the
	// __Host- prefix (__Host-b2sid, __Host-b2sid_optout, __Host-b2sid_dnc,
	// __Host-b2sid_m): browsers then keep them only as the edge writes
	// them (Secure, Path=/, no Domain) and refuse any other cookie of the
	// name, so a script of the site's origin can neither add one on a
	// narrower path nor replace the edge's (HttpOnly). A visitor's
	// unprefixed b2sid from before is read once, while no __Host-b2sid
	// came, set under the new name and deleted; the opt-out,
	// do-not-collect and member cookies count under either name. Plain
	// http and a cookie_domain keep the unprefixed names (the prefix
	// needs Secure and forbids Domain). off writes the unprefixed names
	// everywhere: visitors with a __Host-b2sid then get a new ID.
	CookiePrefix string `json:"cookie_prefix,omitempty"`

	// SameSite is the SameSite attribute of the plugin's cookies: lax
	// (the default) or none. (Strict is not offered: a visitor arriving
	// from another site, a search engine or a link token would not send
	// the cookie, and would get a new ID.) Use none on the main site whose beacon sister sites
	// embed, so that browsers that allow third-party cookies send it with
	// that beacon; it takes effect over HTTPS only (None requires
	// Secure), plain http gets Lax.
	SameSite string `json:"same_site,omitempty"`

	// CollectOff turns off identifiers for child-directed content: no
	// cookie is read or set, records carry consent "child", no cookie,
	// network or member ID, and a truncated IP. On the whole site, or
	// only under CollectOffPaths (path patterns as in Caddy's path
	// matcher, e.g. /kids/*), which also cover beacons reporting a page
	// under them (u, else the Referer). With paths, a beacon whose page
	// cannot be known (no u and no Referer, or a Referer that names no
	// path, as Referrer-Policy origin sends) counts as a child's: when in
	// doubt, no identifier.
	CollectOff      bool     `json:"collect_off,omitempty"`
	CollectOffPaths []string `json:"collect_off_paths,omitempty"`

	// ClientHints are the User-Agent Client Hints the site asks browsers
	// for, by header name: Sec-CH-UA-Full-Version-List (the full browser
	// version), Sec-CH-UA-Platform-Version (the OS version, which
	// User-Agents freeze) and Sec-CH-UA-Model (the device model);
	// Sec-CH-UA-Platform and Sec-CH-UA-Mobile are sent without asking.
	// They are asked for with an Accept-CH header on HTML responses of
	// visitors whose consent allows identifiers, and Chromium browsers
	// send them on their next requests to the site, where the record's ua
	// takes them in preference to the User-Agent. These hints add to what
	// a browser reveals of itself, so asking is the site's decision.
	// Default: none, no Accept-CH. Records of visitors whose consent does
	// not allow identifiers never take the asked-for hints a browser
	// still sends.
	ClientHints []string `json:"client_hints,omitempty"`

	app           *App
	logger        *zap.Logger
	attrs         [2]string // HttpOnly and SameSite (and Secure) of every plugin cookie: plain http, https
	networkDomain bool      // cookie_domain network: Path and Domain written per request
	prefixOff     bool      // cookie_prefix off
	offPaths      caddyhttp.MatchPath
	script        []byte // the JavaScript tag
	scriptETag    string
	acceptCH      string // the Accept-CH value, "" for none
}

// CaddyModule returns the Caddy module information.
func (Collect) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.b2s_collect",
		New: func() caddy.Module { return new(Collect) },
	}
}

// Provision binds the handler to the b2s app.
func (c *Collect) Provision(ctx caddy.Context) error {
	app, err := getApp(ctx)
	if err != nil {
		return fmt.Errorf("b2s_collect: %v", err)
	}
	return c.bind(ctx, app, ctx.Logger())
}

// bind sets the defaults and derives what the request path needs from the
// configuration and app, once. Provision calls it; tests and benchmarks
// call it to serve requests without Caddy.
func (c *Collect) bind(ctx caddy.Context, app *App, logger *zap.Logger) error {
	c.app, c.logger = app, logger
	if c.Beacon == "" {
		c.Beacon = DefaultBeaconPath
	}
	if c.Script == "" {
		c.Script = defaultScriptPath(c.Beacon)
	}
	c.script, c.scriptETag = buildTag(c.Beacon, app.privacy.consentPath)
	c.acceptCH = acceptCH(c.ClientHints)
	c.CookieDomain = strings.TrimPrefix(strings.ToLower(c.CookieDomain), ".")
	c.prefixOff = c.CookiePrefix == "off"
	c.setAttributes()
	if c.CollectOff && len(c.CollectOffPaths) > 0 {
		c.offPaths = caddyhttp.MatchPath(c.CollectOffPaths)
		if err := c.offPaths.Provision(ctx); err != nil {
			return fmt.Errorf("b2s_collect: collect off: %v", err)
		}
	}
	return nil
}

// Validate checks the configuration.
func (c *Collect) Validate() error {
	if !strings.HasPrefix(c.Beacon, "/") {
		return fmt.Errorf("b2s_collect: beacon path %q must start with /", c.Beacon)
	}
	if !strings.HasPrefix(c.Script, "/") || c.Script == c.Beacon {
		return fmt.Errorf("b2s_collect: script path %q must start with / and differ from the beacon path %q", c.Script, c.Beacon)
	}
	switch c.SameSite {
	case "", "lax", "none":
	default:
		return fmt.Errorf("b2s_collect: same_site %q is not lax or none (strict would give every visitor arriving from another site a new ID)", c.SameSite)
	}
	switch {
	case c.CookiePrefix != "" && c.CookiePrefix != "host" && c.CookiePrefix != "off":
		return fmt.Errorf("b2s_collect: cookie_prefix %q is not host or off", c.CookiePrefix)
	case c.CookiePrefix == "host" && c.CookieDomain != "":
		return fmt.Errorf("b2s_collect: cookie_prefix host needs host-only cookies, but cookie_domain is %q (the __Host- prefix forbids a Domain); remove one of them", c.CookieDomain)
	}
	if len(c.CollectOffPaths) > 0 && !c.CollectOff {
		return fmt.Errorf("b2s_collect: collect_off_paths given without collect_off; use collect off <paths...>")
	}
	if err := checkClientHints(c.ClientHints); err != nil {
		return err
	}
	if c.CookieDomain == cookieDomainNetwork && (c.app == nil || c.app.network == nil) {
		return fmt.Errorf("b2s_collect: cookie_domain network needs the network's sites: add a network block with sites to the global b2s options")
	}
	if c.CookieDomain != "" && !validDomain(c.CookieDomain) {
		return fmt.Errorf("b2s_collect: cookie_domain %q is not a domain name; use the registrable domain, e.g. b2s.com, or leave it out for a host-only cookie", c.CookieDomain)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler: it classifies the
// request, decides what the visitor's consent allows, identifies the
// visitor, then hands the request to the beacon (beacon.go), the plugin's
// endpoints (privacy.go, link.go) or the page behind (page.go).
func (c *Collect) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.URL.Path == c.Script {
		return c.serveScript(w, r)
	}
	var br beaconRequest
	isBeacon := r.URL.Path == c.Beacon
	if isBeacon {
		if done, err := c.readBeacon(w, r, &br); done {
			return err
		}
		defer br.release()
	}

	now := c.app.now()
	rec := beacon.Record{
		EventID:   beacon.NewEventID(now),
		Time:      now,
		Host:      r.Host,
		Edge:      c.app.edgeID,
		Method:    r.Method,
		UserAgent: r.Header.Get("User-Agent"),
	}
	var jar visitorCookies
	c.readCookies(r, &jar)
	rec.CrossSite = jar.crossSite
	// The client IP, located first: its country may require consent.
	// (locate truncates it only when the site truncates every IP; rec's
	// consent is not decided yet.)
	ip := c.locate(r, &rec)
	rec.Consent = c.consent(r, &jar, isBeacon, br.q.URL, rec.Geo.Country, now)
	// Bots are flagged, never dropped: analysts choose what to count.
	c.classify(r, &rec)
	c.protectIP(&rec, ip) // truncated if consent asks

	if !isBeacon && c.serveEndpoint(w, r, &rec, ip, &jar, now) {
		return nil
	}

	var cookie pendingCookie
	if rec.Consent.Identifying() {
		cookie = c.identify(r, now, &rec, &jar, nil)
		c.readMember(&rec, &jar)
		// The first record identified under the platform's consent.
		c.followPlatformGrant(r, &rec, &jar, &cookie)
	} else {
		// The platform's refusal deletes the identifier cookies.
		c.followPlatformRefusal(r, &rec, &jar, &cookie)
	}
	if isBeacon {
		c.answerBeacon(w, r, &br, &rec, ip, cookie)
		return nil
	}
	return c.servePage(w, r, next, &rec, ip, cookie)
}

// serveEndpoint answers the plugin's own endpoints, the opt-out and opt-in
// (privacy.go), the consent endpoint (consent_endpoint.go), the link and a landing with a link token (link.go) and
// the mail links (mail.go), and
// reports whether r was for one of them. A link token is removed from
// every request's URL here, whatever the method, before anything records
// it or passes it on.
func (c *Collect) serveEndpoint(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, jar *visitorCookies, now time.Time) bool {
	path := r.URL.Path
	pv, nw := c.app.privacy, c.app.network
	token, linked := "", false
	if nw != nil && mayHoldToken(r.URL.RawQuery, nw.tokenParam) {
		token, linked = dropToken(r, nw.tokenParam)
	}
	switch {
	case path == pv.optOutPath || path == pv.optInPath:
		rec.URL, rec.Referrer = requestURL(r), r.Header.Get("Referer")
		c.serveOptOut(w, r, rec, ip, path == pv.optOutPath)
		return true
	case path == pv.consentPath:
		rec.URL, rec.Referrer = requestURL(r), r.Header.Get("Referer")
		c.serveConsent(w, r, rec, ip, jar, now)
		return true
	case nw != nil && path == nw.linkPath:
		rec.URL, rec.Referrer = requestURL(r), r.Header.Get("Referer")
		c.serveLink(w, r, rec, ip, jar, now)
		return true
	case strings.HasPrefix(path, mailink.PathPrefix):
		kind, token, ok := mailink.ParsePath(path)
		if !ok {
			return false
		}
		c.serveMail(w, r, rec, ip, kind, token, now)
		return true
	case linked && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		rec.URL, rec.Referrer = requestURL(r), r.Header.Get("Referer")
		c.serveLinked(w, r, rec, ip, jar, token, now)
		return true
	}
	return false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Collect)(nil)
	_ caddy.Validator             = (*Collect)(nil)
	_ caddyhttp.MiddlewareHandler = (*Collect)(nil)
)
