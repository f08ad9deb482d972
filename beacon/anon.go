package beacon

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// AnonID is a record's anon_id: a keyed hash of the site, the client IP
// and the User-Agent under a salt of the UTC day, which counts the
// visitors and sessions of records that may carry no identifier (see
// AnonIDs). The zero value means none.
type AnonID [16]byte

// IsZero reports whether id is none.
func (id AnonID) IsZero() bool { return id == AnonID{} }

// String returns id as the record writes it: base64url without padding,
// 22 characters.
func (id AnonID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// AnonIDLen is the length of an anon_id in a record.
const AnonIDLen = 22

// MinAnonKeyLen is the shortest shared anon_id key accepted, in bytes.
const MinAnonKeyLen = 32

// anonSaltLabel starts the message from which a shared key derives a
// day's salt, so that the key used for anything else gives other values.
const anonSaltLabel = "b2s anon_id"

// AnonIDs makes the anon_ids of one edge. Each UTC day has its own
// 32-byte salt:
//
//   - Without a key, each edge draws a random salt per day (crypto/rand)
//     and keeps it in memory only: once the day is over and Forget has
//     run (or the next day's salt has replaced it), nothing can compute
//     that day's anon_ids again, so an anon_id cannot be tested against a
//     guessed IP and User-Agent. Two edges, or one restarted, give one
//     visitor different anon_ids on the same day.
//   - With a shared key, the day's salt is HMAC-SHA256(key, "b2s anon_id"
//     || "YYYY-MM-DD"): the same on every edge holding the key, and
//     computable for any day by whoever holds it.
//
// The anon_id is the first 16 bytes of HMAC-SHA256(salt, host || 0 ||
// the IP's 16-byte form || 0 || user agent). An AnonIDs is safe for
// concurrent use.
type AnonIDs struct {
	key []byte // nil: random salts

	cur atomic.Pointer[anonDay] // the day being counted; nil after Forget
	mu  sync.Mutex              // serializes changes of cur and floor
	// floor is the first day whose salt may still be made: without a
	// key, no day before the newest one seen (or forgotten) gets one.
	floor int64
}

// anonDay is one day's salt and the MACs keyed with it.
type anonDay struct {
	day  int64 // days since 1970-01-01, UTC
	salt [32]byte
	macs sync.Pool // *anonMAC
}

// anonMAC is an HMAC keyed with a day's salt and the buffers it works in,
// reused so that computing an anon_id allocates nothing.
type anonMAC struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// NewAnonIDs returns the anon_id maker with random daily salts (key nil)
// or salts derived from a shared key of at least MinAnonKeyLen bytes.
func NewAnonIDs(key []byte) (*AnonIDs, error) {
	if key != nil && len(key) < MinAnonKeyLen {
		return nil, fmt.Errorf("anon_id key is %d bytes, shorter than the minimum of %d", len(key), MinAnonKeyLen)
	}
	s := &AnonIDs{floor: -1 << 62}
	if key != nil {
		s.key = append([]byte(nil), key...)
	}
	return s, nil
}

// ID returns the anon_id of a request to host from ip with user agent ua
// at t, under the salt of t's UTC day. It reports false when ip is not
// valid, or, without a key, when t's day is before the day whose salt
// the edge holds (a request that began before midnight and is recorded
// after): that salt is gone.
func (s *AnonIDs) ID(t time.Time, host string, ip netip.Addr, ua string) (AnonID, bool) {
	if !ip.IsValid() {
		return AnonID{}, false
	}
	day := dayOf(t)
	d := s.cur.Load()
	if d == nil || d.day != day {
		if d = s.salted(day); d == nil {
			return AnonID{}, false
		}
	}
	m := d.macs.Get().(*anonMAC)
	b := append(m.buf[:0], host...)
	b = append(b, 0)
	a16 := ip.As16()
	b = append(b, a16[:]...)
	b = append(b, 0)
	b = append(b, ua...)
	m.h.Reset()
	m.h.Write(b)
	var id AnonID
	copy(id[:], m.h.Sum(m.sum[:0]))
	if cap(b) <= 4<<10 {
		m.buf = b[:0]
	} else {
		m.buf = nil // an outsized User-Agent's buffer is not kept
	}
	d.macs.Put(m)
	return id, true
}

// salted returns the salt of day, making it when day is after the one
// held, or nil when, without a key, its salt is gone. With a key, a day
// before the one held is derived for this call and not kept.
func (s *AnonIDs) salted(day int64) *anonDay {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.cur.Load()
	switch {
	case d != nil && d.day == day:
		return d
	case day < s.floor || d != nil && day < d.day:
		if s.key == nil {
			return nil
		}
		return s.newDay(day)
	}
	d = s.newDay(day)
	s.cur.Store(d) // the previous day's salt is dropped here
	s.floor = day
	return d
}

// newDay makes day's salt: random, or derived from the key.
func (s *AnonIDs) newDay(day int64) *anonDay {
	d := &anonDay{day: day}
	if s.key == nil {
		_, _ = rand.Read(d.salt[:]) // never fails (crypto/rand's documentation)
	} else {
		copy(d.salt[:], anonSalt(s.key, time.Unix(day*86400, 0)))
	}
	d.macs.New = func() any { return &anonMAC{h: hmac.New(sha256.New, d.salt[:])} }
	return d
}

// Forget drops the salt of any day before now's UTC day, so that even an
// edge that records nothing after midnight does not keep it. Without a
// key, no anon_id of such a day can be made again.
func (s *AnonIDs) Forget(now time.Time) {
	day := dayOf(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.cur.Load(); d != nil && d.day < day {
		s.cur.Store(nil)
	}
	s.floor = max(s.floor, day)
}

// anonSalt returns the salt a shared key gives t's UTC day:
// HMAC-SHA256(key, "b2s anon_id" || "YYYY-MM-DD"). Whoever holds the
// key can compute it for any day.
func anonSalt(key []byte, t time.Time) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(anonSaltLabel))
	m.Write(t.UTC().AppendFormat(nil, time.DateOnly))
	return m.Sum(nil)
}

// dayOf returns t's UTC day as days since 1970-01-01.
func dayOf(t time.Time) int64 {
	sec := t.Unix()
	day := sec / 86400
	if sec%86400 < 0 {
		day--
	}
	return day
}

// KeyFingerprint names the shared key the salts are derived from (see
// Fingerprint: the same on every edge holding the key, revealing nothing
// of it), or returns "" for random salts.
func (ids *AnonIDs) KeyFingerprint() string {
	if ids == nil || ids.key == nil {
		return ""
	}
	return Fingerprint(ids.key)
}
