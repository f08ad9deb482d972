package caddymodule

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
)

// anonSalts holds the edge's random daily anon_id salt, so that a config
// reload keeps it: a reload in the middle of the day must not give every
// visitor a second anon_id. It is never written anywhere; the process's
// end, or the last config without anon_id, drops it.
var anonSalts = caddy.NewUsagePool()

// anonSaltKey is the one entry of anonSalts: one random salt per process.
const anonSaltKey = "random"

// pooledAnonIDs is the random-salt anon_id maker with the goroutine that
// drops its salt at each midnight (UTC), even when no request comes.
type pooledAnonIDs struct {
	ids  *beacon.AnonIDs
	stop chan struct{}
	done chan struct{}
}

func newPooledAnonIDs(now func() time.Time) (*pooledAnonIDs, error) {
	ids, err := beacon.NewAnonIDs(nil)
	if err != nil {
		return nil, err
	}
	p := &pooledAnonIDs{ids: ids, stop: make(chan struct{}), done: make(chan struct{})}
	go p.forgetAtMidnight(now)
	return p, nil
}

// forgetAtMidnight drops the day's salt as the UTC day ends.
func (p *pooledAnonIDs) forgetAtMidnight(now func() time.Time) {
	defer close(p.done)
	for {
		t := now()
		next := t.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		timer := time.NewTimer(next.Sub(t))
		select {
		case <-p.stop:
			timer.Stop()
			return
		case <-timer.C:
			p.ids.Forget(now())
		}
	}
}

// Destruct stops the goroutine; the salt goes with the last reference.
func (p *pooledAnonIDs) Destruct() error {
	close(p.stop)
	<-p.done
	return nil
}

// provisionAnonIDs sets up the anon_id maker of the privacy options: with
// anon_id_key, salts derived from the key (placeholders replaced when
// repl is given); otherwise the process's random daily salt, from
// anonSalts when pooled (a config load) or of this app alone (tests).
func (a *App) provisionAnonIDs(repl *caddy.Replacer, pooled bool) error {
	p := a.Privacy
	if p != nil && p.AnonID != nil && !*p.AnonID {
		return nil
	}
	if p != nil && p.AnonIDKey != "" {
		key := p.AnonIDKey
		if repl != nil {
			key = repl.ReplaceKnown(key, "")
		}
		if key == "" {
			return fmt.Errorf("b2s: privacy: anon_id_key (%q) is empty after placeholders were replaced; set the environment variable it names, or remove anon_id_key to give each edge a random salt of its own", p.AnonIDKey)
		}
		if len(key) < beacon.MinAnonKeyLen {
			return fmt.Errorf("b2s: privacy: anon_id_key is %d bytes, shorter than the minimum of %d; generate one with openssl rand -base64 48", len(key), beacon.MinAnonKeyLen)
		}
		ids, err := beacon.NewAnonIDs([]byte(key))
		if err != nil {
			return fmt.Errorf("b2s: privacy: anon_id_key: %v", err)
		}
		a.anonIDs = ids
		if pooled {
			a.logger.Info("anon_id on", zap.String("salt", "derived from anon_id_key"))
		}
		return nil
	}
	if !pooled {
		ids, err := beacon.NewAnonIDs(nil)
		if err != nil {
			return fmt.Errorf("b2s: privacy: anon_id: %v", err)
		}
		a.anonIDs = ids
		return nil
	}
	v, _, err := anonSalts.LoadOrNew(anonSaltKey, func() (caddy.Destructor, error) {
		return newPooledAnonIDs(time.Now)
	})
	if err != nil {
		return fmt.Errorf("b2s: privacy: anon_id: %v", err)
	}
	a.anonIDs, a.anonPooled = v.(*pooledAnonIDs).ids, true
	a.logger.Info("anon_id on", zap.String("salt", "random per UTC day, in memory only"))
	return nil
}

// releaseAnonIDs lets go of the pooled salt.
func (a *App) releaseAnonIDs() {
	if a.anonPooled {
		_, _ = anonSalts.Delete(anonSaltKey)
		a.anonPooled = false
	}
	a.anonIDs = nil
}

// stampAnonID gives rec its anon_id when its consent allows no
// identifier and is not a child's, from ip, the client's full address
// (the record keeps only its prefix). Every other record gets none.
func (a *App) stampAnonID(rec *beacon.Record, ip netip.Addr) {
	rec.AnonID = beacon.AnonID{}
	if a.anonIDs == nil || rec.Consent.Identifying() || rec.Consent == beacon.ConsentChild {
		return
	}
	rec.AnonID, _ = a.anonIDs.ID(rec.Time, rec.Host, ip, rec.UserAgent)
}
