package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// isolatePrivacyConfig is a site behind a trusted proxy (127.0.0.1, which
// sends X-Forwarded-For) with collect off for /kids/* and no b2s_collect
// for /raw/*, an advertiser's route behind b2s_isolate and, as a control,
// the site's own route;
// both proxy to __UPSTREAM__ and pass the event ID and Caddy's client IP
// in headers of their own.
var isolatePrivacyConfig = edgeConfig{
	global: `auto_https off
	servers {
		trusted_proxies static 127.0.0.1/32
		client_ip_headers X-Forwarded-For
	}`,
	kafka: "flush_timeout 5s",
	sites: `http://localhost:__HTTP__ {
	@collected not path /raw/*
	b2s_collect @collected {
		collect off /kids/*
	}
	@ads path /ads/* /kids/ads/* /raw/ads/*
	handle @ads {
		b2s_isolate
		reverse_proxy __UPSTREAM__ {
			header_up X-Ad-Event "{http.vars.b2s.event_id}"
			header_up X-Ad-Client "{client_ip}"
		}
	}
	handle {
		reverse_proxy __UPSTREAM__ {
			header_up X-Ad-Event "{http.vars.b2s.event_id}"
			header_up X-Ad-Client "{client_ip}"
		}
	}
}
`,
}

// seenRequest is what an upstream received: the header, and the
// trailers, read after the whole body.
type seenRequest struct {
	header, trailer http.Header
}

// trailerUpstream records, by path, what each request carried, trailers
// included.
type trailerUpstream struct {
	mu   sync.Mutex
	seen map[string]seenRequest
}

