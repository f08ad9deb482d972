package geo

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/internal/geotest"
)

var entries = []geotest.City{
	{Network: "203.0.113.0/24", Country: "CN", CountryName: "China", Subdivision: "GD", SubdivisionName: "Guangdong", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579},
	{Network: "198.51.100.0/24", Country: "HK", CountryName: "Hong Kong", City: "Hong Kong", Lat: 22.3193, Lon: 114.1694},
	{Network: "2001:db8::/32", Country: "TW", CountryName: "Taiwan", Subdivision: "TPE", City: "Taipei", Lat: 25.033, Lon: 121.5654},
	{Network: "81.2.69.0/24", Country: "GB", CountryName: "United Kingdom"},
}

func openCity(t *testing.T) *DB[beacon.Geo] {
	t.Helper()
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := geotest.WriteCityDB(path, entries); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, City)
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
	// Twice: the second round answers from the cache of decoded records.
	for round := range 2 {
		for _, c := range cases {
			t.Run(c.ip, func(t *testing.T) {
				got, found := db.Lookup(netip.MustParseAddr(c.ip))
				if got != c.want || found != c.found {
					t.Fatalf("round %d: Lookup(%s) = %+v, %v; want %+v, %v", round, c.ip, got, found, c.want, c.found)
				}
			})
		}
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
	db, err := Open(path, City)
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
	}
	for _, c := range cases {
		for _, open := range []struct {
			kind string
			open func(string) error
		}{
			{"City", func(p string) error { _, err := Open(p, City); return err }},
			{"ASN", func(p string) error { _, err := Open(p, ASN); return err }},
			{"Anonymous", func(p string) error { _, err := Open(p, Anonymous); return err }},
		} {
			t.Run(c.name+" as "+open.kind, func(t *testing.T) {
				err := open.open(c.path)
				if err == nil {
					t.Fatal("opened")
				}
				if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
					t.Fatalf("error %q does not name the file and %q", err, c.want)
				}
			})
		}
	}
}

// writeDBs writes a database of each kind into dir and returns their paths.
func writeDBs(t testing.TB, dir string) (city, asn, anon string) {
	t.Helper()
	city, asn, anon = filepath.Join(dir, "city.mmdb"), filepath.Join(dir, "asn.mmdb"), filepath.Join(dir, "anon.mmdb")
	if err := geotest.WriteCityDB(city, entries); err != nil {
		t.Fatal(err)
	}
	if err := geotest.WriteASNDB(asn, asnEntries); err != nil {
		t.Fatal(err)
	}
	if err := geotest.WriteAnonymousDB(anon, anonEntries); err != nil {
		t.Fatal(err)
	}
	return city, asn, anon
}

// writeRaw writes a database of dbType that maps network to record, for
// database types geotest does not write.
func writeRaw(t *testing.T, dir, dbType, network string, record mmdbtype.Map) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 24, IncludeReservedNetworks: true, Description: map[string]string{"en": "test " + dbType + " database"}})
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := net.ParseCIDR(network)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Insert(n, record); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, dbType+".mmdb")
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

