package beacon

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"time"
)

// MinKeyLen is the shortest accepted HMAC key, in bytes. 32 bytes match
// the output size of SHA-256, the strength the signature is built for
// (RFC 2104, section 3).
const MinKeyLen = 32

// Cookie value layouts:
//
//	1.<id: 32 lowercase hex>.<issued: 8 lowercase hex, unix seconds>.<sig: 22 base64url>
//	3.<id>.<issued>.<sealed network id: 22 base64url>.<sig>
//	2.<id>.<issued>.<network id: 32 lowercase hex>.<sig>  (read, no longer written)
//
// Version 1 is a visitor whose network ID is their cookie ID (the first
// site of the network they came to); versions 3 and 2 carry the network
// ID of a visitor linked from another site of the network. Version 3
// seals it: whoever holds the cookie (the visitor, or someone who
// redeemed a link token) cannot read the network ID, which for a visitor
// of the first site is that site's cookie ID. Version 2 wrote it in
// clear; its values still verify, and are written as version 3 when
// re-signed. The signature is HMAC-SHA256 over everything before the last
// dot, truncated to 128 bits (RFC 2104, section 5, allows truncation to
// no less than half the hash output). The issue time lets the edge
// refresh the cookie's expiry without trusting anything the browser says.
//
// The sealed network ID is AES-256(network ID XOR cookie ID) under a key
// derived from the signing key: one block, a permutation, so only the
// keys open it; the XOR with the cookie ID, unique to the visitor, keeps
// one network ID from showing the same bytes in two visitors' or two
// sites' cookies. The signature covers it, so it cannot be swapped.
const (
	cookieVersion  = "1."
	cookieVersion2 = "2."
	cookieVersion3 = "3."
	idHexLen       = 32
	issuedHexLen   = 8
	sigLen         = 22 // base64url, no padding, of 16 bytes
	sealedNIDLen   = 22 // base64url, no padding, of one AES block
	signedLen      = len(cookieVersion) + idHexLen + 1 + issuedHexLen
	signedLen2     = signedLen + 1 + idHexLen
	signedLen3     = signedLen + 1 + sealedNIDLen
	// CookieValueLen is the exact length of a well-formed version 1
	// cookie value.
	CookieValueLen = signedLen + 1 + sigLen
	// CookieValueLen2 is the exact length of a well-formed version 2
	// cookie value, one that carries a network ID in clear; such values
	// are read, no longer written.
	CookieValueLen2 = signedLen2 + 1 + sigLen
	// CookieValueLen3 is the exact length of a well-formed version 3
	// cookie value, one that carries a sealed network ID.
	CookieValueLen3 = signedLen3 + 1 + sigLen
	// IDLen is the length of a cookie or network ID.
	IDLen = idHexLen
)

// CookieState says how a request's cookie ID came to be.
type CookieState uint8

const (
	// StateNew: the request carried no cookie; a new ID was issued.
	StateNew CookieState = iota
	// StateReturning: the request carried a cookie whose signature verified.
	StateReturning
	// StateReset: the request carried a cookie that did not verify
	// (forged, truncated, garbage or signed by a retired key); it was
	// replaced by a new ID.
	StateReset
)

// String returns the name used in records: new, returning or reset.
func (s CookieState) String() string {
	switch s {
	case StateReturning:
		return "returning"
	case StateReset:
		return "reset"
	default:
		return "new"
	}
}

// Signer issues and verifies cookie values with a set of keys (see Keys):
// one key signs, every key verifies. A Signer is safe for concurrent use.
type Signer struct {
	keys  [][]byte
	pools []*sync.Pool   // one pool of *macState per key, since hmac.New allocates
	nids  []cipher.Block // one per key: seals the network ID of version 3 values
	fps   []string       // one per key: its fingerprint
	roles keyRoles
}

