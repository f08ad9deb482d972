package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
)

func init() {
	caddy.RegisterModule(Collect{})
}

// cookieDomainNetwork is the cookie_domain that follows the network sites.
const cookieDomainNetwork = "network"

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
	// under them (u, else the Referer).
	CollectOff      bool     `json:"collect_off,omitempty"`
	CollectOffPaths []string `json:"collect_off_paths,omitempty"`

	app           *App
	logger        *zap.Logger
	cookieTail    string    // the visitor cookie's attributes after the value, on plain http
	cookieTailTLS string    // the same on https
	attrs         [2]string // HttpOnly and SameSite (and Secure) of every plugin cookie: plain http, https
	networkDomain bool      // cookie_domain network: Path and Domain written per request
	cookiePrefix  string    // "name="
	offPaths      caddyhttp.MatchPath
	script        []byte // the JavaScript tag
	scriptETag    string
}

// CaddyModule returns the Caddy module information.
func (Collect) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.b2s_collect",
		New: func() caddy.Module { return new(Collect) },
	}
}

// Provision sets defaults and binds the handler to the b2s app.
func (c *Collect) Provision(ctx caddy.Context) error {
	c.logger = ctx.Logger()
	app, err := getApp(ctx)
	if err != nil {
		return fmt.Errorf("b2s_collect: %v", err)
	}
	c.app = app
	if c.Beacon == "" {
		c.Beacon = DefaultBeaconPath
	}
	if c.Script == "" {
		c.Script = defaultScriptPath(c.Beacon)
	}
	c.script, c.scriptETag = buildTag(c.Beacon)
	c.CookieDomain = strings.TrimPrefix(strings.ToLower(c.CookieDomain), ".")
	c.setCookieAttributes()
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
	if len(c.CollectOffPaths) > 0 && !c.CollectOff {
		return fmt.Errorf("b2s_collect: collect_off_paths given without collect_off; use collect off <paths...>")
	}
	if c.CookieDomain == cookieDomainNetwork && (c.app == nil || c.app.network == nil) {
		return fmt.Errorf("b2s_collect: cookie_domain network needs the network's sites: add a network block with sites to the global b2s options")
	}
	if c.CookieDomain != "" && !validDomain(c.CookieDomain) {
		return fmt.Errorf("b2s_collect: cookie_domain %q is not a domain name; use the registrable domain, e.g. b2s.com, or leave it out for a host-only cookie", c.CookieDomain)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (c *Collect) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	a := c.app
	now := a.now()
	rec := beacon.Record{
		EventID:   beacon.NewEventID(now),
		Time:      now,
		Host:      r.Host,
		Method:    r.Method,
		UserAgent: r.Header.Get("User-Agent"),
	}
	path := r.URL.Path
	if path == c.Script {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("b2s_collect: script accepts GET and HEAD only"))
		}
		c.serveScript(w, r)
		return nil
	}
	// Bots are flagged, never dropped: analysts choose what to count.
	rec.Bot = beacon.ClassifyBot(rec.UserAgent)
	isBeacon := path == c.Beacon
	var body *[]byte // a POST beacon's body
	if isBeacon {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPost:
			var err error
			if body, err = readBeaconBody(r); err != nil {
				return err
			}
			defer putBody(body)
		case http.MethodOptions:
			c.servePreflight(w, r)
			return nil
		default:
			w.Header().Set("Allow", "GET, HEAD, POST, OPTIONS")
			return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("b2s_collect: beacon accepts GET, HEAD, POST and OPTIONS only"))
		}
	}

	// A beacon's query (and a POST beacon's body) is parsed once, here:
	// the collect off paths look at the page it reports.
	var q beacon.Query
	if isBeacon {
		// Room for a few extra parameters; they go into the record, so
		// the array leaves the stack anyway: allocated for beacons only.
		q.Params = new([8]beacon.Param)[:0]
		if body != nil {
			beacon.ParseBeacon(r.URL.RawQuery, r.Header.Get("Content-Type"), *body, &q)
		} else {
			beacon.ParseQuery(r.URL.RawQuery, &q)
		}
	}

	var jar visitorCookies
	c.readCookies(r, &jar)
	rec.Consent = c.consent(r, &jar)
	if isBeacon && rec.Consent.Identifying() && c.offPageBeacon(r, q.URL) {
		rec.Consent = beacon.ConsentChild
	}
	if sfs := r.Header["Sec-Fetch-Site"]; len(sfs) > 0 && sfs[0] == "cross-site" {
		rec.CrossSite = true
		// A subresource of another site's page (the main site's beacon on
		// a sister site) reads the cookie where the browser sends it, but
		// never issues one: where third-party cookies are blocked, it
		// would be a new ID on every hit.
		jar.thirdParty = r.Header.Get("Sec-Fetch-Mode") != "navigate"
	}

	var ip netip.Addr
	ip, rec.IP = clientIP(r)
	if ip.IsValid() && a.geo != nil {
		rec.Geo, _ = a.geo.Lookup(ip)
	}
	if ip.IsValid() && a.asn != nil {
		rec.ASN, _ = a.asn.Lookup(ip)
	}
	if ip.IsValid() && a.anon != nil {
		rec.Anon, _ = a.anon.Lookup(ip)
	}
	c.protectIP(&rec, ip) // after the lookups: the location stays accurate

	if !isBeacon {
		// The plugin's own endpoints.
		pv, nw := a.privacy, a.network
		switch {
		case path == pv.optOutPath || path == pv.optInPath:
			rec.URL, rec.Referrer = requestURL(r), r.Header.Get("Referer")
			c.serveOptOut(w, r, &rec, path == pv.optOutPath)
			return nil
		case nw != nil && path == nw.linkPath:
			rec.URL, rec.Referrer = requestURL(r), r.Header.Get("Referer")
			c.serveLink(w, r, &rec, &jar, now)
			return nil
		case nw != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			strings.Contains(r.URL.RawQuery, nw.tokenParam):
			if rest, token, found := stripToken(r.URL.RawQuery, nw.tokenParam); found {
				u := *r.URL
				u.RawQuery = rest
				rec.URL, rec.Referrer = requestURLOf(r, &u), r.Header.Get("Referer")
				c.serveLinked(w, r, &rec, &jar, rest, token, now)
				return nil
			}
		}
	}

	var cookie pendingCookie
	if rec.Consent.Identifying() {
		cookie = c.identify(r, now, &rec, &jar, nil)
		c.readMember(&rec, &jar)
	}

	if isBeacon {
		if cookie.value != "" {
			cookie.addTo(w.Header())
		}
		if body != nil {
			c.servePost(w, r, &q, &rec)
			return nil
		}
		c.serveBeacon(w, r, &q, &rec)
		return nil
	}

	ctx := r.Context()
	caddyhttp.SetVar(ctx, VarCookieID, rec.CookieID)
	caddyhttp.SetVar(ctx, VarCookieState, stateVars[rec.CookieState])
	caddyhttp.SetVar(ctx, VarEventID, rec.EventID)
	return c.servePage(w, r, next, &rec, ip, cookie)
}

