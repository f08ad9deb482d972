package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"time"
)

// The edge's consent cookie (cookie_name + "_consent", __Host- over https
// without cookie_domain) records consent given at the consent endpoint.
// Its value is a MAC of the visitor's cookie ID under a key derived from
// the secret, so no script of the site's origin can write one that
// counts: it knows no key, and cannot read (HttpOnly) the cookie ID to
// copy a MAC for. A cookie copied whole from another browser is bound to
// that browser's cookie ID and counts only beside it; a script that plants
// both (an unisolated ad, say) can make the visitor's records carry that
// other ID, which is why third-party scripts belong behind b2s_isolate.
// It is written once, at the grant, for cookie_max_age: consent given
// there lasts that long, and goes with the ID it is bound to (a new ID,
// after a cookie that did not verify, needs consent again).
//
// Consent given through the consent platform's cookie (consent_cookie)
// writes the same cookie with another value, a marker: a MAC of the
// cookie ID under a domain-separated input, which records that this ID's
// records have had consent_changed, and does not grant consent by itself
// (consent_platform.go). The platform's cookie decides while it is there;
// when it expires or is cleared, the marker does not extend the consent.

// consentKeyLabel derives the consent cookie's keys from the secrets, so
// that its MAC can never be mistaken for a cookie signature or an opt-in
// token.
const consentKeyLabel = "b2s consent cookie v1"

// consentMACLen is the bytes of the consent cookie's MAC.
const consentMACLen = 16

// consentKey derives a consent cookie key from a cookie key.
func consentKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(consentKeyLabel))
	return m.Sum(nil)
}

// markerPrefix comes before the cookie ID in the marker's MAC input. A
// cookie ID never holds a NUL, so no grant's MAC is a marker's.
const markerPrefix = "platform\x00"

// consentMAC is the MAC of prefix and cookieID: prefix "" for a grant at
// the endpoint, markerPrefix for the platform's marker.
func consentMAC(key []byte, prefix, cookieID string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(prefix))
	m.Write([]byte(cookieID))
	return m.Sum(nil)[:consentMACLen]
}

// consentValue is the consent cookie's value for cookieID, under the
// signing key.
func (c *Collect) consentValue(cookieID string) string {
	return base64.RawURLEncoding.EncodeToString(consentMAC(c.app.consentKeys[0], "", cookieID))
}

// markerValue is the consent cookie's value marking consent given
// through the platform's cookie to cookieID, under the signing key.
func (c *Collect) markerValue(cookieID string) string {
	return base64.RawURLEncoding.EncodeToString(consentMAC(c.app.consentKeys[0], markerPrefix, cookieID))
}

// consentProof is what the edge's consent cookies of a request say of
// one cookie ID.
type consentProof uint8

const (
	proofNone     consentProof = iota // none bound to the ID
	proofMarker                       // the platform's marker
	proofEndpoint                     // a grant at the consent endpoint
)

// consentCookieFor reports the edge's consent cookie of the request bound
// to cookieID, a grant before a marker.
func (c *Collect) consentCookieFor(jar *visitorCookies, cookieID string) consentProof {
	proof := proofNone
	for _, cv := range jar.consents[:jar.nconsents] {
		mac, err := base64.RawURLEncoding.DecodeString(cv)
		if err != nil || len(mac) != consentMACLen {
			continue
		}
		for _, key := range c.app.consentKeys {
			switch {
			case hmac.Equal(mac, consentMAC(key, "", cookieID)):
				return proofEndpoint
			case hmac.Equal(mac, consentMAC(key, markerPrefix, cookieID)):
				proof = proofMarker
			}
		}
	}
	return proof
}

// consentCookieValid reports whether one of the edge's consent cookies
// the request carries is bound to a valid, current cookie ID it carries
// (under the name identify reads).
func (c *Collect) consentCookieValid(jar *visitorCookies, now time.Time) bool {
	if jar.nconsents == 0 {
		return false
	}
	ids := &jar.ids
	if !ids.seen && jar.legacy.seen {
		ids = &jar.legacy
	}
	a := c.app
	for _, val := range ids.vals[:ids.n] {
		v, ok := a.signer.VerifyAt(val, now)
		if !ok || !c.current(v.Issued, now) {
			continue
		}
		for _, cv := range jar.consents[:jar.nconsents] {
			mac, err := base64.RawURLEncoding.DecodeString(cv)
			if err != nil || len(mac) != consentMACLen {
				continue
			}
			for _, key := range a.consentKeys {
				if hmac.Equal(mac, consentMAC(key, "", v.ID)) {
					return true
				}
			}
		}
	}
	return false
}
