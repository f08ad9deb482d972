package beacon

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const (
	anonHost = "www.b2s.com"
	anonUA   = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

var (
	anonIP    = netip.MustParseAddr("203.0.113.7")
	anonKey   = []byte("an anon_id key of at least 32 bytes, shared by every edge")
	anonDay1  = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	anonNoon1 = anonDay1.Add(12 * time.Hour)
)

func mustAnonIDs(t testing.TB, key []byte) *AnonIDs {
	t.Helper()
	s, err := NewAnonIDs(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAnonID(t testing.TB, s *AnonIDs, at time.Time, host string, ip netip.Addr, ua string) AnonID {
	t.Helper()
	id, ok := s.ID(at, host, ip, ua)
	if !ok || id.IsZero() {
		t.Fatalf("no anon_id for %s %s at %s", host, ip, at)
	}
	return id
}

// specAnonID computes an anon_id of a shared key as the README defines
// it, with nothing of anon.go.
func specAnonID(key []byte, date, host string, ip netip.Addr, ua string) AnonID {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("b2s anon_id" + date))
	salt := m.Sum(nil)
	m = hmac.New(sha256.New, salt)
	a := ip.As16()
	m.Write([]byte(host + "\x00"))
	m.Write(a[:])
	m.Write([]byte("\x00" + ua))
	var id AnonID
	copy(id[:], m.Sum(nil))
	return id
}

func TestAnonIDWithinAndAcrossDays(t *testing.T) {
	for _, mode := range []struct {
		name string
		key  []byte
	}{{"random daily salt", nil}, {"shared key", anonKey}} {
		t.Run(mode.name, func(t *testing.T) {
			s := mustAnonIDs(t, mode.key)
			first := mustAnonID(t, s, anonDay1.Add(time.Second), anonHost, anonIP, anonUA)
			for _, at := range []time.Time{anonNoon1, anonDay1.Add(24*time.Hour - time.Nanosecond), anonNoon1.In(time.FixedZone("UTC+14", 14*3600))} {
				if got := mustAnonID(t, s, at, anonHost, anonIP, anonUA); got != first {
					t.Errorf("anon_id at %s is %s, want the day's %s", at, got, first)
				}
			}
			// Control: the next UTC day (in UTC+14 still the same date) is
			// another visitor.
			for _, at := range []time.Time{anonDay1.Add(24 * time.Hour), anonDay1.Add(24 * time.Hour).In(time.FixedZone("UTC-10", -10*3600))} {
				if got := mustAnonID(t, s, at, anonHost, anonIP, anonUA); got == first {
					t.Errorf("anon_id at %s is the previous day's %s", at, got)
				}
			}
		})
	}
}

func TestAnonIDSeparatesSitesAddressesAndBrowsers(t *testing.T) {
	s := mustAnonIDs(t, nil)
	base := mustAnonID(t, s, anonNoon1, anonHost, anonIP, anonUA)
	for _, tc := range []struct {
		name, host, ip, ua string
		same               bool
	}{
		{name: "another site", host: "www.b2smade.com", ip: "203.0.113.7", ua: anonUA},
		{name: "another port of the site", host: "www.b2s.com:8443", ip: "203.0.113.7", ua: anonUA},
		{name: "another address in the same /24", host: anonHost, ip: "203.0.113.8", ua: anonUA},
		{name: "another user agent", host: anonHost, ip: "203.0.113.7", ua: anonUA + " Edg/131.0"},
		{name: "no user agent", host: anonHost, ip: "203.0.113.7", ua: ""},
		{name: "an IPv6 address", host: anonHost, ip: "2001:db8::7", ua: anonUA},
		{name: "control: the same request", host: anonHost, ip: "203.0.113.7", ua: anonUA, same: true},
		{name: "the IPv4-mapped form of the address", host: anonHost, ip: "::ffff:203.0.113.7", ua: anonUA, same: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustAnonID(t, s, anonNoon1, tc.host, netip.MustParseAddr(tc.ip), tc.ua)
			if (got == base) != tc.same {
				t.Errorf("anon_id %s beside %s: same %v, want %v", got, base, got == base, tc.same)
			}
		})
	}
	if _, ok := s.ID(anonNoon1, anonHost, netip.Addr{}, anonUA); ok {
		t.Error("an anon_id for a request without a client IP")
	}
}

// TestAnonIDAcrossEdges: with a shared key two edges give one visitor
// the same anon_id, the one the README's definition gives; with random
// salts they do not.
func TestAnonIDAcrossEdges(t *testing.T) {
	a, b := mustAnonIDs(t, anonKey), mustAnonIDs(t, anonKey)
	ida := mustAnonID(t, a, anonNoon1, anonHost, anonIP, anonUA)
	if idb := mustAnonID(t, b, anonNoon1.Add(time.Hour), anonHost, anonIP, anonUA); idb != ida {
		t.Errorf("edges sharing a key give %s and %s", ida, idb)
	}
	if want := specAnonID(anonKey, "2026-12-06", anonHost, anonIP, anonUA); ida != want {
		t.Errorf("anon_id %s, want %s as the README defines it", ida, want)
	}
	if other := specAnonID(anonKey, "2026-12-07", anonHost, anonIP, anonUA); ida == other {
		t.Error("control: the next day's definition gives the same anon_id")
	}
	otherKey := mustAnonIDs(t, bytes.Repeat([]byte("k"), MinAnonKeyLen))
	if idc := mustAnonID(t, otherKey, anonNoon1, anonHost, anonIP, anonUA); idc == ida {
		t.Errorf("edges with different keys give the same %s", idc)
	}
	x, y := mustAnonIDs(t, nil), mustAnonIDs(t, nil)
	if idx, idy := mustAnonID(t, x, anonNoon1, anonHost, anonIP, anonUA), mustAnonID(t, y, anonNoon1, anonHost, anonIP, anonUA); idx == idy {
		t.Errorf("two edges with random salts give the same %s", idx)
	}
}

// TestAnonIDForgetsPastDays: without a key, once the next day's salt is
// made or the day has been forgotten, the edge holds only the current
// day's salt (or none) and cannot make a past day's anon_id again.
func TestAnonIDForgetsPastDays(t *testing.T) {
	day2 := anonNoon1.Add(24 * time.Hour)
	t.Run("the next day's first anon_id drops the salt", func(t *testing.T) {
		s := mustAnonIDs(t, nil)
		id1 := mustAnonID(t, s, anonNoon1, anonHost, anonIP, anonUA)
		salt1 := s.cur.Load().salt
		// Control: within the day the salt is kept and the anon_id made again.
		if again := mustAnonID(t, s, anonNoon1.Add(time.Hour), anonHost, anonIP, anonUA); again != id1 || s.cur.Load().salt != salt1 {
			t.Fatal("the salt changed within the day")
		}
		mustAnonID(t, s, day2, anonHost, anonIP, anonUA)
		checkSaltGone(t, s, salt1)
		if d := s.cur.Load(); d == nil || d.day != dayOf(day2) {
			t.Errorf("the salt held is of day %v, want %d", d, dayOf(day2))
		}
		if id, ok := s.ID(anonNoon1, anonHost, anonIP, anonUA); ok {
			t.Errorf("the previous day's anon_id made again after midnight: %s (was %s)", id, id1)
		}
	})
	t.Run("forget at midnight drops it with no request", func(t *testing.T) {
		s := mustAnonIDs(t, nil)
		mustAnonID(t, s, anonNoon1, anonHost, anonIP, anonUA)
		salt1 := s.cur.Load().salt
		s.Forget(anonNoon1.Add(time.Hour)) // control: the same day keeps it
		if d := s.cur.Load(); d == nil || d.salt != salt1 {
			t.Fatal("forget dropped the salt of the day under way")
		}
		s.Forget(anonDay1.Add(24 * time.Hour))
		checkSaltGone(t, s, salt1)
		if s.cur.Load() != nil {
			t.Error("a salt is held after forget at midnight")
		}
		if _, ok := s.ID(anonNoon1, anonHost, anonIP, anonUA); ok {
			t.Error("the forgotten day's anon_id made again, under a new salt")
		}
		mustAnonID(t, s, day2, anonHost, anonIP, anonUA)
	})
	t.Run("control: a shared key makes any day's anon_id again", func(t *testing.T) {
		s := mustAnonIDs(t, anonKey)
		id1 := mustAnonID(t, s, anonNoon1, anonHost, anonIP, anonUA)
		mustAnonID(t, s, day2, anonHost, anonIP, anonUA)
		s.Forget(day2.Add(24 * time.Hour))
		if again := mustAnonID(t, s, anonNoon1, anonHost, anonIP, anonUA); again != id1 {
			t.Errorf("the shared key gives %s for a past day, want %s", again, id1)
		}
		if d := s.cur.Load(); d != nil && d.day == dayOf(anonNoon1) {
			t.Error("a past day's salt became the one held")
		}
	})
}

// checkSaltGone fails unless no field of s holds salt.
func checkSaltGone(t *testing.T, s *AnonIDs, salt [32]byte) {
	t.Helper()
	if d := s.cur.Load(); d != nil && d.salt == salt {
		t.Error("the previous day's salt is still held")
	}
	if bytes.Contains(s.key, salt[:]) {
		t.Error("the previous day's salt is in the key")
	}
}

func TestNewAnonIDsRefusesAShortKey(t *testing.T) {
	if _, err := NewAnonIDs(make([]byte, MinAnonKeyLen-1)); err == nil || !strings.Contains(err.Error(), "32") {
		t.Errorf("a key of %d bytes: error %v, want one naming the minimum", MinAnonKeyLen-1, err)
	}
	if _, err := NewAnonIDs(make([]byte, MinAnonKeyLen)); err != nil { // control
		t.Errorf("a key of %d bytes: %v", MinAnonKeyLen, err)
	}
}

func TestAnonIDAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop entries")
	}
	s := mustAnonIDs(t, nil)
	mustAnonID(t, s, anonNoon1, anonHost, anonIP, anonUA)
	if n := testing.AllocsPerRun(100, func() { _, _ = s.ID(anonNoon1, anonHost, anonIP, anonUA) }); n != 0 {
		t.Errorf("computing an anon_id allocates %.1f times", n)
	}
}

