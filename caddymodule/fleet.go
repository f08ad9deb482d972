package caddymodule

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
)

// What makes several edges behind a balancer one system: the same keys in
// the same roles, the same network and privacy settings, and records that
// say which edge wrote them. The metrics here let an operator see that
// the edges agree without revealing a key.

// NextSecret is a key that becomes the signing key at a set time.
type NextSecret struct {
	// Key is the new key, at least 32 bytes. Before At it only verifies;
	// from At on it signs, and the secrets become older keys. A
	// placeholder that resolves to nothing turns it off, so
	// {env.B2S_SECRET_NEXT} can stay in the config between rotations.
	Key string `json:"key,omitempty"`

	// At is the switch-over time, RFC 3339 (e.g. 2027-01-10T09:00:00Z).
	// Every edge switches when its own clock reaches it; since each
	// verifies both keys throughout, edges whose clocks differ by a few
	// seconds sign with different keys for those seconds and no visitor
	// notices. Required with Key. Placeholders are replaced at load.
	At string `json:"at,omitempty"`
}

// resolveKeys resolves the key options into a key set (see beacon.Keys):
// secrets (the first signs, the others are older keys), verify_secrets
// and next_secret. A verify-only or next key whose placeholder resolves to
// nothing is left out.
func (a *App) resolveKeys(repl *caddy.Replacer) (beacon.Keys, error) {
	keys, err := a.resolveSecrets(repl)
	if err != nil {
		return beacon.Keys{}, err
	}
	// The same key twice among the secrets is one key (B2S_SECRET_OLD set
	// to B2S_SECRET between rotations); a key in two roles is refused by
	// Validate below.
	ks := beacon.Keys{Sign: keys[0]}
	for _, k := range keys[1:] {
		same := func(o []byte) bool { return bytes.Equal(o, k) }
		if !same(ks.Sign) && !slices.ContainsFunc(ks.Older, same) {
			ks.Older = append(ks.Older, k)
		}
	}
	for i, s := range a.VerifySecrets {
		k := []byte(repl.ReplaceKnown(s, ""))
		if len(k) == 0 {
			continue // no rotation under way
		}
		if len(k) < beacon.MinKeyLen {
			return beacon.Keys{}, fmt.Errorf("b2s: verify_secret %d is %d bytes, shorter than the minimum of %d; generate one with openssl rand -base64 48", i+1, len(k), beacon.MinKeyLen)
		}
		ks.Verify = append(ks.Verify, k)
	}
	if n := a.NextSecret; n != nil {
		if k := []byte(repl.ReplaceKnown(n.Key, "")); len(k) > 0 {
			if len(k) < beacon.MinKeyLen {
				return beacon.Keys{}, fmt.Errorf("b2s: next_secret is %d bytes, shorter than the minimum of %d; generate one with openssl rand -base64 48", len(k), beacon.MinKeyLen)
			}
			at := repl.ReplaceKnown(n.At, "")
			t, err := time.Parse(time.RFC3339, at)
			if err != nil {
				return beacon.Keys{}, fmt.Errorf("b2s: next_secret: at %q is not an RFC 3339 time; give the switch-over time, e.g. next_secret {env.B2S_SECRET_NEXT} at 2027-01-10T09:00:00Z", at)
			}
			ks.Next, ks.NextAt = k, t
		}
	}
	if err := ks.Validate(); err != nil {
		return beacon.Keys{}, fmt.Errorf("b2s: secret: %v; give each key one role: secret, verify_secret or next_secret (once a new key signs, empty B2S_SECRET_NEXT)", err)
	}
	return ks, nil
}

// logKeys says which keys are in force, by fingerprint, and warns of a
// next key whose time has passed: it signs from the start, which is safe
// only if every edge already verifies it.
func (a *App) logKeys(ks beacon.Keys) {
	now := a.now()
	var fields []zap.Field
	for _, k := range a.signer.Keys(now) {
		fields = append(fields, zap.String(k.Fingerprint, k.Role.String()))
	}
	a.logger.Info("cookie keys", append(fields, zap.String("edge_id", a.edgeID))...)
	if ks.Next != nil && !now.Before(ks.NextAt) {
		a.logger.Warn("next_secret's switch-over time has passed: it signs now; every edge must already verify it",
			zap.Time("at", ks.NextAt), zap.String("fingerprint", beacon.Fingerprint(ks.Next)))
	}
}

// maxEdgeID bounds edge_id.
const maxEdgeID = beacon.MaxEdgeLen

// resolveEdgeID returns edge_id with its placeholders replaced, or the
// host name when it is empty.
func (a *App) resolveEdgeID(repl *caddy.Replacer) (string, error) {
	id := repl.ReplaceKnown(a.EdgeID, "")
	if id == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("b2s: edge_id: none set and the host name is unknown (%v); set edge_id, e.g. edge_id {env.B2S_EDGE_ID}", err)
		}
		id = h
	}
	if !validEdgeID(id) {
		return "", fmt.Errorf("b2s: edge_id %q must be 1 to %d letters, digits and -_.:; set edge_id, e.g. edge_id fra-1", id, maxEdgeID)
	}
	return id, nil
}

