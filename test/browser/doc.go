// Package browser holds the end-to-end tests of b2s-edge in a real browser:
// headless Chromium, driven with chromedp over the DevTools protocol, loads
// pages over HTTPS from the built Caddy binary, which serves several sites on
// loopback under names of their own (www.b2s.test, the sister site
// www.b2smade.test, and an advertiser's ads.adnet.example), and ships its
// records to the test broker (test/kbroker), read back with franz-go, a
// client that shares no code with the product's shipper.
//
// What a browser adds to test/e2e is what only a browser decides: which
// cookies it stores and sends back, what page scripts can read, which cookies
// a third-party frame gets, what a sendBeacon carries. The advertiser's server
// logs everything it receives, so the tests can show that the visitor's b2s
// ID never reaches it in any header, URL, body or script-readable value;
// nor does it reach the advertiser's server that the main site serves
// under its own name behind b2s_isolate, whose own cookie still goes back
// and forth, and whose attempts to set b2s's cookies or send b2s's signals
// come to nothing.
// The same holds for the link token that carries a visitor's network ID
// from the main site to the sister site: the tests follow a real click
// through the redirects and look for the token in the address bar, the
// history, the referrer, the origins' logs and the records. They show the
// privacy signals (opt-out, Global Privacy Control, the child and member
// headers) changing the records, the cookie jar and the headers the
// browser receives, and the main site's beacon embedded on the sister site
// with third-party cookies allowed and blocked.
//
// Each test starts its own broker, edge and browser, with a fresh profile, in
// a temporary directory; Caddy's local CA signs the sites' certificates and
// nothing is installed in any trust store. The tests need Debian's chromium
// package (`apt-get install chromium`, or `make deps`). Run them with
// `go test ./test/browser/`.
package browser
