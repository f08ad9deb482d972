// Package caddymodule is the Caddy glue of b2s-edge: the global `b2s` app,
// which owns the cookie keys, the GeoIP readers and the Kafka shipper shared
// by every site, and the `b2s_collect`, `b2s_isolate` and `b2s_health` HTTP
// handlers. The logic it wires together lives in the Caddy-free packages
// beacon, geo and logship. The README's "How it works" maps its files.
package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/geo"
	"github.com/b2scom/b2s-edge/logship"
)

func init() {
	caddy.RegisterModule(App{})
}

// Defaults of the b2s app.
const (
	DefaultCookieName    = "b2sid"
	DefaultCookieMaxAge  = caddy.Duration(400 * 24 * time.Hour) // Chrome caps cookie lifetime at 400 days
	DefaultCookieRefresh = caddy.Duration(24 * time.Hour)
	DefaultFlushTimeout  = caddy.Duration(5 * time.Second)
	DefaultSpoolMaxSize  = logship.DefaultSpoolMaxSize
	DefaultFsync         = "1s"
)

// App is the `b2s` app: configuration and resources shared by every site
// that uses `b2s_collect`. Its spool, Kafka shipper and GeoIP readers live
// in process-wide pools, so a config reload keeps them, and one that
// changes the Kafka settings hands the spool over to the new settings
// without losing or duplicating a record.
type App struct {
	// Secrets are the HMAC-SHA256 keys that sign the cookie ID, each at
	// least 32 bytes. The first signs new cookies, member cookies and link
	// tokens; all of them verify, and a cookie of an older one is
	// re-signed with the first on the visitor's next request. On more than
	// one edge a new key must verify everywhere before it signs anywhere:
	// see VerifySecrets and NextSecret, and the README's key rotation.
	// Placeholders such as {env.B2S_SECRET} are
	// replaced at load; an older key whose placeholder resolves to nothing
	// is skipped, so {env.B2S_SECRET_OLD} can stay in the config between
	// rotations. Environment variables are read from the process's
	// environment: a new key takes a restart, not a reload. Required.
	// Anyone holding a key can forge IDs.
	Secrets []string `json:"secrets,omitempty"`

	// VerifySecrets are keys that only verify, each at least 32 bytes: a
	// cookie or link token they signed is accepted as it is and never
	// re-signed, and nothing is signed with them. A rotation lists the new
	// key here on every edge first, then makes it the first secret. A
	// placeholder that resolves to nothing is skipped, so
	// {env.B2S_SECRET_NEXT} can stay in the config between rotations.
	VerifySecrets []string `json:"verify_secrets,omitempty"`

	// NextSecret is a key that verifies only until a set time and signs
	// from then on, so every edge switches at the same moment without a
	// second deploy. Default: none.
	NextSecret *NextSecret `json:"next_secret,omitempty"`

	// EdgeID names this edge in every record ("edge") and in the
	// b2s_config_info metric, so a record can be followed back to the
	// machine whose spool and logs hold it: 1 to 64 letters, digits and
	// -_.:. Placeholders are replaced at load. Default: the host name.
	EdgeID string `json:"edge_id,omitempty"`

	// CookieName is the name of the first-party cookie. Default "b2sid".
	CookieName string `json:"cookie_name,omitempty"`

	// CookieMaxAge is the cookie's lifetime (its Max-Age). Default 400d,
	// the most Chrome keeps a cookie. The edge enforces it too: a cookie
	// issued (or refreshed) longer ago, or in the future, beyond a few
	// minutes of clock skew, is not valid and is replaced.
	CookieMaxAge caddy.Duration `json:"cookie_max_age,omitempty"`

	// CookieRefresh is how old a valid cookie may get before the edge sets
	// it again with a fresh Max-Age, so a visitor who keeps coming back
	// keeps their ID. Responses that set a cookie are made private to
	// shared caches, so this also bounds how often that happens per
	// visitor. Default 24h, or half of cookie_max_age if that is shorter.
	CookieRefresh caddy.Duration `json:"cookie_refresh,omitempty"`

	// GeoIP is the path to a MaxMind City or Country database (.mmdb).
	// When set, records carry the location the database gives for the
	// client IP. A missing, corrupt or wrong-type file fails the load.
	// Placeholders are replaced at load; one that resolves to nothing
	// (an unset environment variable) turns GeoIP off.
	GeoIP string `json:"geoip,omitempty"`

	// GeoIPASN is the path to a MaxMind ASN database: GeoLite2-ASN, or
	// GeoIP2-ISP, which holds the same fields. When set, records carry the
	// autonomous system number and organisation the database gives for
	// the client IP (asn). For a business visitor the organisation is
	// often their employer, so a record can name the company that
	// visited. A missing, corrupt or wrong-type file fails the load.
	// Placeholders are replaced at load; one that resolves to nothing
	// turns it off. Default: none.
	GeoIPASN string `json:"geoip_asn,omitempty"`

	// GeoIPAnonymous is the path to a MaxMind GeoIP2 Anonymous IP database
	// (or GeoIP Anonymous Plus, which holds the same flags). When set, the
	// records of clients the database lists as an anonymous VPN, hosting
	// provider, public or residential proxy or Tor exit node carry those
	// flags (anon); nothing is blocked. A missing, corrupt or wrong-type
	// file fails the load. Placeholders are replaced at load; one that
	// resolves to nothing turns it off. Default: none.
	GeoIPAnonymous string `json:"geoip_anonymous,omitempty"`

	// GeoIPReload is how often the GeoIP files (geoip, geoip_asn and
	// geoip_anonymous) and the bots file are checked for a replacement (geoipupdate renames
	// a new file into place). A new file is read, fully verified, checked
	// to be of the same kind and swapped in atomically; one that is not is
	// refused, logged, and the database in use kept. A config reload
	// checks at once. Default 1m; "0" turns checking off.
	GeoIPReload *caddy.Duration `json:"geoip_reload,omitempty"`

	// Bots is the path to a bot list: a JSON array of User-Agent patterns
	// in the format of the public crawler-user-agents list, which loads
	// as it is (see the README). Records of requests whose User-Agent an
	// entry matches are flagged with its class in bot; nothing is
	// dropped. The file is checked for a replacement as often as
	// geoip_reload says: a new file is read, fully verified and swapped
	// in atomically; one that does not verify is refused, logged, and the
	// list in use kept. A missing or invalid file fails the load.
	// Placeholders are replaced at load; one that resolves to nothing
	// means the built-in list. Default: the built-in list (the public
	// list as of its 1.60.0 release and b2s's own entries).
	Bots string `json:"bots,omitempty"`

	// Spool is the directory of the durable spool: every record is
	// appended there before the response is written, and shipped to Kafka
	// from there. Records survive a crash of the process, a broker outage
	// and restarts. One process at a time may use a directory. Default:
	// b2s/spool under Caddy's data directory. Placeholders are replaced at
	// load.
	Spool string `json:"spool,omitempty"`

	// SpoolMaxSize bounds the spool on disk, in bytes. When it is full,
	// beacons are still served and pages still proxied, but new records
	// are dropped, counted in b2s_records_dropped_total{reason="spool_full"}
	// and logged at most every 10s. Default 1 GiB.
	SpoolMaxSize int64 `json:"spool_max_size,omitempty"`

	// Fsync is how often the spool is flushed to stable storage: a
	// duration (the most a power loss, not a crash of the process, can
	// lose), "always" (every record before its response: nothing is lost
	// even on power loss, at a high cost per request) or "never" (left to
	// the kernel, typically 30s). Default "1s".
	Fsync string `json:"fsync,omitempty"`

	// Kafka is where records are shipped. Required.
	Kafka *KafkaConfig `json:"kafka,omitempty"`

	// Network lists the sites of the b2s.com network, which share one
	// visitor across their own first-party cookies. Default: none, each
	// site stands alone.
	Network *Network `json:"network,omitempty"`

	// Privacy configures opt-out, Global Privacy Control, IP truncation,
	// the regions that require consent, and the site's child and member
	// signals. Every site with b2s_collect honours them; the defaults
	// apply without this block.
	Privacy *Privacy `json:"privacy,omitempty"`

	// ClientLimit bounds the records one client can put into the spool
	// per second (see ClientLimit). Default: on, 10 a second (burst 600)
	// per visitor, 50 a second (burst 3000) per address.
	ClientLimit *ClientLimit `json:"client_limit,omitempty"`

	signer *beacon.Signer
	// optInKeys key the opt-in form's tokens (optin_token.go): the first,
	// from the signing key, makes them; every one, from each key an edge
	// verifies with, checks them, so a form fetched from one edge of a
	// fleet in the middle of a rotation is taken by the others.
	optInKeys [][]byte
	network   *network
	mail      *mailLinks
	privacy   *privacy
	limits    clientLimits
	geo       *geo.Reloading[beacon.Geo]
	asn       *geo.Reloading[beacon.ASN]
	anon      *geo.Reloading[beacon.Anon]
	geoKeys   []string // geoDBs keys of the databases held
	bots      *botFile // nil: the built-in list
	botsKey   string   // its botFiles key
	sink      *sink
	spool     *logship.Spool // where records are appended: the sink's, or a test's
	secrets   [][]byte
	edgeID    string
	nextAt    time.Time // when the next key signs; zero without one
	logger    *zap.Logger
	now       func() time.Time
	// anonIDs makes records' anon_ids (anon.go); nil with anon_id off.
	// anonPooled: it is the process's random salt, held in anonSalts.
	anonIDs    *beacon.AnonIDs
	anonPooled bool

	// consentKeys key the consent cookie (consent_cookie.go), in the
	// same order as optInKeys: the first makes it, every one checks it.
	consentKeys [][]byte
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "b2s",
		New: func() caddy.Module { return new(App) },
	}
}

