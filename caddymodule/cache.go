package caddymodule

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// setCookieOnWrite adds the visitor's cookie to the response as its header
// is written, and keeps that response out of shared caches: a CDN that
// stored it would hand one visitor's ID to everyone. It makes
// Cache-Control private (RFC 9111, section 5.2.2.7), removing what would
// let a shared cache store it, and leaves browser caching as the upstream
// asked.
type setCookieOnWrite struct {
	*caddyhttp.ResponseWriterWrapper
	cookie      pendingCookie
	wroteHeader bool
}

func (p *setCookieOnWrite) WriteHeader(status int) {
	// 1xx are interim, except 101, which ends the HTTP exchange.
	if !p.wroteHeader && (status >= 200 || status == http.StatusSwitchingProtocols) {
		p.wroteHeader = true
		h := p.Header()
		p.cookie.addTo(h)
		h.Set("Cache-Control", makePrivate(h.Values("Cache-Control")))
	}
	p.ResponseWriterWrapper.WriteHeader(status)
}

func (p *setCookieOnWrite) Write(b []byte) (int, error) {
	if !p.wroteHeader {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriterWrapper.Write(b)
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
