package beacon

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

var (
	oldKey = bytes.Repeat([]byte("o"), 32)
	newKey = bytes.Repeat([]byte("n"), 32)
)

func mustKeySigner(t *testing.T, ks Keys) *Signer {
	t.Helper()
	s, err := NewKeySigner(ks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// visit is what an edge does with a visitor's cookie: keep the ID of a
// value that verifies (re-signing an older key's), issue a new one
// otherwise. It returns the cookie the browser holds afterwards.
func visit(s *Signer, cookie string, now time.Time) (string, string) {
	if v, ok := s.VerifyAt(cookie, now); ok {
		if v.OldKey {
			return s.Sign(v.ID, now), v.ID
		}
		return cookie, v.ID
	}
	id := NewID()
	return s.Sign(id, now), id
}

// churn counts the ID changes of one visitor whose requests alternate
// between two edges.
func churn(a, b *Signer, n int, now time.Time) int {
	cookie, id := visit(a, "", now)
	changes := 0
	for i := range n {
		e := a
		if i%2 == 1 {
			e = b
		}
		var got string
		cookie, got = visit(e, cookie, now)
		if got != id {
			changes++
			id = got
		}
	}
	return changes
}

func TestRotationThroughAVerifyOnlyKeyKeepsTheID(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name string
		a, b Keys
		want bool // the ID stays
	}{
		{"both edges on the old key", Keys{Sign: oldKey}, Keys{Sign: oldKey}, true},
		{"one edge verifies the new key, one does not yet know it", Keys{Sign: oldKey, Verify: [][]byte{newKey}}, Keys{Sign: oldKey}, true},
		{"one edge signs with the new key, the other verifies it", Keys{Sign: newKey, Older: [][]byte{oldKey}}, Keys{Sign: oldKey, Verify: [][]byte{newKey}}, true},
		{"both edges sign with the new key", Keys{Sign: newKey, Older: [][]byte{oldKey}}, Keys{Sign: newKey, Older: [][]byte{oldKey}}, true},
		{"the old key dropped on one edge", Keys{Sign: newKey}, Keys{Sign: newKey, Older: [][]byte{oldKey}}, true},
		// The control: the new key signs on one edge before the other
		// verifies it, as "secret NEW OLD" on one edge at a time did.
		{"one edge signs with a key the other does not know", Keys{Sign: newKey, Older: [][]byte{oldKey}}, Keys{Sign: oldKey}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := churn(mustKeySigner(t, c.a), mustKeySigner(t, c.b), 40, now)
			if c.want && got != 0 {
				t.Errorf("the ID changed %d times in 40 requests, want never", got)
			}
			if !c.want && got < 10 {
				t.Errorf("the ID changed %d times in 40 requests, want churn", got)
			}
		})
	}
}

func TestAVerifyOnlyKeysCookieIsNotResigned(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	signing := mustKeySigner(t, Keys{Sign: newKey, Older: [][]byte{oldKey}})
	waiting := mustKeySigner(t, Keys{Sign: oldKey, Verify: [][]byte{newKey}})
	v, ok := waiting.VerifyAt(signing.Sign(NewID(), now), now)
	if !ok || v.OldKey {
		t.Fatalf("a value of the verify-only key: ok %v, OldKey %v; want verified, not to be re-signed", ok, v.OldKey)
	}
	v, ok = signing.VerifyAt(waiting.Sign(NewID(), now), now)
	if !ok || !v.OldKey {
		t.Fatalf("a value of the older key: ok %v, OldKey %v; want verified, to be re-signed", ok, v.OldKey)
	}
	// Nothing is signed with a verify-only key.
	alone := mustKeySigner(t, Keys{Sign: newKey})
	if _, ok := alone.VerifyAt(waiting.Sign(NewID(), now), now); ok {
		t.Error("a value of the edge with a verify-only key verifies with that key alone: it was signed with it")
	}
}

func TestNextKeySwitchesAtItsTime(t *testing.T) {
	at := time.Date(2027, 1, 10, 9, 0, 0, 0, time.UTC)
	s := mustKeySigner(t, Keys{Sign: oldKey, Next: newKey, NextAt: at})
	onlyOld := mustKeySigner(t, Keys{Sign: oldKey})
	onlyNew := mustKeySigner(t, Keys{Sign: newKey})
	before, after := at.Add(-time.Second), at

	if _, ok := onlyOld.VerifyAt(s.Sign(NewID(), before), before); !ok {
		t.Error("before its time, the value is not signed with the current key")
	}
	if _, ok := onlyNew.VerifyAt(s.Sign(NewID(), after), after); !ok {
		t.Error("at its time, the value is not signed with the next key")
	}
	// Before the switch the next key verifies without a re-sign; after
	// it, the old key's values are re-signed.
	if v, ok := s.VerifyAt(onlyNew.Sign(NewID(), before), before); !ok || v.OldKey {
		t.Errorf("before the switch a next key's value: ok %v, OldKey %v", ok, v.OldKey)
	}
	if v, ok := s.VerifyAt(onlyOld.Sign(NewID(), after), after); !ok || !v.OldKey {
		t.Errorf("after the switch an old key's value: ok %v, OldKey %v", ok, v.OldKey)
	}
	roles := func(now time.Time) string {
		var b strings.Builder
		for _, k := range s.Keys(now) {
			b.WriteString(k.Role.String() + " ")
		}
		return b.String()
	}
	if got := roles(before); got != "sign next " {
		t.Errorf("roles before = %q", got)
	}
	if got := roles(after); got != "older sign " {
		t.Errorf("roles after = %q", got)
	}
}

