// Package geotest writes small, real MaxMind DB files for tests and demos of
// b2s-edge, so that code reading GeoIP2 databases can be exercised without
// MaxMind's licensed data. It is not part of the product.
//
// The files are written with github.com/maxmind/mmdbwriter in the layout of
// MaxMind's GeoIP2-City and GeoIP2-Country databases (database_type, record
// keys, English names), so any GeoIP2 reader, such as
// github.com/oschwald/geoip2-golang/v2, opens them as it would the real ones.
// Unlike MaxMind's databases they may map reserved ranges (loopback, private,
// documentation), which is what local runs and tests connect from.
package geotest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// City is one network of a test database and the location it maps to.
// Empty strings and a zero Lat and Lon leave the matching record out, as
// MaxMind's databases do for networks they know less about.
type City struct {
	// Network is a CIDR prefix, IPv4 ("127.0.0.0/8") or IPv6 ("::1/128").
	// IPv4-mapped IPv6 prefixes ("::ffff:10.0.0.0/104") are stored as the
	// IPv4 prefix they map. As in every IPv6 MaxMind DB, ::/96 is the IPv4
	// subtree, so ::1/128 and 0.0.0.1/32 are the same entry.
	Network string
	// Continent is the two-letter continent code, such as "AS"; its
	// English name is filled in. Optional.
	Continent string
	// Country is the ISO 3166-1 alpha-2 code, such as "CN".
	Country string
	// CountryName is the country's English name, such as "China".
	CountryName string
	// Subdivision is the subdivision part of the ISO 3166-2 code only,
	// such as "GD" for CN-GD, which is how MaxMind stores it.
	Subdivision string
	// SubdivisionName is the subdivision's English name, such as
	// "Guangdong".
	SubdivisionName string
	// City is the city's English name, such as "Shenzhen".
	City string
	// Lat and Lon are the location in degrees. Both zero means no location.
	Lat, Lon float64
	// TimeZone is the IANA time zone, such as "Asia/Shanghai". Optional.
	TimeZone string
}

// continentNames are MaxMind's English continent names, keyed by the codes
// MaxMind uses.
var continentNames = map[string]string{
	"AF": "Africa",
	"AN": "Antarctica",
	"AS": "Asia",
	"EU": "Europe",
	"NA": "North America",
	"OC": "Oceania",
	"SA": "South America",
}

// WriteCityDB writes a GeoIP2-City database holding entries to path. Where
// entries overlap, a later entry replaces an earlier one for the overlap, so
// a /32 listed after its /8 carves an exception out of it.
func WriteCityDB(path string, entries []City) error {
	return write(path, "GeoIP2-City", entries, cityRecord)
}

// WriteCountryDB writes a GeoIP2-Country database holding entries to path.
// Only the continent and country fields of each entry are used, as a real
// Country database has no subdivision, city or location.
func WriteCountryDB(path string, entries []City) error {
	return write(path, "GeoIP2-Country", entries, countryRecord)
}

// Demo returns the entries of the demo database that test/demogeo writes:
// loopback maps to Shenzhen so that a local visit shows a location, and
// the IPv4 and IPv6 documentation ranges (RFC 5737, RFC 3849) map to other
// cities of Greater China, for tests that send X-Forwarded-For through a
// trusted proxy. 10.0.0.0/8 is left unmapped, for "no data" cases.
func Demo() []City {
	shenzhen := City{
		Continent: "AS", Country: "CN", CountryName: "China",
		Subdivision: "GD", SubdivisionName: "Guangdong",
		City: "Shenzhen", Lat: 22.5431, Lon: 114.0579, TimeZone: "Asia/Shanghai",
	}
	lo4, lo6 := shenzhen, shenzhen
	lo4.Network, lo6.Network = "127.0.0.0/8", "::1/128"
	return []City{
		lo4,
		lo6,
		{
			Network: "198.51.100.0/24", Continent: "AS", Country: "HK", CountryName: "Hong Kong",
			City: "Hong Kong", Lat: 22.3193, Lon: 114.1694, TimeZone: "Asia/Hong_Kong",
		},
		{
			Network: "203.0.113.0/24", Continent: "AS", Country: "CN", CountryName: "China",
			Subdivision: "SH", SubdivisionName: "Shanghai",
			City: "Shanghai", Lat: 31.2304, Lon: 121.4737, TimeZone: "Asia/Shanghai",
		},
		{
			Network: "192.0.2.0/24", Continent: "AS", Country: "TW", CountryName: "Taiwan",
			Subdivision: "TPE", SubdivisionName: "Taipei",
			City: "Taipei", Lat: 25.0330, Lon: 121.5654, TimeZone: "Asia/Taipei",
		},
		{
			Network: "2001:db8::/32", Continent: "AS", Country: "CN", CountryName: "China",
			Subdivision: "BJ", SubdivisionName: "Beijing",
			City: "Beijing", Lat: 39.9042, Lon: 116.4074, TimeZone: "Asia/Shanghai",
		},
	}
}

