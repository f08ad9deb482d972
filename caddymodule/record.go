package caddymodule

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/b2scom/b2s-edge/beacon"
)

// locate puts the client IP in rec with what the GeoIP databases give for
// it, then truncates it when consent or the site asks (after the lookups,
// so the location stays accurate), and returns it.
func (c *Collect) locate(r *http.Request, rec *beacon.Record) netip.Addr {
	a := c.app
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
	c.protectIP(rec, ip)
	return ip
}

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

// emit encodes rec and appends it to the spool, from where the shipper
// takes it to Kafka, unless the client is over its limit (ip is the
// client's address, which the limit keys records without a verified
// cookie on). A spool that refuses it (full, disk error) counts and logs
// the drop itself; the response goes out regardless. rec's personal data
// is replaced first (see redact.go).
func (c *Collect) emit(rec *beacon.Record, ip netip.Addr) {
	if !c.admit(rec, ip) {
		return
	}
	c.app.redact(rec)
	c.app.stampAnonID(rec, ip)
	bp := encodeBufs.Get().(*[]byte)
	*bp = rec.AppendJSON((*bp)[:0])
	key := rec.CookieID // one visitor's records in one partition, in order
	if !rec.Consent.Identifying() {
		key = "" // nor in the key
	}
	_ = c.app.spool.Append(key, *bp)
	if cap(*bp) <= 64<<10 {
		encodeBufs.Put(bp)
	}
}

// encodeBufs recycles encoding buffers: the spool copies the record, so
// the request path allocates nothing for it.
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// finishEndpoint records a response the plugin answers itself (not the
// beacon), then writes it: status and body.
func (c *Collect) finishEndpoint(w http.ResponseWriter, r *http.Request, rec *beacon.Record, ip netip.Addr, status int, body string) {
	rec.Kind = beacon.KindPage
	rec.Status = status
	if r.Method != http.MethodHead {
		rec.Bytes = int64(len(body))
	}
	c.emit(rec, ip)
	recordsPage.Inc()
	if body != "" {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	if body != "" && r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
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
