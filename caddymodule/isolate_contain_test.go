package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
)

// networkIsolate is a b2s_isolate of an edge with the default privacy
// options and the network b2s.com, b2smade.com.
func networkIsolate(t *testing.T) *Isolate {
	t.Helper()
	iso := newIsolate(t, zap.NewNop())
	iso.app.privacy = (*Privacy)(nil).provision(DefaultCookieName)
	nw, err := (&Network{Sites: []string{"b2s.com", "b2smade.com"}}).provision(beacon.Keys{Sign: []byte("network-key-0123456789abcdef0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	iso.app.network = nw
	return iso
}

// TestIsolateRedirects: the upstream may send the browser to another
// site, or within its own directory of the site; never back into the
// rest of the site, to another host of the same site, to a network site
// or to the plugin's endpoints, however the address is written.
func TestIsolateRedirects(t *testing.T) {
	iso := networkIsolate(t)
	for _, tc := range []struct {
		loc  string
		want bool
	}{
		{"https://landing.adnet.example/offer?id=1", true},
		{"//landing.adnet.example/offer", true},
		{"/ads/landing", true},
		{"/ads/landing?_b2s=token", false},   // a link token, exchanged on landing
		{"/ads/landing?%5Fb2s=token", false}, // the same, its name percent-encoded
		{"/ads/landing?x=1&_b%32s=token", false},
		{"landing", true}, // /ads/landing
		{"https://www.b2s.com/ads/x", true},
		{"/_b2s/optin", false},
		{"/_b2s/optin?return=/", false},
		{"https://www.b2s.com/_b2s/optin", false},
		{"https://WWW.B2S.COM./_b2s/optin", false},
		{"http://www.b2s.com:8080/account", false},
		{"/checkout", false},
		{"/", false},
		{"../_b2s/optin", false},
		{"/ads/../_b2s/optin", false},
		{"/ads/%2e%2e/_b2s/optin", false},
		{"/ads/%2E%2e/_b2s/optin", false},
		{"/ads/..%2f_b2s/optin", false},
		{"/ads\\..\\_b2s/optin", false},
		{"/\\www.b2s.com/_b2s/optin", false},
		{"/ads/\t../x", false},
		{"https://shop.b2s.com/_b2s/optin", false}, // same site: shares the cookies
		{"https://www.b2smade.com/_b2s/optin", false},
		{"https://b2smade.com/", false},
		{"https://user@www.b2s.com/_b2s/optin", false},
		{"javascript:alert(1)", false},
		{"data:text/html,x", false},
		{"", false},
		{"https://%zz", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/ads/click", nil)
		if got := iso.redirectAllowed(r, []string{tc.loc}); got != tc.want {
			t.Errorf("redirect from /ads/click to %q allowed: %v, want %v", tc.loc, got, tc.want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/ads/click", nil)
	if iso.redirectAllowed(r, []string{"/ads/a", "/ads/b"}) {
		t.Error("two Location values allowed, want refused: which one a browser takes is its own choice")
	}
	top := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/click", nil)
	if iso.redirectAllowed(top, []string{"/landing"}) {
		t.Error("a redirect from a top-level path to another of the site allowed: the route has no directory of its own")
	}
	iso.app.privacy = (&Privacy{OptInPath: "/ads/optin"}).provision(DefaultCookieName)
	if iso.redirectAllowed(r, []string{"/ads/optin"}) {
		t.Error("a redirect to the opt-in inside the route's directory allowed")
	}
}

// TestIsolateContainsResponse: what the upstream sends that would act on
// the site's origin beyond its own response is removed, unless the site
// set it outside b2s_isolate; a redirect into the site becomes a 502;
// every final response is sandboxed unless sandbox is off.
func TestIsolateContainsResponse(t *testing.T) {
	originWide := map[string]string{
		"Clear-Site-Data":           `"cookies", "storage"`,
		"Refresh":                   "0; url=/_b2s/optin",
		"Link":                      "</_b2s/optin>; rel=preload; as=fetch",
		"Speculation-Rules":         `"/ads/rules.json"`,
		"Service-Worker-Allowed":    "/",
		"Strict-Transport-Security": "max-age=0",
		"Alt-Svc":                   `h2="collector.adnet.example:443"`,
		"Nel":                       `{"report_to":"adnet","max_age":31536000,"include_subdomains":true}`,
		"Report-To":                 `{"group":"adnet","max_age":31536000,"endpoints":[{"url":"https://adnet.example/r"}]}`,
		"Accept-Ch":                 "Sec-CH-UA-Full-Version-List",
		"Critical-Ch":               "Sec-CH-UA-Full-Version-List",
		"Set-Login":                 "logged-in",
	}
	upstream := func(status int, loc string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for k, v := range originWide {
				w.Header().Set(k, v)
			}
			w.Header().Set("Content-Security-Policy", "img-src *")
			w.Header().Set("Referrer-Policy", "unsafe-url")
			if loc != "" {
				w.Header().Set("Location", loc)
			}
			w.WriteHeader(status)
			io.WriteString(w, "an ad")
		}
	}
	get := func(t *testing.T, srv string, path string) *http.Response {
		t.Helper()
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(srv + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	t.Run("origin-wide headers are removed and the response is sandboxed", func(t *testing.T) {
		before := readRemoved(t)
		resp := get(t, isolateServer(t, newIsolate(t, zap.NewNop()), nil, upstream(http.StatusOK, "")).URL, "/ads/slot")
		for k := range originWide {
			if v := resp.Header.Values(k); len(v) != 0 {
				t.Errorf("%s: %q reached the client, want it removed", k, v)
			}
		}
		if csp := resp.Header.Values("Content-Security-Policy"); !slices.Equal(csp, []string{"img-src *", sandboxPolicy}) {
			t.Errorf("Content-Security-Policy = %q, want the upstream's and %q", csp, sandboxPolicy)
		}
		if rp := resp.Header.Values("Referrer-Policy"); !slices.Equal(rp, []string{"no-referrer"}) {
			t.Errorf("Referrer-Policy = %q, want no-referrer in place of the upstream's unsafe-url", rp)
		}
		checkRemoved(t, before, removedCounts{header: len(originWide)})
	})
	t.Run("the site's own are kept", func(t *testing.T) {
		outer := http.Header{"Strict-Transport-Security": {"max-age=31536000"}, "Link": {"</site.css>; rel=preload; as=style"}}
		resp := get(t, isolateServer(t, newIsolate(t, zap.NewNop()), outer, upstream(http.StatusOK, "")).URL, "/ads/slot")
		for k, v := range outer {
			if got := resp.Header.Values(k); !slices.Equal(got, v) {
				t.Errorf("%s = %q, want the site's own %q only", k, got, v)
			}
		}
	})
	t.Run("with sandbox off no policy is added", func(t *testing.T) {
		iso := newIsolate(t, zap.NewNop())
		off := false
		iso.Sandbox = &off
		iso.bind(iso.app, zap.NewNop())
		resp := get(t, isolateServer(t, iso, nil, upstream(http.StatusOK, "")).URL, "/ads/slot")
		if csp := resp.Header.Values("Content-Security-Policy"); !slices.Equal(csp, []string{"img-src *"}) {
			t.Errorf("Content-Security-Policy = %q, want the upstream's only", csp)
		}
		if rp := resp.Header.Values("Referrer-Policy"); !slices.Equal(rp, []string{"unsafe-url"}) {
			t.Errorf("Referrer-Policy = %q with sandbox off, want the upstream's", rp)
		}
		if v := resp.Header.Values("Clear-Site-Data"); len(v) != 0 {
			t.Errorf("Clear-Site-Data %q reached the client with sandbox off, want it removed still", v)
		}
	})
	for _, tc := range []struct {
		name       string
		status     int
		loc        string
		wantStatus int
		wantLoc    string
	}{
		{"a redirect to the opt-in becomes a 502", http.StatusFound, "/_b2s/optin?return=/", http.StatusBadGateway, ""},
		{"a 307 to the opt-in (a form's POST kept) becomes a 502", http.StatusTemporaryRedirect, "/_b2s/optin", http.StatusBadGateway, ""},
		{"a redirect to the site's pages becomes a 502", http.StatusMovedPermanently, "/checkout", http.StatusBadGateway, ""},
		{"a redirect to the advertiser passes", http.StatusFound, "https://landing.adnet.example/", http.StatusFound, "https://landing.adnet.example/"},
		{"a redirect within the route passes", http.StatusFound, "/ads/landing", http.StatusFound, "/ads/landing"},
		{"a Location on a 201 is not a redirect", http.StatusCreated, "/_b2s/optin", http.StatusCreated, "/_b2s/optin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, isolateServer(t, newIsolate(t, zap.NewNop()), nil, upstream(tc.status, tc.loc)).URL, "/ads/click")
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("Location") != tc.wantLoc {
				t.Errorf("%d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tc.wantStatus, tc.wantLoc)
			}
		})
	}
}
