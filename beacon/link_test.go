package beacon

import (
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustSealer(t testing.TB, keys ...[]byte) *LinkSealer {
	t.Helper()
	l, err := NewLinkSealer(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLinkTokenRoundTrip(t *testing.T) {
	l := mustSealer(t, keyA)
	now := time.Unix(1_800_000_000, 0)
	nid := NewID()
	tok, err := l.Seal(nid, "www.b2s.com", "WWW.b2smade.com", now, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tok, nid) || strings.Contains(tok, "b2s") {
		t.Fatalf("token %q shows what it carries", tok)
	}
	if _, err := base64.RawURLEncoding.DecodeString(tok); err != nil {
		t.Fatalf("token %q is not URL-safe base64: %v", tok, err)
	}
	link, err := l.Open(tok, "www.b2smade.com", now.Add(29*time.Second))
	if err != nil || link.NetworkID != nid || link.From != "www.b2s.com" {
		t.Fatalf("Open = %+v, %v; want network %s from www.b2s.com", link, err, nid)
	}
	if _, err := l.Open(tok, "www.b2smade.com", now.Add(30*time.Second)); !errors.Is(err, ErrLinkExpired) {
		t.Errorf("at expiry: %v, want ErrLinkExpired", err)
	}
	if _, err := l.Open(tok, "evil.example", now); !errors.Is(err, ErrLinkHost) {
		t.Errorf("on another host: %v, want ErrLinkHost", err)
	}
	// Rotation: a token sealed with the old key opens with it listed second.
	if _, err := mustSealer(t, keyB, keyA).Open(tok, "www.b2smade.com", now); err != nil {
		t.Errorf("after rotation: %v", err)
	}
	if _, err := mustSealer(t, keyB).Open(tok, "www.b2smade.com", now); !errors.Is(err, ErrLinkInvalid) {
		t.Errorf("with an unrelated key: %v, want ErrLinkInvalid", err)
	}
	b, _ := base64.RawURLEncoding.DecodeString(tok)
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 1
		if _, err := l.Open(base64.RawURLEncoding.EncodeToString(c), "www.b2smade.com", now); !errors.Is(err, ErrLinkInvalid) {
			t.Fatalf("byte %d flipped: %v, want ErrLinkInvalid", i, err)
		}
	}
	for _, bad := range []string{"", "!!", tok[:10], tok + "A", strings.Repeat("A", MaxLinkTokenLen+1)} {
		if _, err := l.Open(bad, "www.b2smade.com", now); err == nil {
			t.Errorf("Open(%q) accepted", bad)
		}
	}
	if _, err := l.Seal("not-hex", "a", "b", now, time.Second); err == nil {
		t.Error("Seal accepted a malformed network ID")
	}
}

func TestReplayAcceptsEachTokenOnce(t *testing.T) {
	l := mustSealer(t, keyA)
	now := time.Unix(1_800_000_000, 0)
	tok, _ := l.Seal(NewID(), "a.test", "b.test", now, 30*time.Second)
	link, err := l.Open(tok, "b.test", now)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReplay()
	var wg sync.WaitGroup
	var mu sync.Mutex
	used := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.Use(link, now) {
				mu.Lock()
				used++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if used != 1 {
		t.Fatalf("token accepted %d times, want once", used)
	}
	// Forgotten after expiry (by then Open refuses it anyway).
	r.Use(Link{Expires: now.Add(time.Minute)}, now.Add(2*time.Minute))
	if len(r.seen) != 1 {
		t.Errorf("%d tokens remembered after the first expired, want 1", len(r.seen))
	}
}

func FuzzOpenLink(f *testing.F) {
	l := mustSealer(f, keyA)
	now := time.Unix(1_800_000_000, 0)
	tok, _ := l.Seal(NewID(), "a.test", "b.test", now, time.Minute)
	for _, s := range []string{"", tok, tok[:20], "AAAA", strings.Repeat("_", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		link, err := l.Open(s, "b.test", now)
		if err == nil && (len(link.NetworkID) != IDLen || link.From != "a.test") {
			t.Fatalf("Open(%q) = %+v", s, link)
		}
	})
}

func TestTruncateIP(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{"203.0.113.77", "203.0.113.0"},
		{"2001:db8:1234:5678::1", "2001:db8:1234::"},
		{"::1", "::"},
	} {
		if got := TruncateIP(netip.MustParseAddr(c.in), 24, 48); got.String() != c.want {
			t.Errorf("TruncateIP(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}
