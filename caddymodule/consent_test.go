package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/geo"
	"github.com/b2scom/b2s-edge/internal/geotest"
	"github.com/b2scom/b2s-edge/logship"
	"github.com/b2scom/b2s-edge/mailink"
)

// Consent regions: a visitor where the site requires consent gets no
// identifier until they give it. The client IPs below are placed by a
// generated City database; each test has a control that shows it can
// fail.

// Client IPs of the visitors, by where the GeoIP database places them,
// and their truncated forms.
const (
	ipDE      = "192.0.2.10" // Germany, in the EU
	ipGB      = "198.51.100.10"
	ipUS      = "203.0.113.10"
	ipCN      = "100.64.0.10"
	ipNowhere = "10.1.2.3" // in no network of the database
)

var truncatedOf = map[string]string{
	ipDE: "192.0.2.0", ipGB: "198.51.100.0", ipUS: "203.0.113.0", ipCN: "100.64.0.0", ipNowhere: "10.1.2.0",
}

// writeConsentGeoIP writes a City database placing ipDE in Germany,
// ipGB in the United Kingdom, ipUS in the United States and ipCN in
// China, and returns its path.
func writeConsentGeoIP(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := geotest.WriteCityDB(path, []geotest.City{
		{Network: "192.0.2.0/24", Continent: "EU", Country: "DE", CountryName: "Germany", City: "Berlin"},
		{Network: "198.51.100.0/24", Continent: "EU", Country: "GB", CountryName: "United Kingdom", City: "London"},
		{Network: "203.0.113.0/24", Continent: "NA", Country: "US", CountryName: "United States", City: "Seattle"},
		{Network: "100.64.0.0/24", Continent: "AS", Country: "CN", CountryName: "China", City: "Shanghai"},
	}); err != nil {
		t.Fatal(err)
	}
	return path
}

// consentEdge is a b2s_collect on www.b2s.com, in a network with
// www.b2smade.com, with the privacy options pv, the City database of
// writeConsentGeoIP (none when noGeo), the client hint Sec-CH-UA-Model
// asked for, and no client limit.
type consentEdge struct {
	c   *Collect
	sp  *logship.Spool
	now time.Time
}

func newConsentEdge(t *testing.T, pv *Privacy, noGeo bool) *consentEdge {
	t.Helper()
	e := &consentEdge{now: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	app := &App{ClientLimit: &ClientLimit{Off: true}, Privacy: pv, Network: &Network{Sites: []string{"b2s.com", "b2smade.com"}}}
	sp := setUpApp(t, app, func() time.Time { return e.now })
	if !noGeo {
		db, err := geo.OpenReloading(writeConsentGeoIP(t), geo.City, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		app.geo = db
	}
	c := &Collect{ClientHints: []string{"Sec-CH-UA-Model"}}
	if err := c.bind(caddy.Context{}, app, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	e.c, e.sp = c, sp
	return e
}

// euConsent is require_consent eu cn with the consent platform's cookie
// CookieConsent, granted by the default pattern.
func euConsent() *Privacy {
	return &Privacy{RequireConsent: []string{"eu", "cn"}, ConsentCookie: "CookieConsent"}
}

// visitor is a browser at ip: it keeps the cookies the edge sets (a
// Max-Age of 0 or less deletes one) and sends them back.
type visitor struct {
	t       *testing.T
	e       *consentEdge
	ip      string
	cookies map[string]string
	// site answers pages: it may set response headers (the child and
	// member signals). Default: none.
	site func(h http.Header)
}

func (e *consentEdge) visitor(t *testing.T, ip string) *visitor {
	return &visitor{t: t, e: e, ip: ip, cookies: map[string]string{}}
}

// exchange is one request's response and record.
type exchange struct {
	w   *httptest.ResponseRecorder
	rec spooledRecord
}

// setCookie returns the Set-Cookie of the named cookie, and whether there
// is one.
func (x exchange) setCookie(name string) (*http.Cookie, bool) {
	for _, line := range x.w.Header().Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == name {
			return c, true
		}
	}
	return nil, false
}

// do sends a request with the visitor's cookies and headers hdr, from
// its IP, and returns the response and the one record it spooled.
func (v *visitor) do(method, target string, hdr map[string]string, body string) exchange {
	v.t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, rb)
	for k, val := range hdr {
		r.Header.Set(k, val)
	}
	var pairs []string
	for n, val := range v.cookies {
		pairs = append(pairs, n+"="+val)
	}
	if len(pairs) > 0 {
		r.Header.Set("Cookie", strings.Join(pairs, "; "))
	}
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: v.ip})
	r = r.WithContext(context.WithValue(ctx, caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if v.site != nil {
			v.site(w.Header())
		}
		_, err := io.WriteString(w, "<!doctype html><p>page")
		return err
	})
	if err := v.e.c.ServeHTTP(w, r, next); err != nil {
		v.t.Fatal(err)
	}
	for _, line := range w.Header().Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			v.t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		if c.MaxAge < 0 {
			delete(v.cookies, c.Name)
		} else {
			v.cookies[c.Name] = c.Value
		}
	}
	return exchange{w: w, rec: takeRecord(v.t, v.e.sp)}
}

func (v *visitor) page(path string) exchange {
	v.t.Helper()
	return v.do(http.MethodGet, "https://www.b2s.com"+path, map[string]string{"User-Agent": chromeUA, "Sec-CH-UA": `"Chromium";v="131"`, "Sec-CH-UA-Model": `"Pixel 9"`}, "")
}

// grant opens the consent form, as the visitor does, and submits it.
func (v *visitor) grant(except map[string]string) exchange {
	v.t.Helper()
	form := v.do(http.MethodGet, "https://www.b2s.com/_b2s/consent?return=/products", map[string]string{"User-Agent": chromeUA}, "")
	m := regexp.MustCompile(`name=b2s_token value="([^"]+)"`).FindStringSubmatch(form.w.Body.String())
	if m == nil {
		v.t.Fatalf("the consent form page answered %d %q: no token", form.w.Code, form.w.Body.String())
	}
	if got := form.rec.str("consent"); got != "pending" && got != "full" && got != "optout" {
		v.t.Errorf("the form page's record has consent %q", got)
	}
	hdr := formSubmit(chromeUA, except)
	hdr["Referer"] = "https://www.b2s.com/_b2s/consent?return=/products"
	return v.do(http.MethodPost, "https://www.b2s.com/_b2s/consent?return=/products", hdr, "b2s_token="+url.QueryEscape(m[1]))
}

