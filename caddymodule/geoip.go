package caddymodule

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/geo"
)

// geoDBs holds the GeoIP databases in use, by kind and path, so that a
// config reload keeps them open (and checks their files at once).
var geoDBs = caddy.NewUsagePool()

// provisionGeoIP takes the GeoIP databases the options name from their
// pool. An option that resolves to nothing ({env.X} unset) means none of
// that kind.
func (a *App) provisionGeoIP(repl *caddy.Replacer) error {
	every := a.reloadEvery()
	var err error
	if a.geo, err = openGeoIP(a, repl, every, "geoip", a.GeoIP, geo.City, "City or Country .mmdb file"); err != nil {
		return err
	}
	if a.asn, err = openGeoIP(a, repl, every, "geoip_asn", a.GeoIPASN, geo.ASN, "ASN .mmdb file (GeoLite2-ASN or GeoIP2-ISP)"); err != nil {
		return err
	}
	if a.anon, err = openGeoIP(a, repl, every, "geoip_anonymous", a.GeoIPAnonymous, geo.Anonymous, "Anonymous IP .mmdb file (GeoIP2-Anonymous-IP)"); err != nil {
		return err
	}
	return nil
}

// reloadEvery is how often the GeoIP and bot list files are checked for
// a replacement; 0 means never.
func (a *App) reloadEvery() time.Duration {
	if a.GeoIPReload != nil {
		return time.Duration(*a.GeoIPReload)
	}
	return time.Minute
}

// openGeoIP opens the database of kind that option names (its value), or
// returns nil when it names none; file says which file the fix asks for.
func openGeoIP[T any](a *App, repl *caddy.Replacer, every time.Duration, option, value string, kind *geo.Kind[T], file string) (*geo.Reloading[T], error) {
	p := repl.ReplaceKnown(value, "")
	if p == "" {
		return nil, nil
	}
	path, err := filepath.Abs(p)
	if err != nil {
		return nil, fmt.Errorf("b2s: %s: %v", option, err)
	}
	db, key, err := loadGeo(path, kind, every, a.logger.Named("geoip"))
	if err != nil {
		return nil, fmt.Errorf("b2s: %s: %w; point the %s option at a readable MaxMind %s, or remove it", option, err, option, file)
	}
	a.geoKeys = append(a.geoKeys, key)
	a.logger.Info("geoip database loaded", zap.String("option", option), zap.String("path", path), zap.String("type", db.Type()))
	return db, nil
}

type pooledGeo[T any] struct{ *geo.Reloading[T] }

func (p pooledGeo[T]) Destruct() error { return p.Close() }

// loadGeo returns the database of kind at path (absolute), opening it on
// first use and checking the file every `every` for a replacement, and its
// key in geoDBs. One file can be held as one kind only; the key holds both.
// A config reload checks at once, so reloading after replacing the file
// takes effect immediately.
func loadGeo[T any](path string, kind *geo.Kind[T], every time.Duration, logger *zap.Logger) (*geo.Reloading[T], string, error) {
	key := kind.String() + " " + path
	v, loaded, err := geoDBs.LoadOrNew(key, func() (caddy.Destructor, error) {
		r, err := geo.OpenReloading(path, kind, every, logger)
		if err != nil {
			return nil, err
		}
		return pooledGeo[T]{r}, nil
	})
	if err != nil {
		return nil, "", err
	}
	r := v.(pooledGeo[T]).Reloading
	if loaded {
		r.Check()
	}
	return r, key, nil
}
