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
// path and CONSENT by the consent path, as JSON strings. It sends a
// pageview on load and on every SPA
// history change (pushState, replaceState, popstate) whose URL differs
// from the last one sent, with navigator.sendBeacon (POST, text/plain
// JSON: no CORS preflight) or, failing that, a pixel request. It sends
// nothing under Global Privacy Control or when the script tag or the html
// element carries data-optout: an HttpOnly opt-out cookie is not readable
// from JavaScript, so the server must enforce that one itself. A pageview
// carries the page and its referrer, never an identifier: before consent,
// the edge records it as pending (the tag cannot read the country).
//
// It defines b2s.consent(granted) for the site's consent platform to call
// (consent_endpoint.go). b2s.consent(true) fetches the consent form's
// token (its GET sets the form's nonce cookie) and submits the form, a
// top-level POST that returns to the page: the edge takes it only as the
// visitor's own action (Fetch Metadata: a navigation the user started,
// so it must run within a few seconds of the visitor's click on the
// platform's button), the page reloads with consent. Under GPC it does
// nothing. b2s.consent(false) POSTs the withdrawal, which needs no
// guard, and the tag sends nothing more. A script of the page's origin
// can call it too, as it can submit any form of the site: third-party
// scripts belong in b2s_isolate's sandbox.
const tagTemplate = `(function(w,d,n){var s=d.currentScript,h=w.history,P=BEACON,C=CONSENT,E=encodeURIComponent,L=location,l,o,G=n.globalPrivacyControl;` +
	`(w.b2s=w.b2s||{}).consent=function(g){if(!g)return o=fetch(C+"?withdraw",{method:"POST",keepalive:!0});` +
	`if(!G)return fetch(C).then(function(r){r.text().then(function(t){var f=d.createElement("form"),i=d.createElement("input");` +
	`f.method="post";f.hidden=!0;f.action=C+"?return="+E(L.pathname+L.search);` +
	`i.name="FIELD";i.value=/value="([^"]+)/.exec(t)[1];f.appendChild(i);d.body.appendChild(f).submit()})})};` +
	`if(G||s&&s.hasAttribute("data-optout")||d.documentElement.hasAttribute("data-optout"))return;` +
	`function v(){var u=L.href,r;if(u===l||o)return;r=l||d.referrer;l=u;` +
	`if(!(n.sendBeacon&&n.sendBeacon(P,JSON.stringify({u:u,r:r,e:"pageview"}))))` +
	`new Image().src=P+"?e=pageview&u="+E(u)+"&r="+E(r)}` +
	`function k(m){var f=h[m];if(f)h[m]=function(){var x=f.apply(this,arguments);v();return x}}` +
	`k("pushState");k("replaceState");w.addEventListener("popstate",v);v()})(window,document,navigator);` + "\n"

// buildTag returns the tag for beaconPath and consentPath and its strong
// ETag.
func buildTag(beaconPath, consentPath string) (js []byte, etag string) {
	p, _ := json.Marshal(beaconPath) // escapes <, > and & too: safe inline
	cp, _ := json.Marshal(consentPath)
	js = []byte(strings.NewReplacer("BEACON", string(p), "CONSENT", string(cp), "FIELD", optInTokenField).Replace(tagTemplate))
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