// Two edges whose clocks differ switch at different moments: in between,
// one signs with the new key and the other with the old one, and each
// verifies both, so the visitor keeps the ID.
func TestNextKeyAcrossSkewedClocksKeepsTheID(t *testing.T) {
	at := time.Date(2027, 1, 10, 9, 0, 0, 0, time.UTC)
	ks := Keys{Sign: oldKey, Next: newKey, NextAt: at}
	a, b := mustKeySigner(t, ks), mustKeySigner(t, ks)
	skew := 90 * time.Second
	cookie, id := visit(a, "", at.Add(-time.Hour))
	for i := range 400 {
		now := at.Add(-100*time.Second + time.Duration(i)*time.Second)
		e, clock := a, now
		if i%2 == 1 {
			e, clock = b, now.Add(-skew) // b's clock is behind
		}
		var got string
		cookie, got = visit(e, cookie, clock)
		if got != id {
			t.Fatalf("request %d: the ID changed", i)
		}
	}
	if _, ok := mustKeySigner(t, Keys{Sign: newKey}).VerifyAt(cookie, at.Add(time.Hour)); !ok {
		t.Error("once both edges switched the cookie is not signed with the new key")
	}
}

func TestKeysAreNamedByFingerprintOnly(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := mustKeySigner(t, Keys{Sign: oldKey, Verify: [][]byte{newKey}})
	b := mustKeySigner(t, Keys{Sign: newKey, Older: [][]byte{oldKey}})
	ka, kb := a.Keys(now), b.Keys(now)
	if ka[0].Fingerprint != kb[1].Fingerprint || ka[1].Fingerprint != kb[0].Fingerprint {
		t.Errorf("the same key has different fingerprints on two edges: %v, %v", ka, kb)
	}
	if ka[0].Fingerprint == ka[1].Fingerprint {
		t.Error("two keys share a fingerprint")
	}
	if ka[0].Role != RoleSign || ka[1].Role != RoleVerify || kb[0].Role != RoleSign || kb[1].Role != RoleOlder {
		t.Errorf("roles: %v, %v", ka, kb)
	}
	for _, k := range append(ka, kb...) {
		if len(k.Fingerprint) != 8 || strings.Contains(string(oldKey)+string(newKey), k.Fingerprint) {
			t.Errorf("fingerprint %q", k.Fingerprint)
		}
	}
}

func TestKeySetsThatCannotWork(t *testing.T) {
	for _, c := range []struct {
		name string
		ks   Keys
	}{
		{"no signing key", Keys{Verify: [][]byte{newKey}}},
		{"a short verify-only key", Keys{Sign: oldKey, Verify: [][]byte{[]byte("short")}}},
		{"a key in two roles", Keys{Sign: oldKey, Verify: [][]byte{oldKey}}},
		{"a next key without a time", Keys{Sign: oldKey, Next: newKey}},
	} {
		if _, err := NewKeySigner(c.ks); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestLinkTokenOfANewKeyOpensWhereItIsVerifyOnly(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	signing, err := NewKeyLinkSealer(Keys{Sign: newKey, Older: [][]byte{oldKey}})
	if err != nil {
		t.Fatal(err)
	}
	waiting, _ := NewKeyLinkSealer(Keys{Sign: oldKey, Verify: [][]byte{newKey}})
	unaware, _ := NewKeyLinkSealer(Keys{Sign: oldKey})
	newOnly, _ := NewKeyLinkSealer(Keys{Sign: newKey})
	tok, err := signing.Seal(NewID(), "www.b2s.com", "www.b2smade.com", now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := waiting.Open(tok, "www.b2smade.com", now); err != nil {
		t.Errorf("a token of the new key on an edge where it is verify-only: %v", err)
	}
	if _, err := unaware.Open(tok, "www.b2smade.com", now); err != ErrLinkInvalid {
		t.Errorf("control: a token of the new key on an edge without it: %v, want ErrLinkInvalid", err)
	}
	tok, _ = waiting.Seal(NewID(), "www.b2s.com", "www.b2smade.com", now, time.Minute)
	if _, err := newOnly.Open(tok, "www.b2smade.com", now); err != ErrLinkInvalid {
		t.Errorf("a token of the edge where the new key is verify-only opens with the new key alone: %v", err)
	}
	// A scheduled next key seals from its time on.
	at := now.Add(time.Hour)
	sched, _ := NewKeyLinkSealer(Keys{Sign: oldKey, Next: newKey, NextAt: at})
	tok, _ = sched.Seal(NewID(), "www.b2s.com", "www.b2smade.com", at, time.Minute)
	if _, err := newOnly.Open(tok, "www.b2smade.com", at); err != nil {
		t.Errorf("a token sealed at the switch time does not open with the next key: %v", err)
	}
}
