package beacon

import (
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseBeacon(t *testing.T) {
	cases := []struct {
		name               string
		query, ctype, body string
		want               Query
	}{
		{"a sendBeacon string is a JSON object in text/plain", "", "text/plain;charset=UTF-8",
			`{"u":"https://www.b2s.com/p?id=1","r":"https://search.example/","e":"pageview","product":"42"}`,
			Query{URL: "https://www.b2s.com/p?id=1", Referrer: "https://search.example/", Event: "pageview", Params: []Param{{"product", "42"}}}},
		{"application/json numbers and booleans are kept as written", "", "application/json",
			`{"qty":2,"price":1.50,"big":1e3,"gift":true,"wrap":false,"none":null}`,
			Query{Params: []Param{{"qty", "2"}, {"price", "1.50"}, {"big", "1e3"}, {"gift", "true"}, {"wrap", "false"}}}},
		{"nested objects and arrays are skipped whole", "", "application/json",
			`{"a":{"u":"x","b":[1,{"c":2}]},"list":[1,2],"e":"after"}`,
			Query{Event: "after"}},
		{"a form body is parsed like a query", "", "application/x-www-form-urlencoded",
			"u=https%3A%2F%2Fwww.b2s.com%2F&e=add+to+cart&sku=A%2B1",
			Query{URL: "https://www.b2s.com/", Event: "add to cart", Params: []Param{{"sku", "A+1"}}}},
		{"text/plain that is not JSON is parsed as a form", "", "text/plain", "e=click&x=1",
			Query{Event: "click", Params: []Param{{"x", "1"}}}},
		{"the body wins over the query string for u, r, e and parameters", "u=q&e=q&r=q&x=q&y=q", "application/json",
			`{"u":"body","e":"body","x":"body"}`,
			Query{URL: "body", Referrer: "q", Event: "body", Params: []Param{{"x", "body"}, {"y", "q"}}}},
		{"a truncated JSON body keeps the members before the break", "probe=1", "application/json",
			`{"e":"kept","product":"42","u":"https://www.b2s.c`,
			Query{Event: "kept", Params: []Param{{"product", "42"}, {"probe", "1"}}}},
		{"a JSON body that is not an object contributes nothing", "e=q", "application/json", `["u","x"]`,
			Query{Event: "q"}},
		{"garbage contributes nothing", "e=q", "application/json", "\x00\xff{{",
			Query{Event: "q"}},
		{"an unknown content type contributes nothing", "e=q", "multipart/form-data; boundary=x", "e=body",
			Query{Event: "q"}},
		{"the first occurrence of a JSON key wins", "", "application/json", `{"e":"one","e":"two","k":"1","k":"2"}`,
			Query{Event: "one", Params: []Param{{"k", "1"}}}},
		{"content type is matched without case and with parameters", "", " Application/JSON ; charset=utf-8", `{"e":"x"}`,
			Query{Event: "x"}},
		{"JSON escapes are decoded, percent escapes are not", "", "application/json", `{"e":"a\u00e9b%20"}`,
			Query{Event: "aéb%20"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got Query
			ParseBeacon(c.query, c.ctype, []byte(c.body), &got)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("ParseBeacon(%q, %q, %q) = %+v, want %+v", c.query, c.ctype, c.body, got, c.want)
			}
		})
	}
}

func TestParseBeaconBoundsParams(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i) + `":"v"`)
	}
	b.WriteString("}")
	var q Query
	ParseBeacon("extra=1", "application/json", []byte(b.String()), &q)
	if len(q.Params) != MaxParams {
		t.Errorf("%d params kept, want %d", len(q.Params), MaxParams)
	}
}

// FuzzParseBeacon checks that any body parses without panicking, within
// the parameter bound, into strings a record can hold.
func FuzzParseBeacon(f *testing.F) {
	f.Add("e=q", "application/json", `{"u":"x","n":1,"o":{"a":[1]}}`)
	f.Add("", "text/plain", `{"e":"x"`)
	f.Add("", "application/x-www-form-urlencoded", "e=%zz&k")
	f.Add("", "text/plain", "\xff")
	f.Fuzz(func(t *testing.T, query, ctype, body string) {
		var q Query
		ParseBeacon(query, ctype, []byte(body), &q)
		if len(q.Params) > MaxParams {
			t.Fatalf("%d params, more than %d", len(q.Params), MaxParams)
		}
		for _, p := range q.Params {
			if p.Key == "" || len(p.Key) > MaxParamKeyLen || !utf8.ValidString(p.Key) {
				t.Fatalf("param key %q is empty or unbounded", p.Key)
			}
		}
		r := Record{EventID: testEventID, Kind: KindBeacon, Time: time.Unix(0, 0), Method: "POST", Status: 204, URL: q.URL, Referrer: q.Referrer, Event: q.Event, Params: q.Params}
		checkValidRecordJSON(t, r.AppendJSON(nil))
	})
}