var (
	idName      = hostPrefix + DefaultCookieName
	consentName = hostPrefix + DefaultCookieName + consentSuffix
	optOutName  = hostPrefix + DefaultCookieName + optOutSuffix
	memberName  = hostPrefix + DefaultCookieName + memberSuffix
)

// checkPending fails unless x is a pending visitor's: a record of consent
// pending without identifiers, key or consent_changed, with the
// truncated IP, and a response that sets no cookie and asks for no hints.
func checkPending(t *testing.T, x exchange, ip string) {
	t.Helper()
	if got := x.rec.str("consent"); got != "pending" {
		t.Errorf("record consent %q, want pending", got)
	}
	if ids := x.rec.identified(); len(ids) > 0 {
		t.Errorf("pending record carries identifiers (or a key) %v", ids)
	}
	if got, tr := x.rec.str("ip"), x.rec.rec["ip_truncated"]; got != truncatedOf[ip] || tr != true {
		t.Errorf("pending record ip %q (ip_truncated %v), want %s, truncated", got, tr, truncatedOf[ip])
	}
	if _, ok := x.rec.rec["consent_changed"]; ok {
		t.Errorf("pending record has consent_changed")
	}
	if x.rec.str("anon_id") == "" {
		t.Errorf("pending record has no anon_id, which records without identifying consent carry")
	}
	if sc := x.w.Header().Values("Set-Cookie"); len(sc) > 0 {
		t.Errorf("pending visitor's response sets cookies %q", sc)
	}
	if ach := x.w.Header().Get("Accept-CH"); ach != "" {
		t.Errorf("pending visitor's response asks for hints: Accept-CH %q", ach)
	}
	if ua, _ := x.rec.rec["ua"].(map[string]any); ua["model"] != nil {
		t.Errorf("pending record takes the asked-for hint model: %v", ua)
	}
}

// checkConsented fails unless x's record has consent full and the cookie ID
// id (any, when id is "*"), keyed by it, with the full IP.
func checkConsented(t *testing.T, x exchange, id, ip string) {
	t.Helper()
	if got := x.rec.str("consent"); got != "full" {
		t.Fatalf("record consent %q, want full: %v", got, x.rec.rec)
	}
	got := x.rec.str("cookie_id")
	if got == "" || (id != "*" && got != id) || x.rec.key != got {
		t.Errorf("record cookie_id %q, key %q; want %s, the key too", got, x.rec.key, id)
	}
	if x.rec.str("anon_id") != "" {
		t.Errorf("full record with an anon_id")
	}
	if x.rec.str("ip") != ip || x.rec.rec["ip_truncated"] != nil {
		t.Errorf("record ip %q (truncated %v), want %s", x.rec.str("ip"), x.rec.rec["ip_truncated"], ip)
	}
}

func TestConsentFirstVisitByCountry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pv      *Privacy
		noGeo   bool
		ip      string
		pending bool
	}{
		{name: "a visitor in Germany waits for consent", pv: euConsent(), ip: ipDE, pending: true},
		{name: "so does one in the United Kingdom (in eu)", pv: euConsent(), ip: ipGB, pending: true},
		{name: "so does one in China, named by its code", pv: euConsent(), ip: ipCN, pending: true},
		{name: "control: a visitor in the United States gets a cookie at once", pv: euConsent(), ip: ipUS},
		{name: "a visitor the database does not place waits: fail closed", pv: euConsent(), ip: ipNowhere, pending: true},
		{name: "every visitor waits when there is no GeoIP database", pv: euConsent(), noGeo: true, ip: ipUS, pending: true},
		{name: "control: consent_unknown allow lets an unplaced visitor in", pv: &Privacy{RequireConsent: []string{"eu"}, ConsentUnknown: "allow"}, ip: ipNowhere},
		{name: "all: the United States too", pv: &Privacy{RequireConsent: []string{"all"}}, ip: ipUS, pending: true},
		{name: "control: without require_consent, Germany gets a cookie at once", pv: nil, ip: ipDE},
		{name: "control: require_consent cn leaves Germany to the opt-out model", pv: &Privacy{RequireConsent: []string{"cn"}}, ip: ipDE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newConsentEdge(t, tc.pv, tc.noGeo)
			v := e.visitor(t, tc.ip)
			x := v.page("/")
			if tc.pending {
				checkPending(t, x, tc.ip)
				// The beacon too.
				b := v.do(http.MethodGet, "https://www.b2s.com/b.gif?e=pageview", map[string]string{"Referer": "https://www.b2s.com/"}, "")
				checkPending(t, b, tc.ip)
				// A visitor who has a cookie from before (set where no
				// consent was needed, say) is not read either.
				v.cookies[idName] = e.c.app.signer.Sign(beacon.NewID(), e.now)
				checkPending(t, v.page("/again"), tc.ip)
				return
			}
			checkConsented(t, x, "*", tc.ip)
			if x.rec.str("cookie_state") != "new" || x.rec.rec["consent_changed"] != nil {
				t.Errorf("first visit cookie_state %q consent_changed %v, want new and none (no consent was needed)", x.rec.str("cookie_state"), x.rec.rec["consent_changed"])
			}
			sc, ok := x.setCookie(idName)
			if !ok || sc.MaxAge != int((400*24*time.Hour)/time.Second) {
				t.Errorf("visitor cookie %v, want one for 400 days", sc)
			}
			if x.w.Header().Get("Accept-CH") == "" {
				t.Errorf("no Accept-CH for a visitor whose consent allows identifiers")
			}
			y := v.page("/again")
			checkConsented(t, y, x.rec.str("cookie_id"), tc.ip)
		})
	}
}