func TestOpenChecksTheKindOfDatabase(t *testing.T) {
	dir := t.TempDir()
	city, asn, anon := writeDBs(t, dir)
	country := filepath.Join(dir, "country.mmdb")
	if err := geotest.WriteCountryDB(country, entries); err != nil {
		t.Fatal(err)
	}
	isp := writeRaw(t, dir, "GeoIP2-ISP", "203.0.113.0/24", mmdbtype.Map{
		"autonomous_system_number": mmdbtype.Uint32(64501), "autonomous_system_organization": mmdbtype.String("Example ISP"),
		"isp": mmdbtype.String("Example ISP"), "organization": mmdbtype.String("Example Trading Ltd"),
	})
	plus := writeRaw(t, dir, "GeoIP-Anonymous-Plus", "203.0.113.0/24", mmdbtype.Map{
		"is_anonymous": mmdbtype.Bool(true), "is_anonymous_vpn": mmdbtype.Bool(true),
		"anonymizer_confidence": mmdbtype.Uint16(99), "provider_name": mmdbtype.String("Example VPN"),
	})
	connType := writeRaw(t, dir, "GeoIP2-Connection-Type", "203.0.113.0/24", mmdbtype.Map{"connection_type": mmdbtype.String("Corporate")})
	open := map[string]func(string) (string, error){
		"City": func(p string) (string, error) {
			db, err := Open(p, City)
			if err != nil {
				return "", err
			}
			return db.Type(), nil
		},
		"ASN": func(p string) (string, error) {
			db, err := Open(p, ASN)
			if err != nil {
				return "", err
			}
			return db.Type(), nil
		},
		"Anonymous": func(p string) (string, error) {
			db, err := Open(p, Anonymous)
			if err != nil {
				return "", err
			}
			return db.Type(), nil
		},
	}
	cases := []struct {
		name, kind, path string
		// wantType is the type opened, or "" when the file must be
		// refused with wantErr.
		wantType, wantErr string
	}{
		{"a City database opens as City", "City", city, "GeoIP2-City", ""},
		{"a Country database opens as City", "City", country, "GeoIP2-Country", ""},
		{"an ASN database opens as ASN", "ASN", asn, "GeoLite2-ASN", ""},
		{"an ISP database, which holds the ASN fields, opens as ASN", "ASN", isp, "GeoIP2-ISP", ""},
		{"an Anonymous IP database opens as Anonymous", "Anonymous", anon, "GeoIP2-Anonymous-IP", ""},
		{"an Anonymous Plus database, which holds the same flags, opens as Anonymous", "Anonymous", plus, "GeoIP-Anonymous-Plus", ""},
		{"an ASN database is refused as City", "City", asn, "", `of type "GeoLite2-ASN", not a City or Country database`},
		{"an Anonymous IP database is refused as City", "City", anon, "", `of type "GeoIP2-Anonymous-IP", not a City or Country database`},
		{"a City database is refused as ASN", "ASN", city, "", `of type "GeoIP2-City", not an ASN database`},
		{"an Anonymous IP database is refused as ASN", "ASN", anon, "", `of type "GeoIP2-Anonymous-IP", not an ASN database`},
		{"a City database is refused as Anonymous", "Anonymous", city, "", `of type "GeoIP2-City", not an Anonymous IP database`},
		{"an ASN database is refused as Anonymous", "Anonymous", asn, "", `of type "GeoLite2-ASN", not an Anonymous IP database`},
		{"a Connection-Type database is refused as ASN", "ASN", connType, "", `of type "GeoIP2-Connection-Type", not an ASN database`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ, err := open[c.kind](c.path)
			if c.wantErr == "" {
				if err != nil || typ != c.wantType {
					t.Fatalf("Open = %q, %v; want type %q", typ, err, c.wantType)
				}
				return
			}
			if err == nil {
				t.Fatalf("opened a %s database as %s", typ, c.kind)
			}
			if !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), c.path) {
				t.Fatalf("error %q does not name the file and say %q", err, c.wantErr)
			}
		})
	}
	// The equivalent types give what a record needs.
	db, err := Open(isp, ASN)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := db.Lookup(netip.MustParseAddr("203.0.113.1")); !ok || got != (beacon.ASN{Number: 64501, Org: "Example ISP"}) {
		t.Errorf("ISP database: Lookup = %+v, %v; want 64501, Example ISP", got, ok)
	}
	adb, err := Open(plus, Anonymous)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := adb.Lookup(netip.MustParseAddr("203.0.113.1")); !ok || got != beacon.AnonAnonymous|beacon.AnonVPN {
		t.Errorf("Anonymous Plus database: Lookup = %08b, %v; want anonymous and vpn", got, ok)
	}
}

