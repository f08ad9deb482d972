package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
)

// TestHostPrefixedCookies: over https without cookie_domain the visitor
// cookie is __Host-b2sid, which no script can add on a narrower path or
// replace; an unprefixed b2sid from before keeps the visitor's ID once,
// while no __Host-b2sid came, and is then deleted; an unprefixed one
// beside a __Host-b2sid, or after an invalid one, never identifies
// anybody. Plain http, cookie_domain and cookie_prefix off keep the
// unprefixed name.
func TestHostPrefixedCookies(t *testing.T) {
	now := time.Now()
	visitor, attacker := beacon.NewID(), beacon.NewID()
	const (
		same     = "same"   // the record's cookie ID is the visitor's
		fresh    = "fresh"  // a new ID, neither the visitor's nor the attacker's
		nobody   = "nobody" // no cookie ID
		optedOut = "optout" // consent optout, no cookie ID
	)
	type want struct {
		id      string // same, fresh, nobody or optedOut
		setName string // the visitor cookie set, "" for none
		deleted []string
	}
	for i, tc := range []struct {
		name    string
		url     string
		prefix  string // cookie_prefix
		domain  string // cookie_domain
		cookies func(s *beacon.Signer) string
		want    want
	}{
		{name: "a new visitor over https gets __Host-b2sid", url: "https://www.b2s.com/",
			cookies: func(*beacon.Signer) string { return "" },
			want:    want{id: fresh, setName: "__Host-b2sid"}},
		{name: "control: over plain http the cookie is b2sid", url: "http://www.b2s.com/",
			cookies: func(*beacon.Signer) string { return "" },
			want:    want{id: fresh, setName: "b2sid"}},
		{name: "control: with cookie_domain the cookie is b2sid", url: "https://www.b2s.com/", domain: "b2s.com",
			cookies: func(*beacon.Signer) string { return "" },
			want:    want{id: fresh, setName: "b2sid"}},
		{name: "control: with cookie_prefix off the cookie is b2sid", url: "https://www.b2s.com/", prefix: "off",
			cookies: func(*beacon.Signer) string { return "" },
			want:    want{id: fresh, setName: "b2sid"}},
		{name: "a visitor's b2sid from before keeps their ID under the new name, and is deleted", url: "https://www.b2s.com/",
			cookies: func(s *beacon.Signer) string { return "b2sid=" + s.Sign(visitor, now.Add(-time.Hour)) },
			want:    want{id: same, setName: "__Host-b2sid", deleted: []string{"b2sid"}}},
		{name: "a b2sid planted beside the visitor's __Host-b2sid is ignored and deleted", url: "https://www.b2s.com/checkout/",
			cookies: func(s *beacon.Signer) string {
				return "b2sid=" + s.Sign(attacker, now.Add(-time.Hour)) + "; __Host-b2sid=" + s.Sign(visitor, now.Add(-time.Hour))
			},
			want: want{id: same, deleted: []string{"b2sid"}}},
		{name: "a b2sid beside a __Host-b2sid that does not verify is not adopted: a new ID", url: "https://www.b2s.com/",
			cookies: func(s *beacon.Signer) string {
				return "__Host-b2sid=1.forged; b2sid=" + s.Sign(attacker, now.Add(-time.Hour))
			},
			want: want{id: fresh, setName: "__Host-b2sid", deleted: []string{"b2sid"}}},
		{name: "a b2sid beside an expired __Host-b2sid is not adopted: a new ID", url: "https://www.b2s.com/",
			cookies: func(s *beacon.Signer) string {
				return "__Host-b2sid=" + s.Sign(visitor, now.Add(-500*24*time.Hour)) + "; b2sid=" + s.Sign(attacker, now.Add(-time.Hour))
			},
			want: want{id: fresh, setName: "__Host-b2sid", deleted: []string{"b2sid"}}},
		{name: "two different b2sid from before identify nobody, and nothing is set or deleted", url: "https://www.b2s.com/checkout/",
			cookies: func(s *beacon.Signer) string {
				return "b2sid=" + s.Sign(attacker, now.Add(-time.Hour)) + "; b2sid=" + s.Sign(visitor, now.Add(-time.Hour))
			},
			want: want{id: nobody}},
		{name: "a __Host-b2sid over plain http is no browser's, and ignored", url: "http://www.b2s.com/",
			cookies: func(s *beacon.Signer) string { return "__Host-b2sid=" + s.Sign(attacker, now.Add(-time.Hour)) },
			want:    want{id: fresh, setName: "b2sid"}},
		{name: "with cookie_prefix off a b2sid is read as ever", url: "https://www.b2s.com/", prefix: "off",
			cookies: func(s *beacon.Signer) string { return "b2sid=" + s.Sign(visitor, now.Add(-time.Hour)) },
			want:    want{id: same}},
		{name: "an opt-out marker from before still opts out", url: "https://www.b2s.com/",
			cookies: func(s *beacon.Signer) string {
				return "b2sid_optout=1; __Host-b2sid=" + s.Sign(visitor, now.Add(-time.Hour))
			},
			want: want{id: optedOut}},
		{name: "a prefixed opt-out marker opts out over plain http too (fail closed)", url: "http://www.b2s.com/",
			cookies: func(s *beacon.Signer) string { return "__Host-b2sid_optout=1" },
			want:    want{id: optedOut}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sp := privacyCollect(t, &now, 0)
			c.CookiePrefix, c.CookieDomain = tc.prefix, tc.domain
			if err := c.bind(caddy.Context{}, c.app, zap.NewNop()); err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, tc.url, nil)
			if ck := tc.cookies(c.app.signer); ck != "" {
				r.Header.Set("Cookie", ck)
			}
			migrated := metricValue(t, cookieSet[reasonMigrate])
			w := servePrefixTest(t, c, r, nil, 10+i)
			rec := takeRecord(t, sp)
			id := rec.str("cookie_id")
			switch tc.want.id {
			case same:
				if id != visitor {
					t.Errorf("cookie_id %q, want the visitor's %s", id, visitor)
				}
			case fresh:
				if id == "" || id == visitor || id == attacker {
					t.Errorf("cookie_id %q, want a new ID (visitor %s, attacker %s)", id, visitor, attacker)
				}
			case nobody:
				if id != "" || rec.str("consent") != "full" {
					t.Errorf("cookie_id %q, consent %q; want none, full", id, rec.str("consent"))
				}
			case optedOut:
				if id != "" || rec.str("consent") != "optout" {
					t.Errorf("cookie_id %q, consent %q; want none, optout", id, rec.str("consent"))
				}
			}
			var set []*http.Cookie
			var deleted []string
			for _, line := range w.Header().Values("Set-Cookie") {
				sc, err := http.ParseSetCookie(line)
				if err != nil {
					t.Fatalf("Set-Cookie %q: %v", line, err)
				}
				if sc.MaxAge < 0 || sc.Value == "" {
					deleted = append(deleted, sc.Name)
				} else {
					set = append(set, sc)
				}
			}
			if strings.Join(deleted, ",") != strings.Join(tc.want.deleted, ",") {
				t.Errorf("deleted %q, want %q (Set-Cookie %q)", deleted, tc.want.deleted, w.Header().Values("Set-Cookie"))
			}
			switch {
			case tc.want.setName == "" && len(set) != 0:
				t.Errorf("set %v, want no cookie", set)
			case tc.want.setName == "":
			case len(set) != 1 || set[0].Name != tc.want.setName:
				t.Errorf("set %v, want one %s", set, tc.want.setName)
			default:
				v, ok := c.app.signer.Verify(set[0].Value)
				if !ok || v.ID != id {
					t.Errorf("the cookie set holds ID %q (valid %v), want the record's %q", v.ID, ok, id)
				}
				// What browsers require of a __Host- cookie.
				if strings.HasPrefix(set[0].Name, hostPrefix) && (!set[0].Secure || set[0].Path != "/" || set[0].Domain != "" || !set[0].HttpOnly) {
					t.Errorf("%s is set %+v; want Secure, Path=/, no Domain, HttpOnly", set[0].Name, set[0])
				}
			}
			wantMigrated := 0.0
			if tc.want.id == same && tc.want.setName == "__Host-b2sid" {
				wantMigrated = 1
			}
			if got := metricValue(t, cookieSet[reasonMigrate]) - migrated; got != wantMigrated {
				t.Errorf("b2s_cookies_set_total{reason=\"migrate\"} grew by %v, want %v", got, wantMigrated)
			}
		})
	}
}

