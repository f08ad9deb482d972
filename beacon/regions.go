package beacon

import (
	"fmt"
	"slices"
	"strings"
)

// Regions is a set of countries, by ISO 3166-1 alpha-2 code, where a site
// asks for the visitor's consent before any identifier. The zero value is
// empty: no country needs consent.
type Regions struct {
	countries map[string]bool
	all       bool
}

// regionGroups are the named groups a region list may hold, in lower case.
var regionGroups = map[string][]string{
	// The EU's 27 member states, the rest of the EEA (Iceland,
	// Liechtenstein, Norway), which applies the GDPR and the ePrivacy
	// Directive, the United Kingdom (UK GDPR, PECR) and Switzerland
	// (revFADP), whose rules on cookies sites commonly meet the same way.
	"eu": {
		"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
		"IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
		"IS", "LI", "NO",
		"GB",
		"CH",
	},
}

// RegionGroups lists the named groups a region list may hold besides
// "all" and country codes, sorted.
func RegionGroups() []string {
	names := make([]string, 0, len(regionGroups))
	for n := range regionGroups {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// RegionCountries returns the countries of the named group, or nil for a
// name that is no group.
func RegionCountries(group string) []string {
	return slices.Clone(regionGroups[strings.ToLower(group)])
}

// ParseRegions reads a region list: ISO 3166-1 alpha-2 country codes in
// either case ("DE", "cn"), the named groups in either case ("eu", which
// "EU" names too) and "all" (every country). Codes are checked for shape
// (two ASCII letters) and against the user-assigned codes, which name no
// country: "AA", "QM"-"QZ", "XA"-"XZ" and "ZZ".
func ParseRegions(list []string) (Regions, error) {
	rs := Regions{countries: map[string]bool{}}
	for _, s := range list {
		low := strings.ToLower(s)
		if low == "all" {
			rs.all = true
			continue
		}
		if g, ok := regionGroups[low]; ok {
			for _, cc := range g {
				rs.countries[cc] = true
			}
			continue
		}
		cc := strings.ToUpper(s)
		if !countryCode(cc) {
			return Regions{}, fmt.Errorf("%q is not an ISO 3166-1 alpha-2 country code or a region (%s, all)", s, strings.Join(RegionGroups(), ", "))
		}
		rs.countries[cc] = true
	}
	return rs, nil
}

// countryCode reports whether cc (upper case) has the shape of an ISO
// 3166-1 alpha-2 country code and is not one of the user-assigned codes.
func countryCode(cc string) bool {
	if len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' {
		return false
	}
	switch {
	case cc == "AA", cc == "ZZ":
		return false
	case cc[0] == 'Q' && cc[1] >= 'M', cc[0] == 'X':
		return false
	}
	return true
}

// Countries returns the countries listed, sorted (without "all").
func (rs Regions) Countries() []string {
	out := make([]string, 0, len(rs.countries))
	for cc := range rs.countries {
		out = append(out, cc)
	}
	slices.Sort(out)
	return out
}

// Empty reports whether no country needs consent.
func (rs Regions) Empty() bool { return !rs.all && len(rs.countries) == 0 }

// All reports whether every country needs consent.
func (rs Regions) All() bool { return rs.all }

// Contains reports whether a visitor of country (an ISO 3166-1 alpha-2
// code, as GeoIP databases give it, in either case) needs consent. An
// unknown country ("") is never contained: the caller decides, by its
// own policy, what no location means.
func (rs Regions) Contains(country string) bool {
	if country == "" {
		return false
	}
	if rs.all {
		return true
	}
	if len(country) == 2 && (country[0] >= 'a' || country[1] >= 'a') {
		country = strings.ToUpper(country)
	}
	return rs.countries[country]
}