// setDefaults fills in the options left at their zero value.
func (a *App) setDefaults() {
	if a.CookieName == "" {
		a.CookieName = DefaultCookieName
	}
	if a.CookieMaxAge == 0 {
		a.CookieMaxAge = DefaultCookieMaxAge
	}
	if a.CookieRefresh == 0 {
		a.CookieRefresh = min(DefaultCookieRefresh, a.CookieMaxAge/2)
	}
	if a.SpoolMaxSize == 0 {
		a.SpoolMaxSize = DefaultSpoolMaxSize
	}
	if a.Fsync == "" {
		a.Fsync = DefaultFsync
	}
}

// Provision sets defaults, resolves what takes placeholders (the keys,
// file paths, brokers and credentials) and takes the shared GeoIP
// readers, spool and Kafka shipper from their pools. Validate judges the
// rest of the options.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.setDefaults()
	repl := caddy.NewReplacer()

	keys, err := a.resolveKeys(repl)
	if err != nil {
		return err
	}
	if a.edgeID, err = a.resolveEdgeID(repl); err != nil {
		return err
	}

	registerMetrics(ctx.GetMetricsRegistry())

	if err := a.provisionGeoIP(repl); err != nil {
		return err
	}
	if err := a.provisionBots(repl, a.reloadEvery()); err != nil {
		return err
	}

	if a.Kafka == nil {
		return fmt.Errorf("b2s: kafka: missing; add a kafka block with brokers to the global b2s options")
	}
	kc, err := a.shipperConfig(repl)
	if err != nil {
		return err
	}
	if err := kc.cfg.Validate(); err != nil {
		return fmt.Errorf("b2s: kafka: %v", err)
	}
	sc, err := a.spoolConfig(repl)
	if err != nil {
		return err
	}
	k, err := loadSink(a, sc, kc, time.Duration(a.Kafka.FlushTimeout))
	if err != nil {
		return fmt.Errorf("b2s: spool: %v; point the spool option at a directory this process alone can write", err)
	}
	a.sink = k
	if err := a.provisionAnonIDs(repl, true); err != nil {
		return err
	}
	if err := a.setupKeys(keys, k.spool); err != nil {
		return err
	}
	a.logKeys(keys)
	a.logConsent()
	sasl := "none"
	if kc.cfg.SASL != nil {
		sasl = kc.cfg.SASL.Mechanism
	}
	a.logger.Info("spool ready", zap.String("dir", sc.Dir), zap.Int64("bytes", k.spool.Size()),
		zap.String("topic", kc.cfg.WithDefaults().Topic), zap.Bool("tls", kc.cfg.TLS != nil), zap.String("sasl", sasl))
	return nil
}

