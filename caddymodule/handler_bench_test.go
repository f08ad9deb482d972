package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/geo"
	"github.com/b2scom/b2s-edge/internal/geotest"
	"github.com/b2scom/b2s-edge/logship"
)

// benchCollect is a b2s_collect set up as Provision does, without Caddy
// around it: the plugin's own work per request, spool append included.
func benchCollect(b *testing.B) *Collect {
	b.Helper()
	sp, err := logship.OpenSpool(logship.SpoolConfig{Dir: b.TempDir(), Fsync: time.Second, MaxSize: 64 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	// One client at millions of records a second: limits it never
	// reaches, so every record is appended and the check is still made.
	app := &App{ClientLimit: &ClientLimit{VisitorRate: 1e6, VisitorBurst: 1 << 40, AddressRate: 1e6, AddressBurst: 1 << 40}}
	app.setDefaults()
	if err := app.setup([][]byte{[]byte("bench-key-0123456789abcdef0123456789")}, sp); err != nil {
		b.Fatal(err)
	}
	c := new(Collect)
	if err := c.bind(caddy.Context{}, app, zap.NewNop()); err != nil {
		b.Fatal(err)
	}
	dropped := clientLimiter.Dropped()
	b.Cleanup(func() {
		if d := clientLimiter.Dropped() - dropped; d != 0 {
			b.Errorf("%d records dropped by the client limit: the benchmark measured the drop, not the append", d)
		}
	})
	return c
}

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func benchRequest(target, cookie string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36")
	r.Header.Set("Referer", "https://www.b2s.com/products/cnc-spindle")
	if cookie != "" {
		r.Header.Set("Cookie", "_ga=GA1.2.3; b2sid="+cookie)
	}
	ctx := context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "203.0.113.7"})
	return r.WithContext(ctx)
}

// BenchmarkBeaconHandler is the whole beacon path of the plugin: cookie
// verify or issue, GeoIP lookups (geo=city: the City database; geo=all:
// City, ASN and Anonymous IP), record build and encode, spool append,
// pixel.
func BenchmarkBeaconHandler(b *testing.B) {
	c := benchCollect(b)
	valid := c.app.signer.Sign(beacon.NewID(), time.Now())
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	dir := b.TempDir()
	cityPath, asnPath, anonPath := filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb"), filepath.Join(dir, "anon.mmdb")
	if err := geotest.WriteCityDB(cityPath, []geotest.City{{Network: "203.0.113.0/24", Country: "CN", Subdivision: "GD", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579}}); err != nil {
		b.Fatal(err)
	}
	if err := geotest.WriteASNDB(asnPath, []geotest.ASN{{Network: "203.0.113.0/24", Number: 4134, Org: "Chinanet"}}); err != nil {
		b.Fatal(err)
	}
	if err := geotest.WriteAnonymousDB(anonPath, []geotest.Anonymous{{Network: "203.0.113.0/24", VPN: true, Hosting: true}}); err != nil {
		b.Fatal(err)
	}
	city, err := geo.OpenReloading(cityPath, geo.City, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	asn, err := geo.OpenReloading(asnPath, geo.ASN, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	anon, err := geo.OpenReloading(anonPath, geo.Anonymous, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, cookie string
		city         *geo.Reloading[beacon.Geo]
		asn          *geo.Reloading[beacon.ASN]
		anon         *geo.Reloading[beacon.Anon]
	}{
		{"cookie=valid", valid, nil, nil, nil},
		{"cookie=none", "", nil, nil, nil},
		{"cookie=valid/geo=city", valid, city, nil, nil},
		{"cookie=none/geo=city", "", city, nil, nil},
		{"cookie=valid/geo=all", valid, city, asn, anon},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c.app.geo, c.app.asn, c.app.anon = bc.city, bc.asn, bc.anon
			r := benchRequest("/b.gif?e=pageview&product=42", bc.cookie)
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				if err := c.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPageHandler is a page passed on to a no-op next handler: a
// User-Agent seen before (the bot class and client cached), the same
// with Chromium's Client Hints, and a new User-Agent every request (the
// cache missed: the built-in bot list's 1,500 patterns and the parse).
func BenchmarkPageHandler(b *testing.B) {
	c := benchCollect(b)
	valid := c.app.signer.Sign(beacon.NewID(), time.Now())
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	w := &discard{h: http.Header{}}
	b.Run("ua=cached", func(b *testing.B) {
		r := benchRequest("/products/cnc-spindle?ref=home", valid)
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			if err := c.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ua=cached/hints", func(b *testing.B) {
		r := benchRequest("/products/cnc-spindle?ref=home", valid)
		r.Header.Set("Sec-CH-UA-Full-Version-List", `"Google Chrome";v="131.0.6778.86", "Chromium";v="131.0.6778.86", "Not_A Brand";v="24.0.0.0"`)
		r.Header.Set("Sec-CH-UA-Platform", `"Windows"`)
		r.Header.Set("Sec-CH-UA-Platform-Version", `"15.0.0"`)
		r.Header.Set("Sec-CH-UA-Mobile", "?0")
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			if err := c.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ua=new", func(b *testing.B) {
		r := benchRequest("/products/cnc-spindle?ref=home", valid)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			i++
			r.Header["User-Agent"] = []string{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 b" + strconv.Itoa(i)}
			clear(w.h)
			if err := c.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	})
}