func newTrailerUpstream(t *testing.T) (*trailerUpstream, string) {
	u := &trailerUpstream{seen: map[string]seenRequest{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.seen[r.URL.Path] = seenRequest{r.Header.Clone(), r.Trailer.Clone()}
		u.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return u, strings.TrimPrefix(srv.URL, "http://")
}

func (u *trailerUpstream) got(t *testing.T, path string) seenRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.seen[path]
	if !ok {
		t.Fatalf("the upstream got no request for %s", path)
	}
	return s
}

// TestIsolateWithoutConsent: what reaches the advertiser through
// b2s_isolate for a visitor whose records truncate the IP (opt-out, GPC,
// child) is the truncated IP, in every header that carries the client's;
// the record's event ID (a join key) reads empty; and no Cookie2 header
// or cookie or X-B2S-* request trailer passes. Each has a control on the
// site's own route, or with full consent.
func TestIsolateWithoutConsent(t *testing.T) {
	const topic = "b2s.isolate.privacy"
	brokers := startKafka(t, topic)
	upstream, addr := newTrailerUpstream(t)
	e := loadEdge(t, isolatePrivacyConfig, brokers, topic, "__UPSTREAM__", addr)
	now := time.Now()
	valid := DefaultCookieName + "=" + signerOf(t, testKey1).Sign(beacon.NewID(), now)

	const full, truncated = "203.0.113.7", "203.0.113.0"
	proxied := map[string]string{ // a CDN in front sent the client's IP
		"X-Forwarded-For":  full,
		"X-Real-IP":        full,
		"Forwarded":        "for=" + full + ";proto=https",
		"True-Client-IP":   full,
		"CF-Connecting-IP": full,
	}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range proxied {
			h[k] = v
		}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}

	for _, tc := range []struct {
		name, path string
		header     map[string]string
		truncated  bool // the upstream gets the truncated IP only
	}{
		{name: "a GPC visitor's IP reaches the advertiser truncated", path: "/ads/gpc", header: with(map[string]string{"Sec-GPC": "1", "Cookie": valid}), truncated: true},
		{name: "an opted-out visitor's IP reaches the advertiser truncated", path: "/ads/optout", header: with(map[string]string{"Cookie": valid + "; b2sid_optout=1"}), truncated: true},
		{name: "an opted-out visitor's IP reaches the advertiser truncated, by the __Host- marker too", path: "/ads/optout-host", header: with(map[string]string{"Cookie": valid + "; __Host-b2sid_optout=1"}), truncated: true},
		{name: "without b2s_collect, a marked child's IP reaches the advertiser truncated, by the __Host- marker too", path: "/raw/ads/dnc-host", header: with(map[string]string{"Cookie": "__Host-b2sid_dnc=1"}), truncated: true},
		{name: "a marked child's IP reaches the advertiser truncated", path: "/ads/dnc", header: with(map[string]string{"Cookie": valid + "; b2sid_dnc=1"}), truncated: true},
		{name: "the IP of a request under collect off paths reaches the advertiser truncated", path: "/kids/ads/slot", header: with(nil), truncated: true},
		{name: "without b2s_collect, a GPC visitor's IP reaches the advertiser truncated", path: "/raw/ads/gpc", header: with(map[string]string{"Sec-GPC": "1"}), truncated: true},
		{name: "without b2s_collect, an opted-out visitor's IP reaches the advertiser truncated", path: "/raw/ads/optout", header: with(map[string]string{"Cookie": "a=1; b2sid_optout=1"}), truncated: true},
		{name: "without b2s_collect, a marked child's IP reaches the advertiser truncated", path: "/raw/ads/dnc", header: with(map[string]string{"Cookie": "b2sid_dnc=1"}), truncated: true},
		{name: "control: without b2s_collect, a visitor who consents is passed on as reverse_proxy does", path: "/raw/ads/full", header: with(map[string]string{"Cookie": valid})},
		{name: "control: a visitor who consents is passed on as reverse_proxy does", path: "/ads/full", header: with(map[string]string{"Cookie": valid})},
		{name: "control: the site's own route passes a GPC visitor's IP as it came", path: "/site/gpc", header: with(map[string]string{"Sec-GPC": "1"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := doRequest(t, e.client, newRequest(t, http.MethodGet, e.base+tc.path, tc.header))
			if resp.status != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", tc.path, resp.status)
			}
			got := upstream.got(t, tc.path).header
			var where []string
			for k, vs := range got {
				for _, v := range vs {
					if strings.Contains(v, full) {
						where = append(where, k+": "+v)
					}
				}
			}
			if !tc.truncated {
				if len(where) == 0 {
					t.Errorf("the upstream did not get the client's IP %s anywhere (%q): the check cannot fail", full, got)
				}
				return
			}
			if len(where) > 0 {
				t.Errorf("the advertiser got the full IP in %q", where)
			}
			for k, want := range map[string]string{
				"X-Forwarded-For": truncated,
				"X-Real-Ip":       truncated,
				"Forwarded":       "for=" + truncated,
				"X-Ad-Client":     truncated, // {client_ip} inside b2s_isolate
			} {
				if v := got.Values(k); !slices.Equal(v, []string{want}) {
					t.Errorf("%s: %q, want %q", k, v, want)
				}
			}
			for _, k := range []string{"True-Client-Ip", "Cf-Connecting-Ip"} {
				if v := got.Values(k); len(v) > 0 {
					t.Errorf("%s: %q reached the advertiser", k, v)
				}
			}
		})
	}

	t.Run("a GPC visitor without a proxy in front reaches the advertiser from the truncated address", func(t *testing.T) {
		// 127.0.0.1 is the client itself here: no X-Forwarded-For sent.
		doRequest(t, e.client, newRequest(t, http.MethodGet, e.base+"/ads/direct", map[string]string{"Sec-GPC": "1"}))
		got := upstream.got(t, "/ads/direct").header
		if v := got.Values("X-Forwarded-For"); !slices.Equal(v, []string{"127.0.0.0"}) {
			t.Errorf("X-Forwarded-For: %q, want 127.0.0.0", v)
		}
	})

	t.Run("the record's event ID reads empty inside b2s_isolate", func(t *testing.T) {
		doRequest(t, e.client, newRequest(t, http.MethodGet, e.base+"/ads/event", map[string]string{"Cookie": valid}))
		doRequest(t, e.client, newRequest(t, http.MethodGet, e.base+"/site/event", map[string]string{"Cookie": valid}))
		if v := upstream.got(t, "/ads/event").header.Values("X-Ad-Event"); len(v) != 1 || v[0] != "" {
			t.Errorf("{http.vars.b2s.event_id} inside b2s_isolate: %q, want empty", v)
		}
		if v := upstream.got(t, "/site/event").header.Get("X-Ad-Event"); v == "" {
			t.Error("control: {http.vars.b2s.event_id} on the site's route is empty, want the record's event ID")
		}
	})

	t.Run("Cookie2 and request trailers of cookies and X-B2S-* do not reach the advertiser", func(t *testing.T) {
		send := func(path string) {
			req, err := http.NewRequest(http.MethodPost, e.base+path, io.MultiReader(strings.NewReader("body")))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = -1 // chunked, so trailers go out
			req.Header.Set("Cookie2", `$Version="1"`)
			req.Trailer = http.Header{
				"Cookie":       {valid},
				"Cookie2":      {`$Version="1"`},
				"X-B2s-Member": {"m-1"},
				"X-Ad-Sum":     {"ok"},
			}
			if resp := doRequest(t, e.client, req); resp.status != http.StatusOK {
				t.Fatalf("POST %s = %d, want 200", path, resp.status)
			}
		}
		send("/ads/trailers")
		send("/site/trailers")
		ads, site := upstream.got(t, "/ads/trailers"), upstream.got(t, "/site/trailers")
		if v := ads.header.Values("Cookie2"); len(v) > 0 {
			t.Errorf("Cookie2: %q reached the advertiser", v)
		}
		for _, k := range []string{"Cookie", "Cookie2", "X-B2s-Member"} {
			if v := ads.trailer.Values(k); len(v) > 0 {
				t.Errorf("trailer %s: %q reached the advertiser", k, v)
			}
			if v := site.trailer.Values(k); len(v) != 1 {
				t.Errorf("control: trailer %s on the site's route: %q, want the client's (trailers %q)", k, v, site.trailer)
			}
		}
		if v := ads.trailer.Get("X-Ad-Sum"); v != "ok" {
			t.Errorf("trailer X-Ad-Sum: %q, want the client's: other trailers pass (trailers %q)", v, ads.trailer)
		}
		if v := site.header.Values("Cookie2"); len(v) != 1 {
			t.Errorf("control: Cookie2 on the site's route: %q, want the client's", v)
		}
	})
}
