package caddymodule

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// tagTemplate is the JavaScript tag; BEACON is replaced by the beacon
// path as a JSON string. It sends a pageview on load and on every SPA
// history change (pushState, replaceState, popstate) whose URL differs
// from the last one sent, with navigator.sendBeacon (POST, text/plain
// JSON: no CORS preflight) or, failing that, a pixel request. It sends
// nothing under Global Privacy Control or when the script tag or the html
// element carries data-optout: an HttpOnly opt-out cookie is not readable
// from JavaScript, so the server must enforce that one itself.
const tagTemplate = `(function(w,d,n){var s=d.currentScript,h=w.history,P=BEACON,l;` +
	`if(n.globalPrivacyControl||s&&s.hasAttribute("data-optout")||d.documentElement.hasAttribute("data-optout"))return;` +
	`function v(){var u=location.href,r;if(u===l)return;r=l||d.referrer;l=u;` +
	`if(!(n.sendBeacon&&n.sendBeacon(P,JSON.stringify({u:u,r:r,e:"pageview"}))))` +
	`new Image().src=P+"?e=pageview&u="+encodeURIComponent(u)+"&r="+encodeURIComponent(r)}` +
	`function k(m){var f=h[m];if(f)h[m]=function(){var x=f.apply(this,arguments);v();return x}}` +
	`k("pushState");k("replaceState");w.addEventListener("popstate",v);v()})(window,document,navigator);` + "\n"

// buildTag returns the tag for beaconPath and its strong ETag.
func buildTag(beaconPath string) (js []byte, etag string) {
	p, _ := json.Marshal(beaconPath) // escapes <, > and & too: safe inline
	js = []byte(strings.Replace(tagTemplate, "BEACON", string(p), 1))
	sum := sha256.Sum256(js)
	return js, `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
}

// defaultScriptPath is the beacon path with its extension replaced by
// .js: /b.gif gives /b.js.
func defaultScriptPath(beaconPath string) string {
	return strings.TrimSuffix(beaconPath, path.Ext(beaconPath)) + ".js"
}

var (
	hdrJS         = []string{"text/javascript; charset=utf-8"}
	hdrPublicHour = []string{"public, max-age=3600"}
)

// serveScript answers the JavaScript tag. It is the same for everyone and
// cacheable, so it sets no cookie and makes no record.
func (c *Collect) serveScript(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return caddyhttp.Error(http.StatusMethodNotAllowed, fmt.Errorf("b2s_collect: script accepts GET and HEAD only"))
	}
	h := w.Header()
	h["Content-Type"] = hdrJS
	h["Cache-Control"] = hdrPublicHour
	h["Etag"] = []string{c.scriptETag}
	h["X-Content-Type-Options"] = hdrNoSniff
	// ServeContent answers If-None-Match with 304, HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(c.script))
	return nil
}
