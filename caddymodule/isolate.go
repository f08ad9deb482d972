package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/publicsuffix"

	"github.com/b2scom/b2s-edge/beacon"
)

func init() {
	caddy.RegisterModule(Isolate{})
}

// Isolate is the `b2s_isolate` handler, for routes to advertisers' and
// other third parties' upstreams. It keeps b2s.com's privacy promise:
// advertisers may set and read their own cookies, but neither they nor
// other companies have access to b2s.com's cookies.
//
// The request passed on carries no Cookie header, or only the cookies
// named in AllowCookies, no Cookie2 header, and none of the plugin's
// X-B2S-* headers, nor trailers of those names. When b2s_collect truncates
// the record's IP (opt-out, GPC, child, or truncate_ip), or, with no
// b2s_collect in front, the request has the opt-out or do-not-collect
// cookie or Sec-GPC (or truncate_ip is on), it comes from the truncated
// address: reverse_proxy puts that in X-Forwarded-For, X-Real-IP
// and Forwarded carry it, the CDNs' client IP headers are removed, and
// {client_ip} reads it. The response keeps a Set-Cookie from the handlers
// inside only when it sets an allowed cookie, and no X-B2S-* header from
// them (X-B2S-Member and X-B2S-Child are signals the site's own upstream
// sends): this applies to 1xx interim responses (103 Early Hints) and to
// trailers too. Nor does it keep from them the headers that act on the
// site's whole origin or make the browser request the site
// (Clear-Site-Data, Refresh, Link, Strict-Transport-Security...: see
// originHeaders), nor a redirect back into the site (the response becomes
// a 502), and it is served in a CSP sandbox without allow-same-origin, so
// that an ad document runs in an opaque origin. Headers that handlers
// outside b2s_isolate set (b2s_collect's cookie, the site's header
// directive) are the site's own and kept. Inside it, the {http.vars.b2s.cookie_id} and
// {http.vars.b2s.event_id} placeholders are empty (the event ID joins the
// request to its record, which holds the cookie ID). Placeholders that
// read the request itself, such as {http.request.cookie.b2sid},
// {http.request.header.Cookie} or {remote_host}, read it as the client
// sent it: do not use them in an isolated route's header_up.
//
// Everything removed is counted in
// b2s_isolate_removed_total{what="request_cookie"|"set_cookie"|"header"},
// and each dropped Set-Cookie is logged at debug level by its name (never
// its value).
type Isolate struct {
	// AllowCookies are the names of the cookies the upstream may receive
	// and set, e.g. the ad network's own user ID. Names are compared
	// exactly: cookie names are case-sensitive (RFC 6265, section 5.3), so
	// "ADNET_UID" is another cookie than "adnet_uid". Each must be a
	// token (RFC 6265, section 4.1.1). The plugin's own cookies, the b2s
	// app's cookie_name and every name that starts with it and "_"
	// (b2sid_optout, b2sid_m...), cannot be allowed: listing one fails
	// the load. Default: none, the upstream gets no Cookie header and no
	// cookie it sets reaches the visitor.
	AllowCookies []string `json:"allow_cookies,omitempty"`

	// Sandbox serves every final response of the handlers inside with
	// Content-Security-Policy: sandbox, allowing scripts, forms, popups
	// (which escape the sandbox) and top navigation on a click, but not
	// allow-same-origin: an ad document served under the site's name runs
	// in an opaque origin, so it cannot read or write the site's cookies
	// or storage, and its requests to the site (the opt-in endpoint) are
	// cross-site, carry none of the site's SameSite cookies and their
	// answers cannot be read. The upstream's own policies are kept and
	// add up (a browser enforces them all). Its Referrer-Policy becomes
	// no-referrer, so a navigation the ad starts (with a link token it
	// minted, say) does not come from the site's page. An ad that needs the site's
	// origin (its storage, say) stops working there: false turns the
	// sandbox off for this route, and that protection with it. A script
	// that a page of the site includes from the route runs in the page's
	// origin whatever its response says: only the cookies' HttpOnly
	// attribute and the opt-in's checks stand against it. Default true.
	Sandbox *bool `json:"sandbox,omitempty"`

	app     *App
	logger  *zap.Logger
	allowed []string // AllowCookies without duplicates
	sandbox bool
}

