package geo

import (
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/internal/geotest"
)

func writeCity(t *testing.T, path, country string) {
	t.Helper()
	if err := geotest.WriteCityDB(path, []geotest.City{{Network: "203.0.113.0/24", Country: country}}); err != nil {
		t.Fatal(err)
	}
}

// replaceWith swaps the file at path for one holding b, as geoipupdate
// does: write beside it, rename over it.
func replaceWith(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func country(t *testing.T, r *Reloading[beacon.Geo]) string {
	t.Helper()
	g, _ := r.Lookup(netip.MustParseAddr("203.0.113.9"))
	return g.Country
}

func TestReloadingFollowsTheFileAndRefusesBrokenReplacements(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	writeCity(t, path, "CN")
	core, logs := observer.New(zap.InfoLevel)
	r, err := OpenReloading(path, City, 0, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := country(t, r); got != "CN" {
		t.Fatalf("country = %q, want CN", got)
	}
	if r.Check() {
		t.Fatal("Check reloaded an unchanged file")
	}

	writeCity(t, path, "HK")
	if !r.Check() || country(t, r) != "HK" {
		t.Fatalf("after the file was replaced: country %q, want HK", country(t, r))
	}

	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, broken := range [][]byte{good[:len(good)/2], []byte("not a database"), nil} {
		replaceWith(t, path, broken)
		if r.Check() {
			t.Fatalf("a broken replacement of %d bytes was swapped in", len(broken))
		}
		if got := country(t, r); got != "HK" {
			t.Fatalf("after a broken replacement: country %q, want the HK database kept", got)
		}
		if r.Check() {
			t.Fatal("the same broken file was tried again")
		}
	}
	if n := logs.FilterMessageSnippet("does not verify").Len(); n != 3 {
		t.Errorf("logged %d refusals, want one per broken file (3)", n)
	}

	writeCity(t, path, "TW")
	if !r.Check() || country(t, r) != "TW" {
		t.Fatalf("after a good file followed the broken ones: country %q, want TW", country(t, r))
	}
	if n := logs.FilterMessage("geoip database reloaded").Len(); n != 2 {
		t.Errorf("logged %d reloads, want 2", n)
	}
}

func TestReloadingSwapsUnderConcurrentLookups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	writeCity(t, path, "CN")
	r, err := OpenReloading(path, City, time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c := country(t, r); c != "CN" && c != "HK" && c != "TW" {
					t.Errorf("a lookup during reloads returned %q", c)
					return
				}
			}
		})
	}
	for i := range 20 {
		writeCity(t, path, map[bool]string{true: "CN", false: "HK"}[i%2 == 0])
		time.Sleep(5 * time.Millisecond)
	}
	writeCity(t, path, "TW")
	deadline := time.Now().Add(5 * time.Second)
	for country(t, r) != "TW" {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not pick up the last replacement")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
}

// The reloading of every kind is the same code; an ASN and an Anonymous IP
// database follow their files too, and a replacement of another kind is
// refused like a broken one.
func TestReloadingOfOtherKinds(t *testing.T) {
	dir := t.TempDir()
	asnPath, anonPath, cityPath := filepath.Join(dir, "asn.mmdb"), filepath.Join(dir, "anon.mmdb"), filepath.Join(dir, "city.mmdb")
	writeASN := func(org string) {
		t.Helper()
		if err := geotest.WriteASNDB(asnPath, []geotest.ASN{{Network: "203.0.113.0/24", Number: 64512, Org: org}}); err != nil {
			t.Fatal(err)
		}
	}
	writeAnon := func(e geotest.Anonymous) {
		t.Helper()
		e.Network = "203.0.113.0/24"
		if err := geotest.WriteAnonymousDB(anonPath, []geotest.Anonymous{e}); err != nil {
			t.Fatal(err)
		}
	}
	writeCity(t, cityPath, "CN")
	city, err := os.ReadFile(cityPath)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("203.0.113.9")
	core, logs := observer.New(zap.InfoLevel)

	writeASN("Example Trading Ltd")
	asn, err := OpenReloading(asnPath, ASN, 0, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer asn.Close()
	if got, _ := asn.Lookup(ip); got.Org != "Example Trading Ltd" {
		t.Fatalf("org %q, want the first file's", got.Org)
	}
	writeASN("Example Trading Group")
	if !asn.Check() {
		t.Fatal("the replaced ASN file was not reloaded")
	}
	if got, _ := asn.Lookup(ip); got.Org != "Example Trading Group" {
		t.Fatalf("after the ASN file was replaced: org %q, want the new one", got.Org)
	}
	replaceWith(t, asnPath, city)
	if asn.Check() {
		t.Fatal("a City database replacing the ASN file was swapped in")
	}
	if got, _ := asn.Lookup(ip); got.Org != "Example Trading Group" || asn.Type() != "GeoLite2-ASN" {
		t.Fatalf("after a City file replaced the ASN file: %+v of %s, want the ASN database kept", got, asn.Type())
	}
	if n := logs.FilterMessageSnippet("does not verify").FilterField(zap.Stringer("kind", ASN)).Len(); n != 1 {
		t.Errorf("logged %d refusals of kind ASN, want 1", n)
	}

	writeAnon(geotest.Anonymous{VPN: true})
	anon, err := OpenReloading(anonPath, Anonymous, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if got, _ := anon.Lookup(ip); got != beacon.AnonAnonymous|beacon.AnonVPN {
		t.Fatalf("flags = %06b, want anonymous and vpn", got)
	}
	writeAnon(geotest.Anonymous{TorExitNode: true})
	if !anon.Check() {
		t.Fatal("the replaced Anonymous IP file was not reloaded")
	}
	if got, _ := anon.Lookup(ip); got != beacon.AnonAnonymous|beacon.AnonTor {
		t.Fatalf("after the file was replaced: flags = %06b, want anonymous and tor", got)
	}
}