// servePage passes a page request on and records it when the response is
// done.
func (c *Collect) servePage(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, rec0 *beacon.Record, ip netip.Addr, cookie pendingCookie) error {
	// The cookie goes out with the response the next handler writes, made
	// private, and the site's child and member signals are read from it
	// (and removed). An error page written later by handle_errors gets no
	// cookie: it may be cached as a shared page. The record lives in the
	// writer (one allocation), so the beacon path keeps its own on the
	// stack.
	pw := &pageWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		c: c, r: r, rec: *rec0, ip: ip, cookie: cookie}
	rec := &pw.rec
	rec.Kind = beacon.KindPage
	rec.URL = requestURL(r)
	rec.Referrer = r.Header.Get("Referer")
	recorder := caddyhttp.NewResponseRecorder(pw, nil, nil)
	// A response cut short (reverse_proxy's panic(http.ErrAbortHandler)
	// when the upstream dies mid-body) is recorded too, then the panic
	// goes on.
	defer func() {
		if p := recover(); p != nil {
			c.recordPage(rec, recorder, http.StatusBadGateway)
			panic(p)
		}
	}()
	err := next.ServeHTTP(recorder, r)
	if err == nil && cookie.value != "" && recorder.Status() == 0 {
		// Nothing written: net/http would send an empty 200 without
		// passing through us; send it here, with the cookie.
		recorder.WriteHeader(http.StatusOK)
	}
	status := http.StatusOK // nothing written: net/http sends 200
	if err != nil {
		// The error handler writes the response after us; record the
		// status it will send, unless a response had already started.
		// Its size is not known here: bytes is 0.
		status = http.StatusInternalServerError
		if herr, ok := err.(caddyhttp.HandlerError); ok && herr.StatusCode != 0 {
			status = herr.StatusCode
		}
	}
	c.recordPage(rec, recorder, status)
	return err
}