// CaddyModule returns the Caddy module information.
func (Isolate) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.b2s_isolate",
		New: func() caddy.Module { return new(Isolate) },
	}
}

// Provision binds the handler to the b2s app, whose cookie_name decides
// which cookies are the plugin's.
func (iso *Isolate) Provision(ctx caddy.Context) error {
	app, err := getApp(ctx)
	if err != nil {
		return fmt.Errorf("b2s_isolate: %v", err)
	}
	iso.bind(app, ctx.Logger())
	return nil
}

func (iso *Isolate) bind(app *App, logger *zap.Logger) {
	iso.app, iso.logger = app, logger
	iso.sandbox = iso.Sandbox == nil || *iso.Sandbox
	iso.allowed = iso.allowed[:0]
	for _, name := range iso.AllowCookies {
		if !slices.Contains(iso.allowed, name) {
			iso.allowed = append(iso.allowed, name)
		}
	}
}

// Validate checks the configuration.
func (iso *Isolate) Validate() error {
	for _, name := range iso.AllowCookies {
		if err := checkCookieName(name); err != nil {
			return err
		}
		if iso.app != nil && iso.app.ownsCookie(name) {
			return fmt.Errorf("b2s_isolate: allow_cookies: %q is a cookie of b2s.com (cookie_name %q, and every name that starts with %q), which no third party may read or set; remove it from allow_cookies",
				name, iso.app.CookieName, iso.app.CookieName+"_")
		}
	}
	return nil
}

// checkCookieName refuses a name that is not a token (RFC 6265, section
// 4.1.1, cookie-name).
func checkCookieName(name string) error {
	if !isToken(name) {
		return fmt.Errorf("b2s_isolate: allow_cookies: %q is not a cookie name; a name is letters, digits and !#$%%&'*+-.^_`|~, without spaces, quotes, commas, semicolons or =", name)
	}
	return nil
}

// allows reports whether the upstream may receive and set the cookie.
func (iso *Isolate) allows(name string) bool {
	return slices.Contains(iso.allowed, name) && !iso.app.ownsCookie(name)
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (iso *Isolate) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ctx := r.Context()
	truncated, _ := caddyhttp.GetVar(ctx, varTruncatedIP).(string)
	if _, collected := caddyhttp.GetVar(ctx, VarEventID).(string); !collected {
		truncated = iso.truncatedIP(r)
	}
	r = iso.isolateRequest(r, truncated)
	// The cookie ID and the record's event ID (a join key to the record)
	// read empty inside; the client IP reads truncated when the record's
	// is. The handlers outside get them back.
	for _, k := range [...]string{VarCookieID, VarEventID} {
		if v, ok := caddyhttp.GetVar(ctx, k).(string); ok && v != "" {
			caddyhttp.SetVar(ctx, k, "")
			defer caddyhttp.SetVar(ctx, k, v)
		}
	}
	if truncated != "" {
		if v, ok := caddyhttp.GetVar(ctx, caddyhttp.ClientIPVarKey).(string); ok {
			caddyhttp.SetVar(ctx, caddyhttp.ClientIPVarKey, truncated)
			defer caddyhttp.SetVar(ctx, caddyhttp.ClientIPVarKey, v)
		}
	}
	iw := &isolateWriter{
		ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		iso:                   iso,
		r:                     r,
		outer:                 outerHeadersOf(w.Header()),
	}
	err := next.ServeHTTP(iw, r)
	// Nothing written, what is written next (an empty 200 by an outer
	// handler, an error page) uses this header map; else only trailers
	// set after the body are still to be sent.
	iso.filterResponse(w.Header(), &iw.outer, iw.wroteHeader)
	return err
}