func write(path, dbType string, entries []City, record func(City) mmdbtype.Map) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: dbType,
		Description:  map[string]string{"en": "b2s-edge test data (internal/geotest), not real locations"},
		Languages:    []string{"en"},
		// Tests and demos connect from loopback, private and
		// documentation ranges, which mmdbwriter refuses by default.
		IncludeReservedNetworks: true,
		// IPv4 aliasing is left on (the default), as in MaxMind's
		// databases: IPv4 entries are also found through ::ffff:0:0/96
		// (IPv4-mapped), 2002::/16 (6to4) and 2001::/32 (Teredo).
	})
	if err != nil {
		return fmt.Errorf("creating %s tree: %w", dbType, err)
	}
	for i, e := range entries {
		network, err := parseNetwork(e.Network)
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if err := check(e); err != nil {
			return fmt.Errorf("entry %d (%s): %w", i, e.Network, err)
		}
		if err := tree.Insert(network, record(e)); err != nil {
			return fmt.Errorf("inserting entry %d (%s): %w", i, e.Network, err)
		}
	}
	return writeFile(path, tree)
}

// parseNetwork turns a CIDR string into the form mmdbwriter inserts: a
// 4-byte IP for IPv4, which it places in the IPv4 subtree (::/96) that its
// aliases point to. An IPv4-mapped prefix is unmapped first; inserting it
// as IPv6 would collide with the ::ffff:0:0/96 alias.
func parseNetwork(s string) (*net.IPNet, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, fmt.Errorf("parsing network %q: %w", s, err)
	}
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	bits := 128
	if p.Addr().Is4() {
		bits = 32
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}, nil
}

// check catches entries that would write a database unlike MaxMind's, which
// a reader under test would then decode "correctly" into wrong values.
func check(e City) error {
	if e.Continent != "" && continentNames[e.Continent] == "" {
		return fmt.Errorf("unknown continent code %q", e.Continent)
	}
	if e.Country != "" && len(e.Country) != 2 {
		return fmt.Errorf("country %q is not an ISO 3166-1 alpha-2 code", e.Country)
	}
	if strings.Contains(e.Subdivision, "-") {
		return fmt.Errorf("subdivision %q: give only the part after the country, such as %q", e.Subdivision, e.Subdivision[strings.LastIndex(e.Subdivision, "-")+1:])
	}
	return nil
}

func names(en string) mmdbtype.Map {
	return mmdbtype.Map{"en": mmdbtype.String(en)}
}

// countryRecord builds the keys a GeoIP2-Country record has: continent,
// country and registered_country. Test data has no separate registry
// country, so registered_country repeats country, as it does for most
// networks in MaxMind's data.
func countryRecord(e City) mmdbtype.Map {
	m := mmdbtype.Map{}
	if e.Continent != "" {
		m["continent"] = mmdbtype.Map{
			"code":  mmdbtype.String(e.Continent),
			"names": names(continentNames[e.Continent]),
		}
	}
	if e.Country != "" || e.CountryName != "" {
		c := mmdbtype.Map{}
		if e.Country != "" {
			c["iso_code"] = mmdbtype.String(e.Country)
		}
		if e.CountryName != "" {
			c["names"] = names(e.CountryName)
		}
		m["country"] = c
		m["registered_country"] = c
	}
	return m
}

// cityRecord adds a GeoIP2-City record's subdivisions, city and location
// to the country keys.
func cityRecord(e City) mmdbtype.Map {
	m := countryRecord(e)
	if e.Subdivision != "" || e.SubdivisionName != "" {
		s := mmdbtype.Map{}
		if e.Subdivision != "" {
			s["iso_code"] = mmdbtype.String(e.Subdivision)
		}
		if e.SubdivisionName != "" {
			s["names"] = names(e.SubdivisionName)
		}
		// subdivisions is a list, largest first; test data has one level.
		m["subdivisions"] = mmdbtype.Slice{s}
	}
	if e.City != "" {
		m["city"] = mmdbtype.Map{"names": names(e.City)}
	}
	if e.Lat != 0 || e.Lon != 0 || e.TimeZone != "" {
		l := mmdbtype.Map{}
		if e.Lat != 0 || e.Lon != 0 {
			l["latitude"] = mmdbtype.Float64(e.Lat)
			l["longitude"] = mmdbtype.Float64(e.Lon)
		}
		if e.TimeZone != "" {
			l["time_zone"] = mmdbtype.String(e.TimeZone)
		}
		m["location"] = l
	}
	return m
}

// writeFile writes the database beside path and renames it into place.
// Readers mmap the file, so rewriting a database a running process has
// open would change (or truncate) pages under it; a rename leaves the old
// inode intact until the reader reopens.
func writeFile(path string, tree *mmdbwriter.Tree) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing database %q: %w", path, err)
	}
	_, err = tree.WriteTo(f)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing database %q: %w", path, err)
	}
	return nil
}