// setCookieAttributes derives the attributes of the plugin's cookies
// from the configuration, once.
func (c *Collect) setCookieAttributes() {
	app := c.app
	c.cookiePrefix = app.CookieName + "="
	c.networkDomain = c.CookieDomain == cookieDomainNetwork
	// SameSite=None needs Secure, so a plain-http response says Lax.
	c.attrs = [2]string{"; HttpOnly; SameSite=Lax", "; HttpOnly; SameSite=Lax; Secure"}
	if c.SameSite == "none" {
		c.attrs[1] = "; HttpOnly; SameSite=None; Secure"
	}
	tail := "; Path=/"
	switch {
	case c.networkDomain:
		tail = "" // "; Path=/; Domain=<site>" is written per request
	case c.CookieDomain != "":
		tail += "; Domain=" + c.CookieDomain
	}
	tail += "; Max-Age=" + strconv.FormatInt(int64(time.Duration(app.CookieMaxAge)/time.Second), 10)
	c.cookieTail, c.cookieTailTLS = tail+c.attrs[0], tail+c.attrs[1]
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

// visitorCookies is what the request's Cookie headers hold for the plugin.
type visitorCookies struct {
	ids        [4]string // values of the visitor cookie, in order (a host-only and a domain cookie, say)
	nids       int
	seenID     bool   // a visitor cookie was sent, valid or not
	member     string // the member cookie's value
	optOut     bool
	child      bool
	thirdParty bool // a subresource request from another site's page
}

// readCookies reads the plugin's cookies in one pass over the headers.
func (c *Collect) readCookies(r *http.Request, jar *visitorCookies) {
	name, pv := c.app.CookieName, c.app.privacy
	for _, h := range r.Header["Cookie"] {
		for rest := h; ; {
			n, v, more, ok := beacon.NextCookie(rest)
			if !ok {
				break
			}
			rest = more
			switch {
			case n == name:
				jar.seenID = true
				if jar.nids < len(jar.ids) {
					jar.ids[jar.nids] = v
					jar.nids++
				}
			case len(n) <= len(name) || n[:len(name)] != name:
			case n == pv.optOutName:
				jar.optOut = true
			case n == pv.childName:
				jar.child = true
			case n == pv.memberName:
				jar.member = v
			}
		}
	}
}

// readMember puts the signed-in member in the record, when the member
// cookie is bound to the visitor's cookie ID.
func (c *Collect) readMember(rec *beacon.Record, jar *visitorCookies) {
	if jar.member == "" || rec.CookieState != beacon.StateReturning {
		return
	}
	i := strings.LastIndexByte(jar.member, '.')
	if i <= 0 {
		return
	}
	if m, sig := jar.member[:i], jar.member[i+1:]; beacon.ValidMember(m) && c.app.signer.VerifyMember(rec.CookieID, m, sig) {
		rec.MemberID = m
	}
}

// recordPage completes and emits a page record; status applies when the
// response has not started.
func (c *Collect) recordPage(rec *beacon.Record, recorder caddyhttp.ResponseRecorder, status int) {
	rec.Status, rec.Bytes = recorder.Status(), int64(recorder.Size())
	if rec.Status == 0 {
		rec.Status = status
	}
	c.emit(rec)
	recordsPage.Inc()
}

// pendingCookie is a Set-Cookie decided for the response.
type pendingCookie struct {
	value  string // the whole Set-Cookie header value; empty for none
	reason string // new, reset, refresh or resign, for the metric
}

func (p pendingCookie) addTo(h http.Header) {
	h["Set-Cookie"] = append(h["Set-Cookie"], p.value)
	cookieCounter(p.reason).Inc()
}

// identify reads the visitor's cookie into rec and returns the Set-Cookie
// the response needs, if any. A link, when given, joins the visitor to
// its network ID.
func (c *Collect) identify(r *http.Request, now time.Time, rec *beacon.Record, jar *visitorCookies, link *beacon.Link) pendingCookie {
	a := c.app
	var v beacon.Verified
	valid := false
	for _, val := range jar.ids[:jar.nids] {
		if v, valid = a.signer.Verify(val); valid {
			break
		}
	}
	var reason string
	nid := ""
	switch {
	case valid:
		rec.CookieID, rec.CookieState, rec.NetworkID = v.ID, beacon.StateReturning, v.NetworkID
		nid = v.NetworkID
		switch {
		case link != nil && link.NetworkID != v.NetworkID:
			rec.PrevNetworkID = v.NetworkID
			reason = "link"
		case v.OldKey:
			reason = "resign"
		case now.Sub(v.Issued) > time.Duration(a.CookieRefresh):
			reason = "refresh"
		default:
			return pendingCookie{}
		}
	case jar.thirdParty:
		return pendingCookie{}
	case jar.seenID:
		rec.CookieState, reason = beacon.StateReset, "reset"
	default:
		rec.CookieState, reason = beacon.StateNew, "new"
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
	buf := append(stack[:0], c.cookiePrefix...)
	idAt := len(buf) + 2
	buf = a.signer.AppendSignedNetwork(buf, id, nid, now)
	if c.networkDomain {
		buf = append(buf, "; Path=/"...)
		if d := c.cookieDomainFor(r); d != "" {
			buf = append(buf, "; Domain="...)
			buf = append(buf, d...)
		}
	}
	if r.TLS != nil {
		buf = append(buf, c.cookieTailTLS...)
	} else {
		buf = append(buf, c.cookieTail...)
	}
	cookie := string(buf)
	rec.CookieID = cookie[idAt : idAt+len(id)]
	switch {
	case nid != "":
		rec.NetworkID = nid
	default:
		rec.NetworkID = rec.CookieID
	}
	return pendingCookie{value: cookie, reason: reason}
}

// stateVars are the cookie states boxed once, so setting the placeholder
// does not allocate.
var stateVars = [...]any{
	beacon.StateNew:       beacon.StateNew.String(),
	beacon.StateReturning: beacon.StateReturning.String(),
	beacon.StateReset:     beacon.StateReset.String(),
}

// Beacon response headers, shared by every response (never modified in
// place; Header.Set and Add replace or copy them).
var (
	hdrGIF         = []string{"image/gif"}
	hdrPixelLen    = []string{strconv.Itoa(len(beacon.Pixel))}
	hdrNoStore     = []string{"no-store, no-cache, must-revalidate, max-age=0"}
	hdrPragma      = []string{"no-cache"}
	hdrExpiresPast = []string{"Thu, 01 Jan 1970 00:00:00 GMT"}
	hdrNoSniff     = []string{"nosniff"}
)

// serveBeacon answers with the pixel whatever the query holds, then records.
func (c *Collect) serveBeacon(w http.ResponseWriter, r *http.Request, q *beacon.Query, rec *beacon.Record) {
	c.fillBeacon(r, rec, q)
	h := w.Header()
	h["Content-Type"] = hdrGIF
	h["Content-Length"] = hdrPixelLen
	// no-store for HTTP/1.1 caches, Pragma and a past Expires for
	// HTTP/1.0 proxies that ignore Cache-Control (RFC 9111, section 5.4).
	h["Cache-Control"] = hdrNoStore
	h["Pragma"] = hdrPragma
	h["Expires"] = hdrExpiresPast
	h["X-Content-Type-Options"] = hdrNoSniff
	rec.Status = http.StatusOK
	if r.Method != http.MethodHead {
		rec.Bytes = int64(len(beacon.Pixel))
	}
	// The record is in the spool before the client sees the pixel: a 200
	// means the record survives a crash from here on.
	c.emit(rec)
	recordsBcn.Inc()
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(beacon.Pixel)
	}
}

// Headers of a POST beacon's answer and of the CORS preflight.
var (
	hdrNoStoreOnly   = []string{"no-store"}
	hdrVaryOrigin    = []string{"Origin"}
	hdrTrue          = []string{"true"}
	hdrAllowMethods  = []string{"POST, GET, HEAD"}
	hdrAllowHeaders  = []string{"Content-Type"}
	hdrPreflightLife = []string{"600"}
)

// readBeaconBody reads a POST beacon's body, up to beacon.MaxBodyLen; a
// larger one is refused with 413 before any cookie or record. A body cut
// short by the client is kept as far as it came: bad input never breaks
// the beacon.
func readBeaconBody(r *http.Request) (*[]byte, error) {
	tooLarge := func() error {
		return caddyhttp.Error(http.StatusRequestEntityTooLarge,
			fmt.Errorf("b2s_collect: beacon body is larger than %d bytes", beacon.MaxBodyLen))
	}
	if r.ContentLength > beacon.MaxBodyLen {
		return nil, tooLarge()
	}
	bp := bodyBufs.Get().(*[]byte)
	buf := (*bp)[:cap(*bp)]
	n := 0
	for r.Body != nil && n < len(buf) {
		m, err := r.Body.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
	}
	if n > beacon.MaxBodyLen {
		putBody(bp)
		return nil, tooLarge()
	}
	*bp = buf[:n]
	return bp, nil
}

// bodyBufs recycles POST beacon bodies: one byte more than allowed, to
// tell a body of the limit from a larger one.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, beacon.MaxBodyLen+1); return &b }}

func putBody(bp *[]byte) { bodyBufs.Put(bp) }

// servePost answers a POST beacon (navigator.sendBeacon) with 204 after
// recording what its body and query hold; a malformed body is recorded
// with what could be read of it.
func (c *Collect) servePost(w http.ResponseWriter, r *http.Request, q *beacon.Query, rec *beacon.Record) {
	c.fillBeacon(r, rec, q)
	h := w.Header()
	h["Cache-Control"] = hdrNoStoreOnly
	c.addCORS(h, r)
	rec.Status = http.StatusNoContent
	c.emit(rec)
	recordsBcn.Inc()
	w.WriteHeader(http.StatusNoContent)
}

// servePreflight answers a CORS preflight on the beacon path, needed when
// sendBeacon sends a type other than text/plain or a form. It sets no
// cookie and makes no record.
func (c *Collect) servePreflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if c.addCORS(h, r) {
		h["Access-Control-Allow-Methods"] = hdrAllowMethods
		h["Access-Control-Allow-Headers"] = hdrAllowHeaders
		h["Access-Control-Max-Age"] = hdrPreflightLife
	}
	h["Cache-Control"] = hdrNoStoreOnly
	w.WriteHeader(http.StatusNoContent)
}

