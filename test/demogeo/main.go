// Command demogeo writes the demo GeoIP2-City database of b2s-edge, so that
// a visit to a local demo, which comes from loopback and which no real
// GeoIP database locates, is recorded with a location. Usage:
//
//	go run ./test/demogeo -o demo-city.mmdb
//
// The database maps 127.0.0.0/8 and ::1 to Shenzhen (CN, GD) and the
// documentation ranges to other cities: 198.51.100.0/24 to Hong Kong,
// 203.0.113.0/24 to Shanghai, 192.0.2.0/24 to Taipei and 2001:db8::/32 to
// Beijing; 10.0.0.0/8 is left out, to show a visit with no location. The
// entries are geotest.Demo, which tests can use to know what to expect.
// It is test data, not real locations, and never part of the product.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/b2scom/b2s-edge/internal/geotest"
)

func main() {
	out := flag.String("o", "", "`path` of the database to write (required); an existing file is replaced atomically")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	entries := geotest.Demo()
	if err := geotest.WriteCityDB(*out, entries); err != nil {
		fmt.Fprintf(os.Stderr, "demogeo: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "demogeo: wrote %s (GeoIP2-City, %d networks)\n", *out, len(entries))
}
