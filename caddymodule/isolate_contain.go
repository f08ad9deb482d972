package caddymodule

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/net/publicsuffix"
)

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
// "/ads/click", or empty for a path without one ("/click") or whose first
// segment is empty ("//ads/click": Caddy's path matchers merge the
// slashes, so "//" would take in every path of the site written "//x").
func routeDir(path string) string {
	i := strings.IndexByte(path[min(1, len(path)):], '/')
	if i <= 0 {
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
