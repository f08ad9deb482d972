package caddymodule

import (
	"net/textproto"
	"strings"
)

// maxCookiePairs is net/http's default limit on the cookies of a request
// (GODEBUG httpcookiemaxnum): a request with more is read as having none.
const maxCookiePairs = 3000

// filterCookies returns the cookies of the Cookie header lines whose names
// keep accepts, as one Cookie header value ("a=1; b=2"), and how many
// cookies it left out. It reads the lines as net/http's Request.Cookies
// does, leniently: pairs are split at ";" and trimmed, the name ends at the
// first "=" and must be a token, the value may be in double quotes and
// must be cookie-octets (RFC 6265, section 4.1.1); a pair that does not
// parse is left out and counted, never an error. A kept pair is written
// as it came, so its value reaches the upstream byte for byte.
func filterCookies(lines []string, keep func(name string) bool) (kept string, removed int) {
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	var b strings.Builder
	for _, line := range lines {
		line = textproto.TrimString(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = textproto.TrimString(part)
			if part == "" {
				continue
			}
			name, val, _ := strings.Cut(part, "=")
			name = textproto.TrimString(name)
			if n > maxCookiePairs || !isToken(name) || !validCookieValue(val) || !keep(name) {
				removed++
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(name)
			b.WriteByte('=')
			b.WriteString(val)
		}
	}
	return b.String(), removed
}

// setCookieName returns the name of the cookie a Set-Cookie header value
// sets: the first pair's text before "=", trimmed, as browsers read it
// (RFC 6265, section 5.2). A value whose first pair has no "=" sets a
// cookie without a name in today's browsers, and one whose name is not a
// token is refused by net/http: both report false.
func setCookieName(v string) (string, bool) {
	pair, _, _ := strings.Cut(v, ";")
	name, _, ok := strings.Cut(pair, "=")
	if !ok {
		return "", false
	}
	name = textproto.TrimString(name)
	return name, isToken(name)
}

// validCookieValue reports whether v is a cookie-value: cookie-octets,
// optionally in double quotes (RFC 6265, section 4.1.1).
func validCookieValue(v string) bool {
	if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// isToken reports whether s is a non-empty token (RFC 9110, section 5.6.2),
// what a cookie name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
