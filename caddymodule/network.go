package caddymodule

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/net/publicsuffix"

	"github.com/b2scom/b2s-edge/beacon"
)

// Defaults of the network options.
const (
	DefaultLinkPath   = "/_b2s/go"
	DefaultTokenParam = "_b2s"
	DefaultTokenTTL   = caddy.Duration(30 * time.Second)
)

// Network lists the sites of the b2s.com network. Every site gets its own
// first-party cookie; a visitor who follows a link from one site to
// another through the link endpoint carries their network ID along in a
// sealed, single-use token, and records from every site then share one
// network_id. Beacons and POST beacons answer credentialed CORS requests
// from the network's origins.
type Network struct {
	// Sites are the network's hosts or registrable domains, e.g.
	// "b2s.com" (which covers www.b2s.com and every other subdomain) and
	// "b2smade.com". Required.
	Sites []string `json:"sites,omitempty"`

	// LinkPath is the link endpoint served on every site with
	// b2s_collect: <a href="/_b2s/go?to=https://www.b2smade.com/p">
	// redirects to the destination with a link token. Destinations must
	// be network sites: anything else gets 400, never a redirect.
	// Default "/_b2s/go".
	LinkPath string `json:"link_path,omitempty"`

	// TokenParam is the query parameter carrying the link token. The
	// destination exchanges it for its own cookie only on a top-level
	// navigation from a network page (a GET with a network Referer, and
	// Sec-Fetch-Mode navigate and Sec-Fetch-Dest document where the
	// browser sends them), and redirects to the same URL without it,
	// before the page loads. Any other request loses the parameter too,
	// whatever its method, before it is recorded or passed on, so the
	// token never reaches the page, its scripts, the upstream, a record
	// or a Referer. Default "_b2s".
	TokenParam string `json:"token_param,omitempty"`

	// TokenTTL is how long a link token is accepted. Each is accepted
	// once per edge process: behind a balancer, at most once on each
	// edge (see the README's "Link tokens on a fleet"). Default 30s.
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`
}

// network is the provisioned Network.
type network struct {
	sites      []string // lowercase, no leading dot
	linkPath   string
	tokenParam string
	tokenTTL   time.Duration
	sealer     *beacon.LinkSealer
}

// provision returns the options with their defaults, and the sealer of
// link tokens made from the cookie keys; nil without a network block.
func (n *Network) provision(keys beacon.Keys) (*network, error) {
	if n == nil {
		return nil, nil
	}
	nw := &network{
		linkPath: or(n.LinkPath, DefaultLinkPath), tokenParam: or(n.TokenParam, DefaultTokenParam),
		tokenTTL: time.Duration(n.TokenTTL),
	}
	if nw.tokenTTL == 0 {
		nw.tokenTTL = time.Duration(DefaultTokenTTL)
	}
	for _, s := range n.Sites {
		nw.sites = append(nw.sites, strings.TrimPrefix(strings.ToLower(s), "."))
	}
	sealer, err := beacon.NewKeyLinkSealer(keys)
	if err != nil {
		return nil, fmt.Errorf("b2s: network: %v", err)
	}
	nw.sealer = sealer
	return nw, nil
}

// validate checks the options, with their defaults; pv's paths are taken.
func (nw *network) validate(pv *privacy) error {
	if nw == nil {
		return nil
	}
	if nw.tokenTTL < 0 || nw.tokenTTL > 10*time.Minute {
		return fmt.Errorf("b2s: network: token_ttl %v must be positive and at most 10m; a few seconds cover a redirect, e.g. token_ttl 30s", nw.tokenTTL)
	}
	if len(nw.sites) == 0 {
		return fmt.Errorf("b2s: network: sites is empty; list the network's hosts or registrable domains, e.g. sites b2s.com b2smade.com")
	}
	for _, s := range nw.sites {
		if !validDomain(s) {
			return fmt.Errorf("b2s: network: site %q is not a host name; list hosts or registrable domains, e.g. b2s.com", s)
		}
		if suffix, icann := publicsuffix.PublicSuffix(s); suffix == s && icann {
			return fmt.Errorf("b2s: network: site %q is a public suffix, shared by unrelated sites; list the network's own domains, e.g. b2s.com", s)
		}
	}
	if !strings.HasPrefix(nw.linkPath, "/") {
		return fmt.Errorf("b2s: network: link_path %q must start with /", nw.linkPath)
	}
	if nw.linkPath == pv.optOutPath || nw.linkPath == pv.optInPath {
		return fmt.Errorf("b2s: network: link_path %q is also a privacy path; give it its own", nw.linkPath)
	}
	if url.QueryEscape(nw.tokenParam) != nw.tokenParam || nw.tokenParam == "" {
		return fmt.Errorf("b2s: network: token_param %q must be a plain query parameter name, e.g. _b2s", nw.tokenParam)
	}
	return nil
}

// hostname is host without its port, lowercased.
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// has reports whether host (without port) is a network site or under one.
func (n *network) has(host string) bool { return n.siteOf(host) != "" }

// siteOf returns the network site entry host (without port) is or falls
// under, or "".
func (n *network) siteOf(host string) string {
	if n == nil {
		return ""
	}
	for _, s := range n.sites {
		if host == s || (len(host) > len(s) && strings.HasSuffix(host, s) && host[len(host)-len(s)-1] == '.') {
			return s
		}
	}
	return ""
}

// destination checks a link's target: an absolute http(s) URL of a
// network site, written plainly. Anything that browsers and URL parsers
// might read differently (backslashes, control characters, user info,
// encoded hosts, other schemes, scheme-relative forms) is refused rather
// than normalised. A plain-http destination is accepted only from a
// plain-http request.
func (n *network) destination(raw string, tls bool) (*url.URL, bool) {
	if n == nil || !plainURL(raw) {
		return nil, false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil || u.Host == "" {
		return nil, false
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && !tls:
	default:
		return nil, false
	}
	if !strings.HasPrefix(raw, u.Scheme+"://"+u.Host) {
		return nil, false // the authority was not written plainly
	}
	for i := 0; i < len(u.Host); i++ {
		c := u.Host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':') {
			return nil, false
		}
	}
	if p := u.Port(); p != "" {
		if v, err := strconv.Atoi(p); err != nil || v < 1 || v > 65535 {
			return nil, false
		}
	}
	if strings.HasSuffix(u.Hostname(), ".") || !n.has(hostname(u.Host)) {
		return nil, false
	}
	return u, true
}

// plainURL reports whether s can be a redirect target as written: not
// empty, at most beacon.MaxURLLen bytes, and none of what browsers and
// URL parsers read differently (control characters, spaces, backslashes,
// non-ASCII bytes).
func plainURL(s string) bool {
	if s == "" || len(s) > beacon.MaxURLLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || strings.HasSuffix(d, ".") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') {
				return false
			}
		}
	}
	return true
}