// setup makes what the request path uses from the options, once their
// defaults are set: the cookie signer from keys (the first signs, the
// others are older keys), the privacy and network options, and the spool
// that records are appended to. Tests and benchmarks call it to serve
// requests without Caddy.
func (a *App) setup(keys [][]byte, spool *logship.Spool) error {
	if err := beacon.ValidateKeys(keys); err != nil {
		return fmt.Errorf("b2s: secret: %v", err)
	}
	return a.setupKeys(beacon.Keys{Sign: keys[0], Older: keys[1:]}, spool)
}

// setupKeys is setup with a key set; Provision calls it once the keys are
// resolved and the spool is open.
func (a *App) setupKeys(keys beacon.Keys, spool *logship.Spool) error {
	signer, err := beacon.NewKeySigner(keys)
	if err != nil {
		return fmt.Errorf("b2s: secret: %v", err)
	}
	a.signer = signer
	all := keys.All() // the signing key first
	a.optInKeys = make([][]byte, len(all))
	for i, k := range all {
		a.optInKeys[i] = optInKey(k)
	}
	a.consentKeys = make([][]byte, len(all))
	for i, k := range all {
		a.consentKeys[i] = consentKey(k)
	}
	a.nextAt = keys.NextAt
	a.privacy = a.Privacy.provision(a.CookieName)
	if a.anonIDs == nil {
		if err := a.provisionAnonIDs(nil, false); err != nil {
			return err
		}
	}
	a.limits = a.ClientLimit.provision()
	if a.network, err = a.Network.provision(keys); err != nil {
		return err
	}
	// Mail links seal with the signing key and open with every key.
	if a.mail, err = newMailLinks(keys.All(), spool); err != nil {
		return fmt.Errorf("b2s: mail links: %v", err)
	}
	a.spool = spool
	a.agents().Classify("") // the built-in bot list compiled now, not on the first request
	if a.logger == nil {
		a.logger = zap.NewNop()
	}
	if a.now == nil {
		a.now = time.Now
	}
	return nil
}

