package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// newIsolate is a b2s_isolate bound to a b2s app whose cookie is b2sid,
// as Provision binds it.
func newIsolate(t testing.TB, logger *zap.Logger, allow ...string) *Isolate {
	t.Helper()
	iso := &Isolate{AllowCookies: allow}
	iso.bind(&App{CookieName: DefaultCookieName}, logger)
	if err := iso.Validate(); err != nil {
		t.Fatal(err)
	}
	return iso
}

func TestOwnsCookie(t *testing.T) {
	a := &App{CookieName: "b2sid"}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"b2sid", true},
		{"b2sid_optout", true},
		{"b2sid_dnc", true},
		{"b2sid_m", true},
		{"b2sid_", true},
		{"B2SID", false},  // names are case-sensitive: another cookie
		{"b2sid_M", true}, // the prefix decides, whatever follows
		{"B2sid_optout", false},
		{"b2sidx", false}, // only "_" continues the plugin's names
		{"b2sid-optout", false},
		{"xb2sid", false},
		{"b2si", false},
		{"", false},
		{"adnet_uid", false},
		{"__Host-b2sid", true}, // the names the edge writes over https
		{"__Host-b2sid_optout", true},
		{"__host-b2sid_m", true}, // browsers match the prefix in any case
		{"__Secure-b2sid", true},
		{"__HOST-B2SID", false},
		{"__Host-adnet_uid", false},
		{"__Host-", false},
		{"__Host-xb2sid", false},
		{"__Host-__Host-b2sid", false}, // one prefix, then the name
	} {
		if got := a.ownsCookie(tc.name); got != tc.want {
			t.Errorf("ownsCookie(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if (&App{CookieName: "vid"}).ownsCookie("b2sid") {
		t.Error("with cookie_name vid, b2sid is not the plugin's cookie")
	}
	if !(&App{CookieName: "vid"}).ownsCookie("vid_optout") {
		t.Error("with cookie_name vid, vid_optout is the plugin's cookie")
	}
}

func TestFilterCookies(t *testing.T) {
	iso := newIsolate(t, zap.NewNop(), "ad", "adnet_uid", "B2SID", "q")
	for _, tc := range []struct {
		name    string
		lines   []string
		want    string
		removed int
	}{
		{"no Cookie header passes nothing", nil, "", 0},
		{"an empty line passes nothing and removes nothing", []string{""}, "", 0},
		{"separators alone remove nothing", []string{" ; ;; "}, "", 0},
		{"the plugin's cookie is removed", []string{"b2sid=1.abc.def.ghi"}, "", 1},
		{"an allowed cookie passes among the plugin's", []string{"b2sid=1.a; adnet_uid=u-1; b2sid_optout=1; b2sid_m=2"}, "adnet_uid=u-1", 3},
		{"the plugin's __Host- cookies are removed", []string{"__Host-b2sid=1.a; adnet_uid=u-1; __Host-b2sid_optout=1; __Host-b2sid_m=2"}, "adnet_uid=u-1", 3},
		{"a cookie of another name differing in case only is another cookie", []string{"B2SID=x; b2sid=y"}, "B2SID=x", 1},
		{"a cookie not listed is removed", []string{"tracker=1; ad=2"}, "ad=2", 1},
		{"duplicates of an allowed cookie all pass, in order", []string{"ad=1; ad=2", "ad=3"}, "ad=1; ad=2; ad=3", 0},
		{"lines are joined into one", []string{"ad=1", "b2sid=x", "adnet_uid=2"}, "ad=1; adnet_uid=2", 1},
		{"spaces around pairs and names are trimmed", []string{"  ad =1 ;\tadnet_uid=2  "}, "ad=1; adnet_uid=2", 0},
		{"a space after = is part of the value, as net/http reads it", []string{"ad= 1"}, "ad= 1", 0},
		{"a quoted value passes with its quotes", []string{`ad="a b"`}, `ad="a b"`, 0},
		{"a lone quote is not a value", []string{`ad="`}, "", 1},
		{"a quote inside a value is not a value", []string{`ad=a"b`}, "", 1},
		{"a backslash is not a cookie-octet", []string{`ad=a\b`}, "", 1},
		{"a control byte is not a cookie-octet", []string{"ad=a\x01b; q=1"}, "q=1", 1},
		{"a non-ASCII byte is not a cookie-octet", []string{"ad=caf\xc3\xa9"}, "", 1},
		{"a pair without = is a cookie with an empty value", []string{"ad"}, "ad=", 0},
		{"a pair without a name is removed", []string{"=ad; ad=1"}, "ad=1", 1},
		{"a name that is not a token is removed", []string{"a d=1; ad(x)=2; ad=3"}, "ad=3", 2},
		{"a value may hold =", []string{"ad=a=b=c"}, "ad=a=b=c", 0},
		{"the plugin's name with a space before = is still the plugin's", []string{"b2sid =1.x"}, "", 1},
		{"a comma does not split cookies", []string{"b2sid=1, ad=2"}, "", 1},
		{"more cookies than net/http reads pass nothing", []string{strings.Repeat("ad=1;", maxCookiePairs)}, "", maxCookiePairs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, removed := filterCookies(tc.lines, iso.allows)
			if got != tc.want || removed != tc.removed {
				t.Errorf("filterCookies(%q) = %q, %d removed; want %q, %d removed", tc.lines, got, removed, tc.want, tc.removed)
			}
		})
	}
}

