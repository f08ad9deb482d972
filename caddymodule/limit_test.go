package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/logship"
)

// limitedCollect is a b2s_collect with the given client limit, appending
// to a spool of its own, and a clock the test sets.
func limitedCollect(t *testing.T, limit *ClientLimit, now *time.Time) (*Collect, *logship.Spool) {
	t.Helper()
	app := &App{ClientLimit: limit}
	sp := setUpApp(t, app, func() time.Time { return *now })
	c := new(Collect)
	if err := c.bind(caddy.Context{}, app, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	return c, sp
}

// setUpApp sets app up as a config load would, without Caddy around it:
// defaults, the test's key, the clock now, a spool of its own (returned),
// then Validate.
func setUpApp(t *testing.T, app *App, now func() time.Time) *logship.Spool {
	t.Helper()
	sp, err := logship.OpenSpool(logship.SpoolConfig{Dir: t.TempDir(), Fsync: logship.FsyncNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	app.setDefaults()
	app.now = now
	if err := app.setup([][]byte{[]byte(testKey1)}, sp); err != nil {
		t.Fatal(err)
	}
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	return sp
}

// beaconFrom sends a beacon from ip, with the cookie if given, marked
// with marker, and returns the Set-Cookie value, if any.
func beaconFrom(t *testing.T, c *Collect, ip, cookie, marker string) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/b.gif?e=pageview&m="+marker, nil)
	r.Header.Set("Referer", "https://www.b2s.com/products")
	if cookie != "" {
		r.Header.Set("Cookie", DefaultCookieName+"="+cookie)
	}
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip}))
	w := httptest.NewRecorder()
	if err := c.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusOK || w.Body.Len() != len(beacon.Pixel) {
		t.Fatalf("beacon answered %d with %d bytes, want 200 and the pixel", w.Code, w.Body.Len())
	}
	for _, sc := range w.Result().Cookies() {
		if sc.Name == DefaultCookieName {
			return sc.Value
		}
	}
	return ""
}

// spooled counts the spooled records by their m parameter.
func spooled(t *testing.T, sp *logship.Spool) map[string]int {
	t.Helper()
	stop := make(chan struct{})
	close(stop)
	n := map[string]int{}
	for {
		entries, pos, err := sp.Read(stop, nil, 1<<20, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			return n
		}
		for _, e := range entries {
			var rec struct {
				Params map[string]string `json:"params"`
			}
			if err := json.Unmarshal(e.Value, &rec); err != nil {
				t.Fatal(err)
			}
			n[rec.Params["m"]]++
		}
		if err := sp.Ack(pos); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClientLimit(t *testing.T) {
	t.Run("a flood from one address is bounded while an office behind one address loses nothing", func(t *testing.T) {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, sp := limitedCollect(t, nil, &now)
		dropped0 := clientLimiter.Dropped()
		// 300 people of one office behind 198.51.100.1 arrive within a
		// minute and keep their cookies; each then sends a beacon every 5s
		// for ten minutes.
		cookies := make([]string, 300)
		for i := range cookies {
			now = now.Add(200 * time.Millisecond)
			cookies[i] = beaconFrom(t, c, "198.51.100.1", "", "office")
			if cookies[i] == "" {
				t.Fatal("a first visit got no cookie")
			}
		}
		// Meanwhile a bot without cookies sends 200 beacons a second from
		// 203.0.113.66.
		flood := 0
		for step := range 600 * 5 { // 10 minutes in 200ms steps
			now = now.Add(200 * time.Millisecond)
			for range 40 {
				beaconFrom(t, c, "203.0.113.66", "", "flood")
				flood++
			}
			if step%25 == 0 { // each person every 5s
				for _, ck := range cookies {
					beaconFrom(t, c, "198.51.100.1", ck, "office")
				}
			}
		}
		got := spooled(t, sp)
		if want := 300 + 300*600*5/25; got["office"] != want {
			t.Errorf("office: %d records spooled, want every one of %d", got["office"], want)
		}
		// The address limit: a burst of 3000, then 50 a second over the
		// 599.8s from the flood's first record to its last.
		if want := DefaultAddressBurst + DefaultAddressRate*2999/5; got["flood"] < want-1 || got["flood"] > want+1 {
			t.Errorf("flood: %d of %d records spooled, want about %d", got["flood"], flood, want)
		}
		if d := clientLimiter.Dropped() - dropped0; d != uint64(flood-got["flood"]) {
			t.Errorf("dropped %d, want every record of the flood not spooled counted: %d", d, flood-got["flood"])
		}
	})

	t.Run("a visitor who keeps a cookie is bounded by its own limit", func(t *testing.T) {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, sp := limitedCollect(t, &ClientLimit{VisitorRate: 2, VisitorBurst: 10}, &now)
		ck := beaconFrom(t, c, "192.0.2.1", "", "first")
		for range 100 {
			beaconFrom(t, c, "192.0.2.1", ck, "loop")
		}
		// One second on: two more.
		now = now.Add(time.Second)
		for range 100 {
			beaconFrom(t, c, "192.0.2.1", ck, "later")
		}
		got := spooled(t, sp)
		if got["first"] != 1 || got["loop"] != 10 || got["later"] != 2 {
			t.Errorf("spooled %v, want first 1 (an address's record), loop 10 (the burst), later 2 (2 a second)", got)
		}
	})

	t.Run("client_limit off spools everything", func(t *testing.T) {
		now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
		c, sp := limitedCollect(t, &ClientLimit{Off: true}, &now)
		for range 5000 {
			beaconFrom(t, c, "203.0.113.67", "", "flood")
		}
		if got := spooled(t, sp)["flood"]; got != 5000 {
			t.Errorf("spooled %d of 5000 with the limit off", got)
		}
	})
}

func TestClientLimitValidation(t *testing.T) {
	for _, tc := range []struct {
		limit ClientLimit
		want  string
	}{
		{ClientLimit{VisitorRate: -1}, "visitor -1 0"},
		{ClientLimit{AddressRate: 1e9}, "address 1e+09 0"},
		{ClientLimit{AddressRate: 0.0001}, "address 0.0001 0"},
		{ClientLimit{VisitorRate: 5, VisitorBurst: -3}, "visitor 5 -3"},
	} {
		t.Run(fmt.Sprint(tc.want), func(t *testing.T) {
			err := tc.limit.validate()
			if err == nil || !strings.Contains(err.Error(), "b2s: client_limit: "+tc.want) {
				t.Errorf("validate() = %v, want an error naming client_limit %s", err, tc.want)
			}
		})
	}
	for _, ok := range []ClientLimit{{}, {Off: true, VisitorRate: -1}, {VisitorRate: 0.001, AddressRate: 1e6, AddressBurst: 1}} {
		if err := ok.validate(); err != nil {
			t.Errorf("validate(%+v) = %v, want nil", ok, err)
		}
	}
}
