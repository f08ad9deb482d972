// Package geo looks up a client IP in MaxMind databases (GeoIP2 or
// GeoLite2): its location in a City or Country database, its autonomous
// system in an ASN database, and whether it is a VPN, hosting provider,
// proxy or Tor exit node in an Anonymous IP database. Files are opened and
// classified with github.com/oschwald/geoip2-golang, the reader MaxMind
// itself points Go users to. It knows nothing of Caddy.
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

// Kind is a kind of database and what a lookup in it gives: City, ASN or
// Anonymous. It decides which files Open accepts as that kind.
type Kind[T any] struct {
	name string // e.g. "ASN"
	what string // for errors: "an ASN database"
	// check returns an error when r is of another kind.
	check func(r *geoip2.Reader) error
	// decode reads the fields a record needs from a found data record.
	decode func(res maxminddb.Result) (T, error)
	empty  func(v *T) bool
}

// String returns the kind's name: "City or Country", "ASN" or
// "Anonymous IP".
func (k *Kind[T]) String() string { return k.name }

// The kinds of database a record draws on.
var (
	// City is a City or Country database (GeoIP2, GeoLite2 or a DB-IP
	// equivalent). A Country database gives only the country.
	City = &Kind[beacon.Geo]{
		name: "City or Country", what: "a City or Country database",
		check: func(r *geoip2.Reader) error {
			_, err := r.City(netip.IPv4Unspecified()) // also accepts Country databases
			return err
		},
		decode: decodeCity,
		empty:  (*beacon.Geo).Empty,
	}
	// ASN is an ASN database: GeoLite2-ASN, or GeoIP2-ISP, which holds the
	// same two fields.
	ASN = &Kind[beacon.ASN]{
		name: "ASN", what: "an ASN database",
		check: func(r *geoip2.Reader) error {
			_, err := r.ASN(netip.IPv4Unspecified())
			return err
		},
		decode: decodeASN,
		empty:  (*beacon.ASN).Empty,
	}
	// Anonymous is a GeoIP2-Anonymous-IP database, or GeoIP-Anonymous-Plus,
	// which holds the same flags.
	Anonymous = &Kind[beacon.Anon]{
		name: "Anonymous IP", what: "an Anonymous IP database",
		check: func(r *geoip2.Reader) error {
			_, err := r.AnonymousIP(netip.IPv4Unspecified())
			if err != nil {
				if _, plus := r.AnonymousPlus(netip.IPv4Unspecified()); plus == nil {
					return nil
				}
			}
			return err
		},
		decode: decodeAnon,
		empty:  func(a *beacon.Anon) bool { return *a == 0 },
	}
)

// DB is an open database of one kind. It is safe for concurrent use.
//
// geoip2 opens and classifies the file; lookups read it through its
// maxminddb reader, decoding only the fields a record needs (not the names
// in every language geoip2's models carry), and remember what they decoded
// by the data record's offset: all the networks of one city, one
// autonomous system or one set of flags share one data record, so a busy
// site's lookups mostly skip decoding.
type DB[T any] struct {
	mm     *maxminddb.Reader
	kind   *Kind[T]
	dbType string
	cache  sync.Map // data offset (uintptr) -> cached[T]
	size   atomic.Int64
	max    int64 // maxCached; lower in tests
}

// cached is a decoded record and whether it holds anything.
type cached[T any] struct {
	v     T
	found bool
}

// maxCached bounds the decoded-record cache of each database; past it the
// cache is emptied and refilled (a few MB at most).
const maxCached = 1 << 16

// Open reads and fully verifies the database at path, so that a truncated
// or corrupt file is refused here rather than failing lookups later, and
// refuses a database of another kind than kind. The database is read into
// memory rather than mapped: a DB stays valid for as long as anything uses
// it, whatever happens to the file, so one can be swapped for another
// under concurrent lookups with no unmapping hazard.
func Open[T any](path string, kind *Kind[T]) (*DB[T], error) {
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
	dbType := r.Metadata().DatabaseType
	// A database of another kind would fail or find nothing on every
	// request, so refuse it now.
	if err := kind.check(r); err != nil {
		return nil, fmt.Errorf("geoip database %q is of type %q, not %s: %w", path, dbType, kind.what, err)
	}
	return &DB[T]{mm: raw, kind: kind, dbType: dbType, max: maxCached}, nil
}