// FuzzFilterCookies checks filterCookies against net/http's own reading
// of the Cookie header: what it passes on reads, with net/http, as exactly
// the allowed cookies net/http reads from the input, never holds a cookie
// of the plugin (here allowed by mistake, past Validate), and is a valid
// header value.
func FuzzFilterCookies(f *testing.F) {
	for _, s := range [][2]string{
		{"", ""},
		{"b2sid=1.0123456789abcdef0123456789abcdef.5f5e1000.AAAAAAAAAAAAAAAAAAAAAA", ""},
		{"b2sid=1.x; adnet_uid=u1; b2sid_optout=1", "adnet_seg=sports"},
		{`adnet_uid="quoted value"; B2SID=other`, "tracker=1"},
		{"  ; ;adnet_uid = 1 ;;", "adnet_uid"},
		{`adnet_uid="; b2sid="x"`, "=b2sid; b2sid =y"},
		{"adnet_uid=a\x00b; adnet_seg=\xff", "adnet_uid=\t1\t"},
		{"adnet_uid=1, b2sid=2", "b2sid_m=1;b2sid_=2;b2sidx=3"},
	} {
		f.Add(s[0], s[1])
	}
	iso := newIsolate(f, zap.NewNop())
	iso.allowed = []string{"adnet_uid", "adnet_seg", "B2SID", "b2sidx", "b2sid", "b2sid_m"}
	readCookies := func(lines ...string) []*http.Cookie {
		return (&http.Request{Header: http.Header{"Cookie": lines}}).Cookies()
	}
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		in := []string{line1, line2}
		for _, keep := range []struct {
			name string
			f    func(string) bool
		}{
			{"everything", func(string) bool { return true }},
			{"the allowed cookies", iso.allows},
		} {
			out, removed := filterCookies(in, keep.f)
			for i := 0; i < len(out); i++ {
				if c := out[i]; c < 0x20 || c > 0x7e {
					t.Fatalf("keeping %s of %q passes %q, with byte %#x, not a valid header value", keep.name, in, out, c)
				}
			}
			var want []*http.Cookie
			for _, c := range readCookies(in...) {
				if keep.f(c.Name) {
					want = append(want, c)
				}
			}
			got := readCookies(out)
			if len(got) != len(want) {
				t.Fatalf("keeping %s of %q passes %q, which net/http reads as %d cookies, want %d", keep.name, in, out, len(got), len(want))
			}
			for i := range got {
				if got[i].Name != want[i].Name || got[i].Value != want[i].Value || got[i].Quoted != want[i].Quoted {
					t.Fatalf("keeping %s of %q passes %q: cookie %d is %+v, want %+v", keep.name, in, out, i, *got[i], *want[i])
				}
				if iso.app.ownsCookie(got[i].Name) && keep.name != "everything" {
					t.Fatalf("%q passes the plugin's cookie %q", in, got[i].Name)
				}
			}
			if all := len(readCookies(in...)); all > 0 && removed < all-len(want) {
				t.Fatalf("keeping %s of %q left out %d cookies net/http reads, but counted %d", keep.name, in, all-len(want), removed)
			}
		}
	})
}

