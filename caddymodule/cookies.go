package caddymodule

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/b2scom/b2s-edge/beacon"
)

// The plugin's cookies: the visitor cookie (the b2s app's cookie_name),
// and the others, named after it with these suffixes. Every one of them
// is written with the same attributes (appendAttributes).
const (
	optOutSuffix = "_optout" // the visitor opted out on this site
	childSuffix  = "_dnc"    // do not collect: the site marked the browser as a child's
	memberSuffix = "_m"      // <member ID>.<signature binding it to the cookie ID>
	// consentSuffix names the edge's own consent cookie: a MAC binding
	// the visitor's consent to their cookie ID (consent_cookie.go).
	consentSuffix = "_consent"
)

// hostPrefix is the cookie name prefix that makes a browser keep a cookie
// only when it is Secure, Path=/ and without Domain, and refuse any other
// of that name: no script can add one on a narrower path or for a parent
// domain, and none can replace the edge's, which is HttpOnly (RFC 6265bis,
// section 4.1.3.2).
const hostPrefix = "__Host-"

// cookieKind indexes the plugin's cookies in privacy.names.
type cookieKind uint8

const (
	kindID      cookieKind = iota // the visitor cookie
	kindOptOut                    // the opt-out marker
	kindChild                     // the do-not-collect marker
	kindMember                    // the member cookie
	kindConsent                   // the edge's consent cookie
	numKinds
)

// cookieNames are the names of the plugin's cookies in one form, by kind.
type cookieNames [numKinds]string

// cookieDomainNetwork is the cookie_domain that follows the network sites.
const cookieDomainNetwork = "network"

// idList is the values of the visitor cookie under one name, in order.
type idList struct {
	vals [4]string // a host-only and a domain cookie, say
	n    int
	seen bool // a cookie of the name was sent, valid or not
	more bool // more cookies than vals holds
}

func (l *idList) add(v string) {
	l.seen = true
	if l.n < len(l.vals) {
		l.vals[l.n] = v
		l.n++
	} else {
		l.more = true
	}
}

// visitorCookies is what the request's Cookie headers hold for the plugin,
// and whether the request may be given a cookie.
type visitorCookies struct {
	// ids are the visitor cookies under the name the request's own cookie
	// has (__Host-b2sid over https without cookie_domain, else b2sid);
	// legacy, with the __Host- name, the unprefixed ones, which may be
	// migrated (identify).
	ids, legacy idList
	members     [4]string // values of the member cookie, under either name, in order
	nmembers    int
	optOut      bool
	child       bool
	crossSite   bool // Sec-Fetch-Site: cross-site
	thirdParty  bool // a subresource request from another site's page

	// consents are the values of the edge's consent cookie, under either
	// name, in order; platform is the consent platform's cookie
	// (consent_cookie) and platformSeen whether it came.
	consents     [4]string
	nconsents    int
	platform     string
	platformSeen bool
	// platformGranted: the platform's cookie says granted (consent
	// decides it once, from platform).
	platformGranted bool
	// otherID: a visitor cookie under the name the request's own cookie
	// does not have (__Host-b2sid with cookie_prefix off): never read, but
	// an identifier a withdrawal deletes.
	otherID bool
	// consentNeeded: the visitor's region requires consent
	// (require_consent), whether they gave it or not.
	consentNeeded bool
}

// readCookies reads the plugin's cookies in one pass over the headers,
// and how the request was made. The opt-out, do-not-collect and member
// cookies count under either name: a marker from before the prefix keeps
// the visitor's choice, and a member cookie is bound to the cookie ID
// anyway.
func (c *Collect) readCookies(r *http.Request, jar *visitorCookies) {
	pv := c.app.privacy
	plain, host := &pv.names[0], &pv.names[1]
	prefixed := c.prefixed(r)
	for _, h := range r.Header["Cookie"] {
		for rest := h; ; {
			n, v, more, ok := beacon.NextCookie(rest)
			if !ok {
				break
			}
			rest = more
			switch n {
			case plain[kindID]:
				if prefixed {
					jar.legacy.add(v)
				} else {
					jar.ids.add(v)
				}
			case host[kindID]:
				if prefixed { // never sent over plain http; else not the edge's
					jar.ids.add(v)
				} else {
					jar.otherID = true
				}
			case plain[kindOptOut], host[kindOptOut]:
				jar.optOut = true
			case plain[kindChild], host[kindChild]:
				jar.child = true
			case plain[kindMember], host[kindMember]:
				if jar.nmembers < len(jar.members) {
					jar.members[jar.nmembers] = v
					jar.nmembers++
				}
			case plain[kindConsent], host[kindConsent]:
				if jar.nconsents < len(jar.consents) {
					jar.consents[jar.nconsents] = v
					jar.nconsents++
				}
			case pv.consentCookie:
				if n != "" && !jar.platformSeen { // the first, as the platform's own script reads it
					jar.platform, jar.platformSeen = v, true
				}
			}
		}
	}
	if sfs := r.Header["Sec-Fetch-Site"]; len(sfs) > 0 && sfs[0] == "cross-site" {
		jar.crossSite = true
		// A subresource of another site's page (the main site's beacon on
		// a sister site) reads the cookie where the browser sends it, but
		// never issues one: where third-party cookies are blocked, it
		// would be a new ID on every hit.
		jar.thirdParty = r.Header.Get("Sec-Fetch-Mode") != "navigate"
	}
}