// macState is a reusable HMAC with room for its sum, so signing does not
// allocate.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
	// msg holds the message while it is hashed: passed to the hash
	// through its interface, the caller's bytes would escape to the heap.
	msg [128]byte
	// blk and tweak hold a network ID being sealed or opened, and the
	// cookie ID it is bound to: on the stack, passed to the block
	// cipher's interface, they would escape.
	blk, tweak [aes.BlockSize]byte
}

// ValidateKeys checks that there is at least one key and that every key is
// long enough.
func ValidateKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("no signing key")
	}
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return fmt.Errorf("key %d is %d bytes, shorter than the minimum of %d", i+1, len(k), MinKeyLen)
		}
	}
	return nil
}

// NewSigner returns a Signer for keys, which must pass ValidateKeys: the
// first signs, the others are older keys.
func NewSigner(keys ...[]byte) (*Signer, error) {
	if err := ValidateKeys(keys); err != nil {
		return nil, err
	}
	return NewKeySigner(Keys{Sign: keys[0], Older: keys[1:]})
}

// NewKeySigner returns a Signer for a key set, which must pass its
// Validate.
func NewKeySigner(ks Keys) (*Signer, error) {
	if err := ks.Validate(); err != nil {
		return nil, err
	}
	s := &Signer{roles: rolesOf(ks)}
	for _, k := range ks.list() {
		k := append([]byte(nil), k...)
		s.keys = append(s.keys, k)
		s.pools = append(s.pools, &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, k)} }})
		m := hmac.New(sha256.New, k)
		m.Write([]byte("b2s-edge cookie network id key v1"))
		block, err := aes.NewCipher(m.Sum(nil))
		if err != nil {
			return nil, err
		}
		s.nids = append(s.nids, block)
		s.fps = append(s.fps, Fingerprint(k))
	}
	return s, nil
}

// Keys returns the fingerprint and role of each key at now: the signing
// key first, then the older, verify-only and next keys.
func (s *Signer) Keys(now time.Time) []KeyInfo { return s.roles.info(s.fps, now) }

// sealNetworkID writes into dst the 22-character sealed form of network
// ID nid in the cookie of id, with key i. Both are 32 lowercase hex.
func (s *Signer) sealNetworkID(i int, id, nid string, dst []byte) {
	m := s.pools[i].Get().(*macState)
	_, _ = hex.Decode(m.blk[:], unsafeBytes(nid))
	_, _ = hex.Decode(m.tweak[:], unsafeBytes(id))
	subtle.XORBytes(m.blk[:], m.blk[:], m.tweak[:])
	s.nids[i].Encrypt(m.blk[:], m.blk[:])
	base64.RawURLEncoding.Encode(dst, m.blk[:])
	s.pools[i].Put(m)
}

// openNetworkID returns the network ID sealed by key i in the cookie of
// id, or false if sealed is not 22 base64url characters.
func (s *Signer) openNetworkID(i int, id, sealed string) (string, bool) {
	m := s.pools[i].Get().(*macState)
	defer s.pools[i].Put(m)
	if n, err := base64.RawURLEncoding.Decode(m.blk[:], unsafeBytes(sealed)); err != nil || n != len(m.blk) {
		return "", false
	}
	if _, err := hex.Decode(m.tweak[:], unsafeBytes(id)); err != nil {
		return "", false
	}
	s.nids[i].Decrypt(m.blk[:], m.blk[:])
	subtle.XORBytes(m.blk[:], m.blk[:], m.tweak[:])
	return hex.EncodeToString(m.blk[:]), true
}

// sign writes the 22-character signature of msg with key i into dst.
func (s *Signer) sign(i int, msg string, dst []byte) {
	m := s.pools[i].Get().(*macState)
	m.h.Reset()
	if len(msg) <= len(m.msg) {
		m.h.Write(m.msg[:copy(m.msg[:], msg)])
	} else {
		m.h.Write([]byte(msg))
	}
	mac := m.h.Sum(m.sum[:0])
	base64.RawURLEncoding.Encode(dst, mac[:16])
	s.pools[i].Put(m)
}

// NewID returns a fresh random 128-bit ID as 32 lowercase hex characters.
func NewID() string {
	var id [idHexLen]byte
	NewIDTo(&id)
	return string(id[:])
}

