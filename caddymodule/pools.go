package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/b2scom/b2s-edge/geo"
	"github.com/b2scom/b2s-edge/logship"
)

// State that outlives a config reload. A reload provisions the new config
// before cleaning up the old one, so a resource whose key is unchanged is
// handed over with its queue intact; one whose key changed is drained by
// its destructor once the old config lets go.
var (
	shippers = caddy.NewUsagePool()
	geoDBs   = caddy.NewUsagePool()
)

type pooledShipper struct {
	*logship.Shipper
	flush time.Duration
}

// Destruct delivers what is queued, waiting at most the flush timeout.
func (p pooledShipper) Destruct() error {
	ctx, cancel := flushContext(p.flush)
	defer cancel()
	return p.Close(ctx)
}

// loadShipper returns the shipper for cfg, creating it on first use. The
// key is every setting of the producer, so changing any of them (brokers,
// topic, compression...) takes effect on reload.
func loadShipper(cfg logship.Config, flush time.Duration) (*logship.Shipper, string, error) {
	keyCfg := cfg
	keyCfg.Logger, keyCfg.Stats, keyCfg.Transport = nil, nil, nil
	k, err := json.Marshal(keyCfg)
	if err != nil {
		return nil, "", err
	}
	key := "kafka:" + string(k)
	v, _, err := shippers.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := logship.New(cfg)
		if err != nil {
			return nil, err
		}
		return pooledShipper{s, flush}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(pooledShipper).Shipper, key, nil
}

type pooledGeo struct{ *geo.DB }

func (p pooledGeo) Destruct() error { return p.Close() }

// loadGeo returns the database at path (absolute), opening it on first use.
// The key includes the file's size and modification time, so a reload
// after the file was replaced (as geoipupdate does) opens the new one.
func loadGeo(path string) (*geo.DB, string, error) {
	key := path
	if st, err := os.Stat(path); err == nil {
		key = fmt.Sprintf("%s|%d|%d", path, st.Size(), st.ModTime().UnixNano())
	}
	v, _, err := geoDBs.LoadOrNew(key, func() (caddy.Destructor, error) {
		db, err := geo.Open(path)
		if err != nil {
			return nil, err
		}
		return pooledGeo{db}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(pooledGeo).DB, key, nil
}