// Type returns the database type from its metadata, e.g. "GeoIP2-City".
func (db *DB[T]) Type() string { return db.dbType }

// Lookup returns what the database holds for ip, and whether that is
// anything. A lookup error (a database damaged after load) is treated as
// "unknown": a record is never lost over it.
func (db *DB[T]) Lookup(ip netip.Addr) (T, bool) {
	var zero T
	if !ip.IsValid() {
		return zero, false
	}
	res := db.mm.Lookup(ip.Unmap())
	if res.Err() != nil || !res.Found() {
		return zero, false
	}
	off := res.Offset()
	if c, ok := db.cache.Load(off); ok {
		c := c.(cached[T])
		return c.v, c.found
	}
	v, err := db.kind.decode(res)
	if err != nil {
		return zero, false
	}
	c := cached[T]{v: v, found: !db.kind.empty(&v)}
	if db.size.Add(1) > db.max {
		db.cache.Clear()
		db.size.Store(0)
	}
	db.cache.Store(off, c)
	return c.v, c.found
}

// Close releases the database. Lookups must have ended.
func (db *DB[T]) Close() error { return db.mm.Close() }

// cityRecord is the part of a City or Country record that a Geo needs.
type cityRecord struct {
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

func decodeCity(res maxminddb.Result) (beacon.Geo, error) {
	var rec cityRecord
	if err := res.Decode(&rec); err != nil {
		return beacon.Geo{}, err
	}
	g := beacon.Geo{Country: rec.Country.ISOCode, City: rec.City.Names.English}
	if len(rec.Subdivisions) > 0 {
		g.Subdivision = rec.Subdivisions[0].ISOCode
	}
	if rec.Location.Latitude != nil && rec.Location.Longitude != nil {
		g.Lat, g.Lon, g.HasCoords = *rec.Location.Latitude, *rec.Location.Longitude, true
	}
	return g, nil
}

// asnRecord is an ASN (or ISP) record's part that an ASN needs.
type asnRecord struct {
	Number uint32 `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

func decodeASN(res maxminddb.Result) (beacon.ASN, error) {
	var rec asnRecord
	if err := res.Decode(&rec); err != nil {
		return beacon.ASN{}, err
	}
	return beacon.ASN{Number: rec.Number, Org: rec.Org}, nil
}

// anonRecord is an Anonymous IP record. MaxMind stores only the flags
// that are true.
type anonRecord struct {
	Anonymous        bool `maxminddb:"is_anonymous"`
	VPN              bool `maxminddb:"is_anonymous_vpn"`
	Hosting          bool `maxminddb:"is_hosting_provider"`
	PublicProxy      bool `maxminddb:"is_public_proxy"`
	ResidentialProxy bool `maxminddb:"is_residential_proxy"`
	TorExitNode      bool `maxminddb:"is_tor_exit_node"`
}

func decodeAnon(res maxminddb.Result) (beacon.Anon, error) {
	var rec anonRecord
	if err := res.Decode(&rec); err != nil {
		return 0, err
	}
	var a beacon.Anon
	for _, f := range [...]struct {
		set  bool
		flag beacon.Anon
	}{
		{rec.Anonymous, beacon.AnonAnonymous},
		{rec.VPN, beacon.AnonVPN},
		{rec.Hosting, beacon.AnonHosting},
		{rec.PublicProxy, beacon.AnonProxy},
		{rec.ResidentialProxy, beacon.AnonResidentialProxy},
		{rec.TorExitNode, beacon.AnonTor},
	} {
		if f.set {
			a |= f.flag
		}
	}
	return a, nil
}
