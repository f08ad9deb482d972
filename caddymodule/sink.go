package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/logship"
)

// sinks holds one spool and its shipper per spool directory, state that
// outlives a config reload: two configs never open one directory, and a
// reload, even one that changes the brokers or topic, keeps the spool and
// its cursor. A reload provisions the new config before cleaning up the
// old one, so both hold the sink for a moment and it is handed over
// without a gap.
var sinks = caddy.NewUsagePool()

// sink is a spool and the shipper that drains it, shared by every config
// that names the same spool directory. The Kafka settings in force are
// those of the config that started last; a config that was provisioned
// but never started (a reload that failed) never puts its settings in
// force, and when the config in force goes away, those of the one
// started before it come back.
type sink struct {
	spool  *logship.Spool
	ship   *logship.Shipper
	logger *zap.Logger

	mu       sync.Mutex
	holders  []sinkHolder
	flush    time.Duration // flush timeout of the settings in force
	security string        // kafkaSettings.security of the settings in force
}

type sinkHolder struct {
	app   *App
	kafka kafkaSettings
	flush time.Duration
	max   int64
}

// kafkaSettings are the settings that make a producer: logship's Config,
// and the identity of its TLS and SASL settings, which the Config holds as
// a *tls.Config and a password that sameKafka does not compare.
type kafkaSettings struct {
	cfg      logship.Config
	security string // kafkaSecurity.key
}

// Destruct delivers what it can within the flush timeout, then closes the
// spool; whatever Kafka did not take stays in it for the next start.
func (k *sink) Destruct() error {
	k.mu.Lock()
	flush := k.flush
	k.mu.Unlock()
	ctx, cancel := flushContext(flush)
	defer cancel()
	err := k.ship.Close(ctx)
	if n := k.spool.Size(); n > 0 && k.ship.Failing() {
		k.logger.Warn("kafka unreachable at shutdown; records stay in the spool for the next start",
			zap.String("spool", k.spool.Dir()), zap.Int64("spool_bytes", n))
	}
	return errors.Join(err, k.spool.Close())
}

// loadSink returns the sink for spoolCfg.Dir, opening the spool and starting
// its shipper, with a's Kafka settings, on first use. When the sink exists
// already, a's settings take effect when a starts (see activate).
func loadSink(a *App, spoolCfg logship.SpoolConfig, kafka kafkaSettings, flush time.Duration) (*sink, error) {
	v, loaded, err := sinks.LoadOrNew(spoolCfg.Dir, func() (caddy.Destructor, error) {
		sp, err := logship.OpenSpool(spoolCfg)
		if err != nil {
			return nil, err
		}
		sh, err := logship.NewShipper(sp, kafka.cfg)
		if err != nil {
			sp.Close()
			return nil, err
		}
		return &sink{spool: sp, ship: sh, logger: a.logger, flush: flush, security: kafka.security}, nil
	})
	if err != nil {
		return nil, err
	}
	k := v.(*sink)
	if loaded && spoolCfg.Fsync != k.spoolFsync() {
		a.logger.Warn("a new fsync policy for an open spool takes effect at the next restart", zap.String("spool", spoolCfg.Dir))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	h := sinkHolder{app: a, kafka: kafka, flush: flush, max: spoolCfg.MaxSize}
	if loaded {
		// Not started yet: first in line, behind every started config.
		k.holders = slices.Insert(k.holders, 0, h)
	} else {
		k.holders = append(k.holders, h)
	}
	return k, nil
}

// activate puts a's settings in force: a has started, so it is the config
// that serves requests now.
func (k *sink) activate(a *App) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := slices.IndexFunc(k.holders, func(h sinkHolder) bool { return h.app == a })
	if i < 0 || i == len(k.holders)-1 {
		return
	}
	h := k.holders[i]
	k.holders = append(slices.Delete(k.holders, i, i+1), h)
	if err := k.apply(h.kafka, h.max); err != nil {
		k.logger.Error("applying kafka settings", zap.Error(err))
		return
	}
	k.flush = h.flush
}