// cookieReason is why a cookie is set, a label of b2s_cookies_set_total;
// the constants are indexes of cookieSet (metrics.go), in its order.
type cookieReason uint8

const (
	reasonNew     cookieReason = iota // no cookie
	reasonReset                       // a cookie that did not verify
	reasonRefresh                     // an old valid cookie
	reasonResign                      // signed by an older key
	reasonLink                        // joined to another network ID by a link token
	reasonMigrate                     // an unprefixed cookie moved to its __Host- name
)

// pendingCookie is a Set-Cookie decided for the response.
type pendingCookie struct {
	value string // the whole Set-Cookie header value; empty for none
	del   string // a Set-Cookie deleting the unprefixed visitor cookie; empty for none
	// more are further Set-Cookie values the consent platform's decision
	// calls for (consent_platform.go): the edge's consent cookie, or the
	// deletion of the identifier cookies; nil on most requests.
	more   []string
	reason cookieReason
}

// set reports whether there is a Set-Cookie to add.
func (p pendingCookie) set() bool { return p.value != "" || p.del != "" || len(p.more) > 0 }

func (p pendingCookie) addTo(h http.Header) {
	if p.value != "" {
		h["Set-Cookie"] = append(h["Set-Cookie"], p.value)
		cookieSet[p.reason].Inc()
	}
	if p.del != "" {
		h["Set-Cookie"] = append(h["Set-Cookie"], p.del)
	}
	if len(p.more) > 0 {
		h["Set-Cookie"] = append(h["Set-Cookie"], p.more...)
	}
}

