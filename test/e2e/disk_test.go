package e2e

import (
	"fmt"
	"testing"
)

// The spool's disk fills up during an outage (a tmpfs smaller than
// spool_max_size): every beacon is answered and every record the disk
// refused is counted; once Kafka has drained the spool, new records are
// kept again, and none is lost without a trace: answered - delivered -
// counted = 0, before and after.
func TestAFullDiskCostsOnlyWhatIsCountedAndRecordsAreKeptOnceItHasRoom(t *testing.T) {
	e := newEnv(t, envOptions{persistBroker: true, faults: true, spoolFS: "8m", spoolMaxSize: "1GiB",
		clientLimit: "client_limit off"})
	e.stopBroker()
	// Records of about 8 KB (the most a record holds): about a thousand
	// fill the disk.
	big := bigQuery()
	const sent = 1500
	full := e.startLoad("disk", loadOptions{max: sent, query: big}).wait()
	full.checkAnswers(t)
	if n := len(full.markers()); n != sent {
		t.Fatalf("%d of %d beacons accepted with the disk full, want every one answered with the pixel", n, sent)
	}
	m := e.metrics(t)
	refused := m[`b2s_records_dropped_total{reason="spool_error"}`] + m[`b2s_records_dropped_total{reason="spool_full"}`]
	t.Logf("%d beacons: %v spooled, %v dropped by the disk", sent, m[`b2s_records_spooled_total`], refused)
	if refused == 0 {
		t.Fatalf("the 8 MiB disk took all %d records of about 8 KB: the test did not fill it", sent)
	}

	e.startBroker(e.brokerAddr)
	e.waitDrained(t)
	srcs := []source{{e.brokerAddr, e.topic}}
	tl := e.reconcile(t, srcs, full.markers())
	if float64(len(tl.lost)) != refused {
		t.Errorf("%d answered beacons have no record and %v were counted dropped: answered - delivered - counted must be 0", len(tl.lost), refused)
	}

	// Room again: records are kept, twice over the disk's size, so the
	// spool rolls through segments written after the disk was full.
	for round := range 2 {
		after := e.startLoad(fmt.Sprintf("room%d", round), loadOptions{max: 600, query: big}).wait()
		after.checkAnswers(t)
		e.waitDrained(t)
		e.reconcile(t, srcs, after.markers()).noneLost(t)
	}
	m = e.metrics(t)
	if now := m[`b2s_records_dropped_total{reason="spool_error"}`] + m[`b2s_records_dropped_total{reason="spool_full"}`]; now != refused {
		t.Errorf("records dropped went from %v to %v after the disk had room again", refused, now)
	}
	if d := m[`b2s_records_dropped_total{reason="damaged"}`]; d != 0 {
		t.Errorf("%v records counted damaged: a full disk must leave no torn record behind", d)
	}
}
