// Package geo looks up the location of a client IP in a MaxMind database
// (GeoIP2 or GeoLite2, City or Country) with github.com/oschwald/geoip2-golang,
// the reader MaxMind itself points Go users to. It knows nothing of Caddy.
package geo

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/b2scom/b2s-edge/beacon"
)

// DB is an open GeoIP database. It is safe for concurrent use.
//
// geoip2 opens and classifies the file; lookups read it through its
// maxminddb reader, decoding only the five fields a record needs (not the
// names in every language geoip2's models carry), and remember what they
// decoded by the data record's offset: all the networks of one city share
// one data record, so a busy site's lookups mostly skip decoding.
type DB struct {
	r     *geoip2.Reader
	mm    *maxminddb.Reader
	path  string
	kind  string
	cache sync.Map // data offset (uintptr) -> beacon.Geo
	size  atomic.Int64
}

// maxCached bounds the decoded-record cache; past it the cache is
// emptied and refilled (a few MB at most).
const maxCached = 1 << 16

// record is the part of a City or Country record that a Geo needs.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
	City struct {
		Names struct {
			English string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"city"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
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
	db := &DB{r: r, mm: raw, path: path, kind: r.Metadata().DatabaseType}
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
	if !ip.IsValid() {
		return beacon.Geo{}, false
	}
	res := db.mm.Lookup(ip.Unmap())
	if res.Err() != nil || !res.Found() {
		return beacon.Geo{}, false
	}
	off := res.Offset()
	if g, ok := db.cache.Load(off); ok {
		g := g.(beacon.Geo)
		return g, !g.Empty()
	}
	var rec record
	if err := res.Decode(&rec); err != nil {
		return beacon.Geo{}, false
	}
	g := beacon.Geo{Country: rec.Country.ISOCode, City: rec.City.Names.English}
	if len(rec.Subdivisions) > 0 {
		g.Subdivision = rec.Subdivisions[0].ISOCode
	}
	if rec.Location.Latitude != nil && rec.Location.Longitude != nil {
		g.Lat, g.Lon, g.HasCoords = *rec.Location.Latitude, *rec.Location.Longitude, true
	}
	if db.size.Add(1) > maxCached {
		db.cache.Clear()
		db.size.Store(0)
	}
	db.cache.Store(off, g)
	return g, !g.Empty()
}

// Close releases the database.
func (db *DB) Close() error { return db.r.Close() }