// addCORS allows the request's Origin to read the answer and send
// credentials (the cookie) when it is this host, or an https origin of a
// network site. Never "*", which forbids credentials. It reports whether
// the origin was allowed.
func (c *Collect) addCORS(h http.Header, r *http.Request) bool {
	h["Vary"] = hdrVaryOrigin
	origin := r.Header.Get("Origin")
	if origin == "" || !c.ownOrigin(r, origin) {
		return false
	}
	h["Access-Control-Allow-Origin"] = []string{origin}
	h["Access-Control-Allow-Credentials"] = hdrTrue
	return true
}

// ownOrigin reports whether origin (an Origin header's value) is this
// host, in any scheme, or an https origin of a network site. "null" and
// anything but a bare scheme://host[:port] are not.
func (c *Collect) ownOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host) || (u.Scheme == "https" && c.app.network.has(hostname(u.Host)))
}

// fillBeacon completes a beacon record from what it reports.
func (c *Collect) fillBeacon(r *http.Request, rec *beacon.Record, q *beacon.Query) {
	rec.Kind = beacon.KindBeacon
	rec.URL, rec.Referrer, rec.Event, rec.Params = q.URL, q.Referrer, q.Event, q.Params
	if rec.URL == "" {
		rec.URL = r.Header.Get("Referer")
	}
	if rec.URL == "" && rec.Bot == "" {
		// A browser running the tag on a page sends u or a Referer.
		rec.Bot = beacon.BotBeaconWithoutPage
	}
}

