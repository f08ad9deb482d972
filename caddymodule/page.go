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

// varTruncatedIP holds the record's IP when it is truncated, for
// b2s_isolate, which passes it on in place of the client's.
const varTruncatedIP = "b2s.truncated_ip"

// servePage passes a page request on and records it when the response is
// done. The handlers behind read the visitor through the placeholders.
func (c *Collect) servePage(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, rec0 *beacon.Record, ip netip.Addr, cookie pendingCookie) error {
	ctx := r.Context()
	caddyhttp.SetVar(ctx, VarCookieID, rec0.CookieID)
	caddyhttp.SetVar(ctx, VarCookieState, stateVars[rec0.CookieState])
	caddyhttp.SetVar(ctx, VarEventID, rec0.EventID)
	if rec0.IPTruncated {
		// b2s_isolate passes the truncated IP on to third parties.
		caddyhttp.SetVar(ctx, varTruncatedIP, rec0.IP)
	}

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
			c.recordPage(rec, ip, recorder, http.StatusBadGateway)
			panic(p)
		}
	}()
	err := next.ServeHTTP(recorder, r)
	if err == nil && recorder.Status() == 0 && (cookie.set() || c.hasSignals(pw.Header())) {
		// Nothing written: net/http would send an empty 200 without
		// passing through us; send it here, with the cookie, and with
		// the site's signals acted on and removed.
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
	c.siteTrailers(pw)
	c.recordPage(rec, ip, recorder, status)
	return err
}

// siteTrailers removes the child and member signals the site sent as
// trailers, after the body (declared in the Trailer header, or set with
// net/http's http.TrailerPrefix), so they never reach the client. By
// then the visitor's cookie has gone out and cannot be taken back; a
// child trailer still makes the record a child's (no identifier, a
// truncated IP), and a member trailer is ignored: the site must send
// both as headers to have them acted on.
func (c *Collect) siteTrailers(p *pageWriter) {
	pv := c.app.privacy
	h := p.Header()
	child, hasChild := h[pv.childHeader]
	delete(h, pv.childHeader)
	delete(h, pv.memberHeader)
	for k, vs := range h {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix) // as set, in any case
		switch {
		case !ok:
		case strings.EqualFold(name, pv.childHeader):
			if !hasChild {
				child, hasChild = vs, true
			}
			delete(h, k)
		case strings.EqualFold(name, pv.memberHeader):
			delete(h, k)
		}
	}
	if hasChild && p.wroteHeader && isChild(child) {
		privacySignal[signalChild].Inc()
		p.rec.Consent = beacon.ConsentChild
		p.rec.ConsentChanged = false
		c.protectIP(&p.rec, p.ip)
	}
}

// hasSignals reports whether h holds the site's child or member header.
func (c *Collect) hasSignals(h http.Header) bool {
	pv := c.app.privacy
	_, child := h[pv.childHeader]
	_, member := h[pv.memberHeader]
	return child || member
}

// isChild reports whether the values of a child header say the visitor
// is a child: any value but empty or "0".
func isChild(vs []string) bool {
	return len(vs) > 0 && strings.TrimSpace(vs[0]) != "" && strings.TrimSpace(vs[0]) != "0"
}

// recordPage completes and emits a page record; status applies when the
// response has not started.
func (c *Collect) recordPage(rec *beacon.Record, ip netip.Addr, recorder caddyhttp.ResponseRecorder, status int) {
	rec.Status, rec.Bytes = recorder.Status(), int64(recorder.Size())
	if rec.Status == 0 {
		rec.Status = status
	}
	c.emit(rec, ip)
	recordsPage.Inc()
}

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
			if p.cookie.set() {
				p.cookie.addTo(h)
				private = true
			}
			p.c.askForHints(h, p.rec.Consent)
			if private {
				h.Set("Cache-Control", makePrivate(h.Values("Cache-Control")))
				removeCDNCacheControl(h)
			}
			if _, ok := h["Trailer"]; ok {
				undeclareTrailers(h, p.c.app.privacy)
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
	if hasChild && isChild(child) {
		// A child: delete the visitor's cookies, mark the browser, and
		// keep no identifier of this request either.
		privacySignal[signalChild].Inc()
		p.cookie = pendingCookie{}
		r := p.r
		c.addCookie(h, r, kindID, "", 0)
		c.addCookie(h, r, kindMember, "", 0)
		c.addCookie(h, r, kindChild, "1", time.Duration(c.app.CookieMaxAge))
		p.rec.Consent = beacon.ConsentChild
		p.rec.ConsentChanged = false // a child's record tells no consent
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
		privacySignal[signalSignOut].Inc()
		p.rec.MemberID = ""
		c.addCookie(h, p.r, kindMember, "", 0)
	case beacon.ValidMember(m):
		privacySignal[signalMember].Inc()
		p.rec.MemberID = m
		c.addCookie(h, p.r, kindMember, m+"."+c.app.signer.SignMember(p.rec.CookieID, m), time.Duration(c.app.CookieMaxAge))
	default:
		c.logger.Warn("member header ignored: not 1-64 visible ASCII characters without quotes, commas, semicolons or backslashes",
			zap.String("header", pv.memberHeader), zap.Int("length", len(m)))
		return false
	}
	return true
}

// removeCDNCacheControl removes the cache directives meant for CDNs
// alone, which override Cache-Control there (RFC 9213, section 2:
// CDN-Cache-Control; and the vendors' Surrogate-Control,
// Cloudflare-CDN-Cache-Control, Vercel-CDN-Cache-Control): a CDN that
// obeyed them would store a private response. Without them it follows
// Cache-Control, which is private.
func removeCDNCacheControl(h http.Header) {
	for k := range h {
		if len(k) >= len("Cdn-Cache-Control") && strings.EqualFold(k[len(k)-len("Cdn-Cache-Control"):], "Cdn-Cache-Control") ||
			strings.EqualFold(k, "Surrogate-Control") {
			delete(h, k)
		}
	}
}

// undeclareTrailers removes the child and member headers from the
// response's Trailer declaration.
func undeclareTrailers(h http.Header, pv *privacy) {
	clearTrailerDeclaration(h, func(name string) bool {
		return strings.EqualFold(name, pv.childHeader) || strings.EqualFold(name, pv.memberHeader)
	})
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
