package geotest

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// entries covers every field, a reserved IPv4 range with a more specific
// exception listed after it, an IPv6 network and an entry with only a
// country. 10.0.0.0/8 is deliberately absent.
var entries = []City{
	{
		Network: "127.0.0.0/8", Continent: "AS", Country: "CN", CountryName: "China",
		Subdivision: "GD", SubdivisionName: "Guangdong", City: "Shenzhen",
		Lat: 22.5431, Lon: 114.0579, TimeZone: "Asia/Shanghai",
	},
	{
		Network: "127.0.0.2/32", Continent: "AS", Country: "TW", CountryName: "Taiwan",
		Subdivision: "TPE", SubdivisionName: "Taipei", City: "Taipei",
		Lat: 25.033, Lon: 121.5654,
	},
	{
		Network: "2001:db8:1::/48", Continent: "AS", Country: "HK", CountryName: "Hong Kong",
		City: "Hong Kong", Lat: 22.3193, Lon: 114.1694, TimeZone: "Asia/Hong_Kong",
	},
	{Network: "198.51.100.0/24", Country: "CN", CountryName: "China"},
}

func ptr(f float64) *float64 { return &f }

var (
	asia  = geoip2.Continent{Code: "AS", Names: geoip2.Names{English: "Asia"}}
	china = geoip2.CountryRecord{ISOCode: "CN", Names: geoip2.Names{English: "China"}}
)

// shenzhen is what a lookup in 127.0.0.0/8 must decode to, less Traits.
var shenzhen = geoip2.City{
	Continent:         asia,
	Country:           china,
	RegisteredCountry: china,
	Subdivisions:      []geoip2.CitySubdivision{{ISOCode: "GD", Names: geoip2.Names{English: "Guangdong"}}},
	City:              geoip2.CityRecord{Names: geoip2.Names{English: "Shenzhen"}},
	Location:          geoip2.Location{Latitude: ptr(22.5431), Longitude: ptr(114.0579), TimeZone: "Asia/Shanghai"},
}

func withTraits(c geoip2.City, ip, network string) geoip2.City {
	c.Traits.IPAddress = netip.MustParseAddr(ip)
	if network != "" {
		c.Traits.Network = netip.MustParsePrefix(network)
	}
	return c
}

func TestWriteCityDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := WriteCityDB(path, entries); err != nil {
		t.Fatalf("WriteCityDB: %v", err)
	}
	db, err := geoip2.Open(path)
	if err != nil {
		t.Fatalf("opening the written database: %v", err)
	}
	defer db.Close()

	if got := db.Metadata().DatabaseType; got != "GeoIP2-City" {
		t.Errorf("database_type = %q, want GeoIP2-City", got)
	}
	if got := db.Metadata().IPVersion; got != 6 {
		t.Errorf("ip_version = %d, want 6 (IPv4 and IPv6 lookups)", got)
	}

	taiwan := geoip2.CountryRecord{ISOCode: "TW", Names: geoip2.Names{English: "Taiwan"}}
	hongKong := geoip2.CountryRecord{ISOCode: "HK", Names: geoip2.Names{English: "Hong Kong"}}
	tests := []struct {
		name string
		ip   string
		want geoip2.City
	}{
		{
			name: "a reserved loopback address finds every field of its entry",
			ip:   "127.0.0.1",
			want: withTraits(shenzhen, "127.0.0.1", "127.0.0.0/31"),
		},
		{
			name: "a later more specific entry replaces the earlier one for its range",
			ip:   "127.0.0.2",
			want: withTraits(geoip2.City{
				Continent: asia, Country: taiwan, RegisteredCountry: taiwan,
				Subdivisions: []geoip2.CitySubdivision{{ISOCode: "TPE", Names: geoip2.Names{English: "Taipei"}}},
				City:         geoip2.CityRecord{Names: geoip2.Names{English: "Taipei"}},
				Location:     geoip2.Location{Latitude: ptr(25.033), Longitude: ptr(121.5654)},
			}, "127.0.0.2", "127.0.0.2/32"),
		},
		{
			name: "the earlier entry still covers the rest of its range",
			ip:   "127.255.255.254",
			want: withTraits(shenzhen, "127.255.255.254", "127.128.0.0/9"),
		},
		{
			name: "an IPv4-mapped IPv6 address reaches the IPv4 entry",
			ip:   "::ffff:127.0.0.1",
			want: withTraits(shenzhen, "::ffff:127.0.0.1", ""),
		},
		{
			name: "a 6to4 address reaches the IPv4 entry as in MaxMind's databases",
			ip:   "2002:7f00:1::1",
			want: withTraits(shenzhen, "2002:7f00:1::1", ""),
		},
		{
			name: "an IPv6 address finds its IPv6 entry",
			ip:   "2001:db8:1::53",
			want: withTraits(geoip2.City{
				Continent: asia, Country: hongKong, RegisteredCountry: hongKong,
				City:     geoip2.CityRecord{Names: geoip2.Names{English: "Hong Kong"}},
				Location: geoip2.Location{Latitude: ptr(22.3193), Longitude: ptr(114.1694), TimeZone: "Asia/Hong_Kong"},
			}, "2001:db8:1::53", "2001:db8:1::/48"),
		},
		{
			name: "an entry with only a country has no city, subdivision or location",
			ip:   "198.51.100.7",
			want: withTraits(geoip2.City{Country: china, RegisteredCountry: china}, "198.51.100.7", "198.51.100.0/24"),
		},
		{
			name: "an address in no entry has no data",
			ip:   "10.1.2.3",
			want: withTraits(geoip2.City{}, "10.1.2.3", ""),
		},
		{
			name: "an IPv6 address in no entry has no data",
			ip:   "2001:db8:2::1",
			want: withTraits(geoip2.City{}, "2001:db8:2::1", ""),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.City(netip.MustParseAddr(tt.ip))
			if err != nil {
				t.Fatalf("City(%s): %v", tt.ip, err)
			}
			if tt.want.Traits.Network == (netip.Prefix{}) {
				// The prefix reported for aliased and missing addresses
				// is the reader's business, not this package's.
				got.Traits.Network = netip.Prefix{}
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("City(%s) =\n%+v\nwant\n%+v", tt.ip, *got, tt.want)
			}
			if wantData := tt.want.Country.HasData(); got.HasData() != wantData {
				t.Errorf("City(%s).HasData() = %v, want %v", tt.ip, got.HasData(), wantData)
			}
		})
	}
}

func TestWriteCountryDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	if err := WriteCountryDB(path, entries); err != nil {
		t.Fatalf("WriteCountryDB: %v", err)
	}
	db, err := geoip2.Open(path)
	if err != nil {
		t.Fatalf("opening the written database: %v", err)
	}
	defer db.Close()

	if got := db.Metadata().DatabaseType; got != "GeoIP2-Country" {
		t.Errorf("database_type = %q, want GeoIP2-Country", got)
	}

	tests := []struct {
		name string
		ip   string
		want geoip2.Country
	}{
		{
			name: "a reserved address finds its continent and country",
			ip:   "127.0.0.1",
			want: geoip2.Country{Continent: asia, Country: china, RegisteredCountry: china},
		},
		{
			name: "an IPv6 address finds its continent and country",
			ip:   "2001:db8:1::1",
			want: geoip2.Country{
				Continent: asia,
				Country:   geoip2.CountryRecord{ISOCode: "HK", Names: geoip2.Names{English: "Hong Kong"}},
				RegisteredCountry: geoip2.CountryRecord{
					ISOCode: "HK", Names: geoip2.Names{English: "Hong Kong"},
				},
			},
		},
		{
			name: "an address in no entry has no data",
			ip:   "10.1.2.3",
			want: geoip2.Country{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.Country(netip.MustParseAddr(tt.ip))
			if err != nil {
				t.Fatalf("Country(%s): %v", tt.ip, err)
			}
			got.Traits = geoip2.CountryTraits{}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Country(%s) =\n%+v\nwant\n%+v", tt.ip, *got, tt.want)
			}
		})
	}

	// A Country database must not carry the City fields, which a reader
	// would otherwise happily decode from it.
	city, err := db.City(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatalf("City(127.0.0.1) on the Country database: %v", err)
	}
	if city.City.HasData() || len(city.Subdivisions) > 0 || city.Location.HasData() {
		t.Errorf("Country database has city fields: %+v", *city)
	}
}