// truncatedIP is, for a request no b2s_collect has seen, the truncated
// client IP when what the request shows asks for it: the opt-out or
// do-not-collect cookie, Sec-GPC (when the b2s app honours it), or the
// app's truncate_ip. (Collect off paths are b2s_collect's own.) Empty
// when the full IP may pass.
func (iso *Isolate) truncatedIP(r *http.Request) string {
	pv := iso.app.privacy
	if pv == nil {
		return ""
	}
	anon := pv.truncate || pv.gpc && r.Header.Get("Sec-Gpc") == "1"
	for _, h := range r.Header["Cookie"] {
		for rest := h; !anon; {
			n, _, more, ok := beacon.NextCookie(rest)
			if !ok {
				break
			}
			rest, anon = more, n == pv.optOutName || n == pv.childName
		}
	}
	if !anon {
		return ""
	}
	ip, _ := clientIP(r)
	if !ip.IsValid() {
		return "-" // not an address: forwardTruncated sends none
	}
	return beacon.TruncateIP(ip, pv.v4, pv.v6).String()
}

// isolateRequest returns the request to pass on: r itself when it has
// nothing to remove, else a copy with a header map of its own, so that
// the handlers outside (b2s_collect, the access log) keep the request as
// the client sent it. The copy has no Cookie, Cookie2 or X-B2S-* header
// or trailer; when truncated is set (the record's IP, truncated), it
// comes from that address, which reverse_proxy puts in X-Forwarded-For,
// and carries it in X-Real-IP and Forwarded in place of the client's.
func (iso *Isolate) isolateRequest(r *http.Request, truncated string) *http.Request {
	trailers := r.Trailer != nil || r.Body != nil && r.Body != http.NoBody && r.ContentLength < 0
	found := truncated != "" || trailers
	for k := range r.Header {
		if found {
			break
		}
		found = isB2SHeader(k) || isCookieHeader(k)
	}
	if !found {
		return r
	}
	h := r.Header.Clone()
	var realIP, forwarded bool
	for k, vs := range h {
		switch {
		case isB2SHeader(k):
			delete(h, k)
			isolateCount[isolatedHeader].Add(float64(len(vs)))
		case strings.EqualFold(k, "Cookie"):
			delete(h, k)
			kept, removed := filterCookies(vs, iso.allows)
			if kept != "" {
				h["Cookie"] = []string{kept}
			}
			isolateCount[isolatedRequestCookie].Add(float64(removed))
		case strings.EqualFold(k, "Cookie2"): // RFC 2965, obsolete: nobody's cookies go through it
			delete(h, k)
			isolateCount[isolatedRequestCookie].Add(float64(len(vs)))
		case truncated != "" && isClientIPHeader(k):
			delete(h, k)
			realIP = realIP || strings.EqualFold(k, "X-Real-Ip")
			forwarded = forwarded || strings.EqualFold(k, "Forwarded")
		}
	}
	r2 := r.WithContext(r.Context()) // a shallow copy
	r2.Header = h
	if truncated != "" {
		forwardTruncated(r2, truncated, realIP, forwarded)
	}
	if trailers {
		clearTrailerDeclaration(h, forbiddenRequestTrailer)
		filterRequestTrailers(r, r2)
	}
	return r2
}

// forwardTruncated makes r come from the truncated address ip. Caddy's
// reverse_proxy builds X-Forwarded-For from the request's RemoteAddr (and
// keeps the client's own only from a trusted proxy; it is removed
// already), so RemoteAddr becomes the truncated address, port 0. The
// X-Real-IP and Forwarded headers, which reverse_proxy passes on as they
// came, carry it too when the client's request had them.
func forwardTruncated(r *http.Request, ip string, realIP, forwarded bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		r.RemoteAddr = "" // reverse_proxy then sends no X-Forwarded-For
		return
	}
	r.RemoteAddr = netip.AddrPortFrom(addr, 0).String()
	if realIP {
		r.Header["X-Real-Ip"] = []string{addr.String()}
	}
	if forwarded {
		node := addr.String()
		if addr.Is6() {
			node = `"[` + node + `]"` // RFC 7239, section 6
		}
		r.Header["Forwarded"] = []string{"for=" + node}
	}
}

