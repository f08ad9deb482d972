package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

// A record too large for the topic's max.message.bytes is set aside in the
// quarantine file and counted; the records before and after it reach
// Kafka, none lost: answered = delivered + quarantined.
func TestARecordKafkaRefusesIsQuarantinedAndTheRestShips(t *testing.T) {
	e := newEnv(t, envOptions{faults: true})
	small := e.topic + ".small"
	testproc.CreateTopic(t, []string{e.brokerAddr}, small, 3, map[string]string{"max.message.bytes": "4096"})
	e.writeCaddyfile(caddyConfig{Topic: small})
	if err := e.reload(); err != nil {
		t.Fatal(err)
	}

	// Parameters of random hex, which snappy cannot shrink below the
	// topic's limit: a record of about 12 KB.
	var big strings.Builder
	for i := range 24 {
		b := make([]byte, 256)
		rand.Read(b)
		fmt.Fprintf(&big, "&q%02d=%s", i, hex.EncodeToString(b))
	}
	before := e.startLoad("before", loadOptions{max: 300}).wait()
	var refused []string
	for i := range 3 {
		m := fmt.Sprintf("refused-%d", i)
		r := e.request(t, "GET", beaconPath+"?t="+m+big.String())
		if r.status != 200 || len(r.body) != pixelLen {
			t.Fatalf("a large beacon answered %d with %d bytes, want the pixel", r.status, len(r.body))
		}
		refused = append(refused, m)
	}
	after := e.startLoad("after", loadOptions{max: 300}).wait()
	before.checkAnswers(t)
	after.checkAnswers(t)

	m := e.waitDrained(t)
	srcs := []source{{e.brokerAddr, small}}
	e.reconcile(t, srcs, append(before.markers(), after.markers()...)).noneLost(t)
	tl := e.reconcile(t, srcs, refused)
	if len(tl.lost) != len(refused) {
		t.Errorf("%d of the %d records too large for the topic reached it", len(refused)-len(tl.lost), len(refused))
	}
	if got := m[`b2s_records_quarantined_total`]; got != float64(len(refused)) {
		t.Errorf("b2s_records_quarantined_total = %v, want %d", got, len(refused))
	}
	if got := m[`b2s_records_dropped_total{reason="quarantine"}`]; got != 0 {
		t.Errorf("b2s_records_dropped_total{reason=\"quarantine\"} = %v, want 0", got)
	}

	// The quarantine holds each refused record once, whole, with the
	// broker's error: the operator can replay it.
	f, err := os.Open(filepath.Join(e.spoolDir, "quarantine.jsonl"))
	if err != nil {
		t.Fatalf("opening the quarantine beside the spool: %v", err)
	}
	defer f.Close()
	found := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var q struct {
			Topic, Error, Value string
		}
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("quarantine line is not JSON: %v", err)
		}
		var rec record
		if err := json.Unmarshal([]byte(q.Value), &rec); err != nil {
			t.Fatalf("quarantined value is not a record: %v", err)
		}
		if q.Topic != small || q.Error == "" {
			t.Errorf("quarantined for topic %q with error %q, want %q and the broker's error", q.Topic, q.Error, small)
		}
		found[rec.Params["t"]]++
	}
	for _, m := range refused {
		if found[m] != 1 {
			t.Errorf("refused record %s is in the quarantine %d times, want once", m, found[m])
		}
	}
}