func validEdgeID(s string) bool {
	if s == "" || len(s) > maxEdgeID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// fingerprint returns the first 8 hex characters of SHA-256 of v's JSON.
func fingerprint(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain values only
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// networkFingerprint names the network settings in force, with their
// defaults: every edge must list the same sites, or a link token made on
// one is refused on another, and serve the same link endpoint.
func (a *App) networkFingerprint() string {
	nw := a.network
	if nw == nil {
		return fingerprint(nil)
	}
	return fingerprint(struct {
		Sites               []string
		LinkPath, TokenName string
		TokenTTL            time.Duration
	}{nw.sites, nw.linkPath, nw.tokenParam, nw.tokenTTL})
}

// privacyFingerprint names the privacy settings in force, with their
// defaults, and the cookie's name and lifetimes: an edge that differs
// records or identifies visitors differently from the others.
func (a *App) privacyFingerprint() string {
	pv := a.privacy
	fp := fingerprint(struct {
		OptOut, OptIn            string
		GPC, Truncate            bool
		V4, V6                   int
		Child, Member            string
		Cookie                   string
		CookieMaxAge, CookieRefr time.Duration
	}{pv.optOutPath, pv.optInPath, pv.gpc, pv.truncate, pv.v4, pv.v6, pv.childHeader, pv.memberHeader,
		a.CookieName, time.Duration(a.CookieMaxAge), time.Duration(a.CookieRefresh)})
	if r := a.recordSettings(); r != nil {
		// Only when not the defaults, like the consent settings below.
		fp = fingerprint(struct {
			Base    string
			Records any
		}{fp, r})
	}
	if c := pv.consentSettings(); c != nil {
		// Only with require_consent, so that edges without it keep
		// the fingerprint they had before consent regions existed.
		fp = fingerprint(struct {
			Base    string
			Consent any
		}{fp, c})
	}
	return fp
}

// recordSettings are the privacy settings of what records carry besides
// identifiers, or nil for the defaults: the parameters redact_params
// names (in any case, so lower-cased and sorted), and how anon_id is made
// ("off", or "key" and the fingerprint of anon_id_key; a random salt per
// edge, the default, differs between edges by design).
func (a *App) recordSettings() any {
	var names []string
	if a.Privacy != nil {
		for _, n := range a.Privacy.RedactParams {
			names = append(names, strings.ToLower(n))
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	anon := "edge"
	switch {
	case a.anonIDs == nil:
		anon = "off"
	case a.anonIDs.KeyFingerprint() != "":
		anon = "key " + a.anonIDs.KeyFingerprint()
	}
	if len(names) == 0 && anon == "edge" {
		return nil
	}
	return struct {
		RedactParams []string
		AnonID       string
	}{names, anon}
}

// fleetState is what the fleet metrics show: the app in force.
type fleetState struct {
	signer           *beacon.Signer
	edge             string
	network, privacy string
	nextAt           time.Time // zero without a next key
	now              func() time.Time
}

// inForce is the app whose config is in force (set by Start), read at
// scrape time.
var inForce atomic.Pointer[fleetState]

// publishFleet makes a's keys and settings the ones the metrics show.
func (a *App) publishFleet() {
	inForce.Store(&fleetState{signer: a.signer, edge: a.edgeID, network: a.networkFingerprint(),
		privacy: a.privacyFingerprint(), nextAt: a.nextAt, now: a.now})
}

// fleetCollector exports b2s_key_info, b2s_config_info and
// b2s_key_next_switch_timestamp_seconds from the config in force. Roles
// are judged at scrape time, so a next key shows as the signing key from
// its switch-over time on.
type fleetCollector struct{}

var (
	keyInfoDesc = prometheus.NewDesc(metricsNamespace+"_key_info",
		"The cookie and link token keys this edge holds, 1 per key: fingerprint (8 hex characters of an HMAC of a fixed label under the key, the same on every edge for the same key, revealing nothing of it) and role: sign, older (verifies, its cookies re-signed), verify (verifies only) or next (verifies only until its switch-over time, then signs). Every edge of a fleet should show the same set.",
		[]string{"fingerprint", "role"}, nil)
	configInfoDesc = prometheus.NewDesc(metricsNamespace+"_config_info",
		"The settings that must match across edges, 1: edge (edge_id, what records carry), network (fingerprint of the network sites, link path, token parameter and lifetime) and privacy (fingerprint of the privacy settings and the cookie's name and lifetimes), with their defaults.",
		[]string{"edge", "network", "privacy"}, nil)
	nextSwitchDesc = prometheus.NewDesc(metricsNamespace+"_key_next_switch_timestamp_seconds",
		"When next_secret becomes the signing key, Unix seconds; 0 without one.", nil, nil)
)

func (fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- keyInfoDesc
	ch <- configInfoDesc
	ch <- nextSwitchDesc
}

func (fleetCollector) Collect(ch chan<- prometheus.Metric) {
	st := inForce.Load()
	if st == nil {
		return
	}
	for _, k := range st.signer.Keys(st.now()) {
		ch <- prometheus.MustNewConstMetric(keyInfoDesc, prometheus.GaugeValue, 1, k.Fingerprint, k.Role.String())
	}
	ch <- prometheus.MustNewConstMetric(configInfoDesc, prometheus.GaugeValue, 1, st.edge, st.network, st.privacy)
	var next float64
	if !st.nextAt.IsZero() {
		next = float64(st.nextAt.Unix())
	}
	ch <- prometheus.MustNewConstMetric(nextSwitchDesc, prometheus.GaugeValue, next)
}