// The consent platform's cookie: granted by its pattern, and its
// withdrawal wins over the edge's own consent cookie.
func TestConsentByThePlatformsCookie(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pv      *Privacy
		value   string
		granted bool
	}{
		{name: "control: a value of the default pattern grants", pv: euConsent(), value: "granted", granted: true},
		{name: "so does 1", pv: euConsent(), value: "1", granted: true},
		{name: "and TRUE, in any case", pv: euConsent(), value: "TRUE", granted: true},
		{name: "denied does not", pv: euConsent(), value: "denied"},
		{name: "0 does not", pv: euConsent(), value: "0"},
		{name: "an empty value does not", pv: euConsent(), value: ""},
		{name: "the default pattern is anchored: not-granted does not", pv: euConsent(), value: "not-granted"},
		{name: "control: a site's pattern matches Cookiebot's value, percent-decoded", value: "%7Bnecessary:true%2Cstatistics:true%2Cmarketing:false%7D", granted: true,
			pv: &Privacy{RequireConsent: []string{"eu"}, ConsentCookie: "CookieConsent", ConsentGranted: `statistics:true`}},
		{name: "and not when statistics is refused", value: "%7Bnecessary:true%2Cstatistics:false%2Cmarketing:false%7D",
			pv: &Privacy{RequireConsent: []string{"eu"}, ConsentCookie: "CookieConsent", ConsentGranted: `statistics:true`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newConsentEdge(t, tc.pv, false)
			v := e.visitor(t, ipDE)
			checkPending(t, v.page("/"), ipDE)
			v.cookies["CookieConsent"] = tc.value
			x := v.page("/next")
			if !tc.granted {
				checkPending(t, x, ipDE)
				return
			}
			checkConsented(t, x, "*", ipDE)
			sc, ok := x.setCookie(idName)
			if !ok || sc.MaxAge != int((400*24*time.Hour)/time.Second) || x.rec.str("cookie_state") != "new" {
				t.Fatalf("after consent: visitor cookie %v, state %q; want a new cookie for 400 days", sc, x.rec.str("cookie_state"))
			}
			if x.rec.rec["consent_changed"] != true {
				t.Errorf("first record after consent lacks consent_changed: %v", x.rec.rec)
			}
			if cc, ok := x.setCookie(consentName); !ok || cc.MaxAge != int((400*24*time.Hour)/time.Second) {
				t.Errorf("after consent: the edge's consent cookie %v, want one for 400 days", cc)
			}
			y := v.page("/third")
			checkConsented(t, y, x.rec.str("cookie_id"), ipDE)
			if y.rec.rec["consent_changed"] != nil || y.rec.str("cookie_state") != "returning" {
				t.Errorf("second record after consent: consent_changed %v, state %q; want none and returning", y.rec.rec["consent_changed"], y.rec.str("cookie_state"))
			}
			if sc := y.w.Header().Values("Set-Cookie"); len(sc) > 0 {
				t.Errorf("second record after consent: Set-Cookie %q, want none", sc)
			}
			// The platform's withdrawal: pending again, the identifier
			// cookies deleted, once.
			v.cookies["CookieConsent"] = "denied"
			checkRefusal(t, v.page("/after"), ipDE)
			checkPending(t, v.page("/later"), ipDE)
		})
	}
}