func TestSetCookieName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		ok   bool
	}{
		{"adnet_uid=1; Path=/; Max-Age=60", "adnet_uid", true},
		{"b2sid=1.x; Domain=b2s.com", "b2sid", true},
		{"  b2sid\t=1", "b2sid", true},
		{`B2SID="x"`, "B2SID", true},
		{"adnet_uid=", "adnet_uid", true},
		{"b2sid", "", false}, // no "=": a cookie without a name, value b2sid
		{"=b2sid=1", "", false},
		{"; b2sid=1", "", false},
		{"a b=1", "a b", false},
		{"", "", false},
	} {
		name, ok := setCookieName(tc.in)
		if ok != tc.ok || (ok && name != tc.name) {
			t.Errorf("setCookieName(%q) = %q, %v; want %q, %v", tc.in, name, ok, tc.name, tc.ok)
		}
	}
}

// FuzzSetCookieName checks that a Set-Cookie net/http can read has the
// name setCookieName gives: the name the filter decides on is the one a
// client stores.
func FuzzSetCookieName(f *testing.F) {
	for _, s := range []string{"adnet_uid=1; Path=/", " b2sid =x", "b2sid", "=b2sid", `a="b"; Secure`, "a=b\x00c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := http.ParseSetCookie(v)
		if err != nil {
			return
		}
		name, ok := setCookieName(v)
		if !ok || name != c.Name {
			t.Fatalf("setCookieName(%q) = %q, %v; net/http reads the cookie %q", v, name, ok, c.Name)
		}
	})
}

// isolateServer serves upstream behind b2s_isolate over real HTTP, as
// Caddy runs it: outer, when set, holds the response headers that
// handlers outside it (b2s_collect, the site's header directive) set
// before it runs.
func isolateServer(t *testing.T, iso *Isolate, outer http.Header, upstream http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range outer {
			w.Header()[k] = slices.Clone(vs)
		}
		err := iso.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			upstream(w, r)
			return nil
		}))
		if err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

type removedCounts struct{ reqCookie, setCookie, header int }

func readRemoved(t *testing.T) removedCounts {
	t.Helper()
	return removedCounts{
		int(metricValue(t, isolateCount[isolatedRequestCookie])),
		int(metricValue(t, isolateCount[isolatedSetCookie])),
		int(metricValue(t, isolateCount[isolatedHeader])),
	}
}

func checkRemoved(t *testing.T, before removedCounts, want removedCounts) {
	t.Helper()
	after := readRemoved(t)
	got := removedCounts{after.reqCookie - before.reqCookie, after.setCookie - before.setCookie, after.header - before.header}
	if got != want {
		t.Errorf("b2s_isolate_removed_total moved by request_cookie %d, set_cookie %d, header %d; want %d, %d, %d",
			got.reqCookie, got.setCookie, got.header, want.reqCookie, want.setCookie, want.header)
	}
}

