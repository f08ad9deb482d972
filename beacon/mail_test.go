package beacon

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// A mail record whose every field is past its limit stays within
// MaxRecordLen: the destination, written last, is cut and listed.
func TestWorstCaseMailRecordStaysWithinMaxRecordLen(t *testing.T) {
	for _, h := range hostile {
		long := fill(h.unit, 8<<10)
		for _, kind := range []string{KindOpen, KindClick, KindUnsubscribe} {
			r := Record{EventID: long, Time: time.Unix(0, 0), Kind: kind, Host: long, IP: long, Method: long, URL: long,
				Referrer: long, UserAgent: long, Status: 200, Event: long, Bot: long, IPTruncated: true, CrossSite: true,
				LinkedFrom: long, Geo: Geo{Country: long, Subdivision: long, City: long, Lat: 1, Lon: 1, HasCoords: true},
				ASN: ASN{Number: math.MaxUint32, Org: long}, Anon: anonKnown,
				Mail: &Mail{Link: long, Campaign: long, Member: long, Destination: "https://www.b2s.com/" + strings.Repeat("d", 4096), Prefetch: long}}
			b := r.AppendJSON(nil)
			if len(b) > MaxRecordLen {
				t.Fatalf("%s %s: record is %d bytes, more than MaxRecordLen (%d)", h.name, kind, len(b), MaxRecordLen)
			}
			var m struct {
				Truncated   []string
				Destination string
			}
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%s %s: record is not valid JSON: %v", h.name, kind, err)
			}
			if !slices.Contains(m.Truncated, "destination") {
				t.Errorf("%s %s: destination of %d bytes not listed as cut: %q", h.name, kind, len(m.Destination), m.Truncated)
			}
		}
	}
	// Control: a typical click keeps its whole destination.
	dest := "https://www.b2s.com/" + strings.Repeat("d", 2000)
	r := Record{EventID: testEventID, Time: time.Unix(0, 0), Kind: KindClick, Host: "www.b2s.com", URL: "https://www.b2s.com/_b2s/mail/click", Status: 302,
		Mail: &Mail{Link: LinkOK, Campaign: "c", Member: "m", Destination: dest}}
	m := checkValidRecordJSON(t, r.AppendJSON(nil))
	if m["destination"] != dest || m["truncated"] != nil {
		t.Fatalf("a click of a 2 KB destination is cut: %v", m["truncated"])
	}
}

func TestMailMemberIsWrittenAsThePolicySays(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    string
		consent Consent
		cookie  string
		want    bool
	}{
		{"an open under full consent", KindOpen, ConsentFull, "", true},
		{"an open of a child's link", KindOpen, ConsentChild, "", false},
		{"a click of an opted-out browser", KindClick, ConsentOptOut, "", false},
		{"a click under GPC", KindClick, ConsentGPC, "", false},
		{"an unsubscribe of a child's link", KindUnsubscribe, ConsentChild, "", true},
		{"a record with a cookie ID never", KindOpen, ConsentFull, NewID(), false},
	} {
		r := Record{EventID: testEventID, Time: time.Unix(0, 0), Kind: tc.kind, Consent: tc.consent, CookieID: tc.cookie,
			Mail: &Mail{Link: LinkOK, Campaign: "c", Member: "m-1"}}
		m := map[string]any{}
		if err := json.Unmarshal(r.AppendJSON(nil), &m); err != nil {
			t.Fatal(err)
		}
		if got := m["member_id"] == "m-1"; got != tc.want || r.MailMemberWritten() != tc.want {
			t.Errorf("%s: member_id written %v (MailMemberWritten %v), want %v", tc.name, got, r.MailMemberWritten(), tc.want)
		}
	}
}
