package beacon

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Keys is the set of keys an edge holds, each with a role. The roles are
// what makes a rotation safe on a fleet of edges behind a balancer: a new
// key must verify on every edge before any edge signs with it, or an edge
// that does not know it yet takes the cookies it signs for forgeries and
// issues new IDs. So a new key is first added as a verify-only key (Verify,
// or Next before NextAt) on every edge, and only then made the signing
// key.
type Keys struct {
	// Sign signs cookies, member cookies and link tokens (until NextAt,
	// when Next is set), and verifies.
	Sign []byte
	// Older verify; a cookie one of them signed is re-signed with the
	// signing key on the visitor's next request, so they can be dropped
	// once their cookies have come back.
	Older [][]byte
	// Verify verify only: a cookie one of them signed is accepted as it
	// is, never re-signed, and nothing is signed with them. A key that is
	// about to become the signing key on another edge is listed here.
	Verify [][]byte
	// Next, when set, is a verify-only key before NextAt and the signing
	// key from NextAt on, when Sign and Older become older keys: every
	// edge with the same Next and NextAt switches at the same moment,
	// give or take the difference of their clocks, without a second
	// deploy.
	Next   []byte
	NextAt time.Time
}

// KeyRole is what a key does at a given time.
type KeyRole uint8

const (
	// RoleSign signs and verifies.
	RoleSign KeyRole = iota
	// RoleOlder verifies; what it signed is re-signed.
	RoleOlder
	// RoleVerify verifies only.
	RoleVerify
	// RoleNext verifies only until its switch time, then signs.
	RoleNext
)

// String returns the role's name, as the b2s_key_info metric labels it.
func (r KeyRole) String() string {
	switch r {
	case RoleOlder:
		return "older"
	case RoleVerify:
		return "verify"
	case RoleNext:
		return "next"
	default:
		return "sign"
	}
}

// KeyInfo names one key without revealing it.
type KeyInfo struct {
	// Fingerprint is the first 8 hex characters of HMAC-SHA256 of a fixed
	// label under the key: the same key gives the same fingerprint on
	// every edge, and the fingerprint tells nothing about the key.
	Fingerprint string
	Role        KeyRole
}

// Fingerprint returns the short fingerprint of key (see KeyInfo).
func Fingerprint(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("b2s-edge key fingerprint v1"))
	return hex.EncodeToString(m.Sum(nil)[:4])
}

// All returns every key, the signing key first, then the older, the
// verify-only and the next key: for what seals with the first key and
// opens with any.
func (k Keys) All() [][]byte { return k.list() }

// list returns the keys in the order a Signer holds them: the signing
// key, the older keys, the verify-only keys, then the next key.
func (k Keys) list() [][]byte {
	keys := make([][]byte, 0, 2+len(k.Older)+len(k.Verify))
	keys = append(keys, k.Sign)
	keys = append(keys, k.Older...)
	keys = append(keys, k.Verify...)
	if k.Next != nil {
		keys = append(keys, k.Next)
	}
	return keys
}

// Validate checks that there is a signing key, that every key is long
// enough, that Next comes with its time, and that no key is listed twice
// (a key in two roles would do both).
func (k Keys) Validate() error {
	if err := ValidateKeys(k.list()); err != nil {
		return err
	}
	if k.Next != nil && k.NextAt.IsZero() {
		return errors.New("the next key has no switch time")
	}
	seen := make(map[string]bool)
	for i, key := range k.list() {
		if seen[string(key)] {
			return fmt.Errorf("key %d is listed twice", i+1)
		}
		seen[string(key)] = true
	}
	return nil
}

// keyRoles places a Keys' roles in the list it makes, and picks the
// signing key at a given time.
type keyRoles struct {
	older    int   // keys [1, older] are older keys
	verify   int   // keys (older, verify] are verify-only keys
	next     int   // index of the next key, or -1
	switchAt int64 // unix seconds from which the next key signs
}

func rolesOf(k Keys) keyRoles {
	r := keyRoles{older: len(k.Older), next: -1}
	r.verify = r.older + len(k.Verify)
	if k.Next != nil {
		r.next = r.verify + 1
		r.switchAt = k.NextAt.Unix()
	}
	return r
}

// signing returns the index of the key that signs at now.
func (r *keyRoles) signing(now time.Time) int {
	if r.next >= 0 && now.Unix() >= r.switchAt {
		return r.next
	}
	return 0
}

// role returns what key i does at now.
func (r *keyRoles) role(i int, now time.Time) KeyRole {
	switched := r.next >= 0 && now.Unix() >= r.switchAt
	switch {
	case i == r.next && switched:
		return RoleSign
	case i == r.next:
		return RoleNext
	case i == 0 && !switched:
		return RoleSign
	case i <= r.older:
		return RoleOlder
	default:
		return RoleVerify
	}
}

// info lists the fingerprints and roles of keys at now.
func (r *keyRoles) info(fps []string, now time.Time) []KeyInfo {
	out := make([]KeyInfo, len(fps))
	for i, fp := range fps {
		out[i] = KeyInfo{Fingerprint: fp, Role: r.role(i, now)}
	}
	return out
}
