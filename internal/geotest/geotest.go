// Package geotest writes small, real MaxMind DB files for tests and demos of
// b2s-edge, so that code reading GeoIP2 databases can be exercised without
// MaxMind's licensed data. It is not part of the product.
//
// The files are written with github.com/maxmind/mmdbwriter in the layout of
// MaxMind's GeoIP2-City, GeoIP2-Country, GeoLite2-ASN and
// GeoIP2-Anonymous-IP databases (database_type, record keys, English names),
// so any GeoIP2 reader, such as github.com/oschwald/geoip2-golang/v2, opens
// them as it would the real ones.
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

// ASN is one network of a test ASN database and the autonomous system it
// maps to.
type ASN struct {
	// Network is a CIDR prefix, as in City.
	Network string
	// Number is the autonomous system number; 0 leaves it out, as
	// MaxMind's data does for some networks.
	Number uint32
	// Org is the organisation the number is registered to; "" leaves it
	// out.
	Org string
}

// Anonymous is one network of a test Anonymous IP database and its flags.
// Only the flags that are true are written, as in MaxMind's data; an entry
// with none is written as an empty record.
type Anonymous struct {
	// Network is a CIDR prefix, as in City.
	Network string
	// Anonymous is is_anonymous. It is written too when any other flag is
	// set, as MaxMind does; set it alone for a network listed as anonymous
	// of no more specific kind.
	Anonymous bool
	// VPN is is_anonymous_vpn.
	VPN bool
	// Hosting is is_hosting_provider.
	Hosting bool
	// PublicProxy is is_public_proxy.
	PublicProxy bool
	// ResidentialProxy is is_residential_proxy.
	ResidentialProxy bool
	// TorExitNode is is_tor_exit_node.
	TorExitNode bool
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
	return write(path, "GeoIP2-City", entries, func(e City) (string, mmdbtype.Map, error) {
		return e.Network, cityRecord(e), check(e)
	})
}

// WriteCountryDB writes a GeoIP2-Country database holding entries to path.
// Only the continent and country fields of each entry are used, as a real
// Country database has no subdivision, city or location.
func WriteCountryDB(path string, entries []City) error {
	return write(path, "GeoIP2-Country", entries, func(e City) (string, mmdbtype.Map, error) {
		return e.Network, countryRecord(e), check(e)
	})
}

// WriteASNDB writes a GeoLite2-ASN database holding entries to path. Later
// entries replace earlier ones where they overlap, as in WriteCityDB.
func WriteASNDB(path string, entries []ASN) error {
	return write(path, "GeoLite2-ASN", entries, func(e ASN) (string, mmdbtype.Map, error) {
		m := mmdbtype.Map{}
		if e.Number != 0 {
			m["autonomous_system_number"] = mmdbtype.Uint32(e.Number)
		}
		if e.Org != "" {
			m["autonomous_system_organization"] = mmdbtype.String(e.Org)
		}
		return e.Network, m, nil
	})
}

// WriteAnonymousDB writes a GeoIP2-Anonymous-IP database holding entries to
// path. Later entries replace earlier ones where they overlap, as in
// WriteCityDB.
func WriteAnonymousDB(path string, entries []Anonymous) error {
	return write(path, "GeoIP2-Anonymous-IP", entries, func(e Anonymous) (string, mmdbtype.Map, error) {
		m := mmdbtype.Map{}
		for key, set := range map[mmdbtype.String]bool{
			"is_anonymous_vpn":     e.VPN,
			"is_hosting_provider":  e.Hosting,
			"is_public_proxy":      e.PublicProxy,
			"is_residential_proxy": e.ResidentialProxy,
			"is_tor_exit_node":     e.TorExitNode,
		} {
			if set {
				m[key] = mmdbtype.Bool(true)
			}
		}
		if e.Anonymous || len(m) > 0 {
			m["is_anonymous"] = mmdbtype.Bool(true)
		}
		return e.Network, m, nil
	})
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

// DemoASN returns the entries of the demo ASN database that test/demogeo
// writes, over the networks of Demo: each maps to an AS number reserved for
// documentation (RFC 5398) and an invented organisation, the kind of names
// a B2B portal sees (a buyer's company, a carrier, a hosting provider).
// 10.0.0.0/8 is left unmapped, for "no data" cases.
func DemoASN() []ASN {
	return []ASN{
		{Network: "127.0.0.0/8", Number: 64496, Org: "Shenzhen Precision Machinery Co., Ltd."},
		{Network: "::1/128", Number: 64496, Org: "Shenzhen Precision Machinery Co., Ltd."},
		{Network: "198.51.100.0/24", Number: 64497, Org: "Harbour Trading (HK) Ltd."},
		{Network: "203.0.113.0/24", Number: 64498, Org: "Example Shanghai Telecom"},
		{Network: "192.0.2.0/24", Number: 64499, Org: "Example Cloud Hosting Taipei"},
		{Network: "2001:db8::/32", Number: 64500, Org: "Example Beijing Broadband"},
	}
}

// DemoAnonymous returns the entries of the demo Anonymous IP database that
// test/demogeo writes: the Taipei network of Demo (192.0.2.0/24) is a
// hosting provider that runs an anonymous VPN, and one address of the
// Shanghai network (203.0.113.66) is a Tor exit node. Loopback is not
// listed: a local visit is an ordinary one.
func DemoAnonymous() []Anonymous {
	return []Anonymous{
		{Network: "192.0.2.0/24", VPN: true, Hosting: true},
		{Network: "203.0.113.66/32", TorExitNode: true},
	}
}

// write writes a database of dbType holding entries; entry gives each
// one's network and record, or why it is refused.
func write[E any](path, dbType string, entries []E, entry func(E) (string, mmdbtype.Map, error)) error {
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
		prefix, record, err := entry(e)
		network, perr := parseNetwork(prefix)
		if perr != nil {
			return fmt.Errorf("entry %d: %w", i, perr)
		}
		if err != nil {
			return fmt.Errorf("entry %d (%s): %w", i, prefix, err)
		}
		if err := tree.Insert(network, record); err != nil {
			return fmt.Errorf("inserting entry %d (%s): %w", i, prefix, err)
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