func TestWriteRejectsBadEntries(t *testing.T) {
	tests := []struct {
		name    string
		entry   City
		wantErr string
	}{
		{"a network that is not CIDR is refused", City{Network: "127.0.0.1"}, "parsing network"},
		{"a subdivision with its country prefix is refused", City{Network: "127.0.0.0/8", Subdivision: "CN-GD"}, `"GD"`},
		{"an unknown continent code is refused", City{Network: "127.0.0.0/8", Continent: "XX"}, "continent"},
		{"a three-letter country code is refused", City{Network: "127.0.0.0/8", Country: "CHN"}, "alpha-2"},
		{"an insert over the 6to4 alias reports mmdbwriter's error", City{Network: "2002::/16", Country: "CN"}, "inserting entry 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteCityDB(filepath.Join(dir, "city.mmdb"), []City{tt.entry})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("WriteCityDB(%+v) error = %v, want one containing %q", tt.entry, err, tt.wantErr)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("a failed write left files behind: %v", left)
			}
		})
	}
}

func TestWriteReplacesAnOpenDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := WriteCityDB(path, entries); err != nil {
		t.Fatalf("first WriteCityDB: %v", err)
	}
	old, err := geoip2.Open(path)
	if err != nil {
		t.Fatalf("opening the first database: %v", err)
	}
	defer old.Close()

	if err := WriteCityDB(path, Demo()); err != nil {
		t.Fatalf("second WriteCityDB: %v", err)
	}
	// The reader opened before the rewrite still sees its own data.
	if got, err := old.City(netip.MustParseAddr("127.0.0.2")); err != nil || got.City.Names.English != "Taipei" {
		t.Errorf("old reader after rewrite: City(127.0.0.2) = %+v, %v; want Taipei", got, err)
	}
	cur, err := geoip2.Open(path)
	if err != nil {
		t.Fatalf("opening the rewritten database: %v", err)
	}
	defer cur.Close()
	if got, err := cur.City(netip.MustParseAddr("127.0.0.2")); err != nil || got.City.Names.English != "Shenzhen" {
		t.Errorf("new reader: City(127.0.0.2) = %+v, %v; want Shenzhen", got, err)
	}
}

func TestDemo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.mmdb")
	if err := WriteCityDB(path, Demo()); err != nil {
		t.Fatalf("WriteCityDB(Demo()): %v", err)
	}
	db, err := geoip2.Open(path)
	if err != nil {
		t.Fatalf("opening the demo database: %v", err)
	}
	defer db.Close()

	tests := []struct{ ip, country, subdivision, city string }{
		{"127.0.0.1", "CN", "GD", "Shenzhen"},
		{"::1", "CN", "GD", "Shenzhen"},
		{"198.51.100.1", "HK", "", "Hong Kong"},
		{"203.0.113.1", "CN", "SH", "Shanghai"},
		{"192.0.2.1", "TW", "TPE", "Taipei"},
		{"2001:db8::1", "CN", "BJ", "Beijing"},
		{"10.0.0.1", "", "", ""},
	}
	for _, tt := range tests {
		got, err := db.City(netip.MustParseAddr(tt.ip))
		if err != nil {
			t.Fatalf("City(%s): %v", tt.ip, err)
		}
		var sub string
		if len(got.Subdivisions) > 0 {
			sub = got.Subdivisions[0].ISOCode
		}
		if got.Country.ISOCode != tt.country || sub != tt.subdivision || got.City.Names.English != tt.city {
			t.Errorf("City(%s) = %s/%s/%s, want %s/%s/%s", tt.ip,
				got.Country.ISOCode, sub, got.City.Names.English, tt.country, tt.subdivision, tt.city)
		}
	}
	if got, _ := db.City(netip.MustParseAddr("127.0.0.1")); got.Location.Latitude == nil || *got.Location.Latitude != 22.5431 || *got.Location.Longitude != 114.0579 {
		t.Errorf("City(127.0.0.1).Location = %+v, want 22.5431, 114.0579", got.Location)
	}
}

func TestWriteASNDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "asn.mmdb")
	err := WriteASNDB(path, []ASN{
		{Network: "127.0.0.0/8", Number: 4134, Org: "Chinanet"},
		{Network: "127.0.0.2/32", Number: 64512},
		{Network: "2001:db8:1::/48", Org: "Example Trading Ltd"},
	})
	if err != nil {
		t.Fatalf("WriteASNDB: %v", err)
	}
	db, err := geoip2.Open(path)
	if err != nil {
		t.Fatalf("opening the written database: %v", err)
	}
	defer db.Close()
	if got := db.Metadata().DatabaseType; got != "GeoLite2-ASN" {
		t.Errorf("database_type = %q, want GeoLite2-ASN", got)
	}
	tests := []struct {
		name, ip string
		number   uint
		org      string
	}{
		{"an address in an entry finds its number and organisation", "127.0.0.1", 4134, "Chinanet"},
		{"an IPv4-mapped address reaches the IPv4 entry", "::ffff:127.0.0.1", 4134, "Chinanet"},
		{"a later entry with only a number leaves the organisation out", "127.0.0.2", 64512, ""},
		{"an entry with only an organisation leaves the number out", "2001:db8:1::1", 0, "Example Trading Ltd"},
		{"an address in no entry has no data", "10.1.2.3", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.ASN(netip.MustParseAddr(tt.ip))
			if err != nil {
				t.Fatalf("ASN(%s): %v", tt.ip, err)
			}
			if got.AutonomousSystemNumber != tt.number || got.AutonomousSystemOrganization != tt.org {
				t.Errorf("ASN(%s) = %d %q, want %d %q", tt.ip, got.AutonomousSystemNumber, got.AutonomousSystemOrganization, tt.number, tt.org)
			}
		})
	}
}

func TestWriteAnonymousDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "anon.mmdb")
	err := WriteAnonymousDB(path, []Anonymous{
		{Network: "127.0.0.0/8", VPN: true, Hosting: true},
		{Network: "127.0.0.2/32", TorExitNode: true, PublicProxy: true, ResidentialProxy: true},
		{Network: "127.0.0.3/32", Anonymous: true},
		{Network: "127.0.0.4/32"},
	})
	if err != nil {
		t.Fatalf("WriteAnonymousDB: %v", err)
	}
	db, err := geoip2.Open(path)
	if err != nil {
		t.Fatalf("opening the written database: %v", err)
	}
	defer db.Close()
	if got := db.Metadata().DatabaseType; got != "GeoIP2-Anonymous-IP" {
		t.Errorf("database_type = %q, want GeoIP2-Anonymous-IP", got)
	}
	tests := []struct {
		name, ip string
		want     geoip2.AnonymousIP
	}{
		{"flags are written with is_anonymous", "127.0.0.1", geoip2.AnonymousIP{IsAnonymous: true, IsAnonymousVPN: true, IsHostingProvider: true}},
		{"a later entry replaces the flags for its range", "127.0.0.2", geoip2.AnonymousIP{IsAnonymous: true, IsTorExitNode: true, IsPublicProxy: true, IsResidentialProxy: true}},
		{"is_anonymous may stand alone", "127.0.0.3", geoip2.AnonymousIP{IsAnonymous: true}},
		{"an entry without flags has none", "127.0.0.4", geoip2.AnonymousIP{}},
		{"an address in no entry has none", "10.1.2.3", geoip2.AnonymousIP{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.AnonymousIP(netip.MustParseAddr(tt.ip))
			if err != nil {
				t.Fatalf("AnonymousIP(%s): %v", tt.ip, err)
			}
			got.IPAddress, got.Network = netip.Addr{}, netip.Prefix{}
			if *got != tt.want {
				t.Errorf("AnonymousIP(%s) = %+v, want %+v", tt.ip, *got, tt.want)
			}
		})
	}

	// Only true flags are stored, as in MaxMind's data: a reader that
	// tells absent from false sees no false values.
	mm, err := maxminddb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	for ip, want := range map[string]int{"127.0.0.1": 3, "127.0.0.4": 0} {
		var m map[string]any
		res := mm.Lookup(netip.MustParseAddr(ip))
		if err := res.Decode(&m); err != nil || !res.Found() {
			t.Fatalf("Lookup(%s): found %v, %v", ip, res.Found(), err)
		}
		if len(m) != want {
			t.Errorf("record of %s = %v, want %d keys, all true", ip, m, want)
		}
		for k, v := range m {
			if v != true {
				t.Errorf("record of %s has %s = %v", ip, k, v)
			}
		}
	}
}

