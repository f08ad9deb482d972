package caddymodule

import (
	"fmt"
	"html"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// Defaults of the privacy options.
const (
	DefaultOptOutPath   = "/_b2s/optout"
	DefaultOptInPath    = "/_b2s/optin"
	DefaultChildHeader  = "X-B2S-Child"
	DefaultMemberHeader = "X-B2S-Member"
	DefaultIPv4Prefix   = 24
	DefaultIPv6Prefix   = 48
	DefaultConsentPath  = "/_b2s/consent"
	// DefaultConsentGranted is the consent platform's cookie value that
	// means granted when consent_cookie names no pattern.
	DefaultConsentGranted = `^(?i:1|true|yes|y|on|granted|accept|accepted|allow|allowed|all)$`
)

// Privacy configures how the edge honours the privacy policy's promises.
// Opted-out, GPC, child and pending (consent not yet given where it is
// required) records carry no cookie ID, network ID or member ID, and a
// truncated IP; no cookie is set for them.
type Privacy struct {
	// OptOutPath sets the opt-out cookie and deletes the visitor's
	// cookies on this site, on GET and POST from anywhere. OptInPath
	// clears the opt-out on a POST only: a form of this very origin
	// (scheme and host) that the visitor submitted as a top-level
	// navigation, by Fetch Metadata, or from a browser without it whose
	// Origin, else Referer, is this host, and that carries the token of
	// the form a GET of OptInPath answers (bound to a nonce cookie it
	// sets, good for 15 minutes); anything else gets 403, a POST that a
	// route of the site redirects there with 307 or 308 included. Link
	// to OptInPath: a form elsewhere has no token. Both redirect (303) to
	// ?return=<path or network URL> when given (without the network's
	// link token, if it has one) and otherwise answer with a short page.
	// The opt-out request's own record is opted out. Defaults
	// "/_b2s/optout" and "/_b2s/optin".
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
	// header is removed before the response leaves. Sent as a trailer,
	// after the body, it comes too late for the cookies: it is removed,
	// and makes only that request's record a child's. Default
	// "X-B2S-Child".
	ChildHeader string `json:"child_header,omitempty"`

	// MemberHeader is the response header by which the site tells the
	// edge who signed in: its value, a member ID of up to 64 visible
	// ASCII characters, is linked to the visitor's cookie ID and carried
	// in records as member_id until the site sends the header empty or
	// "-" (sign-out). It is removed before the response leaves; as a
	// trailer it is removed and ignored. Default "X-B2S-Member".
	MemberHeader string `json:"member_header,omitempty"`

	// RedactParams names query parameters whose values never reach a
	// record, e.g. ["email", "phone", "token", "password"]: names are
	// matched in any ASCII case, as the form or link sends them decoded
	// (user[email] matches user%5Bemail%5D). In the record's url,
	// referrer (its query and fragment included), event, params and a
	// mail click's destination, the value of such a parameter is
	// replaced by "[redacted]" and its name kept, however often the
	// value was percent-encoded, in a URL nested in another's query
	// too; a beacon parameter of that name keeps its key and gets the
	// value "[redacted]". An empty value stays empty. Email addresses
	// are replaced by "[email]" in the same fields whether or not this
	// is set (see the README's "Personal data in records"). Names hold
	// visible ASCII without = & ? # % +. Default: none.
	RedactParams []string `json:"redact_params,omitempty"`
	// AnonID gives the page and beacon records of visitors who allow no
	// identifier (opted out, GPC; never a child) an anon_id: a keyed hash
	// of the site, the full client IP and the User-Agent under a salt of
	// the UTC day, by which analysts count daily visitors and sessions
	// with nothing stored in the browser. Without AnonIDKey each edge
	// draws a random salt a day, keeps it in memory only and forgets it
	// at midnight UTC (see the README's "Cookieless counting"). Default
	// true.
	AnonID *bool `json:"anon_id,omitempty"`

	// AnonIDKey, a shared secret of at least 32 bytes, makes the daily
	// salt HMAC-SHA256(key, "b2s anon_id" || UTC date), the same on every
	// edge that holds it, so a visitor whom a load balancer sends to
	// several edges keeps one anon_id a day. Whoever holds the key can
	// compute any day's anon_id for a guessed IP, User-Agent and site:
	// rotate it, and destroy old keys. Placeholders such as
	// {env.B2S_ANON_KEY} are replaced at load. Default: none, a random
	// salt per edge and day.
	AnonIDKey string `json:"anon_id_key,omitempty"`

	// RequireConsent lists the regions whose visitors get no identifier
	// until they consent: no cookie is read or set, their records carry
	// consent "pending", no cookie, network or member ID, no Kafka key
	// and a truncated IP, no link token is issued for them, the site's
	// member header is ignored (and removed) and no Accept-CH is sent.
	// A region is an ISO 3166-1 alpha-2 code ("DE", "cn"), "eu" (the EU's
	// 27, the rest of the EEA: IS, LI, NO, and GB and CH) or "all". The
	// region is the country of the client IP in the City or Country
	// database (geoip); see ConsentUnknown for visitors without one.
	// Consent is given by the consent platform's cookie (ConsentCookie)
	// or by the consent endpoint (ConsentPath). Child, opt-out and GPC
	// still come first: a child's page under consent stays child, and
	// Sec-GPC: 1 on top of consent makes records gpc. Default: none, the
	// opt-out model everywhere.
	RequireConsent []string `json:"require_consent,omitempty"`

	// ConsentUnknown is what require_consent does with a visitor whose
	// country is unknown (no GeoIP database, an address it does not
	// map): "require" (the default, fail closed: they wait for consent
	// too) or "allow" (the opt-out model for them).
	ConsentUnknown string `json:"consent_unknown,omitempty"`

	// ConsentCookie names the cookie the site's consent platform sets;
	// a visitor of a require_consent region whose cookie of that name
	// matches ConsentGranted has consented. A cookie that does not match
	// is a refusal, in every region (fail closed): the visitor is
	// pending whatever the edge's own consent cookie says (the
	// platform's withdrawal wins), and the edge's identifier cookies the
	// browser still holds are deleted. Without the cookie, the edge's
	// own consent cookie decides. Such a cookie is written by the
	// platform's script on the page, so any script of the site's origin
	// can write it too: it is as trustworthy as the scripts the site
	// runs unisolated (see b2s_isolate). Default: none.
	ConsentCookie string `json:"consent_cookie,omitempty"`

	// ConsentGranted is a Go regular expression (RE2 syntax) that the
	// consent platform's cookie value, percent-decoded, matches when the
	// visitor consented, anywhere in the value unless anchored, e.g.
	// "statistics:true" for Cookiebot's CookieConsent or "C0002:1" for
	// OneTrust's OptanonConsent. Default:
	// ^(?i:1|true|yes|y|on|granted|accept|accepted|allow|allowed|all)$.
	ConsentGranted string `json:"consent_granted,omitempty"`

	// ConsentPath is the consent endpoint. A GET answers a page with a
	// form that grants consent; its POST grants it under the same rules
	// as the opt-in (a form of this very origin the visitor submitted,
	// with the token of the form page) and sets the visitor's cookie
	// and the edge's own consent cookie, an HMAC binding consent to the
	// cookie ID, which no script can forge; it clears an opt-out. With
	// ?withdraw, a GET or POST from anywhere withdraws consent: the
	// visitor's cookies are deleted and the opt-out cookie set, as at the
	// opt-out. Both redirect (303) to ?return=<path or network URL> when
	// given. The JavaScript tag's b2s.consent(true|false) uses it.
	// Consent given there lasts cookie_max_age from the grant. Default
	// "/_b2s/consent".
	ConsentPath string `json:"consent_path,omitempty"`
}

// privacy is the provisioned Privacy.
type privacy struct {
	optOutPath, optInPath     string
	gpc                       bool
	truncate                  bool
	v4, v6                    int
	childHeader, memberHeader string
	// Consent regions (consent.go).
	consentPath    string
	regions        beacon.Regions
	regionsErr     error // a bad require_consent, reported by validate
	consentUnknown string
	consentCookie  string
	consentGranted *regexp.Regexp
	grantedErr     error // a bad consent_granted, reported by validate
	// names are the plugin's cookies' names, unprefixed ([0]) and with
	// the __Host- prefix ([1]).
	names [2]cookieNames

	// redactor replaces personal data in records (see redact.go);
	// redactErr is why RedactParams was refused, for validate.
	redactor  *beacon.Redactor
	redactErr error
}

// isMarker reports whether a cookie of that name is the opt-out or the
// do-not-collect marker, under either name.
func (pv *privacy) isMarker(name string) bool {
	for _, n := range &pv.names {
		if name == n[kindOptOut] || name == n[kindChild] {
			return true
		}
	}
	return false
}

// provision returns the options with their defaults; p may be nil (no
// privacy block).
func (p *Privacy) provision(cookieName string) *privacy {
	if p == nil {
		p = new(Privacy)
	}
	pv := &privacy{
		optOutPath: or(p.OptOutPath, DefaultOptOutPath), optInPath: or(p.OptInPath, DefaultOptInPath),
		gpc: p.GPC == nil || *p.GPC, truncate: p.TruncateIP,
		v4: p.IPv4Prefix, v6: p.IPv6Prefix,
		childHeader:  http.CanonicalHeaderKey(or(p.ChildHeader, DefaultChildHeader)),
		memberHeader: http.CanonicalHeaderKey(or(p.MemberHeader, DefaultMemberHeader)),
	}
	pv.names[0] = cookieNames{kindID: cookieName, kindOptOut: cookieName + optOutSuffix,
		kindChild: cookieName + childSuffix, kindMember: cookieName + memberSuffix, kindConsent: cookieName + consentSuffix}
	for k, n := range pv.names[0] {
		pv.names[1][k] = hostPrefix + n
	}
	pv.provisionConsent(p)
	if pv.v4 == 0 {
		pv.v4 = DefaultIPv4Prefix
	}
	if pv.v6 == 0 {
		pv.v6 = DefaultIPv6Prefix
	}
	pv.redactor, pv.redactErr = newRedactor(p.RedactParams)
	return pv
}

// validate checks the options, with their defaults.
func (pv *privacy) validate() error {
	if pv.v4 < 0 || pv.v4 > 32 || pv.v6 < 0 || pv.v6 > 128 {
		return fmt.Errorf("b2s: privacy: truncate_ip keeps %d IPv4 and %d IPv6 bits; use 0-32 and 0-128, e.g. truncate_ip 24 48", pv.v4, pv.v6)
	}
	for _, path := range []string{pv.optOutPath, pv.optInPath, pv.consentPath} {
		if !strings.HasPrefix(path, "/") {
			return fmt.Errorf("b2s: privacy: path %q must start with /", path)
		}
	}
	if pv.optOutPath == pv.optInPath {
		return fmt.Errorf("b2s: privacy: optout_path and optin_path are both %q; give them different paths", pv.optOutPath)
	}
	if err := pv.validateConsent(); err != nil {
		return err
	}
	for _, h := range []string{pv.childHeader, pv.memberHeader} {
		if !isToken(h) { // a header name is a token (RFC 9110, section 5.1)
			return fmt.Errorf("b2s: privacy: %q is not a header name; use e.g. X-B2S-Child", h)
		}
	}
	if pv.redactErr != nil {
		return pv.redactErr
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// serveOptOut answers the opt-out and opt-in endpoints.
func (c *Collect) serveOptOut(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, out bool) {
	a := c.app
	h := w.Header()
	if out && rec.Consent.Identifying() {
		// The opt-out itself is recorded as what it asks for.
		rec.Consent = beacon.ConsentOptOut
		c.protectIP(rec, ip)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		h.Set("Allow", "GET, HEAD, POST")
		c.finishEndpoint(w, r, rec, ip, http.StatusMethodNotAllowed, "")
		return
	}
	if !out && r.Method != http.MethodPost {
		// A link, a redirect or a scanner's fetch only asks.
		c.confirmOptIn(w, r, rec, ip)
		return
	}
	if !out && !visitorOptIn(r) {
		// Opting back in undoes a privacy choice: another site (the
		// network's too), a script or an ad on the site's pages, a frame
		// must not do it for the visitor. Opting out stays open to anyone.
		optInRefused[refusedNotOwn].Inc()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		c.finishEndpoint(w, r, rec, ip, http.StatusForbidden, "b2s: opt-in is accepted only from a form on this site that the visitor submits\n")
		return
	}
	if !out && !c.validOptInToken(w, r, a.now()) {
		// A POST redirected here (307, 308) by a route of the site passes
		// the checks above; it never carries the form's token.
		optInRefused[refusedToken].Inc()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		c.finishEndpoint(w, r, rec, ip, http.StatusForbidden, "b2s: opt-in is accepted only from its own form, submitted within 15 minutes: open "+a.privacy.optInPath+" and submit it\n")
		return
	}
	if out {
		c.addCookie(h, r, kindOptOut, "1", time.Duration(a.CookieMaxAge))
		c.addCookie(h, r, kindID, "", 0)
		c.addCookie(h, r, kindMember, "", 0)
		privacySignal[signalOptOut].Inc()
	} else {
		c.addCookie(h, r, kindOptOut, "", 0)
		c.dropOptInNonce(h, r)
		privacySignal[signalOptIn].Inc()
	}
	h.Set("Cache-Control", "no-store")
	msg := optedOutPage
	if !out {
		msg = optedInPage
	}
	c.finishReturning(w, r, rec, ip, msg)
}

// finishReturning ends the opt-out's, the opt-in's and the consent
// endpoint's answers: a redirect (303) to ?return= when it is a path on
// this site or a network URL (without a link token), otherwise page.
func (c *Collect) finishReturning(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, page string) {
	h := w.Header()
	if to := r.URL.Query().Get("return"); to != "" {
		if loc, ok := c.returnTo(r, c.withoutToken(to)); ok {
			h.Set("Location", loc)
			c.finishEndpoint(w, r, rec, ip, http.StatusSeeOther, "")
			return
		}
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	c.finishEndpoint(w, r, rec, ip, http.StatusOK, page)
}

const (
	optedOutPage = "<!doctype html><meta charset=utf-8><title>Opted out</title><p>You have opted out: this site no longer sets its visitor cookie in this browser, and records of your visits carry no identifier and a shortened IP address.</p>\n"
	optedInPage  = "<!doctype html><meta charset=utf-8><title>Opted in</title><p>Your opt-out has been cleared for this site.</p>\n"
)

// withoutToken removes a link token from the query of the place to return
// to: the destination would exchange it for the identifier the visitor
// just opted out of, or hand it to whoever reads the URL.
func (c *Collect) withoutToken(to string) string {
	param := DefaultTokenParam
	if nw := c.app.network; nw != nil {
		param = nw.tokenParam
	}
	base, frag, hasFrag := strings.Cut(to, "#")
	path, query, hasQuery := strings.Cut(base, "?")
	if !hasQuery {
		return to
	}
	rest, _, found := stripToken(query, param)
	if !found {
		return to
	}
	if rest != "" {
		path += "?" + rest
	}
	if hasFrag {
		path += "#" + frag
	}
	return path
}

// confirmOptIn answers a GET or HEAD of the opt-in path with a page
// whose form POSTs the opt-in, with the same return, when the visitor
// submits it.
func (c *Collect) confirmOptIn(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr) {
	c.serveTokenForm(w, r, rec, ip, c.app.privacy.optInPath, optInFormStart, optInFormEnd)
}

// serveTokenForm answers with the page of a form that POSTs to path, with
// the request's return when it is one returnTo allows, and carries the
// opt-in's token (bound to the nonce cookie it sets): the opt-in's and the
// consent endpoint's. The page may not be framed, so a click on it is the
// visitor's own, nor stored, as it holds a token.
func (c *Collect) serveTokenForm(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, path, formStart, formEnd string) {
	h := w.Header()
	action := path
	if to := r.URL.Query().Get("return"); to != "" {
		if _, ok := c.returnTo(r, c.withoutToken(to)); ok {
			action += "?return=" + url.QueryEscape(c.withoutToken(to))
		}
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
	token := c.issueOptInToken(h, r, c.app.now())
	c.finishEndpoint(w, r, rec, ip, http.StatusOK, formStart+html.EscapeString(action)+optInFormToken+token+formEnd)
}

const (
	optInFormStart = "<!doctype html><meta charset=utf-8><title>Opt in</title><p>You opted out on this site. Opting back in lets it set its visitor cookie in this browser again, and records of your visits carry it.</p><form method=post action=\""
	optInFormToken = "\"><input type=hidden name=" + optInTokenField + " value=\""
	optInFormEnd   = "\"><button type=submit>Opt back in</button></form>\n"
)

// visitorOptIn reports whether r is the visitor's own opt-in: a POST
// that a form of this very origin sent as a top-level navigation the
// visitor started (Fetch Metadata: same-origin, navigate, document, and
// Sec-Fetch-User from browsers that send it), or, from a browser that
// sends no Fetch Metadata, a POST whose Origin, else Referer, is this
// origin. Another site's page (the network's too), a fetch or
// sendBeacon of a script on the site's pages, a frame and a redirect
// from elsewhere are all refused.
func visitorOptIn(r *http.Request) bool {
	h := r.Header
	if r.Method != http.MethodPost {
		return false
	}
	origin := h.Get("Origin") // "null": a sandboxed frame, or a redirect from another origin
	if origin != "" && !sameOrigin(r, origin, true) {
		return false
	}
	if site := h.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" && h.Get("Sec-Fetch-Mode") == "navigate" && h.Get("Sec-Fetch-Dest") == "document" &&
			(h.Get("Sec-Fetch-User") == "?1" || !sendsFetchUser(h.Get("User-Agent")))
	}
	return origin != "" || sameOrigin(r, h.Get("Referer"), false)
}

// sendsFetchUser reports whether the browser of user agent ua sends
// Sec-Fetch-User on the navigations a user starts. WebKit (Safari, and
// every browser on iOS) sends the other Fetch Metadata headers but not
// this one (https://webkit.org/b/247697); Blink's user agents name
// Chrome, and Gecko's have no AppleWebKit. A script can set no header of
// a navigation, the User-Agent included.
func sendsFetchUser(ua string) bool {
	return !strings.Contains(ua, "AppleWebKit/") || strings.Contains(ua, "Chrome/")
}

// sameOrigin reports whether raw, an Origin (origin true) or a Referer,
// is of r's own origin: r's host exactly, port included (not another
// subdomain, not a network site), over https, or http when r came over
// plain http.
func sameOrigin(r *http.Request, raw string, origin bool) bool {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Opaque != "" || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return false
	}
	if u.Scheme != "https" && (u.Scheme != "http" || r.TLS != nil) {
		return false
	}
	return !origin || (u.Path == "" && u.RawQuery == "" && u.Fragment == "")
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
