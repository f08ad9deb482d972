package caddymodule

import (
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

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
