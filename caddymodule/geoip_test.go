package caddymodule

import (
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/internal/geotest"
)

// writeEdgeGeoIP writes the ASN and Anonymous IP databases of the edge
// under test into dir. They map addresses of MaxMind's City test database
// (testdata/geoip), so a record can carry a location, an AS and flags at
// once, and leave loopback and 81.2.69.0/24 out.
func writeEdgeGeoIP(t *testing.T, dir string) (asn, anon string) {
	t.Helper()
	asn, anon = filepath.Join(dir, "asn.mmdb"), filepath.Join(dir, "anon.mmdb")
	if err := geotest.WriteASNDB(asn, []geotest.ASN{
		{Network: "175.16.199.0/24", Number: 64496, Org: "Changchun Example Machinery Co., Ltd."},
		{Network: "89.160.20.112/28", Number: 64497, Org: "Example Hosting AB"},
		{Network: "2001:db8::/32", Number: 64498},
	}); err != nil {
		t.Fatal(err)
	}
	if err := geotest.WriteAnonymousDB(anon, []geotest.Anonymous{
		{Network: "89.160.20.112/28", VPN: true, Hosting: true},
		{Network: "216.160.83.56/32", TorExitNode: true},
		{Network: "2001:db8::/32", ResidentialProxy: true},
		{Network: "175.16.199.0/24"}, // listed without a flag
	}); err != nil {
		t.Fatal(err)
	}
	return asn, anon
}

// TestCollectRecordsASNAndAnonymousFlags runs requests through a trusted
// proxy from addresses in the edge's ASN and Anonymous IP databases and
// reads their records back from Kafka.
func TestCollectRecordsASNAndAnonymousFlags(t *testing.T) {
	e := startEdge(t, "b2s.geoip")
	n := 0
	for _, tc := range []struct {
		name string
		// ip is sent in X-Forwarded-For; "" sends none (loopback).
		ip       string
		beacon   bool
		wantASN  *edgeASN
		wantAnon map[string]bool
		// wantCountry is the City database's country, "" for none.
		wantCountry string
	}{
		{
			name:        "a visitor from a company network is recorded with its AS number and organisation and no flags",
			ip:          "175.16.199.7",
			wantASN:     &edgeASN{Number: 64496, Org: "Changchun Example Machinery Co., Ltd."},
			wantCountry: "CN",
		},
		{
			name:        "a VPN at a hosting provider is flagged as such, beside its AS and location",
			ip:          "89.160.20.112",
			wantASN:     &edgeASN{Number: 64497, Org: "Example Hosting AB"},
			wantAnon:    map[string]bool{"anonymous": true, "vpn": true, "hosting": true},
			wantCountry: "SE",
		},
		{
			name:        "a beacon from a Tor exit node with no AS data is flagged only",
			ip:          "216.160.83.56",
			beacon:      true,
			wantAnon:    map[string]bool{"anonymous": true, "tor": true},
			wantCountry: "US",
		},
		{
			name:     "an IPv6 residential proxy gets an AS number without an organisation",
			ip:       "2001:db8::7",
			wantASN:  &edgeASN{Number: 64498},
			wantAnon: map[string]bool{"anonymous": true, "residential_proxy": true},
		},
		{
			name: "a loopback client has neither",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n++
			probe := fmt.Sprintf("geoip%d-%d", n, time.Now().UnixNano())
			target := e.base + "/page?probe=" + probe
			if tc.beacon {
				target = e.base + "/b.gif?e=view&probe=" + probe
			}
			header := map[string]string{"User-Agent": "Mozilla/5.0", "Referer": "https://www.b2s.test/"}
			if tc.ip != "" {
				header["X-Forwarded-For"] = tc.ip
			}
			if resp := e.do(t, newRequest(t, http.MethodGet, target, header)); resp.status != http.StatusOK {
				t.Fatalf("status %d, want 200", resp.status)
			}
			rec := e.records.find(t, probe).rec
			if want := map[bool]string{false: "page", true: "beacon"}[tc.beacon]; rec.Kind != want {
				t.Errorf("kind = %q, want %q", rec.Kind, want)
			}
			if tc.ip != "" && rec.IP != tc.ip {
				t.Errorf("ip = %q, want the forwarded %s", rec.IP, tc.ip)
			}
			if (rec.ASN == nil) != (tc.wantASN == nil) || rec.ASN != nil && *rec.ASN != *tc.wantASN {
				t.Errorf("asn = %+v, want %+v", rec.ASN, tc.wantASN)
			}
			if !maps.Equal(rec.Anon, tc.wantAnon) || (rec.Anon == nil) != (tc.wantAnon == nil) {
				t.Errorf("anon = %v, want %v", rec.Anon, tc.wantAnon)
			}
			var country string
			if rec.Geo != nil {
				country = rec.Geo.Country
			}
			if country != tc.wantCountry {
				t.Errorf("geo country = %q, want %q", country, tc.wantCountry)
			}
		})
	}
}