// TestAnonIDInRecord: a record writes its anon_id only when its consent
// allows no identifier and is not a child's.
func TestAnonIDInRecord(t *testing.T) {
	id := mustAnonID(t, mustAnonIDs(t, nil), anonNoon1, anonHost, anonIP, anonUA)
	for _, tc := range []struct {
		consent Consent
		want    bool
	}{
		{ConsentOptOut, true},
		{ConsentGPC, true},
		{ConsentChild, false},
		{ConsentFull, false},
	} {
		t.Run(tc.consent.String(), func(t *testing.T) {
			r := Record{EventID: testEventID, Kind: KindPage, Time: anonNoon1, Host: anonHost, IP: "203.0.113.0", IPTruncated: true,
				Consent: tc.consent, AnonID: id, Status: 200}
			if tc.consent == ConsentFull {
				r.IPTruncated, r.IP, r.CookieID, r.CookieState = false, anonIP.String(), NewID(), StateReturning
			}
			m := checkValidRecordJSON(t, r.AppendJSON(nil))
			got, has := m["anon_id"].(string)
			if has != tc.want {
				t.Fatalf("record of consent %s has anon_id %v, want %v", tc.consent, has, tc.want)
			}
			if has && got != id.String() {
				t.Errorf("anon_id %q, want %q", got, id.String())
			}
		})
	}
	r := Record{EventID: testEventID, Kind: KindPage, Time: anonNoon1, Consent: ConsentOptOut, Status: 200}
	if m := checkValidRecordJSON(t, r.AppendJSON(nil)); m["anon_id"] != nil {
		t.Errorf("record without an anon_id writes %v", m["anon_id"])
	}
}
