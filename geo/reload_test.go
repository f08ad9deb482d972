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

func country(t *testing.T, r *Reloading) string {
	t.Helper()
	g, _ := r.Lookup(netip.MustParseAddr("203.0.113.9"))
	return g.Country
}

func TestReloadingFollowsTheFileAndRefusesBrokenReplacements(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	writeCity(t, path, "CN")
	core, logs := observer.New(zap.InfoLevel)
	r, err := OpenReloading(path, 0, zap.New(core))
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
	r, err := OpenReloading(path, time.Millisecond, nil)
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
