package testrecord

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/internal/recordschema"
)

// jsonNames returns the JSON names of the fields of the struct v.
func jsonNames(v any) []string {
	var names []string
	for f := range reflect.TypeOf(v).Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// TestEverySchemaField: Record, Geo and ASN have a field for every
// property of the schema, and none besides.
func TestEverySchemaField(t *testing.T) {
	b, err := os.ReadFile(recordschema.Path())
	if err != nil {
		t.Fatal(err)
	}
	type object struct{ Properties map[string]object }
	var schema object
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		props map[string]object
		v     any
	}{
		{"record", schema.Properties, Record{}},
		{"geo", schema.Properties["geo"].Properties, Geo{}},
		{"asn", schema.Properties["asn"].Properties, ASN{}},
	} {
		if want, got := slices.Sorted(maps.Keys(c.props)), jsonNames(c.v); !slices.Equal(got, want) {
			t.Errorf("%s fields = %q, want the schema's %q", c.name, got, want)
		}
	}
}

// TestEveryEncodedField: a record with every field set decodes strictly,
// and sets every field of Record.
func TestEveryEncodedField(t *testing.T) {
	r := beacon.Record{
		EventID: "01a223f3-5444-7087-9173-23d24bee45ec", Time: time.Now(), Kind: beacon.KindBeacon,
		Host: "www.b2s.com", Edge: "edge-1", IP: "203.0.113.0", IPTruncated: true,
		CookieID: "0123456789abcdef0123456789abcdef", CookieState: beacon.StateReset,
		NetworkID: "fedcba9876543210fedcba9876543210", PrevNetworkID: "00112233445566778899aabbccddeeff",
		MemberID: "m-1001", LinkedFrom: "www.b2smade.com", CrossSite: true,
		Method: "GET", URL: "https://www.b2s.com/p", Referrer: "https://search.example/",
		UserAgent: "Mozilla/5.0 " + strings.Repeat("x", beacon.MaxUserAgentLen), // cut, so truncated is set
		Status:    200, Bytes: 43, Event: "enquiry", Bot: beacon.BotCrawler,
		Client: beacon.Client{Browser: "Chrome", BrowserVersion: "131.0.6778.86", OS: "Android", OSVersion: "14.0.0", Device: beacon.DeviceTablet, Model: "SM-X710"},
		Geo:    beacon.Geo{Country: "CN", Subdivision: "GD", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579, HasCoords: true},
		ASN:    beacon.ASN{Number: 4134, Org: "Chinanet"},
		Anon:   beacon.AnonVPN,
		Params: []beacon.Param{{Key: "product", Value: "42"}},
	}
	// Mail fields come in the mail kinds only, which carry no cookie ID
	// or params: a click record sets the rest.
	click := beacon.Record{EventID: r.EventID, Time: r.Time, Kind: beacon.KindClick, Host: r.Host, Status: 302,
		Mail: &beacon.Mail{Link: beacon.LinkOK, Campaign: "c-1", Member: "m-1", Destination: "https://www.b2s.com/", Prefetch: "scanner"}}
	// anon_id comes in records without identifying consent, which carry
	// no cookie ID.
	optOut := beacon.Record{EventID: r.EventID, Time: r.Time, Kind: beacon.KindPage, Host: r.Host, Status: 200,
		Consent: beacon.ConsentOptOut, ConsentChanged: true, AnonID: beacon.AnonID{1, 2, 3}}
	var got, gotClick, gotOptOut Record
	for _, c := range []struct {
		rec *beacon.Record
		out *Record
	}{{&r, &got}, {&click, &gotClick}, {&optOut, &gotOptOut}} {
		b := c.rec.AppendJSON(nil)
		if err := recordschema.Validate(b); err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c.out); err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
	}
	v, vc, vo := reflect.ValueOf(got), reflect.ValueOf(gotClick), reflect.ValueOf(gotOptOut)
	for i := range v.NumField() {
		if v.Field(i).IsZero() && vc.Field(i).IsZero() && vo.Field(i).IsZero() {
			t.Errorf("%s is set by no record", v.Type().Field(i).Name)
		}
	}
	if got.UA == nil || *got.UA != (UA{"Chrome", "131.0.6778.86", "Android", "14.0.0", "tablet", "SM-X710"}) {
		t.Errorf("ua = %+v, want every field", got.UA)
	}
	if g := got.Geo; g.Country == "" || g.Subdivision == "" || g.City == "" || g.Lat == nil || g.Lon == nil || *got.ASN != (ASN{4134, "Chinanet"}) {
		t.Errorf("geo, asn = %+v, %+v; want every field", *got.Geo, *got.ASN)
	}
}