// The consent endpoint grants consent for the visitor's own submission of
// its form only, and sets the edge's consent cookie, which counts from
// then on; withdrawal opts the visitor out.
func TestConsentEndpointGrantAndWithdraw(t *testing.T) {
	e := newConsentEdge(t, &Privacy{RequireConsent: []string{"eu"}}, false)
	granted, withdrawn, refused := testutil.ToFloat64(consentDecision[consentGranted]), testutil.ToFloat64(consentDecision[consentWithdrawn]), testutil.ToFloat64(consentDecision[consentRefused])
	v := e.visitor(t, ipDE)
	checkPending(t, v.page("/"), ipDE)

	// A script's fetch of the form, with the token, is refused.
	x := v.grant(map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Sec-Fetch-User": ""})
	if x.w.Code != http.StatusForbidden || x.rec.str("consent") != "pending" || len(x.rec.identified()) > 0 {
		t.Fatalf("a script's POST: %d, record %v; want 403, pending", x.w.Code, x.rec.rec)
	}
	if _, ok := x.setCookie(idName); ok {
		t.Fatalf("a refused grant set the visitor cookie")
	}
	// So is a form without the form page's token (a POST redirected here).
	x = v.do(http.MethodPost, "https://www.b2s.com/_b2s/consent", formSubmit(chromeUA, nil), "b2s_token=1.AAAA")
	if x.w.Code != http.StatusForbidden {
		t.Fatalf("a POST without a valid token: %d, want 403", x.w.Code)
	}
	if n := testutil.ToFloat64(consentDecision[consentRefused]) - refused; n != 2 {
		t.Errorf("consent refused counted %v times, want 2", n)
	}
	checkPending(t, v.page("/still"), ipDE)

	// Control: the visitor's own click.
	x = v.grant(nil)
	if x.w.Code != http.StatusSeeOther || x.w.Header().Get("Location") != "/products" {
		t.Fatalf("the visitor's grant: %d to %q, want 303 to /products", x.w.Code, x.w.Header().Get("Location"))
	}
	checkConsented(t, x, "*", ipDE)
	if x.rec.rec["consent_changed"] != true {
		t.Errorf("the grant's record %v, want consent_changed", x.rec.rec)
	}
	id := x.rec.str("cookie_id")
	sc, ok := x.setCookie(idName)
	cc, okc := x.setCookie(consentName)
	if !ok || sc.MaxAge <= 0 || !okc || cc.MaxAge <= 0 || !cc.HttpOnly || !cc.Secure {
		t.Fatalf("the grant set visitor cookie %v and consent cookie %v; want both, HttpOnly, Secure, with a Max-Age", sc, cc)
	}
	if n := testutil.ToFloat64(consentDecision[consentGranted]) - granted; n != 1 {
		t.Errorf("consent granted counted %v times, want 1", n)
	}
	y := v.page("/products")
	checkConsented(t, y, id, ipDE)
	if y.rec.rec["consent_changed"] != nil {
		t.Errorf("the record after the grant's has consent_changed")
	}

	// The edge's consent cookie counts only beside the ID it is bound to:
	// one copied from this browser into another does nothing there...
	other := e.visitor(t, ipDE)
	other.cookies[consentName] = v.cookies[consentName]
	checkPending(t, other.page("/"), ipDE)
	// ...nor beside that browser's own valid cookie ID.
	other.cookies[idName] = e.c.app.signer.Sign(beacon.NewID(), e.now)
	checkPending(t, other.page("/"), ipDE)
	// A value a script makes up does nothing either.
	other.cookies[consentName] = "1"
	checkPending(t, other.page("/"), ipDE)
	// Control: the pair copied whole counts (hence b2s_isolate).
	other.cookies[idName] = v.cookies[idName]
	other.cookies[consentName] = v.cookies[consentName]
	checkConsented(t, other.page("/"), id, ipDE)

	// Withdrawal, from anywhere, as a GET.
	x = v.do(http.MethodGet, "https://www.b2s.com/_b2s/consent?withdraw=1", map[string]string{"Sec-Fetch-Site": "cross-site", "Referer": "https://elsewhere.example/"}, "")
	if x.w.Code != http.StatusOK || x.rec.str("consent") != "optout" || x.rec.rec["consent_changed"] != true || len(x.rec.identified()) > 0 {
		t.Errorf("withdrawal: %d, record %v; want 200, optout, consent_changed, no identifier", x.w.Code, x.rec.rec)
	}
	for _, n := range []string{idName, memberName, consentName} {
		if c, ok := x.setCookie(n); !ok || c.MaxAge >= 0 {
			t.Errorf("withdrawal does not delete %s: %v", n, c)
		}
	}
	if c, ok := x.setCookie(optOutName); !ok || c.MaxAge <= 0 {
		t.Errorf("withdrawal does not set the opt-out cookie: %v", c)
	}
	if n := testutil.ToFloat64(consentDecision[consentWithdrawn]) - withdrawn; n != 1 {
		t.Errorf("consent withdrawn counted %v times, want 1", n)
	}
	// From then on the visitor is opted out, even if the consent platform
	// says granted.
	e.c.app.privacy.consentCookie = "CookieConsent"
	e.c.app.privacy.consentGranted = regexp.MustCompile(DefaultConsentGranted)
	v.cookies["CookieConsent"] = "granted"
	z := v.page("/later")
	if z.rec.str("consent") != "optout" || len(z.rec.identified()) > 0 || len(z.w.Header().Values("Set-Cookie")) > 0 {
		t.Errorf("after withdrawal: record %v, Set-Cookie %q; want optout, nothing set", z.rec.rec, z.w.Header().Values("Set-Cookie"))
	}
	// A new grant clears the opt-out.
	x = v.grant(nil)
	if c, ok := x.setCookie(optOutName); x.w.Code != http.StatusSeeOther || !ok || c.MaxAge >= 0 {
		t.Errorf("a grant after withdrawal: %d, opt-out cookie %v; want 303 and the opt-out deleted", x.w.Code, c)
	}
	delete(v.cookies, "CookieConsent")
	checkConsented(t, v.page("/again"), "*", ipDE)
}

// Child, opt-out and GPC outrank consent; consent outranks nothing else.
func TestConsentPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name string
		ip   string
		// before consent is given, and after
		hdr, site    map[string]string
		path         string
		before, then string
	}{
		{name: "control: consent given makes records full", ip: ipDE, before: "pending", then: "full"},
		{name: "GPC on top of consent is gpc", ip: ipDE, hdr: map[string]string{"Sec-GPC": "1"}, before: "gpc", then: "gpc"},
		{name: "a child page under consent is still child", ip: ipDE, path: "/kids/games", before: "child", then: "child"},
		{name: "the site's child header under consent is child", ip: ipDE, site: map[string]string{"X-B2S-Child": "1"}, before: "child", then: "child"},
		{name: "control: GPC outside consent regions is gpc", ip: ipUS, hdr: map[string]string{"Sec-GPC": "1"}, before: "gpc", then: "gpc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newConsentEdge(t, euConsent(), false)
			e.c.CollectOff, e.c.CollectOffPaths = true, []string{"/kids/*"}
			if err := e.c.bind(caddy.Context{}, e.c.app, zap.NewNop()); err != nil {
				t.Fatal(err)
			}
			v := e.visitor(t, tc.ip)
			if tc.site != nil {
				v.site = func(h http.Header) {
					for k, val := range tc.site {
						h.Set(k, val)
					}
				}
			}
			get := func() exchange {
				hdr := map[string]string{"User-Agent": chromeUA}
				for k, val := range tc.hdr {
					hdr[k] = val
				}
				return v.do(http.MethodGet, "https://www.b2s.com"+or(tc.path, "/"), hdr, "")
			}
			x := get()
			if got := x.rec.str("consent"); got != tc.before || len(x.rec.identified()) > 0 {
				t.Errorf("before consent: record %v, want %s without identifiers", x.rec.rec, tc.before)
			}
			v.cookies["CookieConsent"] = "granted"
			x = get()
			if got := x.rec.str("consent"); got != tc.then {
				t.Errorf("after consent: record consent %q, want %s", got, tc.then)
			}
			if tc.then != "full" && len(x.rec.identified()) > 0 {
				t.Errorf("after consent, %s record carries %v", tc.then, x.rec.identified())
			}
			if tc.then == "full" && x.rec.str("cookie_id") == "" {
				t.Errorf("after consent, no cookie_id")
			}
		})
	}
}