// resolveSecrets replaces the placeholders in the keys and checks them.
// An older key whose placeholder resolves to nothing (no rotation under
// way) is left out of the keys returned.
func (a *App) resolveSecrets(repl *caddy.Replacer) ([][]byte, error) {
	a.secrets = a.secrets[:0]
	for _, s := range a.Secrets {
		a.secrets = append(a.secrets, []byte(repl.ReplaceKnown(s, "")))
	}
	if err := a.checkSecrets(); err != nil {
		return nil, err
	}
	keys := a.secrets[:1:1]
	for _, k := range a.secrets[1:] {
		if len(k) > 0 {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// checkSecrets names the directive and the fix for each way a key can be
// wrong. It runs in Provision because placeholders are only known there.
func (a *App) checkSecrets() error {
	if len(a.secrets) == 0 {
		return fmt.Errorf("b2s: secret: missing; set at least one key of %d or more bytes, e.g. secret {env.B2S_SECRET} with B2S_SECRET=$(openssl rand -base64 48)", beacon.MinKeyLen)
	}
	for i, k := range a.secrets {
		if len(k) == 0 && i > 0 {
			continue // an older key left unset: no rotation under way
		}
		if len(k) == 0 {
			return fmt.Errorf("b2s: secret %d (%q) is empty after placeholders were replaced; set the environment variable it names", i+1, a.Secrets[i])
		}
		if len(k) < beacon.MinKeyLen {
			return fmt.Errorf("b2s: secret %d is %d bytes, shorter than the minimum of %d; generate one with openssl rand -base64 48", i+1, len(k), beacon.MinKeyLen)
		}
	}
	return nil
}

// Validate checks the configuration: everything Provision did not need to
// resolve, judged here once, so that JSON and Caddyfile users get the same
// errors.
func (a *App) Validate() error {
	if !validCookieName(a.CookieName) {
		return fmt.Errorf("b2s: cookie_name %q is not a valid cookie name; use letters, digits and -_.", a.CookieName)
	}
	if a.CookieMaxAge <= 0 {
		return fmt.Errorf("b2s: cookie_max_age must be positive, e.g. 400d")
	}
	if a.CookieRefresh <= 0 || a.CookieRefresh > a.CookieMaxAge {
		return fmt.Errorf("b2s: cookie_refresh must be positive and no longer than cookie_max_age")
	}
	if k := a.Kafka; k != nil {
		if k.BatchSize < 0 || k.BatchTimeout < 0 || k.WriteTimeout < 0 || k.FlushTimeout < 0 {
			return fmt.Errorf("b2s: kafka: batch_size and the timeouts must not be negative")
		}
		if err := k.checkSecurity(); err != nil {
			return err
		}
	}
	if err := a.privacy.validate(); err != nil {
		return err
	}
	if err := a.ClientLimit.validate(); err != nil {
		return err
	}
	return a.network.validate(a.privacy)
}

// Start puts this config's Kafka settings in force on the shared spool's
// shipper. The spool opens and the shipper starts in Provision, so records
// accepted while other apps start are kept; settings wait for Start so
// that a config that fails to load never ships anywhere.
func (a *App) Start() error {
	if a.sink != nil {
		a.sink.activate(a)
	}
	a.publishFleet()
	return nil
}

// Stop is a no-op; Cleanup releases the shared resources.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's hold on the shared resources. The last
// holder of a spool ships what it can within the flush timeout and closes
// it; the rest waits in the spool for the next start.
func (a *App) Cleanup() error {
	if a.sink != nil {
		a.sink.release(a)
		a.sink = nil
	}
	for _, key := range a.geoKeys {
		_, _ = geoDBs.Delete(key)
	}
	a.geoKeys = nil
	if a.botsKey != "" {
		_, _ = botFiles.Delete(a.botsKey)
		a.bots, a.botsKey = nil, ""
	}
	a.releaseAnonIDs()
	return nil
}

// getApp returns the b2s app of ctx's config, provisioning it if needed.
func getApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.AppIfConfigured("b2s")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, fmt.Errorf("the global b2s options are missing; add a b2s block with a secret and a kafka block to the global options")
	}
	if err != nil {
		return nil, err
	}
	return v.(*App), nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