// TestHostPrefixedPrivacyCookies: over https the opt-out, opt-in, child
// and member cookies are written under the __Host- name, and each
// deletion (and each replacement) deletes the unprefixed name too, so no
// marker or member cookie from before outlives the choice that replaces
// it. A member cookie from before still counts, bound to the ID.
func TestHostPrefixedPrivacyCookies(t *testing.T) {
	now := time.Now()
	visitor := beacon.NewID()
	c, sp := privacyCollect(t, &now, 0)
	vc := "__Host-b2sid=" + c.app.signer.Sign(visitor, now.Add(-time.Hour))
	serve := func(target, cookie string, next caddyhttp.HandlerFunc, h map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Cookie", cookie)
		for k, v := range h {
			r.Header.Set(k, v)
		}
		w := servePrefixTest(t, c, r, next, 40)
		takeRecords(t, sp)
		return w
	}
	setCookies := func(w *httptest.ResponseRecorder) map[string]string {
		out := map[string]string{}
		for _, sc := range w.Result().Cookies() {
			out[sc.Name] = sc.Value
		}
		return out
	}
	check := func(what string, got, want map[string]string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s set %v, want %v", what, got, want)
			return
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || (v != "*" && g != v) {
				t.Errorf("%s set %v, want %v", what, got, want)
				return
			}
		}
	}
	check("the opt-out", setCookies(serve("https://www.b2s.com/_b2s/optout", vc, nil, nil)), map[string]string{
		"__Host-b2sid_optout": "1", "b2sid_optout": "", "__Host-b2sid": "", "b2sid": "", "__Host-b2sid_m": "", "b2sid_m": ""})
	check("the opt-out over plain http", setCookies(serve("http://www.b2s.com/_b2s/optout", "", nil, nil)), map[string]string{
		"b2sid_optout": "1", "b2sid": "", "b2sid_m": ""})
	child := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set(DefaultChildHeader, "1")
		return nil
	}
	check("the child signal", setCookies(serve("https://www.b2s.com/kids", vc, child, nil)), map[string]string{
		"__Host-b2sid_dnc": "1", "b2sid_dnc": "", "__Host-b2sid": "", "b2sid": "", "__Host-b2sid_m": "", "b2sid_m": ""})
	signIn := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set(DefaultMemberHeader, "m-1")
		return nil
	}
	check("the sign-in", setCookies(serve("https://www.b2s.com/signin", vc, signIn, nil)), map[string]string{
		"__Host-b2sid_m": "m-1." + c.app.signer.SignMember(visitor, "m-1"), "b2sid_m": ""})

	// A member cookie from before, bound to the visitor's ID, still counts.
	r := httptest.NewRequest(http.MethodGet, "https://www.b2s.com/", nil)
	r.Header.Set("Cookie", vc+"; b2sid_m=m-1."+c.app.signer.SignMember(visitor, "m-1"))
	servePrefixTest(t, c, r, nil, 40)
	if rec := takeRecord(t, sp); rec.str("member_id") != "m-1" || rec.str("cookie_id") != visitor {
		t.Errorf("with a member cookie from before: cookie_id %q, member_id %q; want %s, m-1", rec.str("cookie_id"), rec.str("member_id"), visitor)
	}
}

