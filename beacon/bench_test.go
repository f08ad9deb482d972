package beacon

import (
	"testing"
	"time"
)

func BenchmarkCookieVerify(b *testing.B) {
	s := mustSigner(b, keyA, keyB)
	v := s.Sign(NewID(), time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Verify(v); !ok {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkCookieIssue(b *testing.B) {
	s := mustSigner(b, keyA)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Sign(NewID(), now)
	}
}

func BenchmarkRecordEncode(b *testing.B) {
	var q Query
	ParseQuery("u=https%3A%2F%2Fwww.b2s.com%2Fproducts%3Fid%3D42&r=https%3A%2F%2Fsearch.example%2F&e=pageview&product=42", &q)
	r := Record{Time: time.Now(), Kind: KindBeacon, Host: "www.b2s.com", Edge: "edge-fra-1", IP: "203.0.113.7",
		CookieID: NewID(), Method: "GET", URL: q.URL, Referrer: q.Referrer, Event: q.Event, Params: q.Params,
		UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		Status:    200, Bytes: 43, Geo: Geo{Country: "CN", Subdivision: "GD", City: "Shenzhen", Lat: 22.5431, Lon: 114.0579, HasCoords: true},
		Client: Client{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Windows", Device: DeviceDesktop}}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		r.EventID = NewEventID(r.Time)
		buf = r.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkRecordEncodeWorstCase encodes a record whose every field is
// past its limit and full of what costs most to encode: quotes, control
// characters, invalid UTF-8, C1 and line separators.
func BenchmarkRecordEncodeWorstCase(b *testing.B) {
	r := worstCaseRecord()
	buf := make([]byte, 0, MaxRecordLen)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkParseQuery(b *testing.B) {
	raw := "u=https%3A%2F%2Fwww.b2s.com%2Fproducts%3Fid%3D42&r=https%3A%2F%2Fsearch.example%2F&e=pageview&product=42&lang=zh-CN"
	b.ReportAllocs()
	for b.Loop() {
		var q Query
		ParseQuery(raw, &q)
	}
}