var asnEntries = []geotest.ASN{
	{Network: "203.0.113.0/24", Number: 4134, Org: "Chinanet"},
	{Network: "203.0.113.128/25", Number: 4134, Org: "Chinanet"}, // same data record as the /24
	{Network: "198.51.100.0/24", Number: 64512},
	{Network: "192.0.2.0/24", Org: "Example Trading Ltd"},
	{Network: "2001:db8::/32", Number: 4294967295, Org: "深圳精密机械有限公司"},
	{Network: "81.2.69.0/24"}, // an empty record
}

func TestLookupInAnASNDatabase(t *testing.T) {
	_, path, _ := writeDBs(t, t.TempDir())
	db, err := Open(path, ASN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cases := []struct {
		name, ip string
		want     beacon.ASN
		found    bool
	}{
		{"a number and an organisation", "203.0.113.7", beacon.ASN{Number: 4134, Org: "Chinanet"}, true},
		{"another network of the same system", "203.0.113.200", beacon.ASN{Number: 4134, Org: "Chinanet"}, true},
		{"an IPv4-mapped address", "::ffff:203.0.113.7", beacon.ASN{Number: 4134, Org: "Chinanet"}, true},
		{"a number without an organisation", "198.51.100.1", beacon.ASN{Number: 64512}, true},
		{"an organisation without a number", "192.0.2.1", beacon.ASN{Org: "Example Trading Ltd"}, true},
		{"an IPv6 address, the largest number and a name in Chinese", "2001:db8::1", beacon.ASN{Number: 4294967295, Org: "深圳精密机械有限公司"}, true},
		{"an empty record", "81.2.69.142", beacon.ASN{}, false},
		{"an address in no network", "10.0.0.1", beacon.ASN{}, false},
		{"the zero address", "", beacon.ASN{}, false},
	}
	for round := range 2 {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var ip netip.Addr
				if c.ip != "" {
					ip = netip.MustParseAddr(c.ip)
				}
				got, found := db.Lookup(ip)
				if got != c.want || found != c.found {
					t.Fatalf("round %d: Lookup(%s) = %+v, %v; want %+v, %v", round, c.ip, got, found, c.want, c.found)
				}
			})
		}
	}
}

var anonEntries = []geotest.Anonymous{
	{Network: "203.0.113.0/24", VPN: true, Hosting: true},
	{Network: "203.0.113.66/32", TorExitNode: true},
	{Network: "198.51.100.0/24", PublicProxy: true},
	{Network: "192.0.2.0/24", ResidentialProxy: true},
	{Network: "192.0.2.128/25", Anonymous: true},
	{Network: "2001:db8::/32", VPN: true, Hosting: true, PublicProxy: true, ResidentialProxy: true, TorExitNode: true},
	{Network: "81.2.69.0/24"}, // an empty record, as MaxMind's data has
}

func TestLookupInAnAnonymousIPDatabase(t *testing.T) {
	_, _, path := writeDBs(t, t.TempDir())
	db, err := Open(path, Anonymous)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const anon = beacon.AnonAnonymous
	cases := []struct {
		name, ip string
		want     beacon.Anon
	}{
		{"a VPN at a hosting provider", "203.0.113.7", anon | beacon.AnonVPN | beacon.AnonHosting},
		{"a Tor exit node", "203.0.113.66", anon | beacon.AnonTor},
		{"a public proxy", "198.51.100.1", anon | beacon.AnonProxy},
		{"a residential proxy", "192.0.2.1", anon | beacon.AnonResidentialProxy},
		{"anonymous of no more specific kind", "192.0.2.200", anon},
		{"every flag, over IPv6", "2001:db8::1", anon | beacon.AnonVPN | beacon.AnonHosting | beacon.AnonProxy | beacon.AnonResidentialProxy | beacon.AnonTor},
		{"an IPv4-mapped address", "::ffff:203.0.113.66", anon | beacon.AnonTor},
		{"an empty record", "81.2.69.142", 0},
		{"an address not listed", "10.0.0.1", 0},
	}
	for round := range 2 {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got, found := db.Lookup(netip.MustParseAddr(c.ip))
				if got != c.want || found != (c.want != 0) {
					t.Fatalf("round %d: Lookup(%s) = %06b, %v; want %06b", round, c.ip, got, found, c.want)
				}
			})
		}
	}
}

