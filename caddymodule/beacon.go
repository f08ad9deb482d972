package caddymodule

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/b2scom/b2s-edge/beacon"
)

// beaconRequest is what a beacon reports: its query, and a POST beacon's
// body, parsed once, before consent is decided (the collect off paths
// look at the page it reports).
type beaconRequest struct {
	q      beacon.Query
	body   *[]byte          // a POST beacon's body, from bodyBufs; nil for GET and HEAD
	params *[8]beacon.Param // room for q's extra parameters, from paramBufs
}

// readBeacon reads a beacon request into br. It answers itself, and
// reports done, a CORS preflight, a method the beacon does not accept and
// a body that is too large.
func (c *Collect) readBeacon(w http.ResponseWriter, r *http.Request, br *beaconRequest) (done bool, err error) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		if br.body, err = readBeaconBody(r); err != nil {
			return true, err
		}
	case http.MethodOptions:
		c.servePreflight(w, r)
		return true, nil
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, OPTIONS")
		return true, caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("b2s_collect: beacon accepts GET, HEAD, POST and OPTIONS only"))
	}
	// Room for a few extra parameters (more are allocated). They go into
	// the record, so the array would leave the stack: it comes from a
	// pool, and goes back once the record is encoded (release).
	br.params = paramBufs.Get().(*[8]beacon.Param)
	br.q.Params = br.params[:0]
	if br.body != nil {
		beacon.ParseBeacon(r.URL.RawQuery, r.Header.Get("Content-Type"), *br.body, &br.q)
	} else {
		beacon.ParseQuery(r.URL.RawQuery, &br.q)
	}
	return false, nil
}

// release returns a POST beacon's body and its parameters' array to
// their pools. The record that held them has been encoded and spooled:
// nothing refers to them any more.
func (br *beaconRequest) release() {
	if br.body != nil {
		putBody(br.body)
	}
	if br.params != nil {
		clear(br.params[:]) // no strings of this request kept alive
		paramBufs.Put(br.params)
		br.params = nil
	}
}

// paramBufs recycles the arrays beacons parse their extra parameters into.
var paramBufs = sync.Pool{New: func() any { return new([8]beacon.Param) }}

// answerBeacon answers a beacon with the visitor's cookie, if one is due,
// and records it.
func (c *Collect) answerBeacon(w http.ResponseWriter, r *http.Request, br *beaconRequest, rec *beacon.Record, ip netip.Addr, cookie pendingCookie) {
	if cookie.set() {
		cookie.addTo(w.Header())
	}
	if br.body != nil {
		c.servePost(w, r, &br.q, rec, ip)
		return
	}
	c.serveBeacon(w, r, &br.q, rec, ip)
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
func (c *Collect) serveBeacon(w http.ResponseWriter, r *http.Request, q *beacon.Query, rec *beacon.Record, ip netip.Addr) {
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
	c.emit(rec, ip)
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
func (c *Collect) servePost(w http.ResponseWriter, r *http.Request, q *beacon.Query, rec *beacon.Record, ip netip.Addr) {
	c.fillBeacon(r, rec, q)
	h := w.Header()
	h["Cache-Control"] = hdrNoStoreOnly
	c.addCORS(h, r)
	rec.Status = http.StatusNoContent
	c.emit(rec, ip)
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
