package beacon

import (
	"strings"
	"testing"
	"time"
)

var (
	keyA = []byte("key-a-0123456789abcdef0123456789abcdef")
	keyB = []byte("key-b-0123456789abcdef0123456789abcdef")
	keyC = []byte("key-c-0123456789abcdef0123456789abcdef")
)

func mustSigner(t testing.TB, keys ...[]byte) *Signer {
	t.Helper()
	s, err := NewSigner(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignThenVerifyReturnsTheSameID(t *testing.T) {
	s := mustSigner(t, keyA)
	id := NewID()
	now := time.Unix(1_800_000_000, 0)
	v := s.Sign(id, now)
	if len(v) != CookieValueLen {
		t.Fatalf("value %q is %d bytes, want %d", v, len(v), CookieValueLen)
	}
	got, ok := s.Verify(v)
	if !ok {
		t.Fatalf("Verify(%q) failed", v)
	}
	if got.ID != id || !got.Issued.Equal(now) || got.OldKey {
		t.Fatalf("Verify = %+v, want ID %s issued %v by the first key", got, id, now)
	}
}

func TestNewIDIsRandom128BitHex(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if len(id) != 32 || !isLowerHex(id) {
			t.Fatalf("NewID() = %q, want 32 lowercase hex", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestKeyRotation(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	id := NewID()
	old := mustSigner(t, keyB).Sign(id, now)
	rotated := mustSigner(t, keyA, keyB)

	t.Run("a value signed by an older key verifies and asks to be re-signed", func(t *testing.T) {
		v, ok := rotated.Verify(old)
		if !ok || v.ID != id || !v.OldKey {
			t.Fatalf("Verify = %+v, %v; want ID %s with OldKey", v, ok, id)
		}
	})
	t.Run("the first key signs", func(t *testing.T) {
		v, ok := mustSigner(t, keyA).Verify(rotated.Sign(id, now))
		if !ok || v.OldKey {
			t.Fatalf("a value signed after rotation does not verify with the new key alone: %+v %v", v, ok)
		}
	})
	t.Run("a retired key no longer verifies", func(t *testing.T) {
		if _, ok := mustSigner(t, keyA, keyC).Verify(old); ok {
			t.Fatal("a value signed by a removed key verified")
		}
	})
}

func TestVerifyRejectsForgeries(t *testing.T) {
	s := mustSigner(t, keyA)
	now := time.Unix(1_800_000_000, 0)
	good := s.Sign("0123456789abcdef0123456789abcdef", now)
	flip := func(i int) string {
		b := []byte(good)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := []struct{ name, value string }{
		{"empty", ""},
		{"garbage", "not-a-cookie"},
		{"truncated by one byte", good[:len(good)-1]},
		{"one byte too long", good + "A"},
		{"signature byte changed", flip(len(good) - 3)},
		{"ID changed, signature kept", flip(5)},
		{"issue time changed, signature kept", flip(36)},
		{"signed by another key", mustSigner(t, keyC).Sign("0123456789abcdef0123456789abcdef", now)},
		{"unknown version", "2" + good[1:]},
		{"uppercase hex ID", strings.ToUpper(good[:34]) + good[34:]},
		{"separators moved", good[:33] + good[34:35] + "." + good[35:]},
		{"NUL bytes", strings.Repeat("\x00", CookieValueLen)},
		{"right length, all dots", strings.Repeat(".", CookieValueLen)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if v, ok := s.Verify(c.value); ok {
				t.Fatalf("Verify(%q) accepted a forgery: %+v", c.value, v)
			}
		})
	}
}

// legacyLinked is a version 2 value, as the edge wrote them before
// version 3: the network ID in clear.
func legacyLinked(s *Signer, id, nid string, now time.Time) string {
	b := []byte(cookieVersion2 + id + ".")
	b = appendHex32(b, uint32(now.Unix()))
	b = append(append(append(b, '.'), nid...), '.')
	b = append(b, make([]byte, sigLen)...)
	s.sign(0, string(b[:signedLen2]), b[signedLen2+1:])
	return string(b)
}

func TestNetworkIDRidesInTheCookie(t *testing.T) {
	s := mustSigner(t, keyA)
	now := time.Unix(1_800_000_000, 0)
	id, nid := NewID(), NewID()
	v := string(s.AppendSignedNetwork(nil, id, nid, now))
	if len(v) != CookieValueLen3 || v[:2] != "3." || v[2:2+IDLen] != id {
		t.Fatalf("linked value %q: want version 3, %d bytes, ID at offset 2", v, CookieValueLen3)
	}
	got, ok := s.Verify(v)
	if !ok || got.ID != id || got.NetworkID != nid || !got.Issued.Equal(now) {
		t.Fatalf("Verify(%q) = %+v, %v; want ID %s network %s", v, got, ok, id, nid)
	}
	// A visitor's own network ID needs no second copy: version 1.
	if v1 := string(s.AppendSignedNetwork(nil, id, id, now)); v1 != s.Sign(id, now) {
		t.Errorf("network ID equal to the ID gave %q, want the version 1 value", v1)
	}
	if got, _ := s.Verify(s.Sign(id, now)); got.NetworkID != id {
		t.Errorf("version 1 network ID = %q, want the cookie ID %q", got.NetworkID, id)
	}
	// The sealed network ID is signed: changing it breaks the value.
	for i := signedLen + 1; i < signedLen3; i++ {
		b := []byte(v)
		b[i] = map[bool]byte{true: 'A', false: 'B'}[b[i] != 'A']
		if _, ok := s.Verify(string(b)); ok {
			t.Fatalf("Verify accepted a sealed network ID changed at byte %d: %q", i, b)
		}
	}
}

// TestNetworkIDIsSealed: whoever holds a linked visitor's cookie (someone
// who redeemed a link token, say) cannot read the network ID in it,
// which for a visitor of the network's first site is that site's cookie
// ID. Version 2 values, which showed it, still verify.
func TestNetworkIDIsSealed(t *testing.T) {
	s := mustSigner(t, keyA)
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name  string
		value func(id, nid string) string
		shows bool
	}{
		{name: "a linked value does not show the network ID", value: func(id, nid string) string { return string(s.AppendSignedNetwork(nil, id, nid, now)) }},
		{name: "control: a version 2 value shows it, and still verifies", value: func(id, nid string) string { return legacyLinked(s, id, nid, now) }, shows: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			for range 100 {
				id, nid := NewID(), NewID()
				v := tc.value(id, nid)
				if got, ok := s.Verify(v); !ok || got.ID != id || got.NetworkID != nid {
					t.Fatalf("Verify(%q) = %+v, %v; want ID %s network %s", v, got, ok, id, nid)
				}
				// Neither the network ID nor its halves, in any case.
				shows := false
				for _, part := range []string{nid, nid[:16], nid[16:]} {
					shows = shows || strings.Contains(strings.ToLower(v), part)
				}
				if shows != tc.shows {
					t.Fatalf("value %q shows network ID %s: %v, want %v", v, nid, shows, tc.shows)
				}
				seen[v[signedLen+1:signedLen+1+sealedNIDLen]] = true
			}
			if len(seen) != 100 {
				t.Errorf("100 network IDs gave %d distinct network fields", len(seen))
			}
		})
	}
	t.Run("one network ID looks different in every visitor's cookie", func(t *testing.T) {
		nid := NewID()
		a := string(s.AppendSignedNetwork(nil, NewID(), nid, now))
		b := string(s.AppendSignedNetwork(nil, NewID(), nid, now))
		if a[signedLen+1:signedLen3] == b[signedLen+1:signedLen3] {
			t.Errorf("two cookies of network ID %s seal it alike: %q, %q", nid, a, b)
		}
	})
	t.Run("a sealed network ID opens only under the key that sealed it", func(t *testing.T) {
		id, nid := NewID(), NewID()
		old := string(mustSigner(t, keyB).AppendSignedNetwork(nil, id, nid, now))
		got, ok := mustSigner(t, keyA, keyB).Verify(old)
		if !ok || got.NetworkID != nid || !got.OldKey {
			t.Errorf("rotated Verify(%q) = %+v, %v; want network %s and OldKey", old, got, ok, nid)
		}
		if _, ok := mustSigner(t, keyA, keyC).Verify(old); ok {
			t.Error("a linked value signed by a removed key verified")
		}
	})
	t.Run("a version 2 value is re-signed as version 3", func(t *testing.T) {
		id, nid := NewID(), NewID()
		got, _ := s.Verify(legacyLinked(s, id, nid, now))
		if v := string(s.AppendSignedNetwork(nil, got.ID, got.NetworkID, now)); v[:2] != "3." || strings.Contains(v, nid) {
			t.Errorf("re-signed %q, want version 3 without the network ID in clear", v)
		}
	})
}

func TestMemberSignatureBindsMemberToCookie(t *testing.T) {
	s := mustSigner(t, keyA, keyB)
	id, other := NewID(), NewID()
	sig := mustSigner(t, keyB).SignMember(id, "m-1001")
	if !s.VerifyMember(id, "m-1001", sig) {
		t.Fatal("a member signature by an older key does not verify")
	}
	for _, c := range []struct{ id, member, sig string }{
		{other, "m-1001", sig},
		{id, "m-1002", sig},
		{id, "m-1001", sig[:len(sig)-1]},
		{id, "m-1001", ""},
		{id, "m-1001", mustSigner(t, keyC).SignMember(id, "m-1001")},
	} {
		if s.VerifyMember(c.id, c.member, c.sig) {
			t.Errorf("VerifyMember(%s, %s, %s) accepted", c.id, c.member, c.sig)
		}
	}
	for _, m := range []string{"", "a b", "a;b", `a"b`, "a,b", "a\\b", "ü", strings.Repeat("m", MaxMemberLen+1)} {
		if ValidMember(m) {
			t.Errorf("ValidMember(%q) = true", m)
		}
	}
	for _, m := range []string{"1", "m-1001", "user@b2s.com", strings.Repeat("m", MaxMemberLen)} {
		if !ValidMember(m) {
			t.Errorf("ValidMember(%q) = false", m)
		}
	}
}

func TestValidateKeysRefusesShortAndMissingKeys(t *testing.T) {
	if err := ValidateKeys(nil); err == nil {
		t.Error("no keys accepted")
	}
	if err := ValidateKeys([][]byte{keyA, []byte("short")}); err == nil || !strings.Contains(err.Error(), "key 2") {
		t.Errorf("a short second key: err = %v, want one naming key 2", err)
	}
	if _, err := NewSigner(make([]byte, MinKeyLen-1)); err == nil {
		t.Error("NewSigner accepted a 31-byte key")
	}
}

func TestNextCookie(t *testing.T) {
	cases := []struct {
		name, header string
		want         []string // name=value pairs, in order
	}{
		{"only cookie", "b2sid=abc", []string{"b2sid=abc"}},
		{"among others", "a=1; b2sid=abc; c=3", []string{"a=1", "b2sid=abc", "c=3"}},
		{"no space after semicolon", "a=1;b2sid=abc", []string{"a=1", "b2sid=abc"}},
		{"quoted value", `b2sid="abc"`, []string{"b2sid=abc"}},
		{"spaces around name and value", " b2sid = v ;", []string{"b2sid=v"}},
		{"repeated names kept in order", "b2sid=bad; b2sid=good", []string{"b2sid=bad", "b2sid=good"}},
		{"no cookie", "", nil},
		{"name without value is skipped", "b2sid; a=1", []string{"a=1"}},
		{"empty value", "b2sid=", []string{"b2sid="}},
		{"only separators", ";;; ;", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for h := c.header; ; {
				n, v, rest, ok := NextCookie(h)
				if !ok {
					break
				}
				got = append(got, n+"="+v)
				h = rest
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Fatalf("NextCookie over %q = %q, want %q", c.header, got, c.want)
			}
		})
	}
}

// FuzzVerify checks that no input makes Verify panic or accept a value the
// signer did not produce, and that everything it accepts round-trips.
func FuzzVerify(f *testing.F) {
	s := mustSigner(f, keyA, keyB)
	good := s.Sign("0123456789abcdef0123456789abcdef", time.Unix(1_800_000_000, 0))
	linked := string(s.AppendSignedNetwork(nil, "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", time.Unix(1_800_000_000, 0)))
	legacy := legacyLinked(s, "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", time.Unix(1_800_000_000, 0))
	for _, seed := range []string{"", good, linked, linked[:len(linked)-1], "1" + linked[1:], "2" + linked[1:], legacy, "3" + legacy[1:], good[:20], good + "x", "1." + strings.Repeat("0", 55), "\xff\xfe", strings.Repeat(".", CookieValueLen)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		v, ok := s.Verify(value)
		if !ok {
			return
		}
		// Only values this signer made verify: re-signing the same ID at
		// the same time with the same key reproduces the input exactly.
		signer := mustSigner(t, keyA)
		if v.OldKey {
			signer = mustSigner(t, keyB)
		}
		again := string(signer.AppendSignedNetwork(nil, v.ID, v.NetworkID, v.Issued))
		if value[:2] == cookieVersion2 {
			again = legacyLinked(signer, v.ID, v.NetworkID, v.Issued)
		}
		if again != value {
			t.Fatalf("Verify accepted %q, which the signer would write as %q", value, again)
		}
	})
}

// FuzzNextCookie checks the Cookie header scanner never panics, only
// returns names and values that appear in the header, and always advances.
func FuzzNextCookie(f *testing.F) {
	for _, seed := range []string{"b2sid=abc", "a=1; b2sid=\"x\"; b2sid=y", ";;;", "b2sid", "=", " b2sid = v ", "\x00b2sid=\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		for h := header; ; {
			n, v, rest, ok := NextCookie(h)
			if !ok {
				return
			}
			if !strings.Contains(h, n) || !strings.Contains(h, v) {
				t.Fatalf("NextCookie(%q) returned %q=%q, not in the header", h, n, v)
			}
			if len(rest) >= len(h) {
				t.Fatalf("NextCookie(%q) did not advance: rest %q", h, rest)
			}
			h = rest
		}
	})
}

// BenchmarkCookieVerifyLinked and BenchmarkCookieIssueLinked are the
// cookie of a visitor linked from another site: its network ID sealed.
func BenchmarkCookieVerifyLinked(b *testing.B) {
	s := mustSigner(b, keyA, keyB)
	v := string(s.AppendSignedNetwork(nil, NewID(), NewID(), time.Now()))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Verify(v); !ok {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkCookieIssueLinked(b *testing.B) {
	s := mustSigner(b, keyA)
	now := time.Now()
	id, nid := NewID(), NewID()
	buf := make([]byte, 0, CookieValueLen3)
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendSignedNetwork(buf[:0], id, nid, now)
	}
}
