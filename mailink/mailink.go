// Package mailink makes and opens the links of b2s.com's own mail: the
// open pixel, click links and the one-click unsubscribe (RFC 8058). A
// mailer imports it to write the URLs of each message; the edge opens
// them. It knows nothing of Caddy.
//
// Each URL ends in a token sealed with AES-256-GCM under a key derived
// from the edge's cookie secret (HMAC-SHA256 with a label of its own, so
// it is never the key of the cookie or of the network's link tokens).
// Sealing, not only signing: the token hides the member ID and the
// campaign from whoever sees the URL (mail logs, proxies, link
// scanners), and nothing in it can be changed, moved to another kind of
// link or another host, or forged without the key. A click's destination
// is fixed at sealing, inside the token: the edge redirects there and
// nowhere else, whatever the URL says, so the click endpoint is no open
// redirect. The first key seals; every key opens, following the cookie
// secret's rotation.
package mailink

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// Kind is what a link does.
type Kind uint8

// The kinds of mail link.
const (
	// Open is the 1x1 pixel in the message's HTML.
	Open Kind = iota + 1
	// Click is a link to a page, redirected through the edge.
	Click
	// Unsubscribe is the one-click unsubscribe of the List-Unsubscribe
	// header (RFC 8058) and of the message's footer.
	Unsubscribe
)

// String returns the kind's name, which is also its record kind and the
// last part of its path: open, click or unsubscribe.
func (k Kind) String() string {
	switch k {
	case Open:
		return "open"
	case Click:
		return "click"
	case Unsubscribe:
		return "unsubscribe"
	}
	return "unknown"
}

// PathPrefix is where the edge serves mail links: PathPrefix + kind + "/"
// + token, e.g. /_b2s/mail/open/<token>.
const PathPrefix = "/_b2s/mail/"

// Path returns the path of a link of kind k with token tok.
func Path(k Kind, tok string) string { return PathPrefix + k.String() + "/" + tok }

// ParsePath splits a path under PathPrefix into its kind and token; ok
// is false for any other path.
func ParsePath(p string) (k Kind, tok string, ok bool) {
	rest, ok := strings.CutPrefix(p, PathPrefix)
	if !ok {
		return 0, "", false
	}
	name, tok, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, "", false
	}
	for _, k := range [...]Kind{Open, Click, Unsubscribe} {
		if name == k.String() {
			return k, tok, true
		}
	}
	return 0, "", false
}

// Limits of what a link carries.
const (
	// MaxCampaignLen is the longest campaign name.
	MaxCampaignLen = 64
	// MaxHostLen is the longest host name.
	MaxHostLen = 255
	// MaxDestinationLen is the longest click destination.
	MaxDestinationLen = 2048
)

// Token layout. Plaintext:
//
//	version (1) | kind (1) | flags (1) | issued (4) | expires (4) |
//	len(host) (1) | host | len(campaign) (1) | campaign |
//	len(member) (1) | member | destination (the rest; clicks only)
//
// sealed as nonce (12, random) | ciphertext | tag (16), base64url without
// padding.
const (
	version    = 1
	nonceLen   = 12
	tagLen     = 16
	fixedLen   = 1 + 1 + 1 + 4 + 4 + 1 + 1 + 1
	flagChild  = 1 << 0
	knownFlags = flagChild
	// MaxTokenLen bounds the tokens the edge looks at.
	MaxTokenLen = (nonceLen + fixedLen + MaxHostLen + MaxCampaignLen + beacon.MaxMemberLen + MaxDestinationLen + tagLen + 2) / 3 * 4
)

// Errors of Open, for the caller's records and metrics. A link that is
// authentic but expired is returned with ErrExpired.
var (
	ErrInvalid = errors.New("mail link does not open")
	ErrExpired = errors.New("mail link expired")
	ErrHost    = errors.New("mail link is for another host")
)

// Link is what a mail link carries.
type Link struct {
	// Kind is what the link does.
	Kind Kind
	// Host is the site's host the link is served on, e.g. www.b2s.com; a
	// link opens on that host only.
	Host string
	// Campaign names the mailing, e.g. "2026-12-newsletter": 1 to 64
	// visible ASCII characters.
	Campaign string
	// Member is the recipient's member ID, the one the site sends in
	// X-B2S-Member: 1 to 64 visible ASCII characters.
	Member string
	// Child marks a child's account: the edge records no member for it.
	Child bool
	// Issued is when the link was made (about when the message was
	// sent), to tell a security scanner's click within seconds of
	// delivery from a reader's.
	Issued time.Time
	// Expires is when the link stops being trusted.
	Expires time.Time
	// Destination is a click's absolute http or https URL, where the
	// edge redirects; empty for the other kinds.
	Destination string
}

