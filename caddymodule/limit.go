package caddymodule

import (
	"fmt"
	"net/netip"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/logship"
)

// Defaults of the client limit: far above what a person browsing makes (a
// page and a few beacons every few seconds), and for an address, room for
// an office full of people behind one NAT address, whose records count
// against their own cookies once they have one.
const (
	DefaultVisitorRate  = 10
	DefaultVisitorBurst = 600
	DefaultAddressRate  = 50
	DefaultAddressBurst = 3000
)

// ClientLimit bounds how many records one client can put into the spool
// per second, so that during a Kafka outage one abusive client, or a bot
// stuck in a loop, cannot fill the spool for everyone. Every request is
// still answered (the pixel, the page); only its record is dropped, and
// counted in b2s_records_dropped_total{reason="client_limit"}. A visitor
// whose cookie verified is one client; every other record (a new visitor,
// opted out, GPC, child) counts against its IPv4 address or IPv6 /64.
// Limits are per edge: a client that reaches several edges gets each
// one's.
type ClientLimit struct {
	// Off turns the limit off.
	Off bool `json:"off,omitempty"`

	// VisitorRate is the sustained records per second of one visitor with
	// a verified cookie, VisitorBurst how many may come at once. Defaults
	// 10 and 600.
	VisitorRate  float64 `json:"visitor_rate,omitempty"`
	VisitorBurst int     `json:"visitor_burst,omitempty"`

	// AddressRate is the sustained records per second of one address
	// (IPv4) or /64 (IPv6) for records without a verified cookie,
	// AddressBurst how many may come at once. Defaults 50 and 3000.
	AddressRate  float64 `json:"address_rate,omitempty"`
	AddressBurst int     `json:"address_burst,omitempty"`
}

// clientLimiter holds every client's state for the whole process, so a
// reload keeps it; each config applies its own limits.
var clientLimiter = logship.NewClientLimiter(16)

// clientLimits is the provisioned ClientLimit; the zero value allows
// everything.
type clientLimits struct {
	visitor, address logship.Rate
}

// provision returns the limits with their defaults; l may be nil (no
// client_limit option: the defaults).
func (l *ClientLimit) provision() clientLimits {
	if l == nil {
		l = new(ClientLimit)
	}
	if l.Off {
		return clientLimits{}
	}
	return clientLimits{
		visitor: logship.PerSecond(orNumber(l.VisitorRate, DefaultVisitorRate), orNumber(l.VisitorBurst, DefaultVisitorBurst)),
		address: logship.PerSecond(orNumber(l.AddressRate, DefaultAddressRate), orNumber(l.AddressBurst, DefaultAddressBurst)),
	}
}

// validate checks the options.
func (l *ClientLimit) validate() error {
	if l == nil || l.Off {
		return nil
	}
	for _, lim := range []struct {
		name  string
		rate  float64
		burst int
	}{{"visitor", l.VisitorRate, l.VisitorBurst}, {"address", l.AddressRate, l.AddressBurst}} {
		// 0 is the default; the range keeps the interval between records
		// a whole number of nanoseconds of at most a thousand seconds.
		if !(lim.rate == 0 || lim.rate >= 0.001 && lim.rate <= 1e6) || lim.burst < 0 {
			return fmt.Errorf("b2s: client_limit: %s %v %d: want 0.001 to 1000000 records per second and a burst of at least 1, e.g. %s 10 600; or client_limit off",
				lim.name, lim.rate, lim.burst, lim.name)
		}
	}
	return nil
}

func orNumber[T int | float64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// admit reports whether rec may go into the spool under the client limit,
// and counts it if not.
func (c *Collect) admit(rec *beacon.Record, ip netip.Addr) bool {
	lim := &c.app.limits
	switch {
	case rec.Consent.Identifying() && rec.CookieState == beacon.StateReturning:
		return clientLimiter.Allow(clientLimiter.StringKey(rec.CookieID), rec.Time, lim.visitor)
	case ip.IsValid():
		return clientLimiter.Allow(clientLimiter.AddrKey(ip), rec.Time, lim.address)
	}
	return true
}