// upstreamCookies are what a third party tries to set: its own cookie,
// one it was not allowed, and the plugin's.
func addUpstreamCookies(h http.Header) {
	h.Add("Set-Cookie", "adnet_uid=u-1; Path=/; Max-Age=3600")
	h.Add("Set-Cookie", "tracker=t-1; Path=/")
	h.Add("Set-Cookie", "b2sid=1.forged; Path=/; Domain=b2s.com")
	h.Add("Set-Cookie", "b2sid_optout=0; Path=/")
	h.Set("X-B2S-Member", "1")
	h.Set("X-B2S-Child", "0")
}

// TestIsolateResponse drives the response filter over real HTTP, through
// each way a handler can send the header: WriteHeader, a first Write,
// ReadFrom, a flush, 1xx, 101, trailers, and nothing at all.
func TestIsolateResponse(t *testing.T) {
	const body = "an advertiser's content"
	for _, tc := range []struct {
		name     string
		outer    http.Header
		upstream http.HandlerFunc
		upgrade  bool
		empty    bool // the upstream writes no body
		// wantCookies are the Set-Cookie values the client gets, in order.
		wantCookies []string
		wantHeader  map[string][]string // nil value: absent
		wantTrailer map[string][]string
		want1xx     map[string][]string // of the 103, when set
		removed     removedCounts
	}{
		{
			name: "the third party's own cookie passes; the others and X-B2S-* do not",
			upstream: func(w http.ResponseWriter, r *http.Request) {
				addUpstreamCookies(w.Header())
				w.WriteHeader(http.StatusOK)
				io.WriteString(w, body)
			},
			wantCookies: []string{"adnet_uid=u-1; Path=/; Max-Age=3600"},
			wantHeader:  map[string][]string{"X-B2s-Member": nil, "X-B2s-Child": nil},
			removed:     removedCounts{setCookie: 3, header: 2},
		},
		{
			name: "a body written without WriteHeader is filtered too",
			upstream: func(w http.ResponseWriter, r *http.Request) {
				addUpstreamCookies(w.Header())
				io.WriteString(w, body)
			},
			wantCookies: []string{"adnet_uid=u-1; Path=/; Max-Age=3600"},
			wantHeader:  map[string][]string{"X-B2s-Member": nil},
			removed:     removedCounts{setCookie: 3, header: 2},
		},
		{
			name: "a body copied with ReadFrom is filtered too",
			upstream: func(w http.ResponseWriter, r *http.Request) {
				addUpstreamCookies(w.Header())
				// A LimitedReader has no WriteTo: io.Copy calls w.ReadFrom.
				if _, err := io.Copy(w, io.LimitReader(strings.NewReader(body), 1<<20)); err != nil {
					t.Error(err)
				}
			},
			wantCookies: []string{"adnet_uid=u-1; Path=/; Max-Age=3600"},
			wantHeader:  map[string][]string{"X-B2s-Child": nil},
			removed:     removedCounts{setCookie: 3, header: 2},
		},
		{
			name: "a flush before anything was written is filtered too",
			upstream: func(w http.ResponseWriter, r *http.Request) {
				addUpstreamCookies(w.Header())
				if err := http.NewResponseController(w).Flush(); err != nil {
					t.Errorf("flushing: %v", err)
				}
				io.WriteString(w, body)
			},
			wantCookies: []string{"adnet_uid=u-1; Path=/; Max-Age=3600"},
			wantHeader:  map[string][]string{"X-B2s-Member": nil},
			removed:     removedCounts{setCookie: 3, header: 2},
		},
		{
			name:  "a response with nothing written is filtered when the outer handler writes it",
			empty: true,
			upstream: func(w http.ResponseWriter, r *http.Request) {
				addUpstreamCookies(w.Header())
			},
			wantCookies: []string{"adnet_uid=u-1; Path=/; Max-Age=3600"},
			wantHeader:  map[string][]string{"X-B2s-Member": nil},
			removed:     removedCounts{setCookie: 3, header: 2},
		},
		{
			name:  "headers set outside are kept; what the upstream adds or changes is not",
			outer: http.Header{"Set-Cookie": {"b2sid=1.ours; Path=/"}, "X-B2s-Cookie-State": {"new"}, "X-B2s-Site": {"www"}},
			upstream: func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Add("Set-Cookie", "b2sid=1.forged; Path=/")
				h.Add("Set-Cookie", "adnet_uid=u-2")
				h.Add("X-B2S-Cookie-State", "returning")
				h.Set("X-B2S-Site", "ads")
				io.WriteString(w, body)
			},
			wantCookies: []string{"b2sid=1.ours; Path=/", "adnet_uid=u-2"},
			wantHeader:  map[string][]string{"X-B2s-Cookie-State": {"new"}, "X-B2s-Site": {"www"}},
			removed:     removedCounts{setCookie: 1, header: 2},
		},
		{
			name: "103 Early Hints carry no cookie of the plugin, no X-B2S-* and no Link",
			upstream: func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Add("Link", "</ad.css>; rel=preload; as=style")
				h.Add("Set-Cookie", "b2sid=1.early")
				h.Add("Set-Cookie", "adnet_uid=early")
				h.Set("X-B2S-Member", "1")
				w.WriteHeader(http.StatusEarlyHints)
				// The final response: reverse_proxy restores its own
				// header map after a 1xx; here the upstream sets it anew.
				h.Del("Link")
				addUpstreamCookies(h)
				io.WriteString(w, body)
			},
			// A preload is a request of the site made as the site (it
			// could name the opt-in): Link is removed.
			want1xx:     map[string][]string{"Link": nil, "Set-Cookie": {"adnet_uid=early"}, "X-B2s-Member": nil},
			wantCookies: []string{"adnet_uid=early", "adnet_uid=u-1; Path=/; Max-Age=3600"},
			wantHeader:  map[string][]string{"X-B2s-Member": nil},
			removed:     removedCounts{setCookie: 1 + 3, header: 2 + 2},
		},
		{
			name: "trailers of X-B2S-* and Set-Cookie are not sent, declared or not",
			upstream: func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Set("Trailer", "X-B2S-Child, X-Ad-Checksum, Set-Cookie")
				w.WriteHeader(http.StatusOK)
				io.WriteString(w, body)
				h.Set("X-B2S-Child", "1")
				h.Set("X-Ad-Checksum", "abc")
				h.Set("Set-Cookie", "b2sid=1.late")
				h.Set(http.TrailerPrefix+"X-B2S-Member", "1")
				h.Set(http.TrailerPrefix+"X-Ad-Late", "yes")
				h.Set(http.TrailerPrefix+"Set-Cookie", "b2sid_m=1")
			},
			wantTrailer: map[string][]string{"X-Ad-Checksum": {"abc"}, "X-Ad-Late": {"yes"}, "X-B2s-Child": nil, "X-B2s-Member": nil, "Set-Cookie": nil},
			// Both X-B2S-* trailers are removed from the header map, the
			// declared one too, so b2s_collect outside never reads them;
			// the declared Set-Cookie is only undeclared.
			removed: removedCounts{setCookie: 1, header: 2},
		},
		{
			name:    "101 Switching Protocols is filtered before the connection is handed over",
			upgrade: true,
			upstream: func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				addUpstreamCookies(h)
				h.Set("Connection", "Upgrade")
				h.Set("Upgrade", "b2s-test")
				w.WriteHeader(http.StatusSwitchingProtocols)
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijacking: %v", err)
					return
				}
				defer conn.Close()
				brw.WriteString(body)
				brw.Flush()
			},
			wantCookies: []string{"adnet_uid=u-1; Path=/; Max-Age=3600"},
			wantHeader:  map[string][]string{"X-B2s-Member": nil, "Upgrade": {"b2s-test"}},
			removed:     removedCounts{setCookie: 3, header: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iso := newIsolate(t, zap.NewNop(), "adnet_uid")
			srv := isolateServer(t, iso, tc.outer, tc.upstream)
			before := readRemoved(t)

			var got1xx textproto.MIMEHeader
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				if code == http.StatusEarlyHints {
					got1xx = h
				}
				return nil
			}}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, srv.URL+"/ads/x", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "b2s-test")
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if want := body; string(got) != want && !(tc.empty && len(got) == 0) {
				t.Errorf("body = %q, want %q", got, want)
			}
			if c := resp.Header.Values("Set-Cookie"); !slices.Equal(c, tc.wantCookies) {
				t.Errorf("Set-Cookie = %q, want %q", c, tc.wantCookies)
			}
			checkHeaders(t, "header", resp.Header, tc.wantHeader)
			checkHeaders(t, "trailer", resp.Trailer, tc.wantTrailer)
			if tc.want1xx != nil {
				if got1xx == nil {
					t.Fatal("no 103 Early Hints reached the client")
				}
				checkHeaders(t, "103 header", http.Header(got1xx), tc.want1xx)
			}
			checkRemoved(t, before, tc.removed)
		})
	}
}

