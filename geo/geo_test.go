package geo

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/internal/geotest"
)

var entries = []geotest.City{
	{Network: "203.0.113.0/24", Country: "CN", CountryName: "China", Subdivision: "GD", SubdivisionName: "Guangdong", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579},
	{Network: "198.51.100.0/24", Country: "HK", CountryName: "Hong Kong", City: "Hong Kong", Lat: 22.3193, Lon: 114.1694},
	{Network: "2001:db8::/32", Country: "TW", CountryName: "Taiwan", Subdivision: "TPE", City: "Taipei", Lat: 25.033, Lon: 121.5654},
	{Network: "81.2.69.0/24", Country: "GB", CountryName: "United Kingdom"},
}

func openCity(t *testing.T) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := geotest.WriteCityDB(path, entries); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestLookupInACityDatabase(t *testing.T) {
	db := openCity(t)
	if db.Type() != "GeoIP2-City" {
		t.Fatalf("Type() = %q", db.Type())
	}
	cases := []struct {
		ip    string
		want  beacon.Geo
		found bool
	}{
		{"203.0.113.7", beacon.Geo{Country: "CN", Subdivision: "GD", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579, HasCoords: true}, true},
		{"::ffff:203.0.113.7", beacon.Geo{Country: "CN", Subdivision: "GD", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579, HasCoords: true}, true},
		{"198.51.100.200", beacon.Geo{Country: "HK", City: "Hong Kong", Lat: 22.3193, Lon: 114.1694, HasCoords: true}, true},
		{"2001:db8::1", beacon.Geo{Country: "TW", Subdivision: "TPE", City: "Taipei", Lat: 25.033, Lon: 121.5654, HasCoords: true}, true},
		{"81.2.69.142", beacon.Geo{Country: "GB"}, true},
		{"192.0.2.1", beacon.Geo{}, false},
		{"2001:db9::1", beacon.Geo{}, false},
	}
	for _, c := range cases {
		t.Run(c.ip, func(t *testing.T) {
			got, found := db.Lookup(netip.MustParseAddr(c.ip))
			if got != c.want || found != c.found {
				t.Fatalf("Lookup(%s) = %+v, %v; want %+v, %v", c.ip, got, found, c.want, c.found)
			}
		})
	}
	if _, found := db.Lookup(netip.Addr{}); found {
		t.Fatal("the zero address found a location")
	}
}

func TestLookupInACountryDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	if err := geotest.WriteCountryDB(path, entries); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, found := db.Lookup(netip.MustParseAddr("203.0.113.7"))
	if !found || got != (beacon.Geo{Country: "CN"}) {
		t.Fatalf("Lookup = %+v, %v; want only the country", got, found)
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mmdb")
	if err := geotest.WriteCityDB(good, entries); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Damage the data section, keeping the metadata readable, so only a
	// full verification notices.
	damaged := append([]byte(nil), raw...)
	for i := 0; i < len(damaged)/3; i++ {
		damaged[i] = 0xff
	}
	cases := []struct{ name, path, want string }{
		{"a missing file", filepath.Join(dir, "missing.mmdb"), "no such file"},
		{"garbage", write("garbage.mmdb", []byte(strings.Repeat("not a database ", 100))), "opening geoip database"},
		{"an empty file", write("empty.mmdb", nil), "opening geoip database"},
		{"a truncated file", write("truncated.mmdb", raw[:len(raw)/2]), "geoip database"},
		{"a damaged search tree", write("damaged.mmdb", damaged), "verifying geoip database"},
		{"an ASN database", writeASN(t, dir), "not a City or Country database"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := Open(c.path)
			if err == nil {
				db.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
				t.Fatalf("error %q does not name the file and %q", err, c.want)
			}
		})
	}
}

func writeASN(t *testing.T, dir string) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", RecordSize: 24, IncludeReservedNetworks: true, Description: map[string]string{"en": "test ASN database"}})
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := net.ParseCIDR("203.0.113.0/24")
	if err := tree.Insert(n, mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(64500)}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "asn.mmdb")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return p
}

func BenchmarkLookup(b *testing.B) {
	path := filepath.Join(b.TempDir(), "city.mmdb")
	if err := geotest.WriteCityDB(path, entries); err != nil {
		b.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ip := netip.MustParseAddr("203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		db.Lookup(ip)
	}
}