// TestCookiePrefixConfig: cookie_prefix takes host or off, and host
// cannot go with a cookie_domain (the prefix forbids a Domain).
func TestCookiePrefixConfig(t *testing.T) {
	app := &App{}
	app.setDefaults()
	for _, tc := range []struct {
		prefix, domain, err string
	}{
		{"", "", ""},
		{"host", "", ""},
		{"off", "", ""},
		{"off", "b2s.com", ""},
		{"", "b2s.com", ""},
		{"host", "b2s.com", `cookie_prefix host needs host-only cookies, but cookie_domain is "b2s.com"`},
		{"Host", "", `cookie_prefix "Host" is not host or off`},
		{"secure", "", `cookie_prefix "secure" is not host or off`},
	} {
		c := &Collect{Beacon: "/b.gif", Script: "/b.js", CookiePrefix: tc.prefix, CookieDomain: tc.domain, app: app}
		err := c.Validate()
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("cookie_prefix %q, cookie_domain %q: error %v, want %q", tc.prefix, tc.domain, err, tc.err)
		}
	}
}

// servePrefixTest serves r through c from 198.51.100.<host>: an address
// of its own, as the client limit is the process's.
func servePrefixTest(t *testing.T, c *Collect, r *http.Request, next caddyhttp.HandlerFunc, host int) *httptest.ResponseRecorder {
	t.Helper()
	if next == nil {
		next = func(w http.ResponseWriter, r *http.Request) error { _, err := io.WriteString(w, "page"); return err }
	}
	w := httptest.NewRecorder()
	if err := c.ServeHTTP(w, withClientIP(r, fmt.Sprintf("198.51.100.%d", host)), next); err != nil {
		t.Fatal(err)
	}
	return w
}