// checkHeaders compares the headers named in want; a nil value must be absent.
func checkHeaders(t *testing.T, what string, h http.Header, want map[string][]string) {
	t.Helper()
	for k, v := range want {
		got := h.Values(k)
		if v == nil && len(got) > 0 || v != nil && !slices.Equal(got, v) {
			t.Errorf("%s %s = %q, want %q", what, k, got, v)
		}
	}
}

// TestIsolateRequest checks what the upstream receives, and that the
// request the handlers outside see is the one the client sent.
func TestIsolateRequest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		allow      []string
		header     map[string][]string
		wantCookie []string // the Cookie lines the upstream gets
		removed    removedCounts
	}{
		{
			name:    "by default the upstream gets no Cookie header at all",
			header:  map[string][]string{"Cookie": {"b2sid=1.abc; adnet_uid=u-1"}},
			removed: removedCounts{reqCookie: 2},
		},
		{
			name:       "allowed cookies are passed on in one Cookie header",
			allow:      []string{"adnet_uid", "adnet_seg"},
			header:     map[string][]string{"Cookie": {"b2sid=1.abc; adnet_uid=u-1; b2sid_optout=1", "tracker=9; adnet_seg=\"s 1\""}},
			wantCookie: []string{`adnet_uid=u-1; adnet_seg="s 1"`},
			removed:    removedCounts{reqCookie: 3},
		},
		{
			name:    "the plugin's headers are removed, in any case",
			allow:   []string{"adnet_uid"},
			header:  map[string][]string{"X-B2s-Cookie-Id": {"0123"}, "X-B2s-Member": {"1", "2"}, "x-b2s-child": {"1"}, "X-B2sother": {"kept"}},
			removed: removedCounts{header: 4},
		},
		{
			name:    "a request with nothing to remove passes unchanged",
			header:  map[string][]string{"Accept": {"image/*"}},
			removed: removedCounts{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iso := newIsolate(t, zap.NewNop(), tc.allow...)
			r := httptest.NewRequest(http.MethodGet, "http://www.b2s.test/ads/x?slot=1", nil)
			for k, vs := range tc.header {
				r.Header[k] = slices.Clone(vs)
			}
			sent := r.Header.Clone()
			var got *http.Request
			before := readRemoved(t)
			err := iso.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				got = r
				r.Header.Set("X-Added-Inside", "1") // a handler inside changes its request
				return nil
			}))
			if err != nil {
				t.Fatal(err)
			}
			if c := got.Header.Values("Cookie"); !slices.Equal(c, tc.wantCookie) {
				t.Errorf("the upstream got Cookie %q, want %q", c, tc.wantCookie)
			}
			for k := range got.Header {
				if isB2SHeader(k) {
					t.Errorf("the upstream got the plugin's header %s: %q", k, got.Header[k])
				}
			}
			for k, vs := range tc.header {
				if !isB2SHeader(k) && !strings.EqualFold(k, "Cookie") && !slices.Equal(got.Header[k], vs) {
					t.Errorf("the upstream got %s %q, want it as sent: %q", k, got.Header[k], vs)
				}
			}
			if got.URL.String() != r.URL.String() || got.Method != r.Method || got.Host != r.Host {
				t.Errorf("the upstream got %s %s (Host %s), want %s %s (Host %s)", got.Method, got.URL, got.Host, r.Method, r.URL, r.Host)
			}
			delete(r.Header, "X-Added-Inside")
			if len(r.Header) != len(sent) {
				t.Errorf("the request outside has headers %q, want them as sent: %q", r.Header, sent)
			}
			for k, vs := range sent {
				if !slices.Equal(r.Header[k], vs) {
					t.Errorf("the request outside has %s %q, want it as sent: %q", k, r.Header[k], vs)
				}
			}
			checkRemoved(t, before, tc.removed)
		})
	}
}

