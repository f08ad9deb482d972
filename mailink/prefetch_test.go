package mailink

import (
	"net/netip"
	"testing"
	"time"
)

func TestPrefetcher(t *testing.T) {
	const chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	reader := netip.MustParseAddr("81.2.69.142")
	apple := netip.MustParseAddr("17.58.100.7")
	for _, tc := range []struct {
		name string
		f    Fetch
		want string
	}{
		{"a reader's browser opens", Fetch{Kind: Open, UserAgent: chrome, IP: reader, SinceIssued: time.Hour}, ""},
		{"Gmail's proxy fetches the pixel", Fetch{Kind: Open, UserAgent: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", IP: netip.MustParseAddr("66.249.84.1"), SinceIssued: time.Hour}, PrefetchGmailProxy},
		{"Yahoo's proxy fetches the pixel", Fetch{Kind: Open, UserAgent: "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", IP: reader, SinceIssued: time.Hour}, PrefetchYahooProxy},
		{"Apple's proxy fetches the pixel", Fetch{Kind: Open, UserAgent: "Mozilla/5.0", IP: apple, SinceIssued: time.Hour}, PrefetchAppleMPP},
		{"Apple's proxy over IPv4-mapped IPv6", Fetch{Kind: Open, UserAgent: "Mozilla/5.0", IP: netip.MustParseAddr("::ffff:17.58.100.7"), SinceIssued: time.Hour}, PrefetchAppleMPP},
		{"Apple's ASN by the ASN database", Fetch{Kind: Open, UserAgent: "Mozilla/5.0", IP: netip.MustParseAddr("2620:149::1"), ASN: 714, SinceIssued: time.Hour}, PrefetchAppleMPP},
		{"a click from Apple's network is a reader's", Fetch{Kind: Click, UserAgent: chrome, IP: apple, SinceIssued: time.Hour}, ""},
		{"a scanner clicks on delivery from a hosting provider", Fetch{Kind: Click, UserAgent: chrome, IP: reader, Hosting: true, SinceIssued: 5 * time.Second}, PrefetchScanner},
		{"a scanner clicks on delivery from Microsoft's cloud", Fetch{Kind: Click, UserAgent: chrome, IP: reader, ASN: 8075, SinceIssued: 5 * time.Second}, PrefetchScanner},
		{"a reader clicks from a hosting provider an hour later", Fetch{Kind: Click, UserAgent: chrome, IP: reader, Hosting: true, SinceIssued: time.Hour}, ""},
		{"a reader clicks at once from home", Fetch{Kind: Click, UserAgent: chrome, IP: reader, SinceIssued: 5 * time.Second}, ""},
		{"a mailbox provider's one-click unsubscribe on delivery", Fetch{Kind: Unsubscribe, UserAgent: "Mozilla/5.0", IP: reader, ASN: 15169, SinceIssued: 5 * time.Second}, ""},
		{"a forged link is timed from nothing", Fetch{Kind: Click, UserAgent: chrome, IP: reader, Hosting: true, SinceIssued: -1}, ""},
	} {
		if got := Prefetcher(tc.f); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