// The site's member header is ignored (and removed) before consent, and
// links the member to the cookie after.
func TestConsentMemberSignIn(t *testing.T) {
	e := newConsentEdge(t, euConsent(), false)
	v := e.visitor(t, ipDE)
	v.site = func(h http.Header) { h.Set("X-B2S-Member", "m-42") }
	x := v.page("/signin")
	checkPending(t, x, ipDE)
	if x.w.Header().Get("X-B2S-Member") != "" || x.rec.str("member_id") != "" {
		t.Errorf("sign-in before consent: header left %q, record member %q; want removed and none", x.w.Header().Get("X-B2S-Member"), x.rec.str("member_id"))
	}
	// Control: after consent, the same sign-in links the member.
	v.cookies["CookieConsent"] = "yes"
	x = v.page("/signin")
	if c, ok := x.setCookie(memberName); !ok || c.MaxAge <= 0 || x.rec.str("member_id") != "m-42" {
		t.Errorf("sign-in after consent: member cookie %v, record member %q; want set, m-42", c, x.rec.str("member_id"))
	}
	if x.w.Header().Get("X-B2S-Member") != "" {
		t.Errorf("member header reached the client")
	}
	v.site = nil
	if y := v.page("/account"); y.rec.str("member_id") != "m-42" {
		t.Errorf("next page after consent: member %q, want m-42", y.rec.str("member_id"))
	}
	// Consent withdrawn on the platform: the member is no longer read, and
	// its cookie is deleted with the others.
	v.cookies["CookieConsent"] = "no"
	checkRefusal(t, v.page("/account"), ipDE)
	if _, ok := v.cookies[memberName]; ok {
		t.Errorf("the member cookie outlived the platform's withdrawal")
	}
	checkPending(t, v.page("/account"), ipDE)
}

// The network's link endpoint issues no token before consent.
func TestConsentNetworkLink(t *testing.T) {
	e := newConsentEdge(t, euConsent(), false)
	v := e.visitor(t, ipDE)
	dest := "https://www.b2smade.com/shop"
	link := func() exchange {
		return v.do(http.MethodGet, "https://www.b2s.com/_b2s/go?to="+url.QueryEscape(dest), map[string]string{"Referer": "https://www.b2s.com/"}, "")
	}
	x := link()
	loc, _ := url.Parse(x.w.Header().Get("Location"))
	if x.w.Code != http.StatusFound || loc == nil || loc.Host != "www.b2smade.com" || loc.Query().Has(DefaultTokenParam) {
		t.Errorf("link before consent: %d to %q; want 302 to the destination without a token", x.w.Code, x.w.Header().Get("Location"))
	}
	checkPending(t, x, ipDE)
	// A token brought from another site is not exchanged before consent
	// either: the landing sets no cookie.
	v.cookies["CookieConsent"] = "1"
	x = link()
	loc, _ = url.Parse(x.w.Header().Get("Location"))
	if loc == nil || loc.Query().Get(DefaultTokenParam) == "" {
		t.Fatalf("control: link after consent: %q, want a token", x.w.Header().Get("Location"))
	}
	if x.rec.str("cookie_id") == "" {
		t.Errorf("link after consent: record without cookie_id")
	}

	// The landing: a visitor in China without consent keeps no token.
	land := e.visitor(t, ipCN)
	tok := loc.Query().Get(DefaultTokenParam)
	landHdr := map[string]string{"Referer": "https://www.b2s.com/", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
	y := land.do(http.MethodGet, "https://www.b2smade.com/shop?"+DefaultTokenParam+"="+tok, landHdr, "")
	if y.w.Code != http.StatusFound || strings.Contains(y.w.Header().Get("Location"), tok) || len(y.w.Header().Values("Set-Cookie")) > 0 || y.rec.str("consent") != "pending" {
		t.Errorf("landing before consent: %d to %q, Set-Cookie %q, consent %q; want 302 without the token, no cookie, pending",
			y.w.Code, y.w.Header().Get("Location"), y.w.Header().Values("Set-Cookie"), y.rec.str("consent"))
	}
}

// Config errors name the directive and the fix.
func TestConsentConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		pv   Privacy
		want string // in the error; "" for none
	}{
		{name: "control: eu and a country code", pv: Privacy{RequireConsent: []string{"eu", "CN"}, ConsentCookie: "CookieConsent"}},
		{name: "a country name", pv: Privacy{RequireConsent: []string{"Germany"}}, want: `require_consent: "Germany" is not an ISO 3166-1 alpha-2 country code or a region (eu, all); use country codes or regions, e.g. require_consent eu cn`},
		{name: "a three-letter code", pv: Privacy{RequireConsent: []string{"DEU"}}, want: `require_consent: "DEU"`},
		{name: "a user-assigned code", pv: Privacy{RequireConsent: []string{"XK"}}, want: `require_consent: "XK"`},
		{name: "consent_unknown of another value", pv: Privacy{RequireConsent: []string{"eu"}, ConsentUnknown: "deny"}, want: `consent_unknown "deny": want require`},
		{name: "consent_cookie without require_consent", pv: Privacy{ConsentCookie: "CookieConsent"}, want: "consent_cookie \"CookieConsent\" has no effect without require_consent; add e.g. require_consent eu"},
		{name: "consent_cookie naming the edge's own", pv: Privacy{RequireConsent: []string{"eu"}, ConsentCookie: "b2sid_consent"}, want: "is a cookie of the edge's own"},
		{name: "a granted pattern that does not compile", pv: Privacy{RequireConsent: []string{"eu"}, ConsentCookie: "c", ConsentGranted: "(granted"}, want: "the granted pattern is not a Go regular expression"},
		{name: "a granted pattern without the cookie", pv: Privacy{RequireConsent: []string{"eu"}, ConsentGranted: "yes"}, want: "consent_granted without consent_cookie"},
		{name: "consent_path of the opt-out", pv: Privacy{ConsentPath: DefaultOptOutPath}, want: "consent_path \"/_b2s/optout\" is also the opt-out or opt-in path"},
		{name: "consent_path not a path", pv: Privacy{ConsentPath: "consent"}, want: `path "consent" must start with /`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.pv.provision(DefaultCookieName).validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted; want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want one with %q", err, tc.want)
			}
		})
	}
}