// TestIsolateHidesCookieID: handlers inside b2s_isolate read an empty
// {http.vars.b2s.cookie_id}; those outside read it again afterwards.
func TestIsolateHidesCookieID(t *testing.T) {
	iso := newIsolate(t, zap.NewNop())
	r := httptest.NewRequest(http.MethodGet, "http://www.b2s.test/ads/x", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	caddyhttp.SetVar(r.Context(), VarCookieID, "0123456789abcdef0123456789abcdef")
	var inside any
	err := iso.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		inside = caddyhttp.GetVar(r.Context(), VarCookieID)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if inside != "" {
		t.Errorf("inside b2s_isolate, the cookie ID placeholder is %q, want empty", inside)
	}
	if got := caddyhttp.GetVar(r.Context(), VarCookieID); got != "0123456789abcdef0123456789abcdef" {
		t.Errorf("after b2s_isolate, the cookie ID placeholder is %q, want it back", got)
	}
}

// TestIsolateLogsDroppedNames: each dropped Set-Cookie is logged at debug
// level by its name and why, never with its value.
func TestIsolateLogsDroppedNames(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	iso := newIsolate(t, zap.New(core), "adnet_uid")
	srv := isolateServer(t, iso, nil, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "adnet_uid=secret-allowed")
		h.Add("Set-Cookie", "tracker=secret-tracker")
		h.Add("Set-Cookie", "b2sid_m=secret-owned")
		h.Add("Set-Cookie", "secret-nameless")
	})
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var got []string
	for _, e := range logs.All() {
		if e.Level != zapcore.DebugLevel || e.Message != "set-cookie dropped" {
			t.Errorf("unexpected log entry %q at %v", e.Message, e.Level)
		}
		m := e.ContextMap()
		got = append(got, m["cookie"].(string)+" "+m["reason"].(string))
		for k, v := range m {
			if s, _ := v.(string); strings.Contains(s, "secret") {
				t.Errorf("log field %s = %q holds a cookie value", k, s)
			}
		}
	}
	want := []string{"tracker not_allowed", "b2sid_m owned", " malformed"}
	if !slices.Equal(got, want) {
		t.Errorf("logged %q, want %q", got, want)
	}
}

func TestIsolateUnmarshalCaddyfile(t *testing.T) {
	var iso Isolate
	d := caddyfile.NewTestDispenser(`b2s_isolate {
		allow_cookies adnet_uid adnet_seg
		allow_cookies B2SID
	}`)
	if err := iso.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if want := []string{"adnet_uid", "adnet_seg", "B2SID"}; !slices.Equal(iso.AllowCookies, want) {
		t.Errorf("allow_cookies = %q, want %q: the lines add up", iso.AllowCookies, want)
	}
	var bare Isolate
	if err := bare.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s_isolate")); err != nil {
		t.Fatal(err)
	}
	if bare.AllowCookies != nil {
		t.Errorf("allow_cookies = %q, want none", bare.AllowCookies)
	}
}
