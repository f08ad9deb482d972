// Command demogeo writes the demo GeoIP databases of b2s-edge, so that a
// visit to a local demo, which comes from loopback and which no real GeoIP
// database knows, is recorded with a location and an autonomous system.
// Usage:
//
//	go run ./test/demogeo -o demo-city.mmdb [-asn demo-asn.mmdb] [-anonymous demo-anonymous.mmdb]
//
// The City database (-o) maps 127.0.0.0/8 and ::1 to Shenzhen (CN, GD) and
// the documentation ranges to other cities: 198.51.100.0/24 to Hong Kong,
// 203.0.113.0/24 to Shanghai, 192.0.2.0/24 to Taipei and 2001:db8::/32 to
// Beijing; 10.0.0.0/8 is left out, to show a visit with no location. The
// ASN database (-asn) gives each of those networks a documentation AS
// number and an invented organisation; the Anonymous IP database
// (-anonymous) lists 192.0.2.0/24 as a hosting provider running a VPN and
// 203.0.113.66 as a Tor exit node. The entries are geotest.Demo, DemoASN
// and DemoAnonymous, which tests can use to know what to expect. It is test
// data, not real locations or networks, and never part of the product.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/b2scom/b2s-edge/internal/geotest"
)

func main() {
	out := flag.String("o", "", "`path` of the City database to write (required); an existing file is replaced atomically")
	asn := flag.String("asn", "", "`path` of the ASN database to write, if any")
	anon := flag.String("anonymous", "", "`path` of the Anonymous IP database to write, if any")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	city := geotest.Demo()
	if err := geotest.WriteCityDB(*out, city); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "demogeo: wrote %s (GeoIP2-City, %d networks)\n", *out, len(city))
	if *asn != "" {
		entries := geotest.DemoASN()
		if err := geotest.WriteASNDB(*asn, entries); err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "demogeo: wrote %s (GeoLite2-ASN, %d networks)\n", *asn, len(entries))
	}
	if *anon != "" {
		entries := geotest.DemoAnonymous()
		if err := geotest.WriteAnonymousDB(*anon, entries); err != nil {
			fail(err)
		}
		fmt.Fprintf(os.Stderr, "demogeo: wrote %s (GeoIP2-Anonymous-IP, %d networks)\n", *anon, len(entries))
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "demogeo: %v\n", err)
	os.Exit(1)
}
