package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
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
	hidden := [...]string{VarCookieID, VarEventID, caddyhttp.ClientIPVarKey}
	var saved [len(hidden)]string
	for i, k := range hidden {
		v, ok := caddyhttp.GetVar(ctx, k).(string)
		switch {
		case !ok || v == "":
		case k != caddyhttp.ClientIPVarKey:
			saved[i] = v
			caddyhttp.SetVar(ctx, k, "")
		case truncated != "":
			saved[i] = v
			caddyhttp.SetVar(ctx, k, truncated)
		}
	}
	defer func() {
		for i, k := range hidden {
			if saved[i] != "" {
				caddyhttp.SetVar(ctx, k, saved[i])
			}
		}
	}()
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Isolate)(nil)
	_ caddy.Validator             = (*Isolate)(nil)
	_ caddyhttp.MiddlewareHandler = (*Isolate)(nil)
	_ io.ReaderFrom               = (*isolateWriter)(nil)
)
