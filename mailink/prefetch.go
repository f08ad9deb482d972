package mailink

import (
	"net/netip"
	"strings"
	"time"
)

// Fetchers that open or click on the reader's behalf, the record's
// "prefetch". Such a fetch is no reader's open or click.
const (
	// PrefetchAppleMPP is Apple Mail Privacy Protection, which loads the
	// remote content of every message received, through Apple's proxies,
	// whether or not it is read.
	PrefetchAppleMPP = "apple_mpp"
	// PrefetchGmailProxy is Gmail's image proxy, which fetches a
	// message's images (at delivery or first display) and serves them
	// from its cache.
	PrefetchGmailProxy = "gmail_proxy"
	// PrefetchYahooProxy is Yahoo Mail's content proxy.
	PrefetchYahooProxy = "yahoo_proxy"
	// PrefetchScanner is a security scanner following every link of a
	// message on delivery: a fetch within ScannerWindow of the link's
	// issue from a data centre.
	PrefetchScanner = "scanner"
)

// ScannerWindow is how soon after a link is issued a fetch from a data
// centre counts as a scanner's: mail gateways scan on delivery, which
// comes seconds after sending; a reader rarely clicks that fast, and
// rarely from a data centre.
const ScannerWindow = 2 * time.Minute

// Fetch is what the edge knows of a request for a mail link.
type Fetch struct {
	Kind      Kind
	UserAgent string
	// IP is the client's address, before any truncation.
	IP netip.Addr
	// ASN is the autonomous system the ASN database gives for IP, 0
	// when unknown; Hosting whether the Anonymous IP database lists IP
	// as a hosting provider.
	ASN     uint32
	Hosting bool
	// SinceIssued is the time since the link was issued; negative when
	// the link is not authentic.
	SinceIssued time.Duration
}

// appleNet is Apple's own address block (17.0.0.0/8, registered to
// Apple at ARIN, announced by AS714), from which Mail Privacy
// Protection's proxies fetch.
var appleNet = netip.MustParsePrefix("17.0.0.0/8")

// asApple is Apple's autonomous system.
const asApple = 714

// cloudASNs are the data centres of the large mailbox and cloud
// providers whose mail gateways scan links: Microsoft (8075), Google
// (15169, 396982), Amazon (16509, 14618).
var cloudASNs = map[uint32]bool{8075: true, 15169: true, 396982: true, 16509: true, 14618: true}

// Prefetcher names the fetcher of f when it is one of the known proxies
// or scanners, or "" for a reader's own mail client or browser. Sources
// and limits:
//   - Gmail's image proxy sends a User-Agent ending in "(via ggpht.com
//     GoogleImageProxy)"; Google documents the proxy (Gmail help, "Images
//     now showing", 2013) but not the string, which is observed.
//   - Yahoo documents its proxy's User-Agent, "YahooMailProxy;
//     https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html".
//   - Apple documents that Mail Privacy Protection fetches remote content
//     privately, through proxies, but not their addresses; the fetches
//     observed come from Apple's 17.0.0.0/8 (AS714) with a bare
//     "Mozilla/5.0". An open from that network counts as the proxy's. A
//     reader on Apple's own network is miscounted; a proxy that moves
//     off it is missed.
//   - A scanner is told apart only by timing and network: a fetch within
//     ScannerWindow of issue from a hosting provider (the Anonymous IP
//     database) or a large cloud's ASN (the ASN database). Without those
//     databases no scanner is flagged; a scanner that waits, or runs from
//     elsewhere, is missed.
//
// An unsubscribe is never a prefetch: RFC 8058 has the mailbox provider's
// servers send the one-click POST on the reader's behalf, by design.
func Prefetcher(f Fetch) string {
	switch ua := f.UserAgent; {
	case f.Kind == Unsubscribe:
		return ""
	case strings.Contains(ua, "GoogleImageProxy"):
		return PrefetchGmailProxy
	case strings.Contains(ua, "YahooMailProxy"):
		return PrefetchYahooProxy
	case f.Kind == Open && (f.ASN == asApple || f.IP.IsValid() && appleNet.Contains(f.IP.Unmap())):
		return PrefetchAppleMPP
	case f.SinceIssued >= 0 && f.SinceIssued < ScannerWindow && (f.Hosting || cloudASNs[f.ASN]):
		return PrefetchScanner
	}
	return ""
}