// A bad region in the Caddyfile fails at load, naming the directive.
func TestConsentCaddyfile(t *testing.T) {
	load := func(block string) error {
		a := new(App)
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s {\n\tprivacy {\n" + block + "\n\t}\n}")); err != nil {
			return err
		}
		return a.Privacy.provision(DefaultCookieName).validate()
	}
	for _, tc := range []struct{ block, want string }{
		{"require_consent eu cn\nconsent_cookie CookieConsent", ""},
		{"require_consent eu\nconsent_unknown allow\nconsent_cookie OptanonConsent C0002:1\nconsent_path /consent", ""},
		{"require_consent eu de-DE", `require_consent: "de-DE" is not an ISO 3166-1 alpha-2 country code`},
		{"require_consent", "require_consent needs at least one region"},
		{"require_consent eu\nconsent_cookie", "consent_cookie takes the consent platform's cookie name"},
		{"require_consent eu\nconsent_cookie a b c", "consent_cookie takes the consent platform's cookie name"},
		{"require_consent eu\nconsent_unknown", "consent_unknown takes require or allow"},
		{"require_consent eu\nconsent_region eu", `unrecognized option "consent_region"`},
	} {
		err := load(tc.block)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q refused: %v", tc.block, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one with %q", tc.block, err, tc.want)
		}
	}
}

// The fleet's privacy fingerprint tells edges with other consent settings
// apart, and is unchanged for an edge without require_consent.
func TestConsentInThePrivacyFingerprint(t *testing.T) {
	fp := func(pv *Privacy) string {
		a := &App{Privacy: pv}
		a.setDefaults()
		a.privacy = a.Privacy.provision(a.CookieName)
		return a.privacyFingerprint()
	}
	base := fp(nil)
	if got := fp(&Privacy{ConsentPath: DefaultConsentPath}); got != base {
		t.Errorf("control: the defaults written out change the fingerprint: %s, want %s", got, base)
	}
	eu := fp(&Privacy{RequireConsent: []string{"eu"}})
	for name, pv := range map[string]*Privacy{
		"eu and cn":            {RequireConsent: []string{"eu", "cn"}},
		"unknown allowed":      {RequireConsent: []string{"eu"}, ConsentUnknown: "allow"},
		"a platform cookie":    {RequireConsent: []string{"eu"}, ConsentCookie: "c"},
		"another consent path": {RequireConsent: []string{"eu"}, ConsentPath: "/consent"},
		"no consent region":    nil,
	} {
		if got := fp(pv); got == eu {
			t.Errorf("%s: fingerprint %s, the same as require_consent eu's", name, got)
		}
	}
	if got := fp(&Privacy{RequireConsent: []string{"EU"}}); got != eu {
		t.Errorf("control: require_consent EU and eu differ: %s, %s", got, eu)
	}
}

// A mail link's record follows the consent of the reader's region: an
// open from Germany names no member, one from the United States does; an
// unsubscribe names its member wherever it comes from.
func TestConsentMailLinks(t *testing.T) {
	e := newConsentEdge(t, euConsent(), false)
	sealer, err := mailink.New([]byte(testKey1))
	if err != nil {
		t.Fatal(err)
	}
	link := func(k mailink.Kind) string {
		tok, err := sealer.Seal(mailink.Link{Kind: k, Host: "www.b2s.com", Campaign: "c-1", Member: "m-7",
			Issued: e.now.Add(-time.Hour), Expires: e.now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return "https://www.b2s.com" + mailink.Path(k, tok)
	}
	for _, tc := range []struct {
		name, ip, method string
		kind             mailink.Kind
		consent, member  string
	}{
		{"an open from Germany names no member", ipDE, http.MethodGet, mailink.Open, "pending", ""},
		{"control: an open from the United States names the member", ipUS, http.MethodGet, mailink.Open, "full", "m-7"},
		{"an unsubscribe from Germany names the member it stops mailing", ipDE, http.MethodPost, mailink.Unsubscribe, "pending", "m-7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"User-Agent": chromeUA}
			body := ""
			if tc.method == http.MethodPost {
				hdr["Content-Type"], body = "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"
			}
			x := e.visitor(t, tc.ip).do(tc.method, link(tc.kind), hdr, body)
			if x.rec.str("consent") != tc.consent || x.rec.str("member_id") != tc.member {
				t.Errorf("record consent %q member %q, want %s, %q: %v", x.rec.str("consent"), x.rec.str("member_id"), tc.consent, tc.member, x.rec.rec)
			}
		})
	}
}

// Without a GeoIP database, require_consent warns at load that no visitor
// has a country.
func TestConsentWarnsWithoutGeoIP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		noGeo bool
		warn  bool
	}{
		{"no geoip database: a warning", true, true},
		{"control: with one, none", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newConsentEdge(t, euConsent(), tc.noGeo)
			core, logs := observer.New(zap.InfoLevel)
			e.c.app.logger = zap.New(core)
			e.c.app.logConsent()
			warned := logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("require_consent without a geoip database").Len() == 1
			if warned != tc.warn || logs.FilterMessage("consent required before identifiers").Len() != 1 {
				t.Errorf("logs %v: warned %v, want %v, and the regions logged", logs.All(), warned, tc.warn)
			}
		})
	}
}

// identifierNames are the names of the identifier cookies a refusal
// deletes, over https without cookie_domain: the visitor, member and
// consent cookies, each under the __Host- name and the unprefixed one
// (sorted).
var identifierNames = []string{
	idName, consentName, memberName,
	DefaultCookieName, DefaultCookieName + consentSuffix, DefaultCookieName + memberSuffix,
}