// isClientIPHeader reports whether the request header carries the
// client's IP from a proxy in front: X-Forwarded-For, X-Real-IP,
// Forwarded (RFC 7239), and the CDNs' True-Client-IP, CF-Connecting-IP,
// Fastly-Client-IP, X-Client-IP and X-Cluster-Client-IP.
func isClientIPHeader(k string) bool {
	for _, n := range clientIPHeaders {
		if strings.EqualFold(k, n) {
			return true
		}
	}
	return false
}

var clientIPHeaders = [...]string{"X-Forwarded-For", "X-Real-Ip", "Forwarded", "True-Client-Ip",
	"Cf-Connecting-Ip", "Fastly-Client-Ip", "X-Client-Ip", "X-Cluster-Client-Ip"}

// isCookieHeader reports whether k is Cookie or Cookie2.
func isCookieHeader(k string) bool {
	return strings.EqualFold(k, "Cookie") || strings.EqualFold(k, "Cookie2")
}

// forbiddenRequestTrailer reports whether a request trailer of that name
// is removed: the cookies and the plugin's headers, as in the header.
func forbiddenRequestTrailer(name string) bool {
	return isCookieHeader(name) || isB2SHeader(name)
}

// filterRequestTrailers gives r2, the copy of r passed on, trailers of
// its own without the forbidden ones. net/http fills r's trailers when
// its body reaches EOF; so does the body of r2, at the same moment,
// from r's, before whoever reads r2's body (reverse_proxy copies the
// trailers of the request it got at EOF) looks at them. The map is
// filled in place, so copies of r2 made further in see it too.
func filterRequestTrailers(r, r2 *http.Request) {
	r2.Trailer = make(http.Header, len(r.Trailer))
	for k := range r.Trailer {
		if !forbiddenRequestTrailer(k) {
			r2.Trailer[k] = nil
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		r2.Body = &trailerFilter{ReadCloser: r.Body, from: r, to: r2.Trailer}
	}
}

// trailerFilter is a request body that copies the allowed trailers of
// from into to when it reaches EOF.
type trailerFilter struct {
	io.ReadCloser
	from *http.Request
	to   http.Header
	done bool
}

func (b *trailerFilter) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		clear(b.to)
		for k, vs := range b.from.Trailer {
			switch {
			case isCookieHeader(k):
				isolateCount[isolatedRequestCookie].Add(float64(len(vs)))
			case isB2SHeader(k):
				isolateCount[isolatedHeader].Add(float64(len(vs)))
			default:
				b.to[k] = slices.Clone(vs)
			}
		}
	}
	return n, err
}

// outerHeaders are the Set-Cookie, X-B2S-* and origin-wide response
// headers set before b2s_isolate ran: the site's own, kept as they are.
type outerHeaders struct {
	setCookie []string
	guarded   map[string][]string
}

func outerHeadersOf(h http.Header) outerHeaders {
	var o outerHeaders
	for k, vs := range h {
		switch {
		case isSetCookie(strings.TrimPrefix(k, http.TrailerPrefix)):
			o.setCookie = append(o.setCookie, vs...)
		case guardedHeader(strings.TrimPrefix(k, http.TrailerPrefix)):
			if o.guarded == nil {
				o.guarded = make(map[string][]string)
			}
			o.guarded[k] = slices.Clone(vs)
		}
	}
	return o
}