// identify reads the visitor's cookie into rec and returns the Set-Cookie
// the response needs, if any. A link, when given, joins the visitor to
// its network ID.
//
// A request may carry several visitor cookies: the browser sends every
// cookie of the name whose path and domain match, the longest path first,
// then the oldest. Only one of them is the edge's (Path=/, the site's
// domain); the others are a script's: any script of the site's origin (an
// ad's included from an isolated route, say) can add a cookie of that
// name on a narrower path or another domain (HttpOnly keeps it only from
// reading or replacing the edge's), holding a valid value copied from its
// own browser. The server cannot tell which cookie it set, so when the
// valid, current ones hold more than one ID (or more cookies came than
// are read), none is trusted: the record has no cookie ID and no member,
// the site's member signal on the response is ignored, and no cookie is
// set (a new one would replace the visitor's own, which the next request
// without the copy finds again). Invalid ones are skipped, as ever.
//
// Over https without cookie_domain the cookie is __Host-b2sid, which no
// script can add beside the edge's: an unprefixed b2sid is then only
// read when no __Host-b2sid came at all, valid or not (a visitor from
// before the prefix), under the same rules, and moved: set as
// __Host-b2sid and deleted. Where a __Host-b2sid came, the unprefixed
// ones are never trusted, and deleted (one a script planted on a
// narrower path stays, and stays ignored). When the unprefixed ones
// conflict, nothing is set or deleted: deleting the visitor's own would
// leave the planted one alone, to be moved next.
func (c *Collect) identify(r *http.Request, now time.Time, rec *beacon.Record, jar *visitorCookies, link *beacon.Link) pendingCookie {
	a := c.app
	ids, migrate := &jar.ids, false
	if !ids.seen && jar.legacy.seen {
		ids, migrate = &jar.legacy, true
	}
	var v beacon.Verified
	valid, conflict := false, ids.more
	for _, val := range ids.vals[:ids.n] {
		w, ok := a.signer.VerifyAt(val, now)
		switch {
		case !ok || !c.current(w.Issued, now):
		case !valid:
			v, valid = w, true
		case w.ID != v.ID:
			conflict = true
		}
	}
	if conflict {
		if ce := c.logger.Check(zapcore.DebugLevel, "several visitor cookies: none trusted"); ce != nil {
			ce.Write(zap.Int("cookies", ids.n))
		}
		return pendingCookie{}
	}
	var p pendingCookie
	if jar.legacy.seen {
		p.del = c.cookieLine(r, a.privacy.names[0][kindID], "", 0)
	}
	nid := ""
	switch {
	case valid:
		rec.CookieID, rec.CookieState, rec.NetworkID = v.ID, beacon.StateReturning, v.NetworkID
		nid = v.NetworkID
		switch {
		case link != nil && link.NetworkID != v.NetworkID:
			rec.PrevNetworkID = v.NetworkID
			p.reason = reasonLink
		case migrate:
			p.reason = reasonMigrate
		case v.OldKey:
			p.reason = reasonResign
		case now.Sub(v.Issued) > time.Duration(a.CookieRefresh):
			p.reason = reasonRefresh
		default:
			return p
		}
	case jar.thirdParty:
		return p
	case ids.seen:
		rec.CookieState, p.reason = beacon.StateReset, reasonReset
	default:
		rec.CookieState, p.reason = beacon.StateNew, reasonNew
	}
	if link != nil {
		nid = link.NetworkID
	}
	// The whole Set-Cookie value in one allocation; the record's cookie ID
	// is a slice of it.
	var newID [32]byte
	id := rec.CookieID
	if id == "" {
		beacon.NewIDTo(&newID)
		id = unsafe.String(&newID[0], len(newID)) // copied into buf below, not kept
	}
	var stack [256]byte
	buf := append(append(stack[:0], c.cookieName(r, kindID)...), '=')
	idAt := len(buf) + 2
	buf = a.signer.AppendSignedNetwork(buf, id, nid, now)
	cookie := string(c.appendAttributes(buf, r, time.Duration(a.CookieMaxAge)))
	rec.CookieID = cookie[idAt : idAt+len(id)]
	switch {
	case nid != "":
		rec.NetworkID = nid
	default:
		rec.NetworkID = rec.CookieID
	}
	p.value = cookie
	return p
}

// cookieClockSkew is how far the issue time of a cookie may lie beyond
// its lifetime, or in the future, and the cookie still count: the
// servers of the edge stamp it, and their clocks differ by a little.
const cookieClockSkew = 5 * time.Minute

// current reports whether a cookie issued (signed or last refreshed) at
// issued is still within its lifetime. The browser drops it after
// cookie_max_age; one presented later was copied or kept past its
// expiry, and one issued in the future was not issued by this edge's
// clock: both are treated as not valid (state reset, a new ID), so a
// copied cookie stops working when its lifetime ends, not when its key
// is removed.
func (c *Collect) current(issued, now time.Time) bool {
	age := now.Sub(issued)
	return age <= time.Duration(c.app.CookieMaxAge)+cookieClockSkew && age >= -cookieClockSkew
}

// readMember puts the signed-in member in the record, when the member
// cookie is bound to the visitor's cookie ID.
// Of several member cookies (a script may add one on a narrower path, as
// with the visitor cookie), the first bound to the cookie ID counts: a
// copy is bound to another.
func (c *Collect) readMember(rec *beacon.Record, jar *visitorCookies) {
	if rec.CookieState != beacon.StateReturning {
		return
	}
	for _, member := range jar.members[:jar.nmembers] {
		i := strings.LastIndexByte(member, '.')
		if i <= 0 {
			continue
		}
		if m, sig := member[:i], member[i+1:]; beacon.ValidMember(m) && c.app.signer.VerifyMember(rec.CookieID, m, sig) {
			rec.MemberID = m
			return
		}
	}
}

// stateVars are the cookie states boxed once, so setting the placeholder
// does not allocate.
var stateVars = [...]any{
	beacon.StateNew:       beacon.StateNew.String(),
	beacon.StateReturning: beacon.StateReturning.String(),
	beacon.StateReset:     beacon.StateReset.String(),
}