// release drops a's hold; if a's settings were in force, those of the
// newest remaining holder come back.
func (k *sink) release(a *App) {
	k.mu.Lock()
	i := slices.IndexFunc(k.holders, func(h sinkHolder) bool { return h.app == a })
	if i >= 0 {
		wasActive := i == len(k.holders)-1
		k.holders = slices.Delete(k.holders, i, i+1)
		if wasActive && len(k.holders) > 0 {
			h := k.holders[len(k.holders)-1]
			if err := k.apply(h.kafka, h.max); err != nil {
				k.logger.Error("restoring kafka settings", zap.Error(err))
			}
			k.flush = h.flush
		}
	}
	k.mu.Unlock()
	_, _ = sinks.Delete(k.spool.Dir())
}

// apply puts Kafka settings and the spool's size in force, switching
// producers only when a setting changed. k.mu is held.
func (k *sink) apply(kafka kafkaSettings, max int64) error {
	k.spool.SetMaxSize(max)
	if sameKafka(kafkaSettings{cfg: k.ship.Config(), security: k.security}, kafka) {
		return nil
	}
	if err := k.ship.Reconfigure(kafka.cfg); err != nil {
		return err
	}
	k.security = kafka.security
	return nil
}

func (k *sink) spoolFsync() time.Duration { return k.spool.Fsync() }

// sameKafka compares the settings that make a producer. TLS and SASL are
// compared as the options that made them (file paths and contents,
// mechanism, username, a hash of the password), not as the *tls.Config
// and login built from them.
func sameKafka(a, b kafkaSettings) bool {
	key := func(s kafkaSettings) (string, error) {
		c := s.cfg.WithDefaults()
		c.Logger, c.Stats, c.Transport, c.TLS, c.SASL = nil, nil, nil, nil, nil
		j, err := json.Marshal(c)
		return string(j) + " " + s.security, err
	}
	ka, errA := key(a)
	kb, errB := key(b)
	return errA == nil && errB == nil && ka == kb
}

// spoolConfig resolves the spool options: the directory's placeholders
// replaced, the size and the fsync policy checked here rather than in
// Validate, as the spool opens in Provision.
func (a *App) spoolConfig(repl *caddy.Replacer) (logship.SpoolConfig, error) {
	dir := repl.ReplaceKnown(a.Spool, "")
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "b2s", "spool")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return logship.SpoolConfig{}, fmt.Errorf("b2s: spool: %v", err)
	}
	if a.SpoolMaxSize < 1<<20 {
		return logship.SpoolConfig{}, fmt.Errorf("b2s: spool_max_size %d is below the minimum of 1MiB; e.g. spool_max_size 1GiB", a.SpoolMaxSize)
	}
	fsync, err := parseFsync(a.Fsync)
	if err != nil {
		return logship.SpoolConfig{}, err
	}
	return logship.SpoolConfig{
		Dir:     dir,
		MaxSize: a.SpoolMaxSize,
		Fsync:   fsync,
		Stats:   stats,
		Logger:  a.logger.Named("spool"),
	}, nil
}

// parseFsync reads the fsync option: a duration, always or never.
func parseFsync(s string) (time.Duration, error) {
	switch s {
	case "always":
		return logship.FsyncAlways, nil
	case "never":
		return logship.FsyncNever, nil
	}
	d, err := caddy.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("b2s: fsync %q is not a positive duration, always or never; e.g. fsync 1s", s)
	}
	return d, nil
}

// flushContext bounds a shipper's final delivery.
func flushContext(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = time.Duration(DefaultFlushTimeout)
	}
	return context.WithTimeout(context.Background(), d)
}

// eachSink calls f for every open spool of the process.
func eachSink(f func(*sink)) {
	sinks.Range(func(_, v any) bool {
		f(v.(*sink))
		return true
	})
}

func sinkLag() (lag time.Duration) {
	eachSink(func(k *sink) { lag = max(lag, k.spool.Lag()) })
	return lag
}

func sinkBytes() (n int64) {
	eachSink(func(k *sink) { n += k.spool.Size() })
	return n
}

func sinkMax() (n int64) {
	eachSink(func(k *sink) { n += k.spool.MaxSize() })
	return n
}

func sinkFailing() (failing bool) {
	eachSink(func(k *sink) { failing = failing || k.ship.Failing() })
	return failing
}