// filterResponse removes from h the Set-Cookie headers of cookies the
// upstream may not set, the X-B2S-* headers and the origin-wide ones, but
// those set outside b2s_isolate; with trailersOnly, it looks at the
// trailers net/http sends undeclared (http.TrailerPrefix) and the X-B2S-*
// and origin-wide headers only. Value slices are replaced, never changed
// in place: other handlers share some of them.
func (iso *Isolate) filterResponse(h http.Header, o *outerHeaders, trailersOnly bool) {
	var trusted []string // outer Set-Cookie values not yet matched
	if len(o.setCookie) > 0 {
		trusted = slices.Clone(o.setCookie)
	}
	for k, vs := range h {
		name, trailer := strings.CutPrefix(k, http.TrailerPrefix)
		if trailersOnly && !trailer && !guardedHeader(name) {
			// Sent already. An X-B2S-* header set after the body is
			// removed still: a trailer, undeclared, never sent, but the
			// handlers outside (b2s_collect) would read it as the site's.
			continue
		}
		switch {
		case guardedHeader(name):
			want := o.guarded[k]
			if slices.Equal(vs, want) {
				continue
			}
			outer := slices.Clone(want)
			removed := 0
			for _, v := range vs {
				if !take(&outer, v) {
					removed++
				}
			}
			if want == nil {
				delete(h, k)
			} else {
				h[k] = slices.Clone(want)
			}
			isolateCount[isolatedHeader].Add(float64(removed))
		case isSetCookie(name):
			var kept []string
			for i, v := range vs {
				if take(&trusted, v) || iso.keepSetCookie(v) {
					if kept != nil {
						kept = append(kept, v)
					}
					continue
				}
				if kept == nil {
					kept = append(make([]string, 0, len(vs)-1), vs[:i]...)
				}
				isolateCount[isolatedSetCookie].Inc()
			}
			switch {
			case kept == nil: // all kept
			case len(kept) == 0:
				delete(h, k)
			default:
				h[k] = kept
			}
		}
	}
}

// keepSetCookie reports whether a Set-Cookie value from the upstream may
// reach the visitor, and logs why not.
func (iso *Isolate) keepSetCookie(v string) bool {
	name, ok := setCookieName(v)
	reason := "malformed"
	switch {
	case ok && iso.allows(name):
		return true
	case ok && iso.app.ownsCookie(name):
		reason = "owned"
	case ok:
		reason = "not_allowed"
	}
	if ce := iso.logger.Check(zapcore.DebugLevel, "set-cookie dropped"); ce != nil {
		ce.Write(zap.String("cookie", name), zap.String("reason", reason))
	}
	return false
}

// clearTrailerDeclaration removes the names drop reports from the Trailer
// header, so that net/http sends no trailer of those names, whatever is
// set after the body.
func clearTrailerDeclaration(h http.Header, drop func(name string) bool) {
	for k, vs := range h {
		if !strings.EqualFold(k, "Trailer") {
			continue
		}
		var names []string
		changed := false
		for _, v := range vs {
			for n := range strings.SplitSeq(v, ",") {
				n = strings.TrimSpace(n)
				if n == "" {
					continue
				}
				if drop(n) {
					changed = true
					continue
				}
				names = append(names, n)
			}
		}
		switch {
		case !changed:
		case len(names) == 0:
			delete(h, k)
		default:
			h[k] = []string{strings.Join(names, ", ")}
		}
	}
}

// forbiddenResponseTrailer reports whether the upstream may not send a
// trailer of that name: X-B2S-*, the origin-wide headers and Set-Cookie.
func forbiddenResponseTrailer(name string) bool {
	return guardedHeader(name) || isSetCookie(name)
}

// take removes one occurrence of v from *list and reports whether there
// was one.
func take(list *[]string, v string) bool {
	i := slices.Index(*list, v)
	if i < 0 {
		return false
	}
	*list = slices.Delete(*list, i, i+1)
	return true
}

// isB2SHeader reports whether the header is one of the plugin's, X-B2S-*
// in any case.
func isB2SHeader(k string) bool {
	return len(k) >= len("X-B2s-") && strings.EqualFold(k[:len("X-B2s-")], "X-B2s-")
}

