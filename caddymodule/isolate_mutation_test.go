package caddymodule

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Tests pinning the edges of b2s_isolate that its other tests leave
// open: each case sits on one side of a limit, its neighbour on the other
// side is its control (docs/privacy-mutation.md).

// TestFilterCookiesLimits: an allowed cookie passes whatever letters of
// either case, digits and token symbols its name holds, up to the ends
// of each range; a value with DEL (0x7f) is no cookie-value, one with
// "~" (0x7e) is; exactly as many cookies as net/http reads pass, one more
// and none does.
func TestFilterCookiesLimits(t *testing.T) {
	iso := newIsolate(t, zap.NewNop(), "az", "AZ", "n09", "!x", "x~", "ad")
	for _, tc := range []struct {
		name    string
		lines   []string
		want    string
		removed int
	}{
		{"names with a, z, A, Z, 0, 9 and token symbols pass", []string{"az=1; AZ=2; n09=3; !x=4; x~=5"}, "az=1; AZ=2; n09=3; !x=4; x~=5", 0},
		{"a value with ~ passes", []string{"ad=a~b"}, "ad=a~b", 0},
		{"a value with DEL is removed", []string{"ad=a\x7fb; az=1"}, "az=1", 1},
		{"a value with a byte below space is removed", []string{"ad=a\x1fb; az=1"}, "az=1", 1},
		{"a quoted empty value passes", []string{`ad=""`}, `ad=""`, 0},
		{"exactly as many cookies as net/http reads pass", []string{strings.Repeat("ad=1; ", maxCookiePairs-1) + "ad=1"}, strings.Repeat("ad=1; ", maxCookiePairs-1) + "ad=1", 0},
		{"as many over two lines pass", []string{strings.Repeat("ad=1; ", maxCookiePairs/2-1) + "ad=1", strings.Repeat("ad=1; ", maxCookiePairs/2-1) + "ad=1"}, strings.Repeat("ad=1; ", maxCookiePairs-1) + "ad=1", 0},
		{"one more over two lines passes nothing", []string{strings.Repeat("ad=1; ", maxCookiePairs/2) + "ad=1", strings.Repeat("ad=1; ", maxCookiePairs/2-1) + "ad=1"}, "", maxCookiePairs + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, removed := filterCookies(tc.lines, iso.allows)
			if got != tc.want || removed != tc.removed {
				t.Errorf("filterCookies = %.60q, %d removed; want %.60q, %d removed", got, removed, tc.want, tc.removed)
			}
		})
	}
}

// TestIsolateRedirectStatuses: every 3xx but 304 with a Location into the
// site, 300 and 399 included, becomes a 502 without the Location; a 304
// (a cache validation, never followed) and a 400 pass as they came.
func TestIsolateRedirectStatuses(t *testing.T) {
	for _, tc := range []struct {
		status, want int
		loc          string
	}{
		{http.StatusMultipleChoices, http.StatusBadGateway, ""},
		{399, http.StatusBadGateway, ""},
		{http.StatusNotModified, http.StatusNotModified, "/checkout"},
		{http.StatusBadRequest, http.StatusBadRequest, "/checkout"},
		{http.StatusOK, http.StatusOK, "/checkout"},
	} {
		srv := isolateServer(t, newIsolate(t, zap.NewNop()), nil, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "/checkout")
			w.WriteHeader(tc.status)
		})
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(srv.URL + "/ads/click")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || resp.Header.Get("Location") != tc.loc {
			t.Errorf("upstream %d to /checkout: client got %d, Location %q; want %d, %q", tc.status, resp.StatusCode, resp.Header.Get("Location"), tc.want, tc.loc)
		}
	}
}