// NewIDTo writes a fresh random 128-bit ID, as 32 lowercase hex
// characters, into dst.
func NewIDTo(dst *[idHexLen]byte) {
	var b [16]byte
	randomBytes(b[:])
	hex.Encode(dst[:], b[:])
}

// randomness hands out bytes from crypto/rand in 4 KiB refills: IDs stay
// unpredictable, and issuing one costs a copy rather than a system call.
var randomness struct {
	sync.Mutex
	buf [4096]byte
	off int
}

func randomBytes(b []byte) {
	r := &randomness
	r.Lock()
	if r.off == 0 || r.off+len(b) > len(r.buf) {
		_, _ = rand.Read(r.buf[:]) // crypto/rand.Read never fails (Go 1.24+)
		r.off = 0
	}
	n := copy(b, r.buf[r.off:])
	clear(r.buf[r.off : r.off+n]) // never hand out the same bytes twice
	r.off += n
	if r.off == len(r.buf) {
		r.off = 0
	}
	r.Unlock()
}

// Sign returns the cookie value for id (as returned by NewID or Verify),
// stamped with issue time now and signed with the key that signs at now.
func (s *Signer) Sign(id string, now time.Time) string {
	var buf [CookieValueLen]byte
	return string(s.AppendSigned(buf[:0], id, now))
}

// AppendSigned appends the cookie value for id to dst, as Sign returns it.
// The ID starts 2 bytes into what it appends.
func (s *Signer) AppendSigned(dst []byte, id string, now time.Time) []byte {
	return s.AppendSignedNetwork(dst, id, "", now)
}

// AppendSignedNetwork is AppendSigned for a visitor whose network ID is
// nid: a version 3 value, its network ID sealed, unless nid is empty or
// id itself, which gives the shorter version 1. The ID starts 2 bytes
// into what it appends.
func (s *Signer) AppendSignedNetwork(dst []byte, id, nid string, now time.Time) []byte {
	start := len(dst)
	k := s.roles.signing(now)
	version, n := cookieVersion, signedLen
	if nid != "" && nid != id {
		version, n = cookieVersion3, signedLen3
	}
	b := append(dst, version...)
	b = append(b, id...)
	b = append(b, '.')
	b = appendHex32(b, uint32(now.Unix()))
	if n == signedLen3 {
		b = append(b, '.')
		b = append(b, make([]byte, sealedNIDLen)...) // room for the sealed network ID, no allocation
		s.sealNetworkID(k, id, nid, b[start+signedLen+1:])
	}
	b = append(b, '.')
	b = append(b, make([]byte, sigLen)...) // room for the signature, no allocation
	v := b[start:]
	s.sign(k, unsafeString(v[:n]), v[n+1:])
	return b
}

// Verified is the result of a successful Verify.
type Verified struct {
	// ID is the visitor's cookie ID.
	ID string
	// NetworkID is the visitor's ID across the site network: ID itself
	// unless the visitor was linked from another site of the network.
	NetworkID string
	// Issued is when the value was signed.
	Issued time.Time
	// OldKey is true when an older key verified the value: the caller
	// should re-sign it. A value of a verify-only key is not re-signed.
	OldKey bool
}

// Verify is VerifyAt at the current time. The time matters only with a
// next key, so without one the clock is not read.
func (s *Signer) Verify(value string) (Verified, bool) {
	var now time.Time
	if s.roles.next >= 0 {
		now = time.Now()
	}
	return s.VerifyAt(value, now)
}

