package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

func TestCollect(t *testing.T) {
	e := startEdge(t, "b2s.events")
	start := readCounters(t)
	host := strings.TrimPrefix(e.base, "http://")
	hostOnly := "; Path=/; Max-Age=34560000; HttpOnly; SameSite=Lax"

	s1, s2, other := signerOf(t, testKey1), signerOf(t, testKey2), signerOf(t, "a key this site has never been given, 48 bytes..")
	// Every request carries a unique probe parameter that ties it to its
	// record; n counts them, unrecorded those that must make no record.
	n, unrecorded := 0, 0
	probe := func() string { n++; return fmt.Sprintf("p%d-%d", n, time.Now().UnixNano()) }

	t.Run("cookies", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			// cookie returns the Cookie header to send and the ID in it.
			cookie    func() (header, id string)
			wantState string
			// wantReason is the cookie set, "" when none.
			wantReason string
			wantSameID bool
		}{
			{
				name:       "a first visit gets a new signed cookie",
				cookie:     func() (string, string) { return "", "" },
				wantState:  "new",
				wantReason: "new",
			},
			{
				name: "a valid cookie is accepted without a Set-Cookie",
				cookie: func() (string, string) {
					id := beacon.NewID()
					return "b2sid=" + s1.Sign(id, time.Now()), id
				},
				wantState:  "returning",
				wantSameID: true,
			},
			{
				name: "a cookie with one signature character changed is replaced",
				cookie: func() (string, string) {
					id := beacon.NewID()
					v := []byte(s1.Sign(id, time.Now()))
					i := len(v) - 10
					if v[i] == 'A' {
						v[i] = 'B'
					} else {
						v[i] = 'A'
					}
					return "b2sid=" + string(v), id
				},
				wantState:  "reset",
				wantReason: "reset",
			},
			{
				name: "a cookie whose ID was changed is replaced",
				cookie: func() (string, string) {
					id := beacon.NewID()
					v := s1.Sign(id, time.Now())
					forged := beacon.NewID()
					return "b2sid=" + strings.Replace(v, id, forged, 1), forged
				},
				wantState:  "reset",
				wantReason: "reset",
			},
			{
				name: "a truncated cookie is replaced",
				cookie: func() (string, string) {
					id := beacon.NewID()
					v := s1.Sign(id, time.Now())
					return "b2sid=" + v[:len(v)-1], id
				},
				wantState:  "reset",
				wantReason: "reset",
			},
			{
				name:       "a garbage cookie is replaced",
				cookie:     func() (string, string) { return `b2sid="<script>alert(1)</script>"`, "" },
				wantState:  "reset",
				wantReason: "reset",
			},
			{
				name:       "an empty cookie is replaced",
				cookie:     func() (string, string) { return "b2sid=", "" },
				wantState:  "reset",
				wantReason: "reset",
			},
			{
				name: "a cookie signed with a key the site does not have is replaced",
				cookie: func() (string, string) {
					id := beacon.NewID()
					return "b2sid=" + other.Sign(id, time.Now()), id
				},
				wantState:  "reset",
				wantReason: "reset",
			},
			{
				name: "a cookie signed with the older key is re-signed with the same ID",
				cookie: func() (string, string) {
					id := beacon.NewID()
					return "b2sid=" + s2.Sign(id, time.Now()), id
				},
				wantState:  "returning",
				wantReason: "resign",
				wantSameID: true,
			},
			{
				name: "a cookie older than cookie_refresh is set again with the same ID",
				cookie: func() (string, string) {
					id := beacon.NewID()
					return "b2sid=" + s1.Sign(id, time.Now().Add(-25*time.Hour)), id
				},
				wantState:  "returning",
				wantReason: "refresh",
				wantSameID: true,
			},
			{
				name: "a cookie just younger than cookie_refresh is left alone",
				cookie: func() (string, string) {
					id := beacon.NewID()
					return "b2sid=" + s1.Sign(id, time.Now().Add(-23*time.Hour)), id
				},
				wantState:  "returning",
				wantSameID: true,
			},
			{
				name: "a valid cookie after a forged one of the same name is accepted",
				cookie: func() (string, string) {
					id := beacon.NewID()
					return "b2sid=forged; other=1; b2sid=" + s1.Sign(id, time.Now()), id
				},
				wantState:  "returning",
				wantSameID: true,
			},
			{
				name: "a valid cookie in a second Cookie header line is accepted",
				cookie: func() (string, string) {
					id := beacon.NewID()
					return "b2sid=forged\nb2sid=" + s1.Sign(id, time.Now()), id
				},
				wantState:  "returning",
				wantSameID: true,
			},
			{
				name: "a valid value under another cookie name is not the visitor's cookie",
				cookie: func() (string, string) {
					return "b2sid2=" + s1.Sign(beacon.NewID(), time.Now()), ""
				},
				wantState:  "new",
				wantReason: "new",
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cookie, sentID := tc.cookie()
				p := probe()
				hdr := map[string]string{"User-Agent": "b2s-test/1.0", "Referer": "https://search.example/?q=b2s"}
				if cookie != "" {
					hdr["Cookie"] = cookie
				}
				before := readCounters(t)
				resp := e.do(t, newRequest(t, http.MethodGet, e.base+"/products/42?probe="+p, hdr))
				if resp.status != http.StatusOK {
					t.Fatalf("status = %d, want 200", resp.status)
				}
				c := e.records.find(t, p)
				rec := c.rec
				checkKafkaMessage(t, c)

				if tc.wantReason != "" {
					id := checkSetCookie(t, resp.header, hostOnly)
					if id != rec.CookieID {
						t.Errorf("Set-Cookie carries ID %s, the record %s", id, rec.CookieID)
					}
					if got := resp.header.Get("Cache-Control"); got != "private" {
						t.Errorf("Cache-Control = %q, want private on a response that sets a cookie", got)
					}
				} else {
					if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
						t.Errorf("Set-Cookie = %q, want none", sc)
					}
					if got := resp.header.Get("Cache-Control"); got != "" {
						t.Errorf("Cache-Control = %q, want none as the handler sent none", got)
					}
				}
				if rec.CookieState != tc.wantState {
					t.Errorf("cookie_state = %q, want %q", rec.CookieState, tc.wantState)
				}
				if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(rec.CookieID) {
					t.Errorf("cookie_id = %q, want 32 hex digits", rec.CookieID)
				}
				if tc.wantSameID && rec.CookieID != sentID {
					t.Errorf("cookie_id = %s, want the one sent, %s", rec.CookieID, sentID)
				}
				if !tc.wantSameID && sentID != "" && rec.CookieID == sentID {
					t.Errorf("cookie_id = %s: the ID of a cookie that did not verify was kept", rec.CookieID)
				}
				// The placeholders reach later handlers.
				if string(resp.body) != rec.CookieID {
					t.Errorf("respond {http.vars.b2s.cookie_id} wrote %q, want the record's cookie_id %q", resp.body, rec.CookieID)
				}
				if got := resp.header.Get("X-B2S-Cookie-ID"); got != rec.CookieID {
					t.Errorf("header {http.vars.b2s.cookie_id} = %q, want %q", got, rec.CookieID)
				}
				if got := resp.header.Get("X-B2S-Cookie-State"); got != tc.wantState {
					t.Errorf("header {http.vars.b2s.cookie_state} = %q, want %q", got, tc.wantState)
				}

				want := edgeRecord{
					Schema: rec.Schema, EventID: rec.EventID, TS: rec.TS, CookieID: rec.CookieID, CookieState: rec.CookieState,
					Kind: "page", Host: host, Edge: hostName(t), IP: "127.0.0.1", Method: "GET",
					URL: e.base + "/products/42?probe=" + p, Referrer: "https://search.example/?q=b2s", UserAgent: "b2s-test/1.0",
					Status: 200, Bytes: int64(len(resp.body)),
					Consent: "full", NetworkID: rec.CookieID, // a visitor not linked from another site
				}
				if !recordsEqual(rec, want) {
					t.Errorf("record = %+v\nwant     %+v", rec, want)
				}
				checkDelta(t, before, wantDelta{page: 1, setReason: tc.wantReason})
			})
		}
	})

	t.Run("a returning visitor sends back the cookie it was given and keeps its ID", func(t *testing.T) {
		p1 := probe()
		first := e.do(t, newRequest(t, http.MethodGet, e.base+"/?probe="+p1, nil))
		id := checkSetCookie(t, first.header, hostOnly)
		cookie := strings.SplitN(first.header.Get("Set-Cookie"), ";", 2)[0]

		p2 := probe()
		second := e.do(t, newRequest(t, http.MethodGet, e.base+"/next?probe="+p2, map[string]string{"Cookie": cookie}))
		if sc := second.header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("second visit: Set-Cookie = %q, want none", sc)
		}
		r1, r2 := e.records.find(t, p1).rec, e.records.find(t, p2).rec
		if r1.CookieState != "new" || r2.CookieState != "returning" {
			t.Errorf("cookie_state = %q then %q, want new then returning", r1.CookieState, r2.CookieState)
		}
		if r1.CookieID != id || r2.CookieID != id {
			t.Errorf("cookie_id = %s then %s, want %s both times", r1.CookieID, r2.CookieID, id)
		}
	})

	t.Run("beacon", func(t *testing.T) {
		valid := func() (string, string) {
			id := beacon.NewID()
			return "b2sid=" + s1.Sign(id, time.Now()), id
		}
		for _, tc := range []struct {
			name       string
			method     string
			query      func(probe string) string
			header     map[string]string
			withCookie bool
			wantStatus int
			// body and ctype are a POST's body and Content-Type.
			body, ctype string
			// wantHeader holds response headers to check; "" means absent.
			wantHeader map[string]string
			// wantBot is the record's bot flag; without a User-Agent
			// header the client sends Go's own, an http_client.
			wantBot string
			// wantRecord checks the beacon record; nil when none is made.
			wantRecord func(t *testing.T, rec edgeRecord, probe string)
		}{
			{
				name:   "a GET records u, r, e and the other parameters",
				method: http.MethodGet,
				query: func(p string) string {
					return "u=" + url.QueryEscape("https://shop.example/p?id=1&c=2") + "&r=" + url.QueryEscape("https://search.example/") +
						"&e=add_to_cart&sku=A%2B1&qty=2&note=two+words&probe=" + p
				},
				header:     map[string]string{"Referer": "https://shop.example/ignored", "User-Agent": "pixel/1"},
				withCookie: true,
				wantStatus: http.StatusOK,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {
					if rec.URL != "https://shop.example/p?id=1&c=2" || rec.Referrer != "https://search.example/" || rec.Event != "add_to_cart" {
						t.Errorf("url, referrer, event = %q, %q, %q; want the u, r and e parameters", rec.URL, rec.Referrer, rec.Event)
					}
					want := map[string]string{"sku": "A+1", "qty": "2", "note": "two words", "probe": p}
					if fmt.Sprint(rec.Params) != fmt.Sprint(want) {
						t.Errorf("params = %v, want %v", rec.Params, want)
					}
					if rec.Method != "GET" || rec.Bytes != 43 || rec.UserAgent != "pixel/1" {
						t.Errorf("method, bytes, user_agent = %q, %d, %q; want GET, 43, pixel/1", rec.Method, rec.Bytes, rec.UserAgent)
					}
				},
			},
			{
				name:       "a GET without u records the Referer as the page",
				method:     http.MethodGet,
				query:      func(p string) string { return "e=view&probe=" + p },
				header:     map[string]string{"Referer": "https://shop.example/from-referer"},
				withCookie: true,
				wantStatus: http.StatusOK,
				wantBot:    beacon.BotHTTPClient,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {
					if rec.URL != "https://shop.example/from-referer" || rec.Referrer != "" {
						t.Errorf("url, referrer = %q, %q; want the Referer header and nothing", rec.URL, rec.Referrer)
					}
				},
			},
			{
				name:       "a HEAD is answered with the headers only and recorded",
				method:     http.MethodHead,
				query:      func(p string) string { return "probe=" + p },
				withCookie: true,
				wantStatus: http.StatusOK,
				wantBot:    beacon.BotHTTPClient,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {
					if rec.Method != "HEAD" || rec.Bytes != 0 {
						t.Errorf("method, bytes = %q, %d; want HEAD, 0", rec.Method, rec.Bytes)
					}
				},
			},
			{
				name:       "a first visit through the beacon gets a cookie",
				method:     http.MethodGet,
				query:      func(p string) string { return "probe=" + p },
				wantStatus: http.StatusOK,
				wantBot:    beacon.BotHTTPClient,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {
					if rec.CookieState != "new" {
						t.Errorf("cookie_state = %q, want new", rec.CookieState)
					}
				},
			},
			{
				name:       "a crawler is recorded with its flag and still gets its cookie and pixel",
				method:     http.MethodGet,
				query:      func(p string) string { return "e=pageview&probe=" + p },
				header:     map[string]string{"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Referer": "https://shop.example/p"},
				wantStatus: http.StatusOK,
				wantBot:    beacon.BotCrawler,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {
					if rec.CookieState != "new" || rec.Event != "pageview" || rec.URL != "https://shop.example/p" {
						t.Errorf("cookie_state, event, url = %q, %q, %q; want new, pageview, https://shop.example/p", rec.CookieState, rec.Event, rec.URL)
					}
				},
			},
			{
				name:       "a browser's beacon that names no page is flagged",
				method:     http.MethodGet,
				query:      func(p string) string { return "probe=" + p },
				header:     map[string]string{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"},
				withCookie: true,
				wantStatus: http.StatusOK,
				wantBot:    beacon.BotBeaconWithoutPage,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {},
			},
			{
				name:   "a sendBeacon POST of JSON as text/plain from the same site is recorded and answered 204 with CORS",
				method: http.MethodPost,
				query:  func(p string) string { return "probe=" + p + "&e=from-query" },
				ctype:  "text/plain;charset=UTF-8",
				body: `{"u":"https://shop.example/p?id=1","r":"https://search.example/","e":"pageview","qty":2,"gift":true,` +
					`"nested":{"x":1}}`,
				header:     map[string]string{"Origin": "http://" + host, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"},
				withCookie: true,
				wantStatus: http.StatusNoContent,
				wantHeader: map[string]string{
					"Cache-Control": "no-store", "Vary": "Origin",
					"Access-Control-Allow-Origin": "http://" + host, "Access-Control-Allow-Credentials": "true",
				},
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {
					if rec.URL != "https://shop.example/p?id=1" || rec.Referrer != "https://search.example/" || rec.Event != "pageview" {
						t.Errorf("url, referrer, event = %q, %q, %q; want the body's u, r and e", rec.URL, rec.Referrer, rec.Event)
					}
					want := map[string]string{"qty": "2", "gift": "true", "probe": p}
					if fmt.Sprint(rec.Params) != fmt.Sprint(want) {
						t.Errorf("params = %v, want %v", rec.Params, want)
					}
					if rec.Method != "POST" || rec.Status != 204 || rec.Bytes != 0 {
						t.Errorf("method, status, bytes = %q, %d, %d; want POST, 204, 0", rec.Method, rec.Status, rec.Bytes)
					}
				},
			},
			{
				name:       "a form POST from a new visitor gets a cookie, and the Referer is the page",
				method:     http.MethodPost,
				query:      func(p string) string { return "probe=" + p },
				ctype:      "application/x-www-form-urlencoded",
				body:       "e=add+to+cart&sku=A%2B1",
				header:     map[string]string{"Referer": "https://shop.example/cart"},
				wantStatus: http.StatusNoContent,
				wantHeader: map[string]string{"Cache-Control": "no-store", "Access-Control-Allow-Origin": ""},
				wantBot:    beacon.BotHTTPClient,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {
					if rec.URL != "https://shop.example/cart" || rec.Event != "add to cart" || rec.Params["sku"] != "A+1" {
						t.Errorf("url, event, params = %q, %q, %v; want the Referer, add to cart, sku A+1", rec.URL, rec.Event, rec.Params)
					}
				},
			},
			{
				name:       "a POST with a malformed body is still answered 204 and recorded with what could be read",
				method:     http.MethodPost,
				query:      func(p string) string { return "probe=" + p },
				ctype:      "application/json",
				body:       `{"e":"kept","u":"https://shop.example/p","broken":`,
				withCookie: true,
				wantStatus: http.StatusNoContent,
				wantBot:    beacon.BotHTTPClient,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {
					if rec.Event != "kept" || rec.URL != "https://shop.example/p" {
						t.Errorf("event, url = %q, %q; want kept, https://shop.example/p", rec.Event, rec.URL)
					}
				},
			},
			{
				name:       "a POST from another site is recorded but not shown the answer",
				method:     http.MethodPost,
				query:      func(p string) string { return "probe=" + p + "&u=https%3A%2F%2Fother.example%2F" },
				ctype:      "text/plain",
				body:       `{"e":"x"}`,
				header:     map[string]string{"Origin": "https://other.example"},
				withCookie: true,
				wantStatus: http.StatusNoContent,
				wantHeader: map[string]string{"Vary": "Origin", "Access-Control-Allow-Origin": "", "Access-Control-Allow-Credentials": ""},
				wantBot:    beacon.BotHTTPClient,
				wantRecord: func(t *testing.T, rec edgeRecord, p string) {},
			},
			{
				name:       "a POST body larger than 16 KiB is refused with 413, no cookie, no record",
				method:     http.MethodPost,
				query:      func(p string) string { return "probe=" + p },
				ctype:      "text/plain",
				body:       `{"e":"` + strings.Repeat("x", beacon.MaxBodyLen) + `"}`,
				wantStatus: http.StatusRequestEntityTooLarge,
			},
			{
				name:       "a same-site CORS preflight is allowed, without cookie or record",
				method:     http.MethodOptions,
				query:      func(p string) string { return "probe=" + p },
				header:     map[string]string{"Origin": "http://" + host, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
				wantStatus: http.StatusNoContent,
				wantHeader: map[string]string{
					"Access-Control-Allow-Origin": "http://" + host, "Access-Control-Allow-Credentials": "true",
					"Access-Control-Allow-Methods": "POST, GET, HEAD", "Access-Control-Allow-Headers": "Content-Type", "Vary": "Origin",
				},
			},
			{
				name:       "a CORS preflight from another site is not allowed",
				method:     http.MethodOptions,
				query:      func(p string) string { return "probe=" + p },
				header:     map[string]string{"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
				withCookie: true,
				wantStatus: http.StatusNoContent,
				wantHeader: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""},
			},
			{
				name:       "a PUT is refused with 405 and not recorded",
				method:     http.MethodPut,
				query:      func(p string) string { return "probe=" + p },
				withCookie: true,
				wantStatus: http.StatusMethodNotAllowed,
				wantHeader: map[string]string{"Allow": "GET, HEAD, POST, OPTIONS"},
			},
			{
				name:       "a DELETE from a new visitor is refused before a cookie is issued",
				method:     http.MethodDelete,
				query:      func(p string) string { return "probe=" + p },
				wantStatus: http.StatusMethodNotAllowed,
				wantHeader: map[string]string{"Allow": "GET, HEAD, POST, OPTIONS"},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := probe()
				hdr := map[string]string{}
				for k, v := range tc.header {
					hdr[k] = v
				}
				var sentID string
				if tc.withCookie {
					hdr["Cookie"], sentID = valid()
				}
				before := readCounters(t)
				req := newRequest(t, tc.method, e.base+"/b.gif?"+tc.query(p), hdr)
				if tc.body != "" {
					req.Body, req.ContentLength = io.NopCloser(strings.NewReader(tc.body)), int64(len(tc.body))
					req.Header.Set("Content-Type", tc.ctype)
				}
				resp := e.do(t, req)
				if resp.status != tc.wantStatus {
					t.Fatalf("status = %d, want %d", resp.status, tc.wantStatus)
				}
				for k, v := range tc.wantHeader {
					if got := strings.Join(resp.header.Values(k), ", "); got != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
				setReason := ""
				if !tc.withCookie && tc.wantRecord != nil {
					setReason = "new"
					checkSetCookie(t, resp.header, hostOnly)
				} else if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
					t.Errorf("Set-Cookie = %q, want none", sc)
				}
				if tc.wantRecord == nil {
					unrecorded++
					checkDelta(t, before, wantDelta{setReason: setReason})
					return
				}
				if tc.method == http.MethodPost {
					if len(resp.body) != 0 {
						t.Errorf("body = %d bytes, want none", len(resp.body))
					}
				} else {
					checkPixel(t, tc.method, resp)
				}
				c := e.records.find(t, p)
				checkKafkaMessage(t, c)
				rec := c.rec
				if rec.Kind != "beacon" || rec.Status != tc.wantStatus || rec.Host != host || rec.IP != "127.0.0.1" {
					t.Errorf("kind, status, host, ip = %q, %d, %q, %q; want beacon, %d, %q, 127.0.0.1", rec.Kind, rec.Status, rec.Host, rec.IP, tc.wantStatus, host)
				}
				if tc.withCookie && (rec.CookieID != sentID || rec.CookieState != "returning") {
					t.Errorf("cookie_id, cookie_state = %s, %s; want %s, returning", rec.CookieID, rec.CookieState, sentID)
				}
				if rec.Bot != tc.wantBot {
					t.Errorf("bot = %q, want %q", rec.Bot, tc.wantBot)
				}
				tc.wantRecord(t, rec, p)
				checkDelta(t, before, wantDelta{beacon: 1, setReason: setReason})
			})
		}
	})

	t.Run("pages", func(t *testing.T) {
		validCookie := func() string { return "b2sid=" + s1.Sign(beacon.NewID(), time.Now()) }
		for _, tc := range []struct {
			name       string
			url        string // with %s for the probe
			header     map[string]string
			withCookie bool
			wantStatus int
			wantBody   string // "" to skip
			// wantCookieTail is the Set-Cookie attributes; "" when none.
			wantCookieTail   string
			wantCacheControl string
			// wantRecord checks the record; nil when none is made.
			wantRecord func(t *testing.T, rec edgeRecord)
		}{
			{
				name:             "a cacheable page that sets a cookie is made private to shared caches",
				url:              e.base + "/cached?probe=%s",
				wantStatus:       http.StatusOK,
				wantBody:         "a cacheable page",
				wantCookieTail:   hostOnly,
				wantCacheControl: "private, max-age=600",
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if rec.Status != 200 || rec.Bytes != int64(len("a cacheable page")) {
						t.Errorf("status, bytes = %d, %d; want 200, %d", rec.Status, rec.Bytes, len("a cacheable page"))
					}
				},
			},
			{
				name:             "a cacheable page for a visitor with a valid cookie is left as the upstream sent it",
				url:              e.base + "/cached?probe=%s",
				withCookie:       true,
				wantStatus:       http.StatusOK,
				wantBody:         "a cacheable page",
				wantCacheControl: "public, max-age=600",
				wantRecord:       func(t *testing.T, rec edgeRecord) {},
			},
			{
				// Caddy's error handling writes the page after b2s_collect
				// returns, past its Cache-Control guard: no cookie on it.
				name:       "a page whose handler fails with 503 gets no cookie and is recorded with 503",
				url:        e.base + "/fail?probe=%s",
				wantStatus: http.StatusServiceUnavailable,
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if rec.Status != 503 || rec.Kind != "page" || rec.CookieState != "new" {
						t.Errorf("status, kind, cookie_state = %d, %q, %q; want 503, page, new", rec.Status, rec.Kind, rec.CookieState)
					}
				},
			},
			{
				name:             "a handle_errors page, which may be cached as a shared page, gets no cookie",
				url:              e.shop + "/shop/fail?probe=%s",
				wantStatus:       http.StatusServiceUnavailable,
				wantBody:         "shop error",
				wantCacheControl: "public, max-age=60",
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if rec.Status != 503 || rec.CookieState != "new" {
						t.Errorf("status, cookie_state = %d, %q; want 503, new", rec.Status, rec.CookieState)
					}
				},
			},
			{
				name:             "a page whose handler writes nothing still gets its cookie",
				url:              e.base + "/empty?probe=%s",
				wantStatus:       http.StatusOK,
				wantCookieTail:   hostOnly,
				wantCacheControl: "private",
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if rec.Status != 200 || rec.Bytes != 0 {
						t.Errorf("status, bytes = %d, %d; want 200, 0", rec.Status, rec.Bytes)
					}
				},
			},
			{
				name:       "a failing page for a returning visitor is recorded with 503 too",
				url:        e.base + "/fail?probe=%s",
				withCookie: true,
				wantStatus: http.StatusServiceUnavailable,
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if rec.Status != 503 || rec.CookieState != "returning" {
						t.Errorf("status, cookie_state = %d, %q; want 503, returning", rec.Status, rec.CookieState)
					}
				},
			},
			{
				name:       "a request through a trusted proxy is recorded with the forwarded client IP and its location",
				url:        e.base + "/?probe=%s",
				header:     map[string]string{"X-Forwarded-For": "81.2.69.142"},
				withCookie: true,
				wantStatus: http.StatusOK,
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if rec.IP != "81.2.69.142" {
						t.Errorf("ip = %q, want the forwarded 81.2.69.142", rec.IP)
					}
					if g := rec.Geo; g == nil || g.Country != "GB" || g.Subdivision != "ENG" || g.City != "London" || g.Lat == nil || g.Lon == nil {
						t.Errorf("geo = %+v, want GB, ENG, London with coordinates", g)
					}
				},
			},
			{
				name:       "a loopback client has no location",
				url:        e.base + "/?probe=%s",
				withCookie: true,
				wantStatus: http.StatusOK,
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if rec.IP != "127.0.0.1" || rec.Geo != nil {
						t.Errorf("ip, geo = %q, %+v; want 127.0.0.1 and no geo", rec.IP, rec.Geo)
					}
				},
			},
			{
				name:           "a cookie_domain puts a normalised Domain on the cookie",
				url:            e.shop + "/shop/item?probe=%s",
				wantStatus:     http.StatusOK,
				wantBody:       "shop",
				wantCookieTail: "; Path=/; Domain=b2s.test; Max-Age=34560000; HttpOnly; SameSite=Lax",
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if want := strings.TrimPrefix(e.shop, "http://"); rec.Host != want {
						t.Errorf("host = %q, want %q", rec.Host, want)
					}
				},
			},
			{
				name:       "a path outside the b2s_collect matcher is neither identified nor recorded",
				url:        e.shop + "/about?probe=%s",
				wantStatus: http.StatusOK,
				wantBody:   "shop",
			},
			{
				name:       "the default beacon path is an ordinary page where another beacon is configured",
				url:        e.shop + "/shop/b.gif?probe=%s",
				withCookie: true,
				wantStatus: http.StatusOK,
				wantBody:   "shop",
				wantRecord: func(t *testing.T, rec edgeRecord) {
					if rec.Kind != "page" {
						t.Errorf("kind = %q, want page", rec.Kind)
					}
				},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := probe()
				hdr := map[string]string{}
				for k, v := range tc.header {
					hdr[k] = v
				}
				if tc.withCookie {
					hdr["Cookie"] = validCookie()
				}
				before := readCounters(t)
				resp := e.do(t, newRequest(t, http.MethodGet, fmt.Sprintf(tc.url, p), hdr))
				if resp.status != tc.wantStatus {
					t.Fatalf("status = %d, want %d", resp.status, tc.wantStatus)
				}
				if tc.wantBody != "" && string(resp.body) != tc.wantBody {
					t.Errorf("body = %q, want %q", resp.body, tc.wantBody)
				}
				setReason := ""
				if tc.wantCookieTail != "" {
					setReason = "new"
					checkSetCookie(t, resp.header, tc.wantCookieTail)
				} else if sc := resp.header.Values("Set-Cookie"); len(sc) != 0 {
					t.Errorf("Set-Cookie = %q, want none", sc)
				}
				if tc.wantCacheControl != "" {
					if got := strings.Join(resp.header.Values("Cache-Control"), ", "); got != tc.wantCacheControl {
						t.Errorf("Cache-Control = %q, want %q", got, tc.wantCacheControl)
					}
				}
				if tc.wantRecord == nil {
					unrecorded++
					checkDelta(t, before, wantDelta{setReason: setReason})
					return
				}
				c := e.records.find(t, p)
				checkKafkaMessage(t, c)
				if tc.withCookie && c.rec.CookieState != "returning" {
					t.Errorf("cookie_state = %q, want returning", c.rec.CookieState)
				}
				// Go's client sends its own User-Agent: an http_client.
				if c.rec.Bot != beacon.BotHTTPClient {
					t.Errorf("bot = %q, want %q", c.rec.Bot, beacon.BotHTTPClient)
				}
				tc.wantRecord(t, c.rec)
				checkDelta(t, before, wantDelta{page: 1, setReason: setReason})
			})
		}
	})

	t.Run("the JavaScript tag is served cacheable, without a cookie or a record", func(t *testing.T) {
		p := probe()
		unrecorded++
		before := readCounters(t)
		resp := e.do(t, newRequest(t, http.MethodGet, e.base+"/b.js?probe="+p, nil))
		if resp.status != http.StatusOK {
			t.Fatalf("status = %d, want 200", resp.status)
		}
		for k, want := range map[string]string{
			"Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "public, max-age=3600",
			"X-Content-Type-Options": "nosniff", "Set-Cookie": "",
		} {
			if got := strings.Join(resp.header.Values(k), ", "); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		etag := resp.header.Get("ETag")
		if !regexp.MustCompile(`^"[A-Za-z0-9_-]+"$`).MatchString(etag) {
			t.Errorf("ETag = %q, want a strong quoted tag", etag)
		}
		if n := len(resp.body); n == 0 || n > 1024 {
			t.Errorf("script is %d bytes, want a few hundred", n)
		}
		checkTag(t, resp.body, "/b.gif")

		again := e.do(t, newRequest(t, http.MethodGet, e.base+"/b.js", map[string]string{"If-None-Match": etag}))
		if again.status != http.StatusNotModified || len(again.body) != 0 {
			t.Errorf("revalidation: status %d with %d bytes, want 304 and none", again.status, len(again.body))
		}
		post := e.do(t, newRequest(t, http.MethodPost, e.base+"/b.js", nil))
		if post.status != http.StatusMethodNotAllowed || post.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("POST: status %d, Allow %q; want 405, GET, HEAD", post.status, post.header.Get("Allow"))
		}
		checkDelta(t, before, wantDelta{})
	})

	for _, tc := range []struct {
		name       string
		withCookie bool
	}{
		{name: "a WebSocket upgrade by a returning visitor is recorded with 101", withCookie: true},
		{name: "a WebSocket upgrade by a new visitor is recorded with 101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := probe()
			conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(e.port)), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			hdr := map[string]string{"Connection": "Upgrade", "Upgrade": "b2s-test"}
			if tc.withCookie {
				hdr["Cookie"] = "b2sid=" + s1.Sign(beacon.NewID(), time.Now())
			}
			req := newRequest(t, http.MethodGet, e.base+"/ws?probe="+p, hdr)
			if err := req.Write(conn); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status = %d, want 101", resp.StatusCode)
			}
			if _, err := io.WriteString(conn, "ping\n"); err != nil {
				t.Fatal(err)
			}
			if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
				t.Fatalf("echo = %q, %v; want ping", line, err)
			}
			conn.Close()
			rec := e.records.find(t, p).rec
			if rec.Status != http.StatusSwitchingProtocols {
				t.Errorf("recorded status %d, want 101", rec.Status)
			}
		})
	}

	t.Run("a page the upstream aborts in the middle of its body is still recorded", func(t *testing.T) {
		p := probe()
		req := newRequest(t, http.MethodGet, e.base+"/abort?probe="+p, map[string]string{"Cookie": "b2sid=" + s1.Sign(beacon.NewID(), time.Now())})
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status = %d, want the upstream's 200", resp.StatusCode)
		}
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("reading the body succeeded; want it cut short")
		}
		resp.Body.Close()
		c, ok := e.records.lookFor(t, p, 3*time.Second)
		if !ok {
			// reverse_proxy aborts with panic(http.ErrAbortHandler), which
			// unwinds through ServeHTTP.
			unrecorded++
			t.Fatal("no record for a response cut short")
		}
		if c.rec.Status != http.StatusOK || c.rec.Bytes != int64(len("only ten..")) {
			t.Errorf("status, bytes = %d, %d; want 200 and the 10 bytes sent", c.rec.Status, c.rec.Bytes)
		}
	})

	t.Run("over HTTPS the cookie is Secure and the URL https", func(t *testing.T) {
		p := probe()
		// Caddy may still be issuing the certificate from its internal CA.
		var resp response
		deadline := time.Now().Add(15 * time.Second)
		for {
			r, err := e.client.Do(newRequest(t, http.MethodGet, e.secure+"/?probe="+p, nil))
			if err == nil {
				body, _ := io.ReadAll(r.Body)
				r.Body.Close()
				resp = response{r.StatusCode, r.Header, body}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v", e.secure, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if resp.status != http.StatusOK || string(resp.body) != "secure" {
			t.Fatalf("status, body = %d, %q; want 200, secure", resp.status, resp.body)
		}
		checkSetCookie(t, resp.header, hostOnly+"; Secure")
		if c, err := http.ParseSetCookie(resp.header.Get("Set-Cookie")); err != nil || !c.Secure {
			t.Errorf("cookie %q is not Secure (%v)", resp.header.Get("Set-Cookie"), err)
		}
		rec := e.records.find(t, p).rec
		if want := e.secure + "/?probe=" + p; rec.URL != want {
			t.Errorf("url = %q, want %q", rec.URL, want)
		}
	})

	t.Run("every record reached Kafka once and the metrics agree", func(t *testing.T) {
		// stats and the collectors are process-wide: compare what moved
		// since this edge started with what this test read from Kafka.
		wantRecords := n - unrecorded
		e.records.waitCount(t, wantRecords)
		// The shipper counts an acknowledgement just after Kafka has the
		// records; give it a moment.
		var c counters
		deadline := time.Now().Add(5 * time.Second)
		for {
			c = readCounters(t)
			if c.shipped-start.shipped >= uint64(wantRecords) || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		kinds := map[string]int{}
		seen := map[string]bool{}
		for _, r := range e.records.got {
			kinds[r.rec.Kind]++
			if seen[r.rec.EventID] {
				t.Errorf("event_id %s read twice", r.rec.EventID)
			}
			seen[r.rec.EventID] = true
		}
		for _, d := range []struct {
			name      string
			got, want int
		}{
			{"records read from Kafka", len(e.records.got), wantRecords},
			{"records spooled (stats.Accepted)", int(c.accepted - start.accepted), wantRecords},
			{"records shipped (stats.Shipped)", int(c.shipped - start.shipped), wantRecords},
			{"records dropped, spool full", int(c.full - start.full), 0},
			{"records dropped, spool error", int(c.spoolErr - start.spoolErr), 0},
			{"kafka write errors", int(c.writeErrors - start.writeErrors), 0},
			{"b2s_records_total{kind=page}", int(c.page - start.page), kinds["page"]},
			{"b2s_records_total{kind=beacon}", int(c.beacon - start.beacon), kinds["beacon"]},
		} {
			if d.got != d.want {
				t.Errorf("%s: %d since the edge started, want %d", d.name, d.got, d.want)
			}
		}
		if w := int(c.writes - start.writes); w < 1 || w > wantRecords {
			t.Errorf("kafka writes (stats.Writes): %d for %d records, want at least one and at most one a record", w, wantRecords)
		}

		// The collectors are registered in Caddy's registry, which the
		// admin endpoint serves. The shipper has caught up: nothing is
		// waiting and it is not degraded (the lag drops to 0 as soon as
		// it finds the spool empty after its last acknowledgement).
		var scraped map[string]float64
		deadline = time.Now().Add(5 * time.Second)
		for {
			scraped = scrapeMetrics(t, e.admin+"/metrics")
			if scraped["b2s_shipper_lag_seconds"] == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, m := range []struct {
			series string
			want   float64
		}{
			{`b2s_records_total{kind="page"}`, c.page},
			{`b2s_records_total{kind="beacon"}`, c.beacon},
			{`b2s_cookies_set_total{reason="new"}`, c.set["new"]},
			{`b2s_cookies_set_total{reason="reset"}`, c.set["reset"]},
			{`b2s_cookies_set_total{reason="resign"}`, c.set["resign"]},
			{`b2s_cookies_set_total{reason="refresh"}`, c.set["refresh"]},
			{`b2s_records_spooled_total`, float64(c.accepted)},
			{`b2s_records_shipped_total`, float64(c.shipped)},
			{`b2s_records_dropped_total{reason="spool_full"}`, float64(c.full)},
			{`b2s_records_dropped_total{reason="spool_error"}`, float64(c.spoolErr)},
			{`b2s_kafka_writes_total`, float64(c.writes)},
			{`b2s_kafka_write_errors_total`, float64(c.writeErrors)},
			{`b2s_spool_repairs_total`, float64(stats.SpoolRepairs.Load())},
			{`b2s_spool_bytes`, float64(sinkBytes())},
			{`b2s_spool_max_bytes`, DefaultSpoolMaxSize},
			{`b2s_shipper_lag_seconds`, 0},
			{`b2s_sink_degraded`, 0},
		} {
			got, ok := scraped[m.series]
			if !ok {
				t.Errorf("%s is missing from the admin /metrics", m.series)
				continue
			}
			if got != m.want {
				t.Errorf("%s = %v on /metrics, want %v", m.series, got, m.want)
			}
		}
	})

	t.Run("every b2s metric is on the admin /metrics with HELP text", func(t *testing.T) {
		help := scrapeHelp(t, e.admin+"/metrics")
		for _, name := range []string{
			"b2s_records_total",
			"b2s_cookies_set_total",
			"b2s_mail_links_total",
			"b2s_records_spooled_total",
			"b2s_records_shipped_total",
			"b2s_records_dropped_total",
			"b2s_kafka_writes_total",
			"b2s_kafka_write_errors_total",
			"b2s_spool_repairs_total",
			"b2s_spool_bytes",
			"b2s_spool_max_bytes",
			"b2s_shipper_lag_seconds",
			"b2s_sink_degraded",
		} {
			h, ok := help[name]
			switch {
			case !ok:
				t.Errorf("%s has no HELP line on the admin /metrics", name)
			case len(strings.Fields(h)) < 3:
				t.Errorf("%s has HELP %q, want a sentence", name, h)
			}
		}
		for name := range help {
			if strings.Contains(name, "queue") && strings.HasPrefix(name, "b2s_") {
				t.Errorf("%s is still served; the in-memory queue is gone", name)
			}
		}
	})
}

// checkTag checks the served JavaScript tag with Node, when it is
// installed: that it parses, sends one pageview to beaconPath on load with
// sendBeacon, another on a pushState to a new URL, none on a replaceState
// to the same URL, falls back to a pixel without sendBeacon, and sends
// nothing under Global Privacy Control or data-optout.
func checkTag(t *testing.T, js []byte, beaconPath string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the tag's JavaScript is not checked")
	}
	dir := t.TempDir()
	tag := filepath.Join(dir, "tag.js")
	if err := os.WriteFile(tag, js, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", tag).CombinedOutput(); err != nil {
		t.Fatalf("node --check: %v\n%s", err, out)
	}
	run := filepath.Join(dir, "run.js")
	if err := os.WriteFile(run, []byte(tagHarness), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, run, tag).CombinedOutput()
	if err != nil {
		t.Fatalf("running the tag: %v\n%s", err, out)
	}
	want := strings.Join([]string{
		`load: beacon ` + beaconPath + ` {"u":"https://www.b2s.com/a","r":"https://search.example/","e":"pageview"}`,
		`pushState: beacon ` + beaconPath + ` {"u":"https://www.b2s.com/b","r":"https://www.b2s.com/a","e":"pageview"}`,
		`replaceState to the same URL:`,
		`popstate: beacon ` + beaconPath + ` {"u":"https://www.b2s.com/a","r":"https://www.b2s.com/b","e":"pageview"}`,
		`no sendBeacon: image ` + beaconPath + `?e=pageview&u=https%3A%2F%2Fwww.b2s.com%2Fa&r=https%3A%2F%2Fsearch.example%2F`,
		`globalPrivacyControl:`,
		`data-optout:`,
	}, "\n") + "\n"
	if string(out) != want {
		t.Errorf("the tag sent\n%s\nwant\n%s", out, want)
	}
}

// tagHarness runs the tag (argv[2]) in fake browsers and prints what it
// sends.
const tagHarness = `
const fs = require("fs"), vm = require("vm");
const js = fs.readFileSync(process.argv[2], "utf8");
function browser(opts) {
	const sent = [], listeners = {};
	const ctx = {
		location: {href: "https://www.b2s.com/a"},
		document: {referrer: "https://search.example/", currentScript: {hasAttribute: a => !!opts.optout && a === "data-optout"},
			documentElement: {hasAttribute: () => false}},
		navigator: opts.noBeacon ? {} : {globalPrivacyControl: !!opts.gpc, sendBeacon: (p, b) => { sent.push("beacon " + p + " " + b); return true; }},
		Image: function () { Object.defineProperty(this, "src", {set: v => sent.push("image " + v)}); },
		JSON, encodeURIComponent,
	};
	ctx.window = {history: {pushState() {}, replaceState() {}}, addEventListener: (e, f) => { listeners[e] = f; }};
	vm.runInNewContext(js, ctx);
	return {ctx, sent, listeners, take() { const s = sent.join("; "); sent.length = 0; return s; }};
}
const out = [];
let b = browser({});
out.push("load: " + b.take());
b.ctx.location.href = "https://www.b2s.com/b"; b.ctx.window.history.pushState({}, "", "/b");
out.push("pushState: " + b.take());
b.ctx.window.history.replaceState({}, "", "/b");
out.push("replaceState to the same URL: " + b.take());
b.ctx.location.href = "https://www.b2s.com/a"; b.listeners.popstate();
out.push("popstate: " + b.take());
out.push("no sendBeacon: " + browser({noBeacon: true}).take());
out.push("globalPrivacyControl: " + browser({gpc: true}).take());
out.push("data-optout: " + browser({optout: true}).take());
console.log(out.join("\n").replace(/: \n/g, ":\n").replace(/ +$/gm, ""));
`
