package caddymodule

import (
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
)

// pageWriter sits between b2s_collect and the handlers behind it. As the
// response's header is written, it removes the site's child and member
// signals and acts on them, adds the visitor's cookie, and keeps a
// response that sets a cookie out of shared caches: a CDN that stored it
// would hand one visitor's ID to everyone. It makes Cache-Control private
// (RFC 9111, section 5.2.2.7), removing what would let a shared cache
// store it, and leaves browser caching as the upstream asked.
type pageWriter struct {
	caddyhttp.ResponseWriterWrapper // by value: one allocation less per page
	c                               *Collect
	r                               *http.Request
	rec                             beacon.Record
	ip                              netip.Addr
	cookie                          pendingCookie
	wroteHeader                     bool
}

func (p *pageWriter) WriteHeader(status int) {
	if !p.wroteHeader {
		h := p.Header()
		// 1xx are interim, except 101, which ends the HTTP exchange.
		final := status >= 200 || status == http.StatusSwitchingProtocols
		private := p.c.siteSignals(p, h, final)
		if final {
			p.wroteHeader = true
			if p.cookie.value != "" {
				p.cookie.addTo(h)
				private = true
			}
			if private {
				h.Set("Cache-Control", makePrivate(h.Values("Cache-Control")))
			}
		}
	}
	p.ResponseWriterWrapper.WriteHeader(status)
}

func (p *pageWriter) Write(b []byte) (int, error) {
	if !p.wroteHeader {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriterWrapper.Write(b)
}

// siteSignals removes the child and member headers from a response of the
// site and, on the final response, acts on them. It reports whether it
// set a cookie.
func (c *Collect) siteSignals(p *pageWriter, h http.Header, final bool) bool {
	pv := c.app.privacy
	child, hasChild := h[pv.childHeader]
	member, hasMember := h[pv.memberHeader]
	if !hasChild && !hasMember {
		return false
	}
	delete(h, pv.childHeader)
	delete(h, pv.memberHeader)
	if !final {
		return false
	}
	if hasChild && len(child) > 0 && strings.TrimSpace(child[0]) != "" && strings.TrimSpace(child[0]) != "0" {
		// A child: delete the visitor's cookies, mark the browser, and
		// keep no identifier of this request either.
		privacySignal("child").Inc()
		p.cookie = pendingCookie{}
		r := p.r
		h.Add("Set-Cookie", c.cookieLine(r, c.app.CookieName, "", 0))
		h.Add("Set-Cookie", c.cookieLine(r, pv.memberName, "", 0))
		h.Add("Set-Cookie", c.cookieLine(r, pv.childName, "1", time.Duration(c.app.CookieMaxAge)))
		p.rec.Consent = beacon.ConsentChild
		c.protectIP(&p.rec, p.ip)
		return true
	}
	if !hasMember || !p.rec.Consent.Identifying() || p.rec.CookieID == "" {
		return false
	}
	m := ""
	if len(member) > 0 {
		m = strings.TrimSpace(member[0])
	}
	switch {
	case m == "" || m == "-":
		privacySignal("signout").Inc()
		p.rec.MemberID = ""
		h.Add("Set-Cookie", c.cookieLine(p.r, pv.memberName, "", 0))
	case beacon.ValidMember(m):
		privacySignal("member").Inc()
		p.rec.MemberID = m
		h.Add("Set-Cookie", c.cookieLine(p.r, pv.memberName, m+"."+c.app.signer.SignMember(p.rec.CookieID, m), time.Duration(c.app.CookieMaxAge)))
	default:
		c.logger.Warn("member header ignored: not 1-64 visible ASCII characters without quotes, commas, semicolons or backslashes",
			zap.String("header", pv.memberHeader), zap.Int("length", len(m)))
		return false
	}
	return true
}

// makePrivate rewrites Cache-Control directives so no shared cache may
// store the response.
func makePrivate(values []string) string {
	out := []string{"private"}
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			name := strings.ToLower(d)
			if i := strings.IndexByte(name, '='); i >= 0 {
				name = name[:i]
			}
			switch name {
			case "", "public", "private", "s-maxage", "proxy-revalidate":
				continue
			case "no-store":
				return "no-store"
			}
			out = append(out, d)
		}
	}
	return strings.Join(out, ", ")
}
