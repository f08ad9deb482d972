package browser

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"strings"
)

// What the origins serve. Pages are never cached, so that every visit
// reaches the edge, and declare an empty icon, so that the browser asks for
// no /favicon.ico, which would make records of its own.

// Cookies the origins set themselves.
const (
	// sitePrefCookie is a cookie of b2s's own pages that scripts can read:
	// whatever a script on the page reports, it carries this one.
	sitePrefCookie = "site_pref=compact"
	// adCookieName is the advertiser's own visitor cookie, on its domain.
	adCookieName = "adnet_uid"
)

// Paths of the origins' routes.
const (
	adsPagePath  = "/ads.html"   // b2s: a page with the tag and the advertiser's frame and script
	adFramePath  = "/frame.html" // advertiser: the frame b2s's pages embed
	adScriptPath = "/ads.js"     // advertiser: the script b2s's pages include
	adReportPath = "/report"     // advertiser: where its frame and script report, POST
	adPixelPath  = "/px.gif"     // advertiser: where they report again, by image
)

// installSites gives the origins their default routes; tests add or
// replace routes with origin.handle.
func (e *env) installSites() {
	for _, s := range []struct {
		o    *origin
		name string
	}{{e.main, "b2s.com"}, {e.sister, "b2smade.com"}} {
		e.installHome(s.o, s.name)
	}
	e.main.handle(adsPagePath, func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, sitePref())
		writePage(w, "b2s.com: suppliers", "<h1>Suppliers</h1>\n"+tagScript+"\n"+e.adSlots())
	})
	e.installAdvertiser()
}

// tagScript includes b2s's JavaScript tag, which sends a pageview beacon.
const tagScript = `<script src="/b.js" async></script>`

// adSlots is the advertiser's frame and script, as a page embeds them.
func (e *env) adSlots() string {
	return fmt.Sprintf(`<iframe id="ad" src="%s" width="300" height="250"></iframe>
<script src="%s"></script>`,
		html.EscapeString(e.url(adHost, adFramePath)), html.EscapeString(e.url(adHost, adScriptPath)))
}

func (e *env) installHome(o *origin, name string) {
	o.handle("/", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, sitePref())
		writePage(w, name, "<h1>"+html.EscapeString(name)+"</h1>")
	})
}

func sitePref() *http.Cookie {
	name, value, _ := strings.Cut(sitePrefCookie, "=")
	return &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, SameSite: http.SameSiteLaxMode}
}

func writePage(w http.ResponseWriter, title, body string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>%s</title></head>
<body>
%s
</body></html>
`, html.EscapeString(title), body)
}

// adReport is what the advertiser's frame and script report about where
// they run: everything a script there can read that could identify the
// visitor or the page.
type adReport struct {
	From     string `json:"from"` // "frame" or "script"
	Cookie   string `json:"cookie"`
	Location string `json:"location"`
	Referrer string `json:"referrer"`
	Storage  string `json:"storage"` // localStorage, as JSON
}

// adReporter is the advertiser's reporting code: it sends the report to
// its origin o with fetch (credentials included) and again as an image.
const adReporter = `function adReport(from, o) {
	var s = "", c;
	try { s = JSON.stringify(localStorage); } catch (e) {}
	try { c = document.cookie; } catch (e) { c = "error: " + e.name; } // a sandboxed document may not read them
	var d = JSON.stringify({from: from, cookie: c, location: location.href, referrer: document.referrer, storage: s});
	fetch(o + "/report", {method: "POST", mode: "no-cors", credentials: "include", body: d});
	new Image().src = o + "/px.gif?from=" + from + "&d=" + encodeURIComponent(d);
}
`

// installAdvertiser gives the advertiser's origin its routes: a home page
// and a frame that set its own cookie (adnet_uid, SameSite=None) when the
// browser sends none, a script, and the report endpoints.
func (e *env) installAdvertiser() {
	setAdCookie := func(w http.ResponseWriter, r *http.Request) {
		if _, err := r.Cookie(adCookieName); err != nil {
			http.SetCookie(w, &http.Cookie{Name: adCookieName, Value: randomHex(16), Path: "/", MaxAge: 3600,
				Secure: true, SameSite: http.SameSiteNoneMode})
		}
	}
	e.ads.handle("/", func(w http.ResponseWriter, r *http.Request) {
		setAdCookie(w, r)
		writePage(w, "adnet", "<h1>adnet</h1>")
	})
	e.ads.handle(adFramePath, func(w http.ResponseWriter, r *http.Request) {
		setAdCookie(w, r)
		writePage(w, "adnet ad", "<p>An ad.</p>\n<script>\n"+adReporter+"adReport(\"frame\", location.origin);\n</script>")
	})
	e.ads.handle(adScriptPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "(function () {\n"+adReporter+"adReport(\"script\", new URL(document.currentScript.src).origin);\n})();\n")
	})
	e.ads.handle(adReportPath, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	e.ads.handle(adPixelPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/gif")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(gif1x1)
	})
}

// gif1x1 is a transparent 1x1 GIF.
var gif1x1 = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// report decodes the body of a report request.
func (r *seenRequest) report() (adReport, error) {
	var rep adReport
	err := json.Unmarshal(r.Body, &rep)
	return rep, err
}

// reportFrom matches the POST report of the advertiser's frame or script.
func reportFrom(from string) func(*seenRequest) bool {
	return func(r *seenRequest) bool {
		if r.Method != http.MethodPost || r.path() != adReportPath {
			return false
		}
		rep, err := r.report()
		return err == nil && rep.From == from
	}
}

// pixelFrom matches the image report of the advertiser's frame or script.
func pixelFrom(from string) func(*seenRequest) bool {
	return func(r *seenRequest) bool {
		return r.Method == http.MethodGet && r.path() == adPixelPath && strings.HasPrefix(r.URI, adPixelPath+"?from="+from+"&")
	}
}
