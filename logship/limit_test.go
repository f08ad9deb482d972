package logship

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestClientLimiter(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	perSec := PerSecond(10, 100)

	t.Run("a client within its rate is never refused", func(t *testing.T) {
		l := NewClientLimiter(8)
		k := l.StringKey("visitor")
		for i := range 9 * 600 { // 9 a second for ten minutes
			now := start.Add(time.Duration(i) * time.Second / 9)
			if !l.Allow(k, now, perSec) {
				t.Fatalf("record %d refused at 9 records/s under a limit of 10", i)
			}
		}
		if l.Dropped() != 0 {
			t.Errorf("dropped = %d, want 0", l.Dropped())
		}
	})

	t.Run("a zero rate allows everything, in any order of arrival", func(t *testing.T) {
		l := NewClientLimiter(8)
		k := l.StringKey("visitor")
		// Requests handled concurrently take their time in any order.
		for _, now := range []time.Time{start.Add(time.Second), start, start.Add(time.Millisecond), start} {
			if !l.Allow(k, now, Rate{}) {
				t.Fatalf("a record at %v refused under a zero rate", now)
			}
		}
		if l.Dropped() != 0 {
			t.Errorf("dropped = %d, want 0", l.Dropped())
		}
	})

	t.Run("a flood gets its burst, then the sustained rate, and the rest is counted", func(t *testing.T) {
		l := NewClientLimiter(8)
		k := l.StringKey("flood")
		admitted := 0
		const perMs, seconds = 10, 60 // 10,000 records a second for a minute
		for ms := range seconds * 1000 {
			for range perMs {
				if l.Allow(k, start.Add(time.Duration(ms)*time.Millisecond), perSec) {
					admitted++
				}
			}
		}
		want := 100 + 10*seconds // the burst, then 10 a second
		if admitted < want-1 || admitted > want+1 {
			t.Errorf("admitted %d of a flood, want %d (burst 100 + 10/s for %ds)", admitted, want, seconds)
		}
		if got := l.Dropped(); got != uint64(seconds*1000*perMs-admitted) {
			t.Errorf("dropped = %d, want every refused record counted: %d", got, seconds*1000*perMs-admitted)
		}
	})

	t.Run("a client that shares one slot with a flood is admitted through the other", func(t *testing.T) {
		l := NewClientLimiter(4) // 16 slots a table: collisions are easy to find
		flood := l.StringKey("flood")
		slots := func(k Key) (uint64, uint64) { return uint64(k) & l.mask, (uint64(k) >> 32) & l.mask }
		fa, fb := slots(flood)
		var oneShared, bothShared Key
		for i := 0; oneShared == 0 || bothShared == 0; i++ {
			k := l.StringKey(fmt.Sprint("visitor-", i))
			a, b := slots(k)
			switch {
			case a == fa && b != fb:
				oneShared = k
			case a == fa && b == fb:
				bothShared = k
			}
		}
		for range 1000 {
			l.Allow(flood, start, perSec)
		}
		if !l.Allow(oneShared, start, perSec) {
			t.Error("a client sharing one slot with the flood was refused")
		}
		// The control: a client that shares both slots is refused, so the
		// check above is the second table's doing.
		if l.Allow(bothShared, start, perSec) {
			t.Error("a client sharing both slots with the flood was admitted")
		}
	})

	t.Run("IPv6 addresses of one /64 are one client, IPv4 addresses each their own", func(t *testing.T) {
		l := NewClientLimiter(8)
		if l.AddrKey(netip.MustParseAddr("2001:db8:1:2::1")) != l.AddrKey(netip.MustParseAddr("2001:db8:1:2:ffff::9")) {
			t.Error("two addresses of one IPv6 /64 have different keys")
		}
		if l.AddrKey(netip.MustParseAddr("2001:db8:1:2::1")) == l.AddrKey(netip.MustParseAddr("2001:db8:1:3::1")) {
			t.Error("two IPv6 /64s have one key")
		}
		if l.AddrKey(netip.MustParseAddr("203.0.113.7")) == l.AddrKey(netip.MustParseAddr("203.0.113.8")) {
			t.Error("two IPv4 addresses have one key")
		}
		if l.AddrKey(netip.MustParseAddr("203.0.113.7")) != l.AddrKey(netip.MustParseAddr("::ffff:203.0.113.7")) {
			t.Error("an IPv4-mapped address is another client than the IPv4 address")
		}
	})

	t.Run("a zero rate allows everything", func(t *testing.T) {
		l := NewClientLimiter(4)
		for range 10000 {
			if !l.Allow(l.StringKey("x"), start, Rate{}) {
				t.Fatal("refused without a limit")
			}
		}
	})

	t.Run("concurrent records of one client admit exactly the burst", func(t *testing.T) {
		l := NewClientLimiter(8)
		k := l.StringKey("flood")
		var wg sync.WaitGroup
		var mu sync.Mutex
		admitted := 0
		for range 8 {
			wg.Go(func() {
				n := 0
				for range 1000 {
					if l.Allow(k, start, perSec) {
						n++
					}
				}
				mu.Lock()
				admitted += n
				mu.Unlock()
			})
		}
		wg.Wait()
		if admitted != 100 {
			t.Errorf("admitted %d at one instant, want the burst of 100", admitted)
		}
	})
}

func BenchmarkClientLimiter(b *testing.B) {
	l := NewClientLimiter(16)
	r := PerSecond(10, 600)
	ip := netip.MustParseAddr("203.0.113.7")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.Allow(l.AddrKey(ip), now, r)
	}
}
