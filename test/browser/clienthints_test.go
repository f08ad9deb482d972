package browser

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// askedHints is what the main site's client_hints asks for.
var askedHints = []string{"Sec-CH-UA-Full-Version-List", "Sec-CH-UA-Platform-Version", "Sec-CH-UA-Model"}

// highEntropy is what the page's scripts learn of the browser: what it
// sends in the hints the site asked for.
type highEntropy struct {
	Platform        string `json:"platform"`
	PlatformVersion string `json:"platformVersion"`
	FullVersionList []struct {
		Brand   string `json:"brand"`
		Version string `json:"version"`
	} `json:"fullVersionList"`
}

// TestClientHints: the main site asks for Client Hints on its HTML pages
// (Accept-CH), not on its other responses; Chromium sends them on its next
// requests, and that page's record carries the full browser version and
// the platform version the browser reports of itself, where the first
// page's record, made before any hint, has the User-Agent's frozen
// version. The sister site, which asks for nothing, gets no hints: the
// control. A visitor whose consent allows no identifiers is not asked, and
// the hints their browser still sends are not recorded.
func TestClientHints(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(e *env, c *edgeConfig) {
		c.site(mainHost).CollectOptions = []string{"client_hints " + strings.Join(askedHints, " ")}
	}})
	const dataPath = "/data.json"
	for _, o := range []*origin{e.main, e.sister} {
		o.handle(dataPath, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write([]byte(`{"ok":true}`))
		})
	}
	b := e.newBrowser(t, browserOptions{})

	home, next, data := e.url(mainHost, "/"), e.url(mainHost, "/?page=2"), e.url(mainHost, dataPath)
	resp := b.navigate(t, home)
	acceptCH := strings.Join(header(resp, "Accept-CH"), ", ")
	for _, h := range askedHints {
		if !strings.Contains(strings.ToLower(acceptCH), strings.ToLower(h)) {
			t.Errorf("the home page's Accept-CH is %q, want it to ask for %s", acceptCH, h)
		}
	}
	first := e.records.waitRecord(t, "the first page", pageRecord(home))
	if first.UA == nil || !strings.HasSuffix(first.UA.BrowserVersion, ".0.0.0") || first.UA.OSVersion != "" {
		t.Errorf("the first page, before any hint, has ua %+v; want the User-Agent's frozen version and no os_version\n%s", first.UA, first.raw)
	}

	var he highEntropy
	js := `navigator.userAgentData.getHighEntropyValues(["platformVersion", "fullVersionList"]).then(v => JSON.stringify(v))`
	if err := json.Unmarshal([]byte(eval[string](t, b.ctx, js, chromedp.EvalAwaitPromise)), &he); err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, v := range he.FullVersionList {
		if !strings.HasSuffix(v.Version, ".0.0.0") {
			versions = append(versions, v.Version)
		}
	}
	if len(versions) == 0 {
		t.Fatalf("Chromium reports no full version to compare with: %+v", he)
	}
	// Chromium on Linux reports an empty platform version: the record's
	// os_version is then empty too.

	b.navigate(t, next)
	second := e.records.waitRecord(t, "the second page", pageRecord(next))
	if second.UA == nil || !slices.Contains(versions, second.UA.BrowserVersion) || second.UA.OSVersion != he.PlatformVersion || second.UA.OS != he.Platform {
		t.Errorf("the second page has ua %+v; want the full version (one of %q), os %q and os_version %q Chromium sent\n%s",
			second.UA, versions, he.Platform, he.PlatformVersion, second.raw)
	}

	// Not on a response that is not HTML.
	if resp := b.navigate(t, data); len(header(resp, "Accept-CH")) != 0 {
		t.Errorf("%s (JSON) has Accept-CH %q, want none", dataPath, header(resp, "Accept-CH"))
	}

	// The sister site asks for nothing, and its records have no hints.
	sisterHome, sisterNext := e.url(sisterHost, "/"), e.url(sisterHost, "/?page=2")
	if resp := b.navigate(t, sisterHome); len(header(resp, "Accept-CH")) != 0 {
		t.Errorf("the sister site, without client_hints, sent Accept-CH %q", header(resp, "Accept-CH"))
	}
	b.navigate(t, sisterNext)
	if r := e.records.waitRecord(t, "the sister's second page", pageRecord(sisterNext)); r.UA == nil || r.UA.OSVersion != "" || !strings.HasSuffix(r.UA.BrowserVersion, ".0.0.0") {
		t.Errorf("control: the sister site's second page has ua %+v, want no hint asked for\n%s", r.UA, r.raw)
	}

	// Without consent for identifiers (Global Privacy Control): no
	// Accept-CH, and the hints the browser still sends are not recorded.
	b.setHeaders(t, map[string]string{"Sec-GPC": "1"})
	gpcPage := e.url(mainHost, "/?page=gpc")
	if resp := b.navigate(t, gpcPage); len(header(resp, "Accept-CH")) != 0 {
		t.Errorf("a page under GPC has Accept-CH %q, want none", header(resp, "Accept-CH"))
	}
	r := e.records.waitRecord(t, "the page under GPC", pageRecord(gpcPage))
	if r.Consent != "gpc" || r.UA == nil || r.UA.OSVersion != "" || slices.Contains(versions, r.UA.BrowserVersion) {
		t.Errorf("the page under GPC has consent %q and ua %+v; want gpc and none of the hints\n%s", r.Consent, r.UA, r.raw)
	}
}