// setAttributes derives from the configuration, once, the attributes
// that appendAttributes does not take from the request.
func (c *Collect) setAttributes() {
	c.networkDomain = c.CookieDomain == cookieDomainNetwork
	// SameSite=None needs Secure, so a plain-http response says Lax.
	c.attrs = [2]string{"; HttpOnly; SameSite=Lax", "; HttpOnly; SameSite=Lax; Secure"}
	if c.SameSite == "none" {
		c.attrs[1] = "; HttpOnly; SameSite=None; Secure"
	}
}

// appendAttributes appends to a Set-Cookie value the attributes every
// cookie of the plugin carries: Path=/, the Domain (cookie_domain, or the
// network site r's host falls under), Max-Age (0 deletes the cookie),
// HttpOnly and SameSite, with Secure over https. It is the one place they
// are written, so the visitor cookie and the others always match: where a
// cross-site beacon sends the visitor cookie, it sends the opt-out, child
// and member cookies too, and a deletion reaches the cookie it deletes.
func (c *Collect) appendAttributes(buf []byte, r *http.Request, maxAge time.Duration) []byte {
	buf = append(buf, "; Path=/"...)
	if d := c.cookieDomainFor(r); d != "" {
		buf = append(buf, "; Domain="...)
		buf = append(buf, d...)
	}
	buf = append(buf, "; Max-Age="...)
	buf = strconv.AppendInt(buf, int64(maxAge/time.Second), 10)
	if r.TLS != nil {
		return append(buf, c.attrs[1]...)
	}
	return append(buf, c.attrs[0]...)
}

// cookieLine builds the Set-Cookie value of a cookie of that exact name;
// maxAge 0 deletes it.
func (c *Collect) cookieLine(r *http.Request, name, value string, maxAge time.Duration) string {
	var stack [256]byte
	buf := append(append(append(stack[:0], name...), '='), value...)
	return string(c.appendAttributes(buf, r, maxAge))
}

// hostOnly reports whether the plugin's cookies on r can carry the
// __Host- prefix: r came over https and no cookie_domain is set (the
// prefix forbids a Domain).
func (c *Collect) hostOnly(r *http.Request) bool {
	return r.TLS != nil && c.CookieDomain == ""
}

// prefixed reports whether the plugin's cookies on r are written with
// the __Host- prefix: where they can be, unless cookie_prefix is off.
func (c *Collect) prefixed(r *http.Request) bool {
	return !c.prefixOff && c.hostOnly(r)
}

// cookieName is the name of the plugin's cookie of kind k on r.
func (c *Collect) cookieName(r *http.Request, k cookieKind) string {
	if c.prefixed(r) {
		return c.app.privacy.names[1][k]
	}
	return c.app.privacy.names[0][k]
}

// addCookie adds to h the Set-Cookie of the plugin's cookie of kind k
// under r's name; an empty value with maxAge 0 deletes it. Where the
// prefix can apply, the cookie's other name is deleted too: a marker or
// member cookie from before the prefix (or from before cookie_prefix off)
// does not outlive the one that replaces it, and a deletion reaches both.
func (c *Collect) addCookie(h http.Header, r *http.Request, k cookieKind, value string, maxAge time.Duration) {
	h["Set-Cookie"] = c.appendCookie(h["Set-Cookie"], r, k, value, maxAge)
}

// appendCookie appends to lines the Set-Cookie values addCookie adds.
func (c *Collect) appendCookie(lines []string, r *http.Request, k cookieKind, value string, maxAge time.Duration) []string {
	names := &c.app.privacy.names
	lines = append(lines, c.cookieLine(r, c.cookieName(r, k), value, maxAge))
	if c.hostOnly(r) {
		other := names[1][k]
		if c.prefixed(r) {
			other = names[0][k]
		}
		lines = append(lines, c.cookieLine(r, other, "", 0))
	}
	return lines
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

// ownsCookie reports whether a cookie of that name is the plugin's: the
// cookie_name itself, and every name that starts with cookie_name and "_"
// (b2sid_optout, b2sid_dnc, b2sid_m...), with or without the __Host- or
// __Secure- prefix (which browsers match in any case). Names are compared
// exactly otherwise, as browsers do (RFC 6265, section 5.3): "B2SID" is
// not "b2sid".
func (a *App) ownsCookie(name string) bool {
	for _, p := range [...]string{hostPrefix, "__Secure-"} {
		if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
			name = name[len(p):]
			break
		}
	}
	rest, ok := strings.CutPrefix(name, a.CookieName)
	return ok && (rest == "" || rest[0] == '_')
}

func validCookieName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