// emit encodes rec and appends it to the spool. A spool that refuses it
// (full, disk error) counts and logs the drop itself; the response goes
// out regardless.
func (c *Collect) emit(rec *beacon.Record) {
	bp := encodeBufs.Get().(*[]byte)
	*bp = rec.AppendJSON((*bp)[:0])
	key := rec.CookieID // one visitor's records in one partition, in order
	if !rec.Consent.Identifying() {
		key = "" // nor in the key
	}
	_ = c.app.sink.spool.Append(key, *bp)
	if cap(*bp) <= 64<<10 {
		encodeBufs.Put(bp)
	}
}

// encodeBufs recycles encoding buffers: the spool copies the record, so
// the request path allocates nothing for it.
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// clientIP is Caddy's resolved client IP, which honours trusted_proxies,
// and its text for the record (Caddy's own string when it is already in
// canonical form, to save an allocation).
func clientIP(r *http.Request) (netip.Addr, string) {
	s, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if !ok {
		var err error
		if s, _, err = net.SplitHostPort(r.RemoteAddr); err != nil {
			s = r.RemoteAddr
		}
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, ""
	}
	ip = ip.WithZone("").Unmap()
	var buf [64]byte
	if canon := ip.AppendTo(buf[:0]); string(canon) != s {
		s = string(canon)
	}
	return ip, s
}

// requestURL is the absolute URL the client asked for.
func requestURL(r *http.Request) string { return requestURLOf(r, r.URL) }

// requestURLOf is requestURL with u in place of the request's URL.
func requestURLOf(r *http.Request, u *url.URL) string {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return scheme + r.Host + u.RequestURI()
}

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || strings.HasSuffix(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') {
				return false
			}
		}
	}
	return true
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Collect)(nil)
	_ caddy.Validator             = (*Collect)(nil)
	_ caddyhttp.MiddlewareHandler = (*Collect)(nil)
)
