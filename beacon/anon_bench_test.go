package beacon

import (
	"net/netip"
	"testing"
	"time"
)

func BenchmarkAnonID(b *testing.B) {
	s, err := NewAnonIDs(nil)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	ip := netip.MustParseAddr("203.0.113.7")
	const ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.ID(now, "www.b2s.com", ip, ua); !ok {
			b.Fatal("no anon_id")
		}
	}
}