// TestCacheIsBounded fills the decoded-record cache past its bound: it is
// emptied, and lookups stay right.
func TestCacheIsBounded(t *testing.T) {
	const n = 40
	es := make([]geotest.ASN, 0, n)
	for i := range n {
		es = append(es, geotest.ASN{Network: fmt.Sprintf("10.0.0.%d/32", i), Number: uint32(i + 1)})
	}
	path := filepath.Join(t.TempDir(), "asn.mmdb")
	if err := geotest.WriteASNDB(path, es); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, ASN)
	if err != nil {
		t.Fatal(err)
	}
	db.max = 16
	for round := range 3 {
		for i := range n {
			ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
			if got, ok := db.Lookup(ip); !ok || got.Number != uint32(i+1) {
				t.Fatalf("round %d: Lookup(%s) = %+v, %v; want number %d", round, ip, got, ok, i+1)
			}
			if size := db.size.Load(); size > db.max {
				t.Fatalf("round %d: %d records cached, more than %d", round, size, db.max)
			}
		}
	}
	cached := 0
	db.cache.Range(func(any, any) bool { cached++; return true })
	if cached == 0 || int64(cached) > db.max {
		t.Errorf("%d records in the cache, want between 1 and %d", cached, db.max)
	}
}

// BenchmarkLookup is one lookup per kind: search tree, then the cached
// record, as on the request path once a network's record was decoded.
func BenchmarkLookup(b *testing.B) {
	city, asn, anon := writeDBs(b, b.TempDir())
	bench := func(b *testing.B, lookup func(netip.Addr) bool, ip string, found bool) {
		addr := netip.MustParseAddr(ip)
		b.ReportAllocs()
		for b.Loop() {
			if lookup(addr) != found {
				b.Fatal("wrong result")
			}
		}
	}
	cdb, err := Open(city, City)
	if err != nil {
		b.Fatal(err)
	}
	adb, err := Open(asn, ASN)
	if err != nil {
		b.Fatal(err)
	}
	ndb, err := Open(anon, Anonymous)
	if err != nil {
		b.Fatal(err)
	}
	cityLookup := func(ip netip.Addr) bool { _, ok := cdb.Lookup(ip); return ok }
	asnLookup := func(ip netip.Addr) bool { _, ok := adb.Lookup(ip); return ok }
	anonLookup := func(ip netip.Addr) bool { _, ok := ndb.Lookup(ip); return ok }
	b.Run("kind=city", func(b *testing.B) { bench(b, cityLookup, "203.0.113.7", true) })
	b.Run("kind=asn", func(b *testing.B) { bench(b, asnLookup, "203.0.113.7", true) })
	b.Run("kind=asn/ipv6", func(b *testing.B) { bench(b, asnLookup, "2001:db8::1", true) })
	b.Run("kind=anon/listed", func(b *testing.B) { bench(b, anonLookup, "203.0.113.7", true) })
	b.Run("kind=anon/not_listed", func(b *testing.B) { bench(b, anonLookup, "10.0.0.1", false) })
}

// BenchmarkDecode is what the cache saves: the search tree and decoding
// the record, every time.
func BenchmarkDecode(b *testing.B) {
	city, asn, anon := writeDBs(b, b.TempDir())
	ip := netip.MustParseAddr("203.0.113.7")
	for _, c := range []struct {
		name, path string
		decode     func(maxminddb.Result) error
	}{
		{"kind=city", city, func(r maxminddb.Result) error { _, err := decodeCity(r); return err }},
		{"kind=asn", asn, func(r maxminddb.Result) error { _, err := decodeASN(r); return err }},
		{"kind=anon", anon, func(r maxminddb.Result) error { _, err := decodeAnon(r); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			raw, err := os.ReadFile(c.path)
			if err != nil {
				b.Fatal(err)
			}
			mm, err := maxminddb.OpenBytes(raw)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := c.decode(mm.Lookup(ip)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
