package mailink

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	keyA = bytes.Repeat([]byte("a"), 32)
	keyB = bytes.Repeat([]byte("b"), 32)
	t0   = time.Unix(1_800_000_000, 0)
)

func mustNew(t testing.TB, keys ...[]byte) *Sealer {
	t.Helper()
	s, err := New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func click() Link {
	return Link{Kind: Click, Host: "www.b2s.com", Campaign: "2026-12-news", Member: "m-1001",
		Issued: t0, Expires: t0.Add(30 * 24 * time.Hour), Destination: "https://www.b2s.com/deals?x=1#top"}
}

func mustSeal(t testing.TB, s *Sealer, l Link) string {
	t.Helper()
	tok, err := s.Seal(l)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestLinkRoundTripsAndHidesWhatItCarries(t *testing.T) {
	s := mustNew(t, keyA)
	for _, l := range []Link{
		click(),
		{Kind: Open, Host: "www.b2s.com", Campaign: "spring-sale", Member: "member-42", Issued: t0, Expires: t0.Add(time.Hour)},
		{Kind: Unsubscribe, Host: "www.b2s.com", Campaign: "enquiry-reply", Member: "kid-7", Child: true, Issued: t0, Expires: t0.Add(time.Hour)},
	} {
		tok := mustSeal(t, s, l)
		for _, secret := range []string{l.Member, l.Campaign, "b2s", "deals"} {
			if strings.Contains(tok, secret) {
				t.Errorf("%s token %q shows %q", l.Kind, tok, secret)
			}
		}
		got, err := s.Open(l.Kind, "WWW.b2s.com:443", tok, t0.Add(time.Minute))
		if err != nil {
			t.Fatalf("%s: %v", l.Kind, err)
		}
		if got != l {
			t.Errorf("%s: opened %+v, sealed %+v", l.Kind, got, l)
		}
	}
}

func TestTwoSealsOfOneLinkDiffer(t *testing.T) {
	s := mustNew(t, keyA)
	if a, b := mustSeal(t, s, click()), mustSeal(t, s, click()); a == b {
		t.Fatal("two tokens of one link are equal: the nonce is not random")
	}
}

// Every single-bit change of the sealed bytes is refused; the control is
// the unchanged token, which opens.
func TestTamperedTokenNeverOpens(t *testing.T) {
	s := mustNew(t, keyA)
	tok := mustSeal(t, s, click())
	if _, err := s.Open(Click, "www.b2s.com", tok, t0); err != nil {
		t.Fatalf("control: the untouched token does not open: %v", err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for i := range raw {
		for bit := 0; bit < 8; bit++ {
			m := append([]byte(nil), raw...)
			m[i] ^= 1 << bit
			if l, err := s.Open(Click, "www.b2s.com", base64.RawURLEncoding.EncodeToString(m), t0); !errors.Is(err, ErrInvalid) || l != (Link{}) {
				t.Fatalf("byte %d bit %d flipped: %+v, %v", i, bit, l, err)
			}
		}
	}
}

func TestTruncatedOrExtendedTokenNeverOpens(t *testing.T) {
	s := mustNew(t, keyA)
	tok := mustSeal(t, s, click())
	for n := 0; n < len(tok); n++ {
		if _, err := s.Open(Click, "www.b2s.com", tok[:n], t0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("cut to %d of %d characters: %v", n, len(tok), err)
		}
	}
	for _, extra := range []string{"A", "AA", "AAAA", "=", "%20"} {
		if _, err := s.Open(Click, "www.b2s.com", tok+extra, t0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%q appended: %v", extra, err)
		}
	}
}

// A token of one kind is refused as another: a pixel's token (which an
// image proxy fetches) cannot unsubscribe, a click's cannot be counted as
// an open.
func TestTokenOfOneKindIsRefusedAsAnother(t *testing.T) {
	s := mustNew(t, keyA)
	toks := map[Kind]string{}
	for _, k := range []Kind{Open, Click, Unsubscribe} {
		l := click()
		l.Kind = k
		if k != Click {
			l.Destination = ""
		}
		toks[k] = mustSeal(t, s, l)
	}
	for sealed, tok := range toks {
		for _, k := range []Kind{Open, Click, Unsubscribe} {
			_, err := s.Open(k, "www.b2s.com", tok, t0)
			if (err == nil) != (k == sealed) {
				t.Errorf("%s token opened as %s: %v", sealed, k, err)
			}
		}
	}
}

// Swapping fields: the pieces of two valid tokens (one recipient's nonce
// with another's ciphertext, halves of two tokens) never open, and the
// destination of one click cannot be put in another's token.
func TestSplicedTokensNeverOpen(t *testing.T) {
	s := mustNew(t, keyA)
	a := click()
	b := click()
	b.Member, b.Destination = "m-2002", "https://evil.example/"
	ta, tb := mustSeal(t, s, a), mustSeal(t, s, b)
	ra, _ := base64.RawURLEncoding.DecodeString(ta)
	rb, _ := base64.RawURLEncoding.DecodeString(tb)
	splices := [][]byte{
		append(append([]byte(nil), ra[:nonceLen]...), rb[nonceLen:]...),
		append(append([]byte(nil), rb[:nonceLen]...), ra[nonceLen:]...),
		append(append([]byte(nil), ra[:len(ra)/2]...), rb[len(rb)/2:]...),
		append(append([]byte(nil), ra[:len(ra)-tagLen]...), rb[len(rb)-tagLen:]...),
	}
	for i, sp := range splices {
		if _, err := s.Open(Click, "www.b2s.com", base64.RawURLEncoding.EncodeToString(sp), t0); !errors.Is(err, ErrInvalid) {
			t.Errorf("splice %d opens: %v", i, err)
		}
	}
	// GCM is a stream cipher under its tag: without the tag the same
	// keystream would let one flip a's destination into b's. The tag is
	// what refuses it.
	forged := append([]byte(nil), ra...)
	pt := []byte(a.Destination)
	want := []byte("https://evil.example/" + strings.Repeat("x", len(pt)))[:len(pt)]
	off := len(ra) - tagLen - len(pt)
	for i := range pt {
		forged[off+i] ^= pt[i] ^ want[i]
	}
	if _, err := s.Open(Click, "www.b2s.com", base64.RawURLEncoding.EncodeToString(forged), t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a destination rewritten under the keystream opens: %v", err)
	}
}

func TestExpiryAndHost(t *testing.T) {
	s := mustNew(t, keyA)
	l := click()
	tok := mustSeal(t, s, l)
	if _, err := s.Open(Click, "www.b2s.com", tok, l.Expires.Add(-time.Second)); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	got, err := s.Open(Click, "www.b2s.com", tok, l.Expires)
	if !errors.Is(err, ErrExpired) || got.Member != l.Member {
		t.Fatalf("at expiry: %+v, %v; want the link with ErrExpired", got, err)
	}
	if _, err := s.Open(Click, "www.b2smade.com", tok, t0); !errors.Is(err, ErrHost) {
		t.Fatalf("on another host: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	old := mustNew(t, keyA)
	tok := mustSeal(t, old, click())
	rotated := mustNew(t, keyB, keyA)
	if _, err := rotated.Open(Click, "www.b2s.com", tok, t0); err != nil {
		t.Fatalf("a token of the older key does not open after rotation: %v", err)
	}
	if _, err := mustNew(t, keyB).Open(Click, "www.b2s.com", tok, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token opens under another key: %v", err)
	}
	// The new key seals: the old key alone cannot open what it makes.
	if _, err := old.Open(Click, "www.b2s.com", mustSeal(t, rotated, click()), t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("rotated sealer does not seal with its first key: %v", err)
	}
}

// The key is not the cookie secret itself, nor the network link token's:
// a token sealed with AES-GCM under the raw secret does not open.
func TestKeyIsDerivedForMailLinksOnly(t *testing.T) {
	s := mustNew(t, keyA)
	if _, err := s.Open(Click, "www.b2s.com", mustSeal(t, mustNew(t, keyA), click()), t0); err != nil {
		t.Fatalf("control: a sealer of the same secret does not open: %v", err)
	}
	block, _ := aes.NewCipher(keyA)
	aead, _ := cipher.NewGCM(block)
	raw := &Sealer{aeads: []cipher.AEAD{aead}}
	if _, err := s.Open(Click, "www.b2s.com", mustSeal(t, raw, click()), t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a token under the underived secret opens: %v", err)
	}
}

func TestSealRefusesWhatCannotBeALink(t *testing.T) {
	s := mustNew(t, keyA)
	bad := map[string]func(*Link){
		"javascript destination": func(l *Link) { l.Destination = "javascript:alert(1)" },
		"relative destination":   func(l *Link) { l.Destination = "/deals" },
		"scheme-relative":        func(l *Link) { l.Destination = "//evil.example/" },
		"user info":              func(l *Link) { l.Destination = "https://www.b2s.com@evil.example/" },
		"newline in destination": func(l *Link) { l.Destination = "https://www.b2s.com/\r\nSet-Cookie: a=b" },
		"empty destination":      func(l *Link) { l.Destination = "" },
		"long destination":       func(l *Link) { l.Destination = "https://www.b2s.com/" + strings.Repeat("a", MaxDestinationLen) },
		"open with destination":  func(l *Link) { l.Kind = Open },
		"no campaign":            func(l *Link) { l.Campaign = "" },
		"campaign with space":    func(l *Link) { l.Campaign = "a b" },
		"long campaign":          func(l *Link) { l.Campaign = strings.Repeat("c", MaxCampaignLen+1) },
		"member with semicolon":  func(l *Link) { l.Member = "a;b" },
		"no member":              func(l *Link) { l.Member = "" },
		"host with port":         func(l *Link) { l.Host = "www.b2s.com:8443" },
		"no host":                func(l *Link) { l.Host = "" },
		"expires before issue":   func(l *Link) { l.Expires = l.Issued },
		"after 2106":             func(l *Link) { l.Expires = time.Unix(1<<33, 0) },
		"unknown kind":           func(l *Link) { l.Kind = 9 },
	}
	if _, err := s.Seal(click()); err != nil {
		t.Fatalf("control: a good link is refused: %v", err)
	}
	for name, f := range bad {
		l := click()
		f(&l)
		if tok, err := s.Seal(l); err == nil {
			t.Errorf("%s: sealed %q", name, tok)
		}
	}
}

func TestURLsForAMessage(t *testing.T) {
	s := mustNew(t, keyA)
	u, err := s.URLsFor(Message{Origin: "https://www.b2s.com", Campaign: "c1", Member: "m1",
		Destinations: []string{"https://www.b2s.com/a", "https://www.b2smade.com/b"}, Issued: t0, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for k, raw := range map[Kind]string{Open: u.Open, Unsubscribe: u.Unsubscribe, Click: u.Clicks[1]} {
		rest, ok := strings.CutPrefix(raw, "https://www.b2s.com")
		if !ok {
			t.Fatalf("%s URL %q is not on the origin", k, raw)
		}
		kind, tok, ok := ParsePath(rest)
		if !ok || kind != k {
			t.Fatalf("%s URL %q parses as %v %v", k, raw, kind, ok)
		}
		l, err := s.Open(k, "www.b2s.com", tok, t0)
		if err != nil || l.Campaign != "c1" || l.Member != "m1" {
			t.Fatalf("%s: %+v %v", k, l, err)
		}
		if k == Click && l.Destination != "https://www.b2smade.com/b" {
			t.Fatalf("click destination %q", l.Destination)
		}
	}
	if _, err := s.URLsFor(Message{Origin: "https://www.b2s.com/x", Campaign: "c1", Member: "m1", Issued: t0, TTL: time.Hour}); err == nil {
		t.Fatal("an origin with a path is accepted")
	}
}

func TestParsePath(t *testing.T) {
	for p, want := range map[string]bool{
		"/_b2s/mail/open/abc":      true,
		"/_b2s/mail/click/abc":     true,
		"/_b2s/mail/unsubscribe/":  true,
		"/_b2s/mail/other/abc":     false,
		"/_b2s/mail/open":          false,
		"/_b2s/mailopen/abc":       false,
		"/x/_b2s/mail/open/abc":    false,
		"/_b2s/mail/Unsubscribe/a": false,
	} {
		if _, _, ok := ParsePath(p); ok != want {
			t.Errorf("ParsePath(%q) = %v, want %v", p, ok, want)
		}
	}
}

// FuzzOpen feeds the edge's parser arbitrary tokens: it never panics,
// never opens what was not sealed, and a sealed token opens to what was
// sealed, whatever was appended to or cut from it.
func FuzzOpen(f *testing.F) {
	s := mustNew(f, keyA, keyB)
	// The same token in every fuzzing process: a fixed nonce.
	good := s.seal([nonceLen]byte{1, 2, 3}, plaintext(click(), "www.b2s.com"))
	if _, err := s.Open(Click, "www.b2s.com", good, t0); err != nil {
		f.Fatalf("control: the fixed token does not open: %v", err)
	}
	f.Add(good, 0, byte(0))
	f.Add(good, 10, byte(1))
	f.Add("", 0, byte(0))
	f.Add(strings.Repeat("A", MaxTokenLen), 3, byte(0x80))
	f.Fuzz(func(t *testing.T, tok string, at int, flip byte) {
		for _, k := range []Kind{Open, Click, Unsubscribe} {
			l, err := s.Open(k, "www.b2s.com", tok, t0)
			if err == nil && tok != good {
				// Only base64 of the same bytes could: Strict decoding
				// makes it one string.
				t.Fatalf("a token not sealed here opens: %q -> %+v", tok, l)
			}
		}
		raw, _ := base64.RawURLEncoding.DecodeString(good)
		if at < 0 {
			at = -at
		}
		raw[at%len(raw)] ^= flip
		_, err := s.Open(Click, "www.b2s.com", base64.RawURLEncoding.EncodeToString(raw), t0)
		if (err == nil) != (flip == 0) {
			t.Fatalf("flip %#x at %d: %v", flip, at%len(raw), err)
		}
	})
}

// FuzzSeal seals arbitrary fields: whatever Seal accepts opens to the same
// link.
func FuzzSeal(f *testing.F) {
	s := mustNew(f, keyA)
	f.Add("www.b2s.com", "c", "m", "https://www.b2s.com/", true)
	f.Fuzz(func(t *testing.T, host, campaign, member, dest string, child bool) {
		l := Link{Kind: Click, Host: host, Campaign: campaign, Member: member, Child: child, Issued: t0, Expires: t0.Add(time.Hour), Destination: dest}
		tok, err := s.Seal(l)
		if err != nil {
			return
		}
		got, err := s.Open(Click, host, tok, t0)
		l.Host = strings.ToLower(l.Host)
		if err != nil || got != l {
			t.Fatalf("sealed %+v, opened %+v, %v", l, got, err)
		}
	})
}

// FuzzParsePath: the edge's split of a request path never panics, and
// what it accepts is exactly a link path.
func FuzzParsePath(f *testing.F) {
	for _, p := range []string{"/_b2s/mail/open/abc", "/_b2s/mail/click/", "/_b2s/mail/unsubscribe/a/b", "/_b2s/mail//x", "/_b2s/mail/"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		k, tok, ok := ParsePath(p)
		if ok != strings.HasPrefix(p, PathPrefix) && ok {
			t.Fatalf("%q accepted outside the prefix", p)
		}
		if ok && Path(k, tok) != p {
			t.Fatalf("%q parsed as %v %q, which is %q", p, k, tok, Path(k, tok))
		}
	})
}
