package e2e

import (
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestConsentRegionWaitsForTheVisitorsConsent runs the edge with
// require_consent cn: a visitor placed in China by the GeoIP database is
// recorded as pending, with no identifier, no Kafka key and no cookie,
// until they submit the consent endpoint's form; from then on they get a
// cookie and full records, the first of them marked consent_changed. A
// visitor in Hong Kong (not listed) is the control, identified at once.
// The records are read back from the broker with kcat.
func TestConsentRegionWaitsForTheVisitorsConsent(t *testing.T) {
	e := newEnv(t, envOptions{})
	// The template has no privacy block: add one and reload.
	cf, err := os.ReadFile(e.caddyfile)
	if err != nil {
		t.Fatal(err)
	}
	with := strings.Replace(string(cf), "\t\tkafka {", "\t\tprivacy {\n\t\t\trequire_consent cn\n\t\t}\n\t\tkafka {", 1)
	if with == string(cf) {
		t.Fatal("no kafka block in the Caddyfile to put the privacy block before")
	}
	if err := os.WriteFile(e.caddyfile, []byte(with), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.reload(); err != nil {
		t.Fatal(err)
	}

	const china, hongKong = "203.0.113.9", "198.51.100.9"
	fromChina := withHeader("X-Forwarded-For", china)
	origin := "http://" + e.siteAddr

	// Before consent: a page, then the consent form page.
	first := e.request(t, http.MethodGet, "/page?t=consent-pending", fromChina)
	if sc := first.header.Values("Set-Cookie"); first.status != http.StatusOK || len(sc) > 0 {
		t.Fatalf("pending visitor's page: %d, Set-Cookie %q; want 200 and no cookie", first.status, sc)
	}
	form := e.request(t, http.MethodGet, "/_b2s/consent?t=consent-form", fromChina)
	m := regexp.MustCompile(`name=b2s_token value="([^"]+)"`).FindSubmatch(form.body)
	var nonce string
	for _, line := range form.header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.Name == cookieName+"_optin" {
			nonce = c.Name + "=" + c.Value
		}
	}
	if form.status != http.StatusOK || m == nil || nonce == "" {
		t.Fatalf("consent form: %d, nonce %q, body %q", form.status, nonce, form.body)
	}

	// Control for the guard: the same POST from another origin is refused.
	refused := e.request(t, http.MethodPost, "/_b2s/consent?t=consent-refused", fromChina, withCookie(nonce),
		withHeader("Origin", "http://ads.example"), withBody("application/x-www-form-urlencoded", "b2s_token="+url.QueryEscape(string(m[1]))))
	if refused.status != http.StatusForbidden || len(refused.header.Values("Set-Cookie")) > 0 {
		t.Fatalf("a POST from another origin: %d, Set-Cookie %q; want 403, none", refused.status, refused.header.Values("Set-Cookie"))
	}

	// The visitor's own submission of the form.
	grant := e.request(t, http.MethodPost, "/_b2s/consent?t=consent-grant&return=/page%3Ft%3Dconsent-after", fromChina, withCookie(nonce),
		withHeader("Origin", origin), withHeader("Referer", origin+"/_b2s/consent"),
		withBody("application/x-www-form-urlencoded", "b2s_token="+url.QueryEscape(string(m[1]))))
	if grant.status != http.StatusSeeOther || grant.header.Get("Location") != "/page?t=consent-after" {
		t.Fatalf("grant: %d to %q, want 303 to /page?t=consent-after", grant.status, grant.header.Get("Location"))
	}
	jar := map[string]string{}
	for _, line := range grant.header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatal(err)
		}
		if c.MaxAge > 0 {
			jar[c.Name] = c.Value
			if c.MaxAge != cookieMaxAge || !c.HttpOnly {
				t.Errorf("grant sets %s with Max-Age %d, HttpOnly %v; want %d, HttpOnly", c.Name, c.MaxAge, c.HttpOnly, cookieMaxAge)
			}
		}
	}
	id, _, ok := verifyCookie(jar[cookieName], currentKey)
	if !ok || jar[cookieName+"_consent"] == "" {
		t.Fatalf("grant set %v: want a visitor cookie that verifies and the consent cookie", jar)
	}
	cookies := cookieName + "=" + jar[cookieName] + "; " + cookieName + "_consent=" + jar[cookieName+"_consent"]
	after := e.request(t, http.MethodGet, "/page?t=consent-after", fromChina, withCookie(cookies))
	if sc := after.header.Values("Set-Cookie"); after.status != http.StatusOK || len(sc) > 0 {
		t.Errorf("page after consent: %d, Set-Cookie %q; want 200, nothing to set", after.status, sc)
	}
	// Withdrawal, then a page: opted out.
	wd := e.request(t, http.MethodGet, "/_b2s/consent?withdraw=1&t=consent-withdraw", fromChina, withCookie(cookies))
	if wd.status != http.StatusOK {
		t.Errorf("withdrawal: %d, want 200", wd.status)
	}
	optedOut := e.request(t, http.MethodGet, "/page?t=consent-optedout", fromChina, withCookie(cookieName+"_optout=1; "+cookies))
	// Control: Hong Kong is not in the list.
	hk := e.request(t, http.MethodGet, "/page?t=consent-hk", withHeader("X-Forwarded-For", hongKong))
	_, hkID, _ := issuedCookie(t, hk)
	if hkID == "" || optedOut.status != http.StatusOK {
		t.Fatalf("control: a visitor in Hong Kong got no cookie")
	}

	recs := e.records(t, e.topic, "consent-pending", "consent-form", "consent-refused", "consent-grant", "consent-after", "consent-withdraw", "consent-optedout", "consent-hk")
	for _, tc := range []struct {
		marker, consent, id string
		changed             bool
	}{
		{"consent-pending", "pending", "", false},
		{"consent-form", "pending", "", false},
		{"consent-refused", "pending", "", false},
		{"consent-grant", "full", id, true},
		{"consent-after", "full", id, false},
		{"consent-withdraw", "optout", "", true},
		{"consent-optedout", "optout", "", false},
		{"consent-hk", "full", hkID, false},
	} {
		r := recs[tc.marker]
		if r.Consent != tc.consent || r.CookieID != tc.id || r.key != tc.id || r.has("consent_changed") != tc.changed {
			t.Errorf("%s: consent %q cookie_id %q key %q consent_changed %v; want %s, %q (the key too), %v\n%s",
				tc.marker, r.Consent, r.CookieID, r.key, r.has("consent_changed"), tc.consent, tc.id, tc.changed, r.raw)
		}
		wantIP := china
		if tc.marker == "consent-hk" {
			wantIP = hongKong
		}
		if tc.consent != "full" {
			wantIP = "203.0.113.0"
		}
		if r.IP != wantIP {
			t.Errorf("%s: ip %q, want %s", tc.marker, r.IP, wantIP)
		}
	}
}
