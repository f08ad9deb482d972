package beacon

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestParseQuery(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		want Query
	}{
		{"empty query", "", Query{}},
		{"page, referrer, event and extras", "u=https%3A%2F%2Fwww.b2s.com%2Fp%3Fid%3D1&r=https%3A%2F%2Fsearch.example%2F&e=enquiry&product=42&lang=zh-CN",
			Query{URL: "https://www.b2s.com/p?id=1", Referrer: "https://search.example/", Event: "enquiry",
				Params: []Param{{"product", "42"}, {"lang", "zh-CN"}}}},
		{"plus is a space", "e=add+to+cart", Query{Event: "add to cart"}},
		{"first occurrence wins", "u=a&u=b&x=1&x=2", Query{URL: "a", Params: []Param{{"x", "1"}}}},
		{"malformed escape is kept as sent", "e=%zz&k=%", Query{Event: "%zz", Params: []Param{{"k", "%"}}}},
		{"key without value", "flag&e=", Query{Params: []Param{{"flag", ""}}}},
		{"empty keys and pairs are skipped", "&&=v&e=x&", Query{Event: "x"}},
		{"escaped key", "%75=decoded", Query{URL: "decoded"}},
		{"semicolon is not a separator", "e=a;b", Query{Event: "a;b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got Query
			ParseQuery(c.raw, &got)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("ParseQuery(%q) = %+v, want %+v", c.raw, got, c.want)
			}
		})
	}
}

func TestParseQueryBoundsParams(t *testing.T) {
	var b strings.Builder
	for i := range MaxParams + 10 {
		fmt.Fprintf(&b, "p%d=%d&", i, i)
	}
	var q Query
	ParseQuery(b.String(), &q)
	if len(q.Params) != MaxParams {
		t.Fatalf("kept %d params, want %d", len(q.Params), MaxParams)
	}
	if q.Params[MaxParams-1].Key != fmt.Sprintf("p%d", MaxParams-1) {
		t.Fatalf("the first %d params were not the ones kept: last is %+v", MaxParams, q.Params[MaxParams-1])
	}
}

func TestParseQueryIgnoresInputPastTheLimit(t *testing.T) {
	raw := "pad=" + strings.Repeat("x", MaxQueryLen) + "&e=late"
	var q Query
	ParseQuery(raw, &q)
	if q.Event != "" {
		t.Fatalf("a parameter past %d bytes was parsed", MaxQueryLen)
	}
}

// FuzzParseQuery checks that any query parses without panicking, within
// its bounds, with unique parameter keys.
func FuzzParseQuery(f *testing.F) {
	for _, seed := range []string{"", "u=a&r=b&e=c&k=v", "%", "&&&", "=", "e=%zz", "u=%F0%9F%98%80", strings.Repeat("a=1&", 50), "\xff=\xfe"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		var q Query
		ParseQuery(raw, &q)
		if len(q.Params) > MaxParams {
			t.Fatalf("%d params, more than %d", len(q.Params), MaxParams)
		}
		seen := map[string]bool{}
		for _, p := range q.Params {
			if p.Key == "" || p.Key == "u" || p.Key == "r" || p.Key == "e" || seen[p.Key] {
				t.Fatalf("bad or repeated key %q in %+v", p.Key, q.Params)
			}
			seen[p.Key] = true
		}
		// Whatever was parsed must encode into a valid record.
		r := Record{EventID: testEventID, Status: 200, Kind: KindBeacon, URL: q.URL, Referrer: q.Referrer, Event: q.Event, Params: q.Params}
		checkValidRecordJSON(t, r.AppendJSON(nil))
	})
}

// queryUnescapeOrAsSent is what unescape must return: url.QueryUnescape's
// decoding, or s as sent when it holds a malformed escape.
func queryUnescapeOrAsSent(s string) string {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return u
}

func TestUnescapeMatchesQueryUnescape(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"%", "+", "a", "F", "0", "9", "g", " ", "%4", "%41", "%e4%B8%ad", "%zz", "%%", "%0", "%g1", "%1g",
		"https%3A%2F%2Fwww.b2s.com%2F", "中", "\xff", "&", "="}
	for range 200_000 {
		var sb strings.Builder
		for range r.IntN(8) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := sb.String()
		if got, want := unescape(s), queryUnescapeOrAsSent(s); got != want {
			t.Fatalf("unescape(%q) = %q, want %q", s, got, want)
		}
	}
}

func FuzzUnescape(f *testing.F) {
	for _, seed := range []string{"", "a+b", "%41", "%4", "%", "%zz", "https%3A%2F%2Fwww.b2s.com%2Fp%3Fid%3D42"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := unescape(s), queryUnescapeOrAsSent(s); got != want {
			t.Fatalf("unescape(%q) = %q, want %q", s, got, want)
		}
	})
}
