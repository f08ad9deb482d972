// Package geo looks up the location of a client IP in a MaxMind database
// (GeoIP2 or GeoLite2, City or Country) with github.com/oschwald/geoip2-golang,
// the reader MaxMind itself points Go users to. It knows nothing of Caddy.
package geo

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/b2scom/b2s-edge/beacon"
)

// DB is an open GeoIP database. It is safe for concurrent use.
type DB struct {
	r    *geoip2.Reader
	path string
	kind string
}

// Open reads and fully verifies the database at path, so that a truncated
// or corrupt file is refused here rather than failing lookups later. Only
// City and Country databases are accepted. The database is read into
// memory rather than mapped: a DB stays valid for as long as anything uses
// it, whatever happens to the file, so one can be swapped for another
// under concurrent lookups with no unmapping hazard.
func Open(path string) (*DB, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("opening geoip database %q: %w", path, err)
	}
	// Verify walks the whole search tree and data section; geoip2 does not
	// expose it, so check with maxminddb first (a one-time cost at load).
	raw, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("opening geoip database %q: %w", path, err)
	}
	if err := raw.Verify(); err != nil {
		return nil, fmt.Errorf("verifying geoip database %q: %w", path, err)
	}
	r, err := geoip2.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("opening geoip database %q: %w", path, err)
	}
	db := &DB{r: r, path: path, kind: r.Metadata().DatabaseType}
	// City lookups work on Country databases too; anything else (ASN,
	// anonymous IP) would fail on every request, so refuse it now.
	if _, err := r.City(netip.IPv4Unspecified()); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("geoip database %q is of type %q, not a City or Country database: %w", path, db.kind, err)
	}
	return db, nil
}

// Type returns the database type from its metadata, e.g. "GeoIP2-City".
func (db *DB) Type() string { return db.kind }

// Lookup returns what the database holds for ip. A lookup error (a
// database damaged after load) is treated as "unknown": a record is
// never lost over its location.
func (db *DB) Lookup(ip netip.Addr) (beacon.Geo, bool) {
	var g beacon.Geo
	if !ip.IsValid() {
		return g, false
	}
	c, err := db.r.City(ip.Unmap())
	if err != nil || c == nil {
		return g, false
	}
	g.Country = c.Country.ISOCode
	if len(c.Subdivisions) > 0 {
		g.Subdivision = c.Subdivisions[0].ISOCode
	}
	g.City = c.City.Names.English
	if c.Location.Latitude != nil && c.Location.Longitude != nil {
		g.Lat, g.Lon, g.HasCoords = *c.Location.Latitude, *c.Location.Longitude, true
	}
	return g, !g.Empty()
}

// Close releases the database.
func (db *DB) Close() error { return db.r.Close() }
