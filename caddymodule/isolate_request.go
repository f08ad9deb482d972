package caddymodule

import (
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/b2scom/b2s-edge/beacon"
)

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
			rest, anon = more, pv.isMarker(n)
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
