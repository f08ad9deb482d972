package beacon

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestRegionsContain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		list    []string
		country string
		want    bool
	}{
		{"an EU member state is in eu", []string{"eu"}, "DE", true},
		{"so is the last one to join, Croatia", []string{"eu"}, "HR", true},
		{"the EEA's Norway, Iceland and Liechtenstein are in eu", []string{"eu"}, "LI", true},
		{"the United Kingdom is in eu", []string{"eu"}, "GB", true},
		{"Switzerland is in eu", []string{"eu"}, "CH", true},
		{"control: the United States is not in eu", []string{"eu"}, "US", false},
		{"control: Turkey, a candidate, is not in eu", []string{"eu"}, "TR", false},
		{"a country named by its code, in lower case", []string{"cn"}, "CN", true},
		{"a country the database gives in lower case", []string{"CN"}, "cn", true},
		{"groups and codes mix", []string{"eu", "cn"}, "CN", true},
		{"all holds every country", []string{"all"}, "BR", true},
		{"an unknown country is never contained: the caller's policy decides", []string{"all"}, "", false},
		{"control: an empty list holds nothing", nil, "DE", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ParseRegions(tc.list)
			if err != nil {
				t.Fatal(err)
			}
			if got := rs.Contains(tc.country); got != tc.want {
				t.Errorf("%v contains %q = %v, want %v", tc.list, tc.country, got, tc.want)
			}
		})
	}
	if eu := RegionCountries("eu"); len(eu) != 27+3+2 {
		t.Errorf("eu holds %d countries, want 32 (EU 27, EEA 3, GB, CH)", len(eu))
	}
}

func TestParseRegionsRefusesWhatIsNoCountry(t *testing.T) {
	for _, bad := range []string{"eu27", "D", "DEU", "Germany", "xx", "ZZ", "QM", "1A", "*", ""} {
		if _, err := ParseRegions([]string{bad}); err == nil {
			t.Errorf("ParseRegions(%q) accepted it", bad)
		} else if !strings.Contains(err.Error(), "eu") {
			t.Errorf("ParseRegions(%q) = %v, want an error naming the regions", bad, err)
		}
	}
	for _, good := range []string{"de", "eu", "EU", "all", "ALL", "Cn"} {
		if _, err := ParseRegions([]string{good}); err != nil {
			t.Errorf("control: ParseRegions(%q) = %v", good, err)
		}
	}
}

func TestPendingRecordCarriesNoIdentifiers(t *testing.T) {
	r := Record{EventID: testEventID, Kind: KindPage, Time: time.Unix(0, 0), Status: 200, Consent: ConsentPending,
		CookieID: "0123456789abcdef0123456789abcdef", NetworkID: "fedcba9876543210fedcba9876543210",
		MemberID: "m-1", IP: "203.0.113.0", IPTruncated: true}
	b := r.AppendJSON(nil)
	m := checkValidRecordJSON(t, b)
	if m["consent"] != "pending" || ConsentPending.Identifying() {
		t.Errorf("consent %v (identifying %v), want pending, not identifying", m["consent"], ConsentPending.Identifying())
	}
	for _, id := range []string{r.CookieID, r.NetworkID, r.MemberID} {
		if bytes.Contains(b, []byte(id)) {
			t.Errorf("pending record carries identifier %s: %s", id, b)
		}
	}
	if _, ok := m["consent_changed"]; ok {
		t.Errorf("consent_changed written though not set: %s", b)
	}
	// Control: the same record with consent given carries them, and the
	// change.
	r.Consent, r.ConsentChanged = ConsentFull, true
	r.IP, r.IPTruncated = "203.0.113.7", false
	b = r.AppendJSON(nil)
	m = checkValidRecordJSON(t, b)
	if m["cookie_id"] != r.CookieID || m["consent_changed"] != true {
		t.Errorf("full record after consent = %s, want its cookie_id and consent_changed true", b)
	}
}

// TestConsentChangedOnlyOnAGrantAWithdrawalOrARefusal checks that the
// record says consent_changed only where consent can change: full (a
// grant), optout (a withdrawal), pending (the platform's refusal). A
// child's or a GPC record never does, whatever set the flag (a child
// header arriving on the response that granted, say).
func TestConsentChangedOnlyOnAGrantAWithdrawalOrARefusal(t *testing.T) {
	for c, want := range map[Consent]bool{ConsentFull: true, ConsentOptOut: true, ConsentPending: true, ConsentChild: false, ConsentGPC: false} {
		r := Record{EventID: testEventID, Kind: KindPage, Time: time.Unix(0, 0), Status: 200, Consent: c, ConsentChanged: true}
		m := checkValidRecordJSON(t, r.AppendJSON(nil))
		if _, got := m["consent_changed"]; got != want {
			t.Errorf("consent %s with the flag set: consent_changed written %v, want %v", c, got, want)
		}
	}
}