func TestDemoASNAndAnonymous(t *testing.T) {
	dir := t.TempDir()
	asnPath, anonPath := filepath.Join(dir, "asn.mmdb"), filepath.Join(dir, "anon.mmdb")
	if err := WriteASNDB(asnPath, DemoASN()); err != nil {
		t.Fatalf("WriteASNDB(DemoASN()): %v", err)
	}
	if err := WriteAnonymousDB(anonPath, DemoAnonymous()); err != nil {
		t.Fatalf("WriteAnonymousDB(DemoAnonymous()): %v", err)
	}
	asn, err := geoip2.Open(asnPath)
	if err != nil {
		t.Fatal(err)
	}
	defer asn.Close()
	anon, err := geoip2.Open(anonPath)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	tests := []struct {
		ip     string
		number uint
		vpn    bool
		tor    bool
	}{
		{"127.0.0.1", 64496, false, false},
		{"::1", 64496, false, false},
		{"198.51.100.1", 64497, false, false},
		{"203.0.113.1", 64498, false, false},
		{"203.0.113.66", 64498, false, true},
		{"192.0.2.1", 64499, true, false},
		{"2001:db8::1", 64500, false, false},
		{"10.0.0.1", 0, false, false},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		a, err := asn.ASN(ip)
		if err != nil {
			t.Fatalf("ASN(%s): %v", tt.ip, err)
		}
		if a.AutonomousSystemNumber != tt.number || (tt.number != 0) != (a.AutonomousSystemOrganization != "") {
			t.Errorf("ASN(%s) = %d %q, want %d and an organisation when mapped", tt.ip, a.AutonomousSystemNumber, a.AutonomousSystemOrganization, tt.number)
		}
		f, err := anon.AnonymousIP(ip)
		if err != nil {
			t.Fatalf("AnonymousIP(%s): %v", tt.ip, err)
		}
		if f.IsAnonymousVPN != tt.vpn || f.IsTorExitNode != tt.tor {
			t.Errorf("AnonymousIP(%s) = %+v, want vpn %v, tor %v", tt.ip, *f, tt.vpn, tt.tor)
		}
	}
}

func TestWriteASNAndAnonymousRejectBadNetworks(t *testing.T) {
	dir := t.TempDir()
	if err := WriteASNDB(filepath.Join(dir, "asn.mmdb"), []ASN{{Network: "127.0.0.1", Number: 1}}); err == nil || !strings.Contains(err.Error(), "parsing network") {
		t.Errorf("WriteASNDB with a network that is not CIDR: error %v, want one about parsing the network", err)
	}
	if err := WriteAnonymousDB(filepath.Join(dir, "anon.mmdb"), []Anonymous{{Network: "2002::/16", VPN: true}}); err == nil || !strings.Contains(err.Error(), "inserting entry 0") {
		t.Errorf("WriteAnonymousDB over the 6to4 alias: error %v, want mmdbwriter's", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("failed writes left files behind: %v", left)
	}
}
