package logship

import (
	"hash/maphash"
	"net/netip"
	"sync/atomic"
	"time"
)

// ClientLimiter bounds how many records one client can put into the spool
// per unit of time, so that during an outage one abusive client (or a bot
// stuck in a loop) cannot fill the spool for everyone. It is the generic
// cell rate algorithm (GCRA, the leaky bucket as a meter; RFC 2508's token
// bucket is the same thing seen from the other side): each client has a
// theoretical arrival time, which each record admitted pushes forward by
// the interval of the sustained rate; a record is refused while that time
// is more than the burst's worth of intervals ahead of now.
//
// Clients are not kept in a map: their keys are hashed, with a seed of the
// process that clients cannot guess, into two fixed tables of arrival
// times (a count-min sketch). A record is refused only when both of its
// slots are over the limit, so a client who shares one slot with a flood
// is still admitted through the other; memory is fixed whatever the number
// of clients (16 bytes a slot), and a slot left alone drains by itself.
// Every operation is lock-free, one atomic compare-and-swap per slot.
type ClientLimiter struct {
	seed    maphash.Seed
	mask    uint64
	slots   [2][]atomic.Int64 // theoretical arrival times, unix ns
	dropped atomic.Uint64
}

// Rate is a limit for one client: the sustained rate is one record every
// Every, and up to Burst records may come at once.
type Rate struct {
	Every time.Duration
	Burst int
}

// PerSecond returns the limit of n records a second with the given burst.
func PerSecond(n float64, burst int) Rate {
	return Rate{Every: time.Duration(float64(time.Second) / n), Burst: burst}
}

// NewClientLimiter returns a limiter with 2^bits slots in each of its two
// tables. 16 bits (1 MiB) keep the chance that a client shares both its
// slots with a flooding client below one in a few million per flood.
func NewClientLimiter(bits uint) *ClientLimiter {
	n := 1 << bits
	l := &ClientLimiter{seed: maphash.MakeSeed(), mask: uint64(n - 1)}
	for i := range l.slots {
		l.slots[i] = make([]atomic.Int64, n)
	}
	return l
}

// Key is a client's hashed identity.
type Key uint64

// StringKey is the key of a client named by s, e.g. a verified cookie ID.
func (l *ClientLimiter) StringKey(s string) Key { return Key(maphash.String(l.seed, s)) }

// AddrKey is the key of a client known only by its address: the IPv4
// address, or the IPv6 /64 (one subscriber's network; a client can pick
// any address in it).
func (l *ClientLimiter) AddrKey(ip netip.Addr) Key {
	b := ip.As16()
	if !ip.Unmap().Is4() {
		clear(b[8:])
	}
	return Key(maphash.Bytes(l.seed, b[:]))
}

// Allow reports whether the client may put one more record into the spool
// at now under r, and counts a refusal in Dropped. A zero r allows
// everything.
func (l *ClientLimiter) Allow(k Key, now time.Time, r Rate) bool {
	if r.Every <= 0 {
		return true
	}
	t := now.UnixNano()
	tolerance := int64(r.Every) * int64(max(r.Burst, 1)-1)
	// Two slots from one 64-bit hash: the low and the high 32 bits.
	a := &l.slots[0][uint64(k)&l.mask]
	b := &l.slots[1][(uint64(k)>>32)&l.mask]
	okA, okB := admit(a, t, int64(r.Every), tolerance), admit(b, t, int64(r.Every), tolerance)
	if okA || okB {
		return true
	}
	l.dropped.Add(1)
	return false
}

// admit advances the slot's arrival time by every if it is within
// tolerance of now, and reports whether it was.
func admit(slot *atomic.Int64, now, every, tolerance int64) bool {
	for {
		tat := slot.Load()
		next := max(tat, now)
		if next-now > tolerance {
			return false
		}
		if slot.CompareAndSwap(tat, next+every) {
			return true
		}
	}
}

// Dropped is the number of records refused since the limiter was made.
func (l *ClientLimiter) Dropped() uint64 { return l.dropped.Load() }