func isSetCookie(k string) bool { return strings.EqualFold(k, "Set-Cookie") }

// guardedHeader reports whether only the site may send the response
// header: the plugin's X-B2S-* signals and the origin-wide headers.
func guardedHeader(k string) bool { return isB2SHeader(k) || isOriginHeader(k) }

// originHeaders are the response headers whose effect reaches past the
// response, to the site's whole origin or to its other URLs: an isolated
// upstream must not send them as the site. Clear-Site-Data would delete
// the visitor's opt-out and do-not-collect cookies (W3C Clear Site Data);
// Refresh, Link (preload, prefetch) and Speculation-Rules make the
// browser request URLs of the site, the plugin's endpoints among them, as
// the site; Service-Worker-Allowed lets a worker script from the route
// control every page of the origin; Strict-Transport-Security, Alt-Svc,
// NEL and Report-To (network error reports of every request to the
// origin, sent to the upstream's collector), Accept-CH and Critical-CH
// (client hints on every request) and Set-Login (FedCM) set state the
// browser keeps for the origin.
var originHeaders = [...]string{"Clear-Site-Data", "Refresh", "Link", "Speculation-Rules",
	"Service-Worker-Allowed", "Strict-Transport-Security", "Alt-Svc", "Nel", "Report-To",
	"Accept-Ch", "Critical-Ch", "Set-Login"}

func isOriginHeader(k string) bool {
	for _, n := range originHeaders {
		if strings.EqualFold(k, n) {
			return true
		}
	}
	return false
}

// sandboxPolicy is the Content-Security-Policy of isolated responses
// (Isolate.Sandbox): an opaque origin, with what ads need to run and to
// take a click to the advertiser.
const sandboxPolicy = "sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"

var hdrNoReferrer = []string{"no-referrer"}

// contain applies to the header of the final response from inside what
// the Set-Cookie and header filters cannot: a redirect into the site is
// refused (no Location, 502 in place of the 3xx) and the sandbox policy is
// added. It returns the status to send.
func (iso *Isolate) contain(h http.Header, r *http.Request, status int) int {
	if status >= 300 && status < 400 && status != http.StatusNotModified {
		for k, vs := range h {
			if !strings.EqualFold(k, "Location") || iso.redirectAllowed(r, vs) {
				continue
			}
			delete(h, k)
			status = http.StatusBadGateway
			isolateCount[isolatedHeader].Add(float64(len(vs)))
			if ce := iso.logger.Check(zapcore.DebugLevel, "redirect into the site refused"); ce != nil {
				ce.Write(zap.String("path", r.URL.Path))
			}
		}
	}
	if iso.sandbox && status != http.StatusSwitchingProtocols {
		const csp = "Content-Security-Policy"
		h[csp] = append(slices.Clip(h[csp]), sandboxPolicy)
		// Navigations an ad document starts carry no Referer: a link
		// token it minted is exchanged only with a Referer of the site
		// that issued it (link.go), which the ad's page would be.
		h["Referrer-Policy"] = hdrNoReferrer
	}
	return status
}