// Sealer seals and opens mail links. It is safe for concurrent use.
type Sealer struct {
	aeads []cipher.AEAD
	tags  [][]byte // one HMAC key per key, for member tags (unsubscribed.go)
}

// New derives one AES-256-GCM key from each of the cookie secret's keys,
// which must pass beacon.ValidateKeys: the first seals, all open.
func New(keys ...[]byte) (*Sealer, error) {
	if err := beacon.ValidateKeys(keys); err != nil {
		return nil, err
	}
	s := &Sealer{}
	for _, k := range keys {
		aead, err := beacon.DerivedAEAD(k, "b2s-edge mail link key v1")
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, aead)
		m := hmac.New(sha256.New, k)
		m.Write([]byte("b2s-edge mail member tag key v1"))
		s.tags = append(s.tags, m.Sum(nil))
	}
	return s, nil
}

// ValidCampaign reports whether c can be a campaign name: 1 to 64
// visible ASCII characters.
func ValidCampaign(c string) bool {
	if c == "" || len(c) > MaxCampaignLen {
		return false
	}
	for i := 0; i < len(c); i++ {
		if c[i] <= 0x20 || c[i] >= 0x7f {
			return false
		}
	}
	return true
}

// validHost reports whether h is a lowercase DNS name: letters, digits,
// hyphens and dots, at most MaxHostLen bytes.
func validHost(h string) bool {
	if h == "" || len(h) > MaxHostLen {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// CheckDestination reports why d cannot be a click's destination: it
// must be an absolute http or https URL with a host, without user
// information, of at most MaxDestinationLen bytes of visible ASCII (a
// URL as it goes in a Location header).
func CheckDestination(d string) error {
	if d == "" || len(d) > MaxDestinationLen {
		return fmt.Errorf("destination must be 1 to %d bytes", MaxDestinationLen)
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' {
			return errors.New(`destination must be visible ASCII without quotes, backslashes or angle brackets; percent-encode the rest`)
		}
	}
	u, err := url.Parse(d)
	if err != nil {
		return fmt.Errorf("destination: %v", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.Opaque != "" {
		return errors.New("destination must be an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("destination must not hold user information")
	}
	return nil
}

// Seal returns the token of l, sealed with the first key.
func (s *Sealer) Seal(l Link) (string, error) {
	host := strings.ToLower(l.Host)
	switch {
	case l.Kind < Open || l.Kind > Unsubscribe:
		return "", errors.New("unknown link kind")
	case !validHost(host):
		return "", fmt.Errorf("host %q is not a host name", l.Host)
	case !ValidCampaign(l.Campaign):
		return "", fmt.Errorf("campaign %q must be 1 to %d visible ASCII characters", l.Campaign, MaxCampaignLen)
	case !beacon.ValidMember(l.Member):
		return "", fmt.Errorf("member %q must be 1 to %d visible ASCII characters without quotes, commas, semicolons or backslashes", l.Member, beacon.MaxMemberLen)
	case !l.Expires.After(l.Issued):
		return "", errors.New("link must expire after it is issued")
	case l.Issued.Unix() < 0 || l.Expires.Unix() > 1<<32-1:
		return "", errors.New("issue and expiry must fall between 1970 and 2106")
	}
	if l.Kind == Click {
		if err := CheckDestination(l.Destination); err != nil {
			return "", err
		}
	} else if l.Destination != "" {
		return "", fmt.Errorf("only a click link has a destination")
	}
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", err
	}
	return s.seal(nonce, plaintext(l, host)), nil
}

// plaintext lays out a checked link.
func plaintext(l Link, host string) []byte {
	var flags byte
	if l.Child {
		flags |= flagChild
	}
	pt := make([]byte, 0, fixedLen+len(host)+len(l.Campaign)+len(l.Member)+len(l.Destination))
	pt = append(pt, version, byte(l.Kind), flags)
	pt = binary.BigEndian.AppendUint32(pt, uint32(l.Issued.Unix()))
	pt = binary.BigEndian.AppendUint32(pt, uint32(l.Expires.Unix()))
	pt = append(append(pt, byte(len(host))), host...)
	pt = append(append(pt, byte(len(l.Campaign))), l.Campaign...)
	pt = append(append(pt, byte(len(l.Member))), l.Member...)
	return append(pt, l.Destination...)
}

// seal seals pt under the first key with nonce.
func (s *Sealer) seal(nonce [nonceLen]byte, pt []byte) string {
	out := append(make([]byte, 0, nonceLen+len(pt)+tagLen), nonce[:]...)
	out = s.aeads[0].Seal(out, nonce[:], pt, nil)
	return base64.RawURLEncoding.EncodeToString(out)
}

// Open returns what token carries if it opens under one of the keys, is
// a link of kind k and was made for host (compared without case or
// port). An authentic link past its expiry at now is returned with
// ErrExpired; a link for another host with ErrHost; anything else that
// does not open (forged, altered, cut short, of another kind, under an
// unknown key) is ErrInvalid with an empty Link.
func (s *Sealer) Open(k Kind, host, token string, now time.Time) (Link, error) {
	if len(token) > MaxTokenLen || len(token) < (nonceLen+fixedLen+tagLen)*4/3 {
		return Link{}, ErrInvalid
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(raw) < nonceLen+fixedLen+tagLen {
		return Link{}, ErrInvalid
	}
	nonce, ct := raw[:nonceLen], raw[nonceLen:]
	var pt []byte
	for _, a := range s.aeads {
		if pt, err = a.Open(nil, nonce, ct, nil); err == nil {
			break
		}
	}
	if err != nil {
		return Link{}, ErrInvalid
	}
	l, ok := parse(pt)
	if !ok || l.Kind != k {
		return Link{}, ErrInvalid
	}
	if h, _, found := strings.Cut(host, ":"); found && !strings.HasPrefix(host, "[") {
		host = h
	}
	if !strings.EqualFold(l.Host, host) {
		return l, ErrHost
	}
	if !now.Before(l.Expires) {
		return l, ErrExpired
	}
	return l, nil
}

// parse reads a plaintext; only what Seal writes parses.
func parse(pt []byte) (Link, bool) {
	if len(pt) < fixedLen || pt[0] != version || pt[2]&^knownFlags != 0 {
		return Link{}, false
	}
	l := Link{
		Kind:    Kind(pt[1]),
		Child:   pt[2]&flagChild != 0,
		Issued:  time.Unix(int64(binary.BigEndian.Uint32(pt[3:7])), 0),
		Expires: time.Unix(int64(binary.BigEndian.Uint32(pt[7:11])), 0),
	}
	rest := pt[11:]
	field := func() (string, bool) {
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
			return "", false
		}
		n := int(rest[0])
		f := string(rest[1 : 1+n])
		rest = rest[1+n:]
		return f, true
	}
	var ok1, ok2, ok3 bool
	l.Host, ok1 = field()
	l.Campaign, ok2 = field()
	l.Member, ok3 = field()
	if !ok1 || !ok2 || !ok3 || l.Kind < Open || l.Kind > Unsubscribe {
		return Link{}, false
	}
	l.Destination = string(rest)
	if (l.Kind == Click) != (l.Destination != "") {
		return Link{}, false
	}
	return l, true
}

// URLs are the links of one message to one recipient.
type URLs struct {
	// Open is the pixel's URL, for <img src="..." width="1" height="1" alt="">.
	Open string
	// Unsubscribe is the one-click unsubscribe URL, for
	// List-Unsubscribe: <...> with List-Unsubscribe-Post:
	// List-Unsubscribe=One-Click, and for the footer's link (a GET shows
	// a confirmation page).
	Unsubscribe string
	// Clicks are the click URLs, one for each destination, in order.
	Clicks []string
}

// Message describes one message to one recipient, for URLsFor.
type Message struct {
	// Origin is the site's scheme and host, e.g. https://www.b2s.com.
	Origin string
	// Campaign, Member and Child are as in Link.
	Campaign string
	Member   string
	Child    bool
	// Destinations are the pages the message links to.
	Destinations []string
	// Issued is when the message is sent; TTL how long its links are
	// trusted after that.
	Issued time.Time
	TTL    time.Duration
}

// URLsFor seals every link of m.
func (s *Sealer) URLsFor(m Message) (URLs, error) {
	o, err := url.Parse(m.Origin)
	if err != nil || (o.Scheme != "https" && o.Scheme != "http") || o.Host == "" || (o.Path != "" && o.Path != "/") || o.RawQuery != "" || o.User != nil {
		return URLs{}, fmt.Errorf("origin %q must be a scheme and host, e.g. https://www.b2s.com", m.Origin)
	}
	base := o.Scheme + "://" + o.Host
	link := Link{Host: o.Hostname(), Campaign: m.Campaign, Member: m.Member, Child: m.Child, Issued: m.Issued, Expires: m.Issued.Add(m.TTL)}
	one := func(k Kind, dest string) (string, error) {
		l := link
		l.Kind, l.Destination = k, dest
		tok, err := s.Seal(l)
		if err != nil {
			return "", err
		}
		return base + Path(k, tok), nil
	}
	var u URLs
	if u.Open, err = one(Open, ""); err != nil {
		return URLs{}, err
	}
	if u.Unsubscribe, err = one(Unsubscribe, ""); err != nil {
		return URLs{}, err
	}
	for _, d := range m.Destinations {
		c, err := one(Click, d)
		if err != nil {
			return URLs{}, fmt.Errorf("click to %q: %v", d, err)
		}
		u.Clicks = append(u.Clicks, c)
	}
	return u, nil
}
