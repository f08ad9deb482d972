package caddymodule

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
)

// The opt-in's form token. Its checks of Fetch Metadata and Origin cannot
// tell the visitor's own click from a POST that a route of the site
// redirects to the opt-in with 307 or 308 (the method, the body, the
// origin and the click's user activation are all kept). So the GET of the
// opt-in, the form page, sets a random nonce in a short-lived cookie
// (HttpOnly, SameSite=Strict, __Host- over https) and puts in the form a
// token binding that nonce, the host and an expiry under a key derived
// from the secret; the POST is accepted only with a token, in its body,
// that matches a nonce cookie the browser sent. Whoever redirects the
// visitor's POST knows neither.
const (
	optInNonceSuffix = "_optin"         // the nonce cookie: cookie_name + this
	optInTokenField  = "b2s_token"      // the form field holding the token
	optInTokenTTL    = 15 * time.Minute // how long a form stays good
	optInMaxBody     = 4 << 10          // the most of a POST body read for the token
	optInNonceLen    = 16               // random bytes of a nonce
	optInMACLen      = 16               // bytes of the token's MAC
)

// optInKeyLabel derives the token keys from the secrets, so that the
// token's MAC can never be mistaken for a cookie signature.
const optInKeyLabel = "b2s opt-in form token v1"

// optInKey derives a token key from a cookie key.
func optInKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(optInKeyLabel))
	return m.Sum(nil)
}

// optInMAC is the MAC of a token under key: the host, the nonce and the
// expiry.
func optInMAC(key []byte, host, nonce string, expiry int64) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(host))
	m.Write([]byte{0})
	m.Write([]byte(nonce))
	m.Write([]byte{0})
	m.Write(strconv.AppendInt(nil, expiry, 10))
	return m.Sum(nil)[:optInMACLen]
}

// optInNonceName is the name of the nonce cookie on r: with the __Host-
// prefix over https (it is always host-only), else unprefixed.
func (c *Collect) optInNonceName(r *http.Request) string {
	if r.TLS != nil {
		return hostPrefix + c.app.CookieName + optInNonceSuffix
	}
	return c.app.CookieName + optInNonceSuffix
}

// issueOptInToken sets a fresh nonce cookie on the response and returns
// the form's token for it.
func (c *Collect) issueOptInToken(h http.Header, r *http.Request, now time.Time) string {
	var b [optInNonceLen]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	nonce := base64.RawURLEncoding.EncodeToString(b[:])
	expiry := now.Add(optInTokenTTL).Unix()
	line := c.optInNonceName(r) + "=" + nonce + "; Path=/; Max-Age=" + strconv.Itoa(int(optInTokenTTL/time.Second)) + "; HttpOnly; SameSite=Strict"
	if r.TLS != nil {
		line += "; Secure"
	}
	h.Add("Set-Cookie", line)
	return strconv.FormatInt(expiry, 10) + "." + base64.RawURLEncoding.EncodeToString(optInMAC(c.app.optInKeys[0], hostname(r.Host), nonce, expiry))
}

// validOptInToken reports whether the POST r carries, in its
// application/x-www-form-urlencoded body, a token that has not expired
// and matches one of the nonce cookies r carries. A token in the URL's
// query does not count: whoever redirects the POST writes the URL.
func (c *Collect) validOptInToken(w http.ResponseWriter, r *http.Request, now time.Time) bool {
	if r.Body == nil {
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, optInMaxBody)
	if err := r.ParseForm(); err != nil {
		return false
	}
	vs := r.PostForm[optInTokenField]
	if len(vs) != 1 {
		return false
	}
	exp, macText, ok := strings.Cut(vs[0], ".")
	if !ok {
		return false
	}
	expiry, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || now.Unix() > expiry || expiry-now.Unix() > int64(optInTokenTTL/time.Second) {
		return false
	}
	mac, err := base64.RawURLEncoding.DecodeString(macText)
	if err != nil || len(mac) != optInMACLen {
		return false
	}
	name, host := c.optInNonceName(r), hostname(r.Host)
	for _, line := range r.Header["Cookie"] {
		for rest := line; ; {
			n, v, more, ok := beacon.NextCookie(rest)
			if !ok {
				break
			}
			rest = more
			if n != name {
				continue
			}
			for _, key := range c.app.optInKeys {
				if hmac.Equal(mac, optInMAC(key, host, v, expiry)) {
					return true
				}
			}
		}
	}
	return false
}

// dropOptInNonce deletes the nonce cookie: a form is good for one opt-in.
func (c *Collect) dropOptInNonce(h http.Header, r *http.Request) {
	line := c.optInNonceName(r) + "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
	if r.TLS != nil {
		line += "; Secure"
	}
	h.Add("Set-Cookie", line)
}