// checkRefusal fails unless x is the consent platform's refusal of a
// visitor who held identifier cookies: a pending record with
// consent_changed and without identifiers, and a private response that
// deletes exactly the identifier cookies (no opt-out cookie, nothing
// else).
func checkRefusal(t *testing.T, x exchange, ip string) {
	t.Helper()
	if got := x.rec.str("consent"); got != "pending" || x.rec.rec["consent_changed"] != true {
		t.Errorf("refusal's record consent %q consent_changed %v, want pending and true", got, x.rec.rec["consent_changed"])
	}
	if ids := x.rec.identified(); len(ids) > 0 {
		t.Errorf("refusal's record carries identifiers (or a key) %v", ids)
	}
	if got := x.rec.str("ip"); got != truncatedOf[ip] {
		t.Errorf("refusal's record ip %q, want %s", got, truncatedOf[ip])
	}
	var deleted []string
	for _, line := range x.w.Header().Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil || c.MaxAge >= 0 {
			t.Errorf("refusal's response sets %q; want deletions only", line)
			continue
		}
		deleted = append(deleted, c.Name)
	}
	slices.Sort(deleted)
	if !slices.Equal(deleted, identifierNames) {
		t.Errorf("refusal deletes %q, want %q", deleted, identifierNames)
	}
	if cc := x.w.Header().Get("Cache-Control"); !strings.Contains(cc, "private") && !strings.Contains(cc, "no-store") {
		t.Errorf("refusal's response is cacheable: Cache-Control %q", cc)
	}
}

// The platform's refusal (its cookie present, not granted) deletes the
// identifier cookies the visitor holds, once: the next request holds
// none, and sets and marks nothing.
func TestConsentPlatformRefusalDeletesIdentifiers(t *testing.T) {
	const signed = "<signed ID>"
	for _, tc := range []struct {
		name      string
		prefixOff bool
		beacon    bool
		held      map[string]string
	}{
		{name: "the visitor cookie is deleted", held: map[string]string{idName: signed}},
		{name: "so is the visitor cookie with its member and consent cookies", held: map[string]string{idName: signed, memberName: "m-1.x", consentName: "x"}},
		{name: "on a beacon too", beacon: true, held: map[string]string{idName: signed}},
		{name: "so is an unprefixed visitor cookie from before the prefix", held: map[string]string{DefaultCookieName: signed}},
		{name: "so is a visitor cookie that does not verify", held: map[string]string{idName: "forged"}},
		{name: "so is a member cookie alone", held: map[string]string{memberName: "m-1.x"}},
		{name: "so is a consent cookie alone", held: map[string]string{consentName: "x"}},
		{name: "with cookie_prefix off, the unprefixed visitor cookie", prefixOff: true, held: map[string]string{DefaultCookieName: signed}},
		{name: "with cookie_prefix off, a __Host- visitor cookie from before", prefixOff: true, held: map[string]string{idName: signed}},
		{name: "control: without identifier cookies, nothing is deleted or marked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newConsentEdge(t, euConsent(), false)
			if tc.prefixOff {
				e.c.CookiePrefix = "off"
				if err := e.c.bind(caddy.Context{}, e.c.app, zap.NewNop()); err != nil {
					t.Fatal(err)
				}
			}
			v := e.visitor(t, ipDE)
			v.cookies["CookieConsent"] = "denied"
			for n, val := range tc.held {
				if val == signed {
					val = e.c.app.signer.Sign(beacon.NewID(), e.now.Add(-time.Hour))
				}
				v.cookies[n] = val
			}
			get := func(path string) exchange {
				if tc.beacon {
					return v.do(http.MethodGet, "https://www.b2s.com/b.gif?e=pageview", map[string]string{"Referer": "https://www.b2s.com" + path}, "")
				}
				return v.page(path)
			}
			x := get("/")
			if len(tc.held) > 0 {
				checkRefusal(t, x, ipDE)
			} else {
				checkPending(t, x, ipDE)
			}
			if len(v.cookies) != 1 || v.cookies["CookieConsent"] != "denied" {
				t.Errorf("after the refusal the browser holds %v; want the platform's cookie alone", v.cookies)
			}
			// Once: the next request has nothing to delete.
			checkPending(t, get("/next"), ipDE)
		})
	}
}

// A visitor merely pending (no platform cookie) has decided nothing: the
// identifier cookies from before stay, unread, and nothing is recorded
// of them.
func TestConsentPendingKeepsTheIDUnread(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pv       *Privacy
		platform string // the CookieConsent value; "" for none
		deletes  bool
	}{
		{name: "without the platform's cookie the cookies stay", pv: euConsent()},
		{name: "without consent_cookie, a cookie of that name is not the platform's: they stay", pv: &Privacy{RequireConsent: []string{"eu"}}, platform: "denied"},
		{name: "control: the platform's refusal deletes them", pv: euConsent(), platform: "denied", deletes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newConsentEdge(t, tc.pv, false)
			v := e.visitor(t, ipDE)
			id := e.c.app.signer.Sign(beacon.NewID(), e.now.Add(-time.Hour))
			v.cookies[idName], v.cookies[memberName] = id, "m-1.x"
			if tc.platform != "" {
				v.cookies["CookieConsent"] = tc.platform
			}
			x := v.page("/")
			if tc.deletes {
				checkRefusal(t, x, ipDE)
				return
			}
			checkPending(t, x, ipDE)
			checkPending(t, v.page("/next"), ipDE)
			if v.cookies[idName] != id || v.cookies[memberName] != "m-1.x" {
				t.Errorf("a pending visitor's cookies changed: %v", v.cookies)
			}
		})
	}
}

// The platform's refusal counts wherever the visitor is (fail closed): a
// visitor where no consent is needed, identified on the opt-out model,
// whose platform cookie says not granted, is pending, and their
// identifier cookies are deleted. The platform's grant changes nothing
// there.
func TestConsentPlatformRefusalOutsideConsentRegions(t *testing.T) {
	for _, tc := range []struct {
		name string
		pv   *Privacy
		ip   string
	}{
		{name: "in the United States", pv: euConsent(), ip: ipUS},
		{name: "unplaced, with consent_unknown allow", ip: ipNowhere,
			pv: &Privacy{RequireConsent: []string{"eu"}, ConsentUnknown: "allow", ConsentCookie: "CookieConsent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newConsentEdge(t, tc.pv, false)
			v := e.visitor(t, tc.ip)
			x := v.page("/")
			checkConsented(t, x, "*", tc.ip)
			id := x.rec.str("cookie_id")
			// Control: the platform's grant there is no consent event: the
			// same ID, no consent_changed, no consent cookie.
			v.cookies["CookieConsent"] = "granted"
			y := v.page("/granted")
			checkConsented(t, y, id, tc.ip)
			if y.rec.rec["consent_changed"] != nil || len(y.w.Header().Values("Set-Cookie")) > 0 {
				t.Errorf("the platform's grant where no consent is needed: consent_changed %v, Set-Cookie %q; want neither",
					y.rec.rec["consent_changed"], y.w.Header().Values("Set-Cookie"))
			}
			v.cookies["CookieConsent"] = "denied"
			checkRefusal(t, v.page("/denied"), tc.ip)
			checkPending(t, v.page("/again"), tc.ip)
		})
	}
}

