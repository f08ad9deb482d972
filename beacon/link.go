package beacon

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"time"
)

// A link token carries a visitor's network ID across a navigation from one
// site of the network to another, in a URL parameter that the destination
// removes at once. It is sealed with AES-256-GCM (key derived from the
// cookie secret with HMAC-SHA256), so the URL shows nothing but random
// bytes: not the network ID, not where it came from. Plaintext:
//
//	version (1) | expiry (4, unix seconds) | network ID (16) | len(from) (1) | from | to
//
// where from is the source host and to the destination host: a token is
// only good on the host it was made for. The GCM nonce, 12 random bytes,
// also names the token for the single-use check.
const (
	linkVersion  = 1
	linkNonceLen = 12
	maxLinkHost  = 255
	// MaxLinkTokenLen bounds the tokens the edge looks at.
	MaxLinkTokenLen = 4 * (linkNonceLen + 1 + 4 + 16 + 1 + 2*maxLinkHost + 16) / 3
)

// Link token errors, for the caller's metrics.
var (
	ErrLinkInvalid = errors.New("link token does not open")
	ErrLinkExpired = errors.New("link token expired")
	ErrLinkHost    = errors.New("link token is for another host")
)

// LinkSealer seals and opens link tokens. Its keys are derived from the
// cookie keys and follow their roles (see Keys): the key derived from the
// signing key seals; every key opens, so a token sealed on an edge that
// already signs with a new key opens on one where that key is still
// verify-only.
type LinkSealer struct {
	aeads []cipher.AEAD
	roles keyRoles
}

// NewLinkSealer derives one AES-256-GCM key from each cookie key: the
// first seals.
func NewLinkSealer(keys ...[]byte) (*LinkSealer, error) {
	if err := ValidateKeys(keys); err != nil {
		return nil, err
	}
	return NewKeyLinkSealer(Keys{Sign: keys[0], Older: keys[1:]})
}

// NewKeyLinkSealer derives one AES-256-GCM key from each key of a cookie
// key set, which must pass its Validate.
func NewKeyLinkSealer(ks Keys) (*LinkSealer, error) {
	if err := ks.Validate(); err != nil {
		return nil, err
	}
	l := &LinkSealer{roles: rolesOf(ks)}
	for _, k := range ks.list() {
		aead, err := DerivedAEAD(k, "b2s-edge link token key v1")
		if err != nil {
			return nil, err
		}
		l.aeads = append(l.aeads, aead)
	}
	return l, nil
}

// Link is what a token carries.
type Link struct {
	// NetworkID is the visitor's network ID, 32 lowercase hex.
	NetworkID string
	// From is the host the visitor came from.
	From string
	// Nonce names the token, for the single-use check.
	Nonce [linkNonceLen]byte
	// Expires is when the token stops being accepted.
	Expires time.Time
}

// Seal returns a token for a visitor with network ID nid going from host
// from to host to, good until now+ttl.
func (l *LinkSealer) Seal(nid, from, to string, now time.Time, ttl time.Duration) (string, error) {
	var raw [16]byte
	if len(nid) != idHexLen || !isLowerHex(nid) {
		return "", errors.New("network ID is not 32 lowercase hex characters")
	}
	_, _ = hex.Decode(raw[:], []byte(nid))
	from, to = strings.ToLower(from), strings.ToLower(to)
	if len(from) > maxLinkHost || len(to) > maxLinkHost {
		return "", errors.New("host name too long")
	}
	pt := make([]byte, 0, 1+4+16+1+len(from)+len(to))
	pt = append(pt, linkVersion)
	pt = binary.BigEndian.AppendUint32(pt, uint32(now.Add(ttl).Unix()))
	pt = append(pt, raw[:]...)
	pt = append(pt, byte(len(from)))
	pt = append(pt, from...)
	pt = append(pt, to...)
	aead := l.aeads[l.roles.signing(now)]
	out := make([]byte, linkNonceLen, linkNonceLen+len(pt)+aead.Overhead())
	randomBytes(out[:linkNonceLen])
	out = aead.Seal(out, out[:linkNonceLen], pt, nil)
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// Open returns what token carries if it opens under one of the keys, was
// made for host and has not expired at now. It does not check that the
// token is used once: see Replay.
func (l *LinkSealer) Open(token, host string, now time.Time) (Link, error) {
	if len(token) > MaxLinkTokenLen {
		return Link{}, ErrLinkInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < linkNonceLen+l.aeads[0].Overhead() {
		return Link{}, ErrLinkInvalid
	}
	nonce, ct := raw[:linkNonceLen], raw[linkNonceLen:]
	var pt []byte
	for _, a := range l.aeads {
		if pt, err = a.Open(nil, nonce, ct, nil); err == nil {
			break
		}
	}
	if err != nil || len(pt) < 1+4+16+1 || pt[0] != linkVersion {
		return Link{}, ErrLinkInvalid
	}
	exp := time.Unix(int64(binary.BigEndian.Uint32(pt[1:5])), 0)
	nid := hex.EncodeToString(pt[5:21])
	fromLen := int(pt[21])
	rest := pt[22:]
	if fromLen > len(rest) {
		return Link{}, ErrLinkInvalid
	}
	link := Link{NetworkID: nid, From: string(rest[:fromLen]), Expires: exp}
	copy(link.Nonce[:], nonce)
	if !strings.EqualFold(string(rest[fromLen:]), host) {
		return link, ErrLinkHost
	}
	if !now.Before(exp) {
		return link, ErrLinkExpired
	}
	return link, nil
}

// Replay remembers the tokens used, until they expire, so each is
// accepted once. It is safe for concurrent use. Its memory is bounded by
// the number of tokens made within one token lifetime.
type Replay struct {
	mu    sync.Mutex
	seen  map[[linkNonceLen]byte]time.Time
	sweep time.Time
}

// NewReplay returns an empty Replay.
func NewReplay() *Replay {
	return &Replay{seen: make(map[[linkNonceLen]byte]time.Time)}
}

// Use reports whether link is used for the first time, and remembers it.
func (r *Replay) Use(link Link, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.sweep) > time.Second {
		for k, exp := range r.seen {
			if !now.Before(exp) {
				delete(r.seen, k)
			}
		}
		r.sweep = now
	}
	if _, ok := r.seen[link.Nonce]; ok {
		return false
	}
	r.seen[link.Nonce] = link.Expires
	return true
}

// DerivedAEAD is AES-256-GCM under the key HMAC-SHA256(key, label): each
// use of a secret (link tokens, mail links) gets a key of its own, and
// none can open what another sealed.
func DerivedAEAD(key []byte, label string) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
