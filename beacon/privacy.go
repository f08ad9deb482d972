package beacon

import "net/netip"

// Consent says what a record may hold about the visitor, and why.
type Consent uint8

const (
	// ConsentFull: nothing restricts collection; the record carries the
	// visitor's identifiers.
	ConsentFull Consent = iota
	// ConsentOptOut: the visitor opted out on the site's opt-out page.
	ConsentOptOut
	// ConsentGPC: the browser sent Sec-GPC: 1 (Global Privacy Control).
	ConsentGPC
	// ConsentChild: a child-directed page, or a browser the site marked
	// as a child's.
	ConsentChild
	// ConsentPending: the visitor is where the site needs consent before
	// any identifier (require_consent) and has not given it yet, or the
	// site's consent platform refused it (in any region).
	ConsentPending
)

// String returns the name used in records: full, optout, gpc, child or
// pending.
func (c Consent) String() string {
	switch c {
	case ConsentPending:
		return "pending"
	case ConsentOptOut:
		return "optout"
	case ConsentGPC:
		return "gpc"
	case ConsentChild:
		return "child"
	default:
		return "full"
	}
}

// Identifying reports whether records may carry the visitor's
// identifiers (cookie, network and member IDs).
func (c Consent) Identifying() bool { return c == ConsentFull }

// TruncateIP keeps the first v4 bits of an IPv4 address or v6 bits of an
// IPv6 one and zeroes the rest, e.g. 203.0.113.77 to 203.0.113.0 with 24.
func TruncateIP(ip netip.Addr, v4, v6 int) netip.Addr {
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ip
	}
	return p.Addr()
}
