package caddymodule

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBeaconParamsAreTheirOwnUnderConcurrency sends beacons from many
// goroutines at once, each with its own parameters (more of them than
// the pooled array holds for some), and checks every spooled record
// holds exactly the parameters its own beacon sent: the arrays beacons
// parse into are recycled, and one handed back before its record was
// encoded, or not cleared, would show up here as a record with another
// beacon's values.
func TestBeaconParamsAreTheirOwnUnderConcurrency(t *testing.T) {
	// The client limit's state is the process's: addresses no other test
	// uses keep this one's records out of theirs.
	now := time.Now()
	c, sp := limitedCollect(t, &ClientLimit{VisitorRate: 1e6, VisitorBurst: 1 << 40, AddressRate: 1e6, AddressBurst: 1 << 40}, &now)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := fmt.Sprintf("w%di%d", w, i)
				extra := ""
				for k := range i % 12 { // 0 to 11 more parameters
					extra += fmt.Sprintf("&k%d=%s-%d", k, m, k)
				}
				beaconFrom(t, c, fmt.Sprintf("100.73.%d.9", w+1), "", m+extra)
			}
		}()
	}
	wg.Wait()

	n := 0
	for _, rec := range takeRecords(t, sp) {
		n++
		params := map[string]string{}
		if ps, ok := rec.rec["params"].(map[string]any); ok {
			for k, v := range ps {
				params[k], _ = v.(string)
			}
		}
		m := params["m"]
		var i int
		if _, err := fmt.Sscanf(m[strings.IndexByte(m, 'i')+1:], "%d", &i); err != nil {
			t.Fatalf("record with m %q: %v", m, err)
		}
		want := map[string]string{"m": m}
		for k := range i % 12 {
			want[fmt.Sprintf("k%d", k)] = fmt.Sprintf("%s-%d", m, k)
		}
		if fmt.Sprint(params) != fmt.Sprint(want) {
			t.Errorf("record of beacon %s has params %v, want %v", m, params, want)
		}
	}
	if n != workers*each {
		t.Errorf("%d records spooled, want %d", n, workers*each)
	}
}