// TestIsolateRedirectEscapes: a redirect within the route's directory is
// refused when it holds a space, an encoded backslash in either case, or
// a percent sign without two bytes after it; the controls, the same
// places written plainly, pass.
func TestIsolateRedirectEscapes(t *testing.T) {
	iso := networkIsolate(t)
	for _, tc := range []struct {
		loc  string
		want bool
	}{
		{"/ads/landing", true},
		{"/ads/a%20b", true},
		{"/ads/a%5d", true},
		{"/ads/a b", false},
		{"/ads/..%5c_b2s/optin", false},
		{"/ads/..%5C_b2s/optin", false},
		{"/ads/..%2F_b2s/optin", false},
		{"/ads/x%2", false},
		{"/ads/x%", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/ads/click", nil)
		if got := iso.redirectAllowed(r, []string{tc.loc}); got != tc.want {
			t.Errorf("redirect from /ads/click to %q allowed: %v, want %v", tc.loc, got, tc.want)
		}
	}
}

// TestIsolateRedirectRefusalLogged: a redirect into the site that is
// refused is logged at debug level with the request's path; one allowed
// (the control) is not.
func TestIsolateRedirectRefusalLogged(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	iso := newIsolate(t, zap.New(core))
	for _, tc := range []struct {
		loc    string
		status int
		logged bool
	}{
		{"https://landing.adnet.example/", http.StatusFound, false},
		{"/checkout", http.StatusBadGateway, true},
	} {
		r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/ads/click", nil)
		h := http.Header{"Location": {tc.loc}}
		if got := iso.contain(h, r, http.StatusFound); got != tc.status {
			t.Errorf("302 to %q: status %d, want %d", tc.loc, got, tc.status)
		}
		got := logs.FilterMessage("redirect into the site refused").TakeAll()
		if tc.logged != (len(got) == 1 && got[0].ContextMap()["path"] == "/ads/click") || (!tc.logged && len(got) != 0) {
			t.Errorf("302 to %q logged %v; want a log with path /ads/click %v", tc.loc, got, tc.logged)
		}
	}
}

// TestIsolateRedirectSameSiteWithoutNetwork: without a network block, a
// redirect to another host of the request's site (sharing its
// registrable domain, hence its cookies) is refused; one to another
// site passes (the controls).
func TestIsolateRedirectSameSiteWithoutNetwork(t *testing.T) {
	iso := newIsolate(t, zap.NewNop())
	for _, tc := range []struct {
		loc  string
		want bool
	}{
		{"https://shop.b2s.com/x", false},
		{"https://b2s.com/", false},
		{"https://WWW.B2S.COM./checkout", false},
		{"https://www.b2s.co.uk/", true},
		{"https://landing.adnet.example/offer", true},
		{"https://localhost/x", true},
	} {
		r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/ads/click", nil)
		if got := iso.redirectAllowed(r, []string{tc.loc}); got != tc.want {
			t.Errorf("redirect from www.b2s.com/ads/click to %q allowed: %v, want %v", tc.loc, got, tc.want)
		}
	}
}

// TestIsolateRedirectFromEmptySegment: Caddy's path matchers merge
// doubled slashes, so a route for /ads/* also serves //ads/click, and the
// site's routes serve //checkout as /checkout. A request path whose first
// segment is empty has no directory of its own: a redirect to another
// path of the site starting with // is refused like any other, and
// becomes a 502. The control: from /ads/click, a redirect within /ads/
// passes.
func TestIsolateRedirectFromEmptySegment(t *testing.T) {
	iso := newIsolate(t, zap.NewNop())
	for _, tc := range []struct {
		path, loc string
		want      bool
	}{
		{"/ads/click", "/ads/landing", true},
		{"//ads/click", "https://www.b2s.com//checkout", false},
		{"//ads/click", "//www.b2s.com//checkout", false},
		{"//click", "https://www.b2s.com//account", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com"+tc.path, nil)
		if got := iso.redirectAllowed(r, []string{tc.loc}); got != tc.want {
			t.Errorf("redirect from %s to %q allowed: %v, want %v", tc.path, tc.loc, got, tc.want)
		}
		want := http.StatusFound
		if !tc.want {
			want = http.StatusBadGateway
		}
		if got := iso.contain(http.Header{"Location": {tc.loc}}, r, http.StatusFound); got != want {
			t.Errorf("302 from %s to %q: status %d, want %d", tc.path, tc.loc, got, want)
		}
	}
}

// TestIsolateUndeclaredRequestTrailers: net/http hands a handler the
// trailers of a chunked request body even when the request declared none
// (no Trailer header): the upstream behind b2s_isolate still gets no
// Cookie or X-B2S-* trailer, and gets the others. The control: a handler
// without b2s_isolate gets them all.
func TestIsolateUndeclaredRequestTrailers(t *testing.T) {
	iso := newIsolate(t, zap.NewNop())
	got := make(chan http.Header, 1)
	upstream := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Clone()
	}
	for _, isolated := range []bool{true, false} {
		var h http.Handler = http.HandlerFunc(upstream)
		if isolated {
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := iso.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
					upstream(w, r)
					return nil
				})); err != nil {
					t.Errorf("ServeHTTP: %v", err)
				}
			})
		}
		srv := httptest.NewServer(h)
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.WriteString(conn, "POST /ads/x HTTP/1.1\r\nHost: www.b2s.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
			"4\r\nbody\r\n0\r\nCookie: b2sid=1.x\r\nX-B2s-Member: m-1\r\nX-Ad-Sum: ok\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		tr := <-got
		io.Copy(io.Discard, conn)
		conn.Close()
		srv.Close()
		if tr.Get("X-Ad-Sum") != "ok" {
			t.Errorf("isolated %v: trailers %q, want X-Ad-Sum: ok", isolated, tr)
		}
		if has := tr.Get("Cookie") != "" || tr.Get("X-B2s-Member") != ""; has == isolated {
			t.Errorf("isolated %v: trailers %q; want Cookie and X-B2s-Member %v", isolated, tr, !isolated)
		}
	}
}

// TestIsolateBareB2SHeader: a header named "X-B2S-" and nothing more is
// one of the plugin's: removed from the request the upstream gets, and
// from the upstream's response; "X-B2Sx" is not (the control).
func TestIsolateBareB2SHeader(t *testing.T) {
	iso := newIsolate(t, zap.NewNop())
	srv := isolateServer(t, iso, nil, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got-Bare", r.Header.Get("X-B2s-"))
		w.Header().Set("X-Got-Other", r.Header.Get("X-B2sx"))
		w.Header().Set("X-B2s-", "1")
		w.Header().Set("X-B2sx", "1")
	})
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/ads/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header["X-B2s-"] = []string{"1"}
	req.Header["X-B2sx"] = []string{"1"}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("X-Got-Bare"); v != "" {
		t.Errorf("the upstream got X-B2S-: %q, want it removed", v)
	}
	if v := resp.Header.Get("X-B2s-"); v != "" {
		t.Errorf("the client got the upstream's X-B2S-: %q, want it removed", v)
	}
	if resp.Header.Get("X-Got-Other") != "1" || resp.Header.Get("X-B2sx") != "1" {
		t.Errorf("control: X-B2Sx did not pass both ways: %q", resp.Header)
	}
}