// redirectAllowed reports whether the browser may follow a redirect of
// the upstream to locs (the Location values): only one, to another site,
// or on the request's own host within the directory of the request path's
// first segment ("/ads/" for "/ads/click": the route's own, as far as it
// can be told), other than the plugin's endpoints. A redirect elsewhere
// on the site (the opt-in), to another host of the same site (which
// shares its cookies, and whose requests count as same-site) or to a
// network site would make the browser, with a click's user activation if
// it came from one, request the site as the site itself. Anything a
// browser might read otherwise than Go does (backslashes, control
// characters, an encoded dot or slash) is refused.
func (iso *Isolate) redirectAllowed(r *http.Request, locs []string) bool {
	if len(locs) != 1 || locs[0] == "" {
		return false
	}
	loc := locs[0]
	for i := 0; i < len(loc); i++ {
		c := loc[i]
		if c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
		if c == '%' && i+2 < len(loc) && (loc[i+1] == '2' && strings.IndexByte("eEfF", loc[i+2]) >= 0 ||
			loc[i+1] == '5' && (loc[i+2] == 'c' || loc[i+2] == 'C')) {
			return false // %2e, %2f, %5c
		}
	}
	u, err := url.Parse(loc)
	if err != nil {
		return false
	}
	base := &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path}
	if r.TLS != nil {
		base.Scheme = "https"
	}
	to := base.ResolveReference(u)
	if to.Scheme != "http" && to.Scheme != "https" {
		return false
	}
	host, own := normalHost(to.Hostname()), normalHost(hostname(r.Host))
	if host == "" {
		return false
	}
	if host == own {
		dir := routeDir(r.URL.Path)
		return dir != "" && strings.HasPrefix(to.Path, dir) && !iso.endpoint(to)
	}
	if nw := iso.app.network; nw != nil && nw.has(host) {
		return false
	}
	return !sameSite(host, own)
}

// endpoint reports whether u reaches one of the plugin's endpoints that
// change what the edge does for the visitor: the opt-out, the opt-in, the
// link endpoint, and any URL with a link token (its exchange would join
// the visitor to the network ID of whoever the token was issued to).
func (iso *Isolate) endpoint(u *url.URL) bool {
	if pv := iso.app.privacy; pv != nil && (u.Path == pv.optOutPath || u.Path == pv.optInPath) {
		return true
	}
	nw := iso.app.network
	if nw == nil {
		return false
	}
	_, _, token := stripToken(u.RawQuery, nw.tokenParam) // written plainly or percent-encoded
	return u.Path == nw.linkPath || token
}

// routeDir is the directory of path's first segment, "/ads/" for
// "/ads/click", or empty for a path without one ("/click").
func routeDir(path string) string {
	i := strings.IndexByte(path[min(1, len(path)):], '/')
	if i < 0 {
		return ""
	}
	return path[:i+2]
}

func normalHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// sameSite reports whether the hosts share a registrable domain (the
// public suffix list's), as a browser's same-site does; hosts without one
// (addresses, single labels) only when equal.
func sameSite(a, b string) bool {
	if a == b {
		return true
	}
	ra, err := publicsuffix.EffectiveTLDPlusOne(a)
	if err != nil {
		return false
	}
	rb, err := publicsuffix.EffectiveTLDPlusOne(b)
	return err == nil && ra == rb
}

// isolateWriter filters the response header each time it is written.
type isolateWriter struct {
	*caddyhttp.ResponseWriterWrapper
	iso         *Isolate
	r           *http.Request
	outer       outerHeaders
	wroteHeader bool
}

func (w *isolateWriter) WriteHeader(status int) {
	if !w.wroteHeader {
		// Every 1xx too: net/http sends the header map with each
		// (RFC 8297, 103 Early Hints may carry Set-Cookie).
		h := w.Header()
		w.iso.filterResponse(h, &w.outer, false)
		// 1xx are interim, except 101, which ends the HTTP exchange.
		if status >= 200 || status == http.StatusSwitchingProtocols {
			w.wroteHeader = true
			clearTrailerDeclaration(h, forbiddenResponseTrailer)
			status = w.iso.contain(h, w.r, status)
		}
	}
	w.ResponseWriterWrapper.WriteHeader(status)
}

func (w *isolateWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.Write(b)
}

// ReadFrom writes the header through the filter first: the wrapped
// writer's ReadFrom would send it unfiltered.
func (w *isolateWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError is what http.ResponseController calls to flush (reverse_proxy
// flushes streamed responses). A flush before anything was written sends
// the header, so it goes through the filter first.
func (w *isolateWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriterWrapper.ResponseWriter).Flush()
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Isolate)(nil)
	_ caddy.Validator             = (*Isolate)(nil)
	_ caddyhttp.MiddlewareHandler = (*Isolate)(nil)
	_ io.ReaderFrom               = (*isolateWriter)(nil)
)
