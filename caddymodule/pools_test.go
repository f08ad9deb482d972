package caddymodule

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/b2scom/b2s-edge/logship"
)

// provisionApp provisions app as a config load would, and releases it
// (Cleanup, then the context) when the test ends.
func provisionApp(t *testing.T, app *App) *App {
	t.Helper()
	provision(t, app)
	return app
}

// provision provisions app as a config load would and returns the function
// that releases it as the end of that config does (Cleanup, then the
// context). It is safe to call more than once, and is called when the test
// ends if the test did not.
func provision(t *testing.T, app *App) (release func()) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := app.Provision(ctx); err != nil {
		cancel()
		t.Fatalf("provisioning: %v", err)
	}
	if err := app.Validate(); err != nil {
		_ = app.Cleanup()
		cancel()
		t.Fatalf("validating: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = app.Cleanup()
			cancel()
		})
	}
	t.Cleanup(release)
	return release
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Write beside, then rename over, as geoipupdate does.
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// deadBroker returns host:port of a TCP port on loopback that nothing
// listens on: a broker that is down, which refuses connections at once.
func deadBroker(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// checkSpoolOpen fails t unless dir is held open by this process
// (open), or free for another process to open (!open).
func checkSpoolOpen(t *testing.T, dir string, open bool) {
	t.Helper()
	sp, err := logship.OpenSpool(logship.SpoolConfig{Dir: dir, Fsync: logship.FsyncNever})
	switch {
	case open && err == nil:
		sp.Close()
		t.Errorf("another spool opened %s, which a config still holds", dir)
	case !open && err != nil:
		t.Errorf("the spool in %s is still held after every config let go: %v", dir, err)
	case !open:
		if err := sp.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestPools(t *testing.T) {
	broker := deadBroker(t)
	kafka := func(topic string) *KafkaConfig {
		return &KafkaConfig{Brokers: []string{broker}, Topic: topic}
	}
	app := func(spool, topic string) *App {
		return &App{Secrets: []string{testKey1}, Spool: spool, Kafka: kafka(topic)}
	}

	for _, tc := range []struct {
		scenario string
		function func(t *testing.T)
	}{
		{
			scenario: "two configs naming the same spool directory share one spool and shipper",
			function: func(t *testing.T) {
				dir := t.TempDir()
				a := provisionApp(t, app(dir, "pool.same"))
				b := provisionApp(t, app(dir, "pool.same"))
				if a.sink != b.sink {
					t.Errorf("sinks %p and %p differ for one spool directory", a.sink, b.sink)
				}
				if refs, ok := sinks.References(dir); !ok || refs != 2 {
					t.Errorf("sink references = %d (pooled: %v), want 2", refs, ok)
				}
				if got := a.sink.spool.Dir(); got != dir {
					t.Errorf("spool directory = %q, want %q", got, dir)
				}
				checkSpoolOpen(t, dir, true)
			},
		},
		{
			scenario: "configs naming different spool directories get a spool each",
			function: func(t *testing.T) {
				a := provisionApp(t, app(t.TempDir(), "pool.same"))
				b := provisionApp(t, app(t.TempDir(), "pool.same"))
				if a.sink == b.sink || a.sink.spool == b.sink.spool {
					t.Errorf("configs with spools %s and %s share sink %p", a.Spool, b.Spool, a.sink)
				}
			},
		},
		{
			scenario: "a config's kafka topic and spool_max_size take effect when it starts, not before",
			function: func(t *testing.T) {
				dir := t.TempDir()
				first := app(dir, "pool.first")
				first.SpoolMaxSize = 8 << 20
				a := provisionApp(t, first)
				if got := a.sink.ship.Config().Topic; got != "pool.first" {
					t.Fatalf("topic = %q with one config, want pool.first", got)
				}
				second := app(dir, "pool.second")
				second.SpoolMaxSize = 16 << 20
				b := provisionApp(t, second)
				if got := b.sink.ship.Config().Topic; got != "pool.first" {
					t.Errorf("topic = %q after a second config was provisioned, want pool.first until it starts", got)
				}
				if err := b.Start(); err != nil {
					t.Fatal(err)
				}
				if got := b.sink.ship.Config().Topic; got != "pool.second" {
					t.Errorf("topic = %q after a second config started, want its pool.second", got)
				}
				if got := b.sink.spool.MaxSize(); got != 16<<20 {
					t.Errorf("spool maximum size = %d after a second config started, want its %d", got, 16<<20)
				}
			},
		},
		{
			scenario: "when the config in force goes away the previous config's settings come back",
			function: func(t *testing.T) {
				dir := t.TempDir()
				first := app(dir, "pool.first")
				first.SpoolMaxSize = 8 << 20
				a := provisionApp(t, first)
				second := app(dir, "pool.second")
				second.SpoolMaxSize = 16 << 20
				releaseSecond := provision(t, second)
				if err := second.Start(); err != nil {
					t.Fatal(err)
				}
				if got := a.sink.ship.Config().Topic; got != "pool.second" {
					t.Fatalf("topic = %q with the second config started, want pool.second", got)
				}
				releaseSecond()
				if got := a.sink.ship.Config().Topic; got != "pool.first" {
					t.Errorf("topic = %q after the newest config went away, want pool.first back", got)
				}
				if got := a.sink.spool.MaxSize(); got != 8<<20 {
					t.Errorf("spool maximum size = %d after the newest config went away, want %d back", got, 8<<20)
				}
				if refs, ok := sinks.References(dir); !ok || refs != 1 {
					t.Errorf("sink references = %d (pooled: %v), want 1", refs, ok)
				}
			},
		},
		{
			scenario: "a config that never starts (a failed reload) never puts its settings in force",
			function: func(t *testing.T) {
				dir := t.TempDir()
				a := provisionApp(t, app(dir, "pool.first"))
				releaseFailed := provision(t, app(dir, "pool.failed"))
				if got := a.sink.ship.Config().Topic; got != "pool.first" {
					t.Errorf("topic = %q while a config that failed is provisioned, want pool.first", got)
				}
				releaseFailed()
				if got := a.sink.ship.Config().Topic; got != "pool.first" {
					t.Errorf("topic = %q after the failed config was cleaned up, want pool.first", got)
				}
			},
		},
		{
			scenario: "when an older config goes away the newest config's settings stay",
			function: func(t *testing.T) {
				dir := t.TempDir()
				releaseFirst := provision(t, app(dir, "pool.first"))
				b := provisionApp(t, app(dir, "pool.second"))
				// A successful reload: the new config starts, the old
				// one is cleaned up.
				if err := b.Start(); err != nil {
					t.Fatal(err)
				}
				releaseFirst()
				if got := b.sink.ship.Config().Topic; got != "pool.second" {
					t.Errorf("topic = %q after the old config went away, want pool.second", got)
				}
			},
		},
		{
			scenario: "the last config to let go closes the spool and removes it from the pool",
			function: func(t *testing.T) {
				dir := t.TempDir()
				a := app(dir, "pool.release")
				releaseA := provision(t, a)
				releaseB := provision(t, app(dir, "pool.release"))
				sp := a.sink.spool
				releaseB()
				checkSpoolOpen(t, dir, true)
				releaseA()
				if refs, ok := sinks.References(dir); ok {
					t.Errorf("sink still pooled with %d references after both configs let go", refs)
				}
				if err := sp.Append("k", []byte("v")); err != logship.ErrClosed {
					t.Errorf("appending to the released spool: %v, want %v", err, logship.ErrClosed)
				}
				checkSpoolOpen(t, dir, false)
			},
		},
		{
			scenario: "a reload after the GeoIP file was replaced reads the new file",
			function: func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(t.TempDir(), "geo.mmdb")
				copyFile(t, "testdata/geoip/GeoIP2-City-Test.mmdb", path)
				first := app(dir, "pool.geo")
				first.GeoIP = path
				old := provisionApp(t, first)
				if got := old.geo.Type(); got != "GeoIP2-City" {
					t.Fatalf("database type = %q, want GeoIP2-City", got)
				}
				// geoipupdate replaces the file, then the operator reloads:
				// the new config is provisioned while the old one still
				// holds the database.
				copyFile(t, "testdata/geoip/GeoIP2-Country-Test.mmdb", path)
				second := app(dir, "pool.geo")
				second.GeoIP = path
				reloaded := provisionApp(t, second)
				if got := reloaded.geo.Type(); got != "GeoIP2-Country" {
					t.Errorf("after the file was replaced and the config reloaded, the database type is still %q, want GeoIP2-Country", got)
				}
			},
		},
		{
			scenario: "the ASN and Anonymous IP databases are shared by configs, keyed by kind and path, and closed with the last",
			function: func(t *testing.T) {
				asnPath, anonPath := writeEdgeGeoIP(t, t.TempDir())
				first := app(t.TempDir(), "pool.geo")
				first.GeoIPASN, first.GeoIPAnonymous = asnPath, anonPath
				releaseFirst := provision(t, first)
				second := app(t.TempDir(), "pool.geo")
				second.GeoIPASN, second.GeoIPAnonymous = asnPath, anonPath
				releaseSecond := provision(t, second)
				if first.asn == nil || first.asn != second.asn || first.anon == nil || first.anon != second.anon {
					t.Fatalf("databases not shared: asn %p and %p, anon %p and %p", first.asn, second.asn, first.anon, second.anon)
				}
				for _, key := range []string{"ASN " + asnPath, "Anonymous IP " + anonPath} {
					if refs, ok := geoDBs.References(key); !ok || refs != 2 {
						t.Errorf("%s: %d references (pooled: %v), want 2", key, refs, ok)
					}
				}
				releaseFirst()
				if got, _ := second.asn.Lookup(netip.MustParseAddr("175.16.199.1")); got.Number != 64496 {
					t.Errorf("after the first config let go, the second's ASN lookup gives %+v", got)
				}
				releaseSecond()
				for _, key := range []string{"ASN " + asnPath, "Anonymous IP " + anonPath} {
					if refs, ok := geoDBs.References(key); ok {
						t.Errorf("%s still pooled with %d references after both configs let go", key, refs)
					}
				}
			},
		},
		{
			scenario: "a config that fails on geoip_anonymous releases the databases it had taken",
			function: func(t *testing.T) {
				asnPath, _ := writeEdgeGeoIP(t, t.TempDir())
				city, err := filepath.Abs("testdata/geoip/GeoIP2-City-Test.mmdb")
				if err != nil {
					t.Fatal(err)
				}
				a := app(t.TempDir(), "pool.geo")
				a.GeoIP, a.GeoIPASN, a.GeoIPAnonymous = city, asnPath, asnPath
				ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
				defer cancel()
				err = a.Provision(ctx)
				if err == nil || !strings.Contains(err.Error(), "geoip_anonymous") {
					t.Fatalf("Provision error = %v, want one about geoip_anonymous", err)
				}
				_ = a.Cleanup() // as Caddy does after a failed Provision
				for _, key := range []string{"City or Country " + city, "ASN " + asnPath, "Anonymous IP " + asnPath} {
					if refs, ok := geoDBs.References(key); ok {
						t.Errorf("%s still pooled with %d references after the failed config was cleaned up", key, refs)
					}
				}
			},
		},
	} {
		t.Run(tc.scenario, tc.function)
	}
}

// TestFlushTimeoutAtShutdown: the sink outlives each config, and when the
// last holder lets go it waits for Kafka as long as the flush_timeout of
// the config whose settings were in force, then leaves the rest in the
// spool. The broker is down, so the wait is the whole flush_timeout.
func TestFlushTimeoutAtShutdown(t *testing.T) {
	const short, long = 300 * time.Millisecond, 8 * time.Second
	broker := deadBroker(t)
	app := func(dir string, flush time.Duration) *App {
		return &App{Secrets: []string{testKey1}, Spool: dir, Kafka: &KafkaConfig{
			Brokers: []string{broker}, Topic: "pool.flush", FlushTimeout: caddy.Duration(flush),
		}}
	}
	for _, tc := range []struct {
		name          string
		first, second time.Duration
		// secondGoesFirst is a reload that failed: the new config is
		// cleaned up and the old one stays, until it is shut down too.
		secondGoesFirst bool
	}{
		{name: "a reload that changes only flush_timeout applies the new one", first: long, second: short},
		{name: "when the newest config goes away the previous flush_timeout comes back", first: short, second: long, secondGoesFirst: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := app(dir, tc.first)
			releaseFirst := provision(t, a)
			releaseSecond := provision(t, app(dir, tc.second))
			for i := range 10 {
				if err := a.sink.spool.Append("k", []byte("record "+strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			// Wait for the shipper to fail a write, so that the shutdown
			// has records to wait for and a broker that does not take them.
			deadline := time.Now().Add(10 * time.Second)
			for !a.sink.ship.Failing() {
				if time.Now().After(deadline) {
					t.Fatal("the shipper never failed to write to a broker that is down")
				}
				time.Sleep(10 * time.Millisecond)
			}
			last := releaseFirst
			if tc.secondGoesFirst {
				releaseSecond()
			} else {
				releaseFirst()
				last = releaseSecond
			}
			start := time.Now()
			last()
			took := time.Since(start)
			t.Logf("the last config let go in %v", took.Round(time.Millisecond))
			// Generous for a loaded machine under the race detector, and
			// well below both the 5s default and the other config's 8s.
			if took > short+2*time.Second {
				t.Errorf("shutting down with the broker down took %v, want about the flush_timeout in force, %v", took.Round(time.Millisecond), short)
			}
			checkSpoolOpen(t, dir, false)
			// Nothing was lost: the records wait in the spool.
			sp, err := logship.OpenSpool(logship.SpoolConfig{Dir: dir, Fsync: logship.FsyncNever})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			stop := make(chan struct{})
			close(stop)
			entries, _, err := sp.Read(stop, nil, 100, 1<<20)
			if err != nil || len(entries) != 10 {
				t.Errorf("read %d records back from the spool (%v), want the 10 Kafka did not take", len(entries), err)
			}
		})
	}
}
