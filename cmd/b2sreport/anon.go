package main

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"time"
)

// This file counts the cookieless visitors: records whose consent allows
// no identifier (optout, gpc, pending) carry an anon_id, a hash of the
// site, the client IP and the User-Agent under a salt of the UTC day. An
// anon_id means something within its site and UTC day only: it is counted
// per (host, UTC day of ts, anon_id), never joined across days, and never
// added to the cookie visitors.

// sessionGap is the pause after which an anon_id's next record starts a
// new session.
const sessionGap = 30 * time.Minute

// anonKey is one anonymous visitor of a site: a UTC day (days since
// 1970-01-01) and an anon_id.
type anonKey struct {
	day int64
	id  [16]byte
}

// anonTally counts a site's records that carry an anon_id.
type anonTally struct {
	records int64
	// times are the ts (Unix microseconds) of each visitor's records, in
	// the order read; sorted when sessions are counted.
	times map[anonKey][]int64
}

// add counts a record of anonymous visitor id at ts.
func (a *anonTally) add(id [16]byte, ts time.Time) {
	if a.times == nil {
		a.times = make(map[anonKey][]int64)
	}
	a.records++
	k := anonKey{day: utcDay(ts), id: id}
	a.times[k] = append(a.times[k], ts.UnixMicro())
}

// utcDay returns ts's UTC day as days since 1970-01-01.
func utcDay(ts time.Time) int64 {
	sec := ts.Unix()
	d := sec / 86400
	if sec%86400 < 0 {
		d--
	}
	return d
}

// parseAnonID parses an anon_id: 16 bytes in base64url without padding.
func parseAnonID(s string) (id [16]byte, ok bool) {
	if len(s) != 22 {
		return id, false
	}
	n, err := base64.RawURLEncoding.Strict().Decode(id[:], []byte(s))
	return id, err == nil && n == 16
}

// Anonymous is the cookieless count of a site: its records that carry an
// anon_id, which are counted apart from the cookie visitors.
type Anonymous struct {
	// Records counts the site's records with an anon_id.
	Records int64 `json:"records"`
	// Visitors is the sum over the UTC days of the window of the distinct
	// anon_ids of each day (visitor-days): an anon_id is one visitor on
	// one day at most, and one person on two days is two.
	Visitors int64 `json:"visitors"`
	// Sessions counts runs of one anon_id's records without a pause of
	// 30 minutes or more; a run across midnight UTC is two.
	Sessions int64 `json:"sessions"`
	// Days breaks the count down by UTC day, oldest first.
	Days []AnonDay `json:"days"`
}

// AnonDay is the cookieless count of one site on one UTC day.
type AnonDay struct {
	Day      string `json:"day"` // YYYY-MM-DD
	Records  int64  `json:"records"`
	Visitors int64  `json:"visitors"`
	Sessions int64  `json:"sessions"`
}

// report returns the site's cookieless count, nil when no record carried
// an anon_id.
func (a *anonTally) report() *Anonymous {
	if a.records == 0 {
		return nil
	}
	days := make(map[int64]*AnonDay)
	for k, ts := range a.times {
		d := days[k.day]
		if d == nil {
			d = &AnonDay{Day: time.Unix(k.day*86400, 0).UTC().Format(time.DateOnly)}
			days[k.day] = d
		}
		slices.Sort(ts)
		d.Records += int64(len(ts))
		d.Visitors++
		d.Sessions++
		for i := 1; i < len(ts); i++ {
			if ts[i]-ts[i-1] >= sessionGap.Microseconds() {
				d.Sessions++
			}
		}
	}
	out := &Anonymous{Records: a.records, Days: make([]AnonDay, 0, len(days))}
	for _, d := range days {
		out.Visitors += d.Visitors
		out.Sessions += d.Sessions
		out.Days = append(out.Days, *d)
	}
	slices.SortFunc(out.Days, func(x, y AnonDay) int { return cmp.Compare(x.Day, y.Day) })
	return out
}

// writeAnonymous prints the cookieless counts of the sites that have any.
func writeAnonymous(bw *bufio.Writer, rep Report) {
	width := len("anonymous visitors (anon_id)")
	found := false
	for _, s := range rep.Sites {
		if s.Anonymous != nil {
			found = true
			width = max(width, len(s.Host)+len("  ")+len("2006-01-02"))
		}
	}
	if !found {
		return
	}
	fmt.Fprintf(bw, "\n%-*s  %8s  %8s  %8s\n", width, "anonymous visitors (anon_id)", "daily", "sessions", "records")
	for _, s := range rep.Sites {
		a := s.Anonymous
		if a == nil {
			continue
		}
		fmt.Fprintf(bw, "%-*s  %8d  %8d  %8d\n", width, s.Host, a.Visitors, a.Sessions, a.Records)
		if len(a.Days) > 1 {
			for _, d := range a.Days {
				fmt.Fprintf(bw, "  %-*s  %8d  %8d  %8d\n", width-2, d.Day, d.Visitors, d.Sessions, d.Records)
			}
		}
	}
}