// VerifyAt checks a cookie value and returns its ID, with the keys' roles
// at now. It accepts only the exact layout this package writes; anything
// else, including a value signed by a key that is no longer configured,
// is rejected.
func (s *Signer) VerifyAt(value string, now time.Time) (Verified, bool) {
	n := signedLen
	switch {
	case len(value) == CookieValueLen && value[:2] == cookieVersion:
	case len(value) == CookieValueLen3 && value[:2] == cookieVersion3:
		n = signedLen3
	case len(value) == CookieValueLen2 && value[:2] == cookieVersion2:
		n = signedLen2
	default:
		return Verified{}, false
	}
	if value[2+idHexLen] != '.' || value[signedLen] != '.' || value[n] != '.' {
		return Verified{}, false
	}
	id := value[2 : 2+idHexLen]
	if !isLowerHex(id) {
		return Verified{}, false
	}
	nid := id
	if n == signedLen2 {
		nid = value[signedLen+1 : signedLen2]
		if !isLowerHex(nid) {
			return Verified{}, false
		}
	}
	issued, ok := parseHex32(value[2+idHexLen+1 : signedLen])
	if !ok {
		return Verified{}, false
	}
	msg, sig := value[:n], value[n+1:]
	var want [sigLen]byte
	// The signing key first: it signed most values.
	first := s.roles.signing(now)
	for j := -1; j < len(s.keys); j++ {
		i := j
		if j < 0 {
			i = first
		} else if j == first {
			continue
		}
		s.sign(i, msg, want[:])
		if subtle.ConstantTimeCompare(want[:], unsafeBytes(sig)) == 1 {
			if n == signedLen3 {
				if nid, ok = s.openNetworkID(i, id, value[signedLen+1:signedLen3]); !ok {
					return Verified{}, false
				}
			}
			return Verified{ID: id, NetworkID: nid, Issued: time.Unix(int64(issued), 0), OldKey: s.roles.role(i, now) == RoleOlder}, true
		}
	}
	return Verified{}, false
}

// SignMember returns the signature binding a member ID to a cookie ID,
// for the member cookie: a copied member cookie is worthless with any
// other visitor's cookie. It signs with the key that signs now.
func (s *Signer) SignMember(cookieID, member string) string {
	var sig [sigLen]byte
	k := 0
	if s.roles.next >= 0 {
		k = s.roles.signing(time.Now())
	}
	s.signMember(k, cookieID, member, sig[:])
	return string(sig[:])
}

// VerifyMember reports whether sig binds member to cookieID under any key.
func (s *Signer) VerifyMember(cookieID, member, sig string) bool {
	if len(sig) != sigLen {
		return false
	}
	var want [sigLen]byte
	for i := range s.keys {
		s.signMember(i, cookieID, member, want[:])
		if subtle.ConstantTimeCompare(want[:], unsafeBytes(sig)) == 1 {
			return true
		}
	}
	return false
}

func (s *Signer) signMember(i int, cookieID, member string, dst []byte) {
	var buf [2 + idHexLen + 1 + MaxMemberLen]byte
	msg := append(append(append(buf[:0], "m."...), cookieID...), '.')
	msg = append(msg, member...)
	s.sign(i, unsafeString(msg), dst)
}

// MaxMemberLen is the longest member ID the edge records.
const MaxMemberLen = 64

// ValidMember reports whether m can be a member ID: 1 to MaxMemberLen
// visible ASCII characters that need no quoting in a cookie (RFC 6265,
// section 4.1.1).
func ValidMember(m string) bool {
	if m == "" || len(m) > MaxMemberLen {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// NextCookie returns the first name=value pair of a Cookie header (RFC
// 6265, section 5.4) and the rest of the header; ok is false when no pair
// is left. Pairs without "=" are skipped; a quoted value is unquoted. It
// never allocates.
func NextCookie(header string) (name, value, rest string, ok bool) {
	for len(header) > 0 {
		var part string
		if i := indexByte(header, ';'); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			part, header = header, ""
		}
		part = trimSpace(part)
		eq := indexByte(part, '=')
		if eq < 0 {
			continue
		}
		v := trimSpace(part[eq+1:])
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return trimSpace(part[:eq]), v, header, true
	}
	return "", "", "", false
}

func appendHex32(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, digits[(v>>uint(shift))&0xf])
	}
	return b
}

func parseHex32(s string) (uint32, bool) {
	if len(s) != issuedHexLen || !isLowerHex(s) {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err == nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