// Consent given through the platform's cookie to an ID from before (set
// where no consent was needed) is marked: one record with
// consent_changed, and the edge's consent cookie set as its marker.
// Only a consent cookie of the edge bound to that ID counts as one.
func TestConsentPlatformGrantOfAnOlderID(t *testing.T) {
	for _, tc := range []struct {
		name string
		// consent is the edge's consent cookie the visitor holds, if any,
		// given the edge and the visitor's cookie ID.
		consent func(c *Collect, id string) string
		before  string // consent in Germany before the platform's grant
		changed bool
	}{
		{name: "an ID from a visit where no consent was needed", before: "pending", changed: true},
		{name: "a made-up consent cookie does not hide the change", before: "pending", changed: true,
			consent: func(*Collect, string) string { return "AAAAAAAAAAAAAAAAAAAAAA" }},
		{name: "nor does a marker bound to another ID", before: "pending", changed: true,
			consent: func(c *Collect, _ string) string { return c.markerValue(beacon.NewID()) }},
		{name: "nor a grant at the endpoint bound to another ID", before: "pending", changed: true,
			consent: func(c *Collect, _ string) string { return c.consentValue(beacon.NewID()) }},
		{name: "control: the marker of this ID (which alone grants nothing)", before: "pending",
			consent: func(c *Collect, id string) string { return c.markerValue(id) }},
		{name: "control: a grant at the endpoint for this ID", before: "full",
			consent: func(c *Collect, id string) string { return c.consentValue(id) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newConsentEdge(t, euConsent(), false)
			v := e.visitor(t, ipUS)
			first := v.page("/")
			checkConsented(t, first, "*", ipUS)
			id := first.rec.str("cookie_id")
			if tc.consent != nil {
				v.cookies[consentName] = tc.consent(e.c, id)
			}
			v.ip = ipDE
			if x := v.page("/in-germany"); x.rec.str("consent") != tc.before || x.rec.rec["consent_changed"] != nil {
				t.Fatalf("in Germany before the platform's grant: %v; want consent %s, no consent_changed", x.rec.rec, tc.before)
			}
			v.cookies["CookieConsent"] = "granted"
			changed := 0
			x := v.page("/consented")
			checkConsented(t, x, id, ipDE)
			if x.rec.str("cookie_state") != "returning" {
				t.Errorf("the platform's grant: cookie_state %q, want returning", x.rec.str("cookie_state"))
			}
			cc, set := x.setCookie(consentName)
			if x.rec.rec["consent_changed"] == true {
				changed++
			}
			if tc.changed {
				if !set || cc.MaxAge != int((400*24*time.Hour)/time.Second) || cc.Value != e.c.markerValue(id) || !cc.HttpOnly || !cc.Secure {
					t.Errorf("the platform's grant set the consent cookie %v; want this ID's marker for 400 days, HttpOnly, Secure", cc)
				}
			} else if set {
				t.Errorf("the platform's grant replaced a consent cookie of this ID: %v", cc)
			}
			for _, path := range []string{"/next", "/third"} {
				y := v.page(path)
				checkConsented(t, y, id, ipDE)
				if y.rec.rec["consent_changed"] == true {
					changed++
				}
				if sc := y.w.Header().Values("Set-Cookie"); len(sc) > 0 {
					t.Errorf("%s after the grant sets %q, want nothing", path, sc)
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.changed]; changed != want {
				t.Errorf("%d records with consent_changed, want %d", changed, want)
			}
		})
	}
}

// The platform's marker lives as long as its visitor cookie: it is set
// again when the cookie is refreshed, without consent_changed. It does not
// grant consent alone: without the platform's cookie (expired or
// cleared) the visitor is pending, their cookies kept unread.
func TestConsentPlatformMarkerLifetime(t *testing.T) {
	e := newConsentEdge(t, euConsent(), false)
	v := e.visitor(t, ipDE)
	v.cookies["CookieConsent"] = "granted"
	x := v.page("/")
	checkConsented(t, x, "*", ipDE)
	id := x.rec.str("cookie_id")
	if x.rec.rec["consent_changed"] != true || v.cookies[consentName] != e.c.markerValue(id) {
		t.Fatalf("first grant: consent_changed %v, consent cookie %q; want true and the marker", x.rec.rec["consent_changed"], v.cookies[consentName])
	}
	e.now = e.now.Add(25 * time.Hour) // past cookie_refresh
	y := v.page("/refreshed")
	checkConsented(t, y, id, ipDE)
	sc, okID := y.setCookie(idName)
	cc, okC := y.setCookie(consentName)
	if !okID || sc.MaxAge <= 0 || !okC || cc.MaxAge != int((400*24*time.Hour)/time.Second) || cc.Value != e.c.markerValue(id) || y.rec.rec["consent_changed"] != nil {
		t.Errorf("refresh: visitor cookie %v, consent cookie %v, consent_changed %v; want both set again, no consent_changed", sc, cc, y.rec.rec["consent_changed"])
	}
	// Control: the next request sets neither.
	if z := v.page("/next"); len(z.w.Header().Values("Set-Cookie")) > 0 {
		t.Errorf("after the refresh: Set-Cookie %q, want none", z.w.Header().Values("Set-Cookie"))
	}
	delete(v.cookies, "CookieConsent")
	checkPending(t, v.page("/cleared"), ipDE)
	if v.cookies[consentName] != e.c.markerValue(id) || v.cookies[idName] == "" {
		t.Errorf("pending without the platform's cookie: the browser holds %v; want its cookies kept", v.cookies)
	}
}
