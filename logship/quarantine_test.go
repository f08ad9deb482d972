package logship

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

func TestRefusedForGood(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		good bool
	}{
		{&partitionError{code: kafka.MessageSizeTooLarge}, true},
		{&partitionError{code: kafka.RecordListTooLarge}, true},
		{&partitionError{code: kafka.InvalidRecord}, true},
		{&partitionError{code: kafka.InvalidMessage}, true},
		{&partitionError{code: kafka.InvalidTimestamp}, true},
		{&partitionError{code: kafka.NotLeaderForPartition}, false},
		{&partitionError{code: kafka.LeaderNotAvailable}, false},
		{&partitionError{code: kafka.NotEnoughReplicas}, false},
		{&partitionError{code: kafka.NotEnoughReplicasAfterAppend}, false},
		{&partitionError{code: kafka.RequestTimedOut}, false},
		{&partitionError{code: kafka.KafkaStorageError}, false},
		{&partitionError{code: kafka.UnknownTopicOrPartition}, false},
		{&partitionError{code: kafka.TopicAuthorizationFailed}, false},
		{&partitionError{code: kafka.UnsupportedCompressionType}, false},
		{&partitionError{code: kafka.Unknown}, false},
		// Only a partition's answer blames its records.
		{fmt.Errorf("topic %q: %w", topic, kafka.MessageSizeTooLarge), false},
		{errPartitionMissing, false},
		{errors.New("connection refused"), false},
	} {
		if _, got := refusedForGood(c.err); got != c.good {
			t.Errorf("%v: refused for good %v, want %v", c.err, got, c.good)
		}
	}
}

// readQuarantine returns the quarantine file's lines, each checked to be
// one JSON object.
func readQuarantine(t *testing.T, path string) []quarantineLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var lines []quarantineLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l quarantineLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("quarantine line %d: %v: %.200s", len(lines)+1, err, sc.Bytes())
		}
		lines = append(lines, l)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatal("the quarantine file ends in a partial line")
	}
	return lines
}

// checkInOrder checks that got holds each of want's values once, with its
// key, each key's records in want's order, and nothing else.
func checkInOrder(t *testing.T, got []*kgo.Record, want []kafka.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	at := map[string]int{} // value -> index in want
	for i, m := range want {
		at[string(m.Value)] = i
	}
	seen := map[string]bool{}
	last := map[string]int{} // key -> index in want of its last record read
	for _, r := range got {
		i, ok := at[string(r.Value)]
		switch {
		case !ok:
			t.Fatalf("record %.40s was not expected", r.Value)
		case seen[string(r.Value)]:
			t.Fatalf("record %.40s delivered twice", r.Value)
		case string(r.Key) != string(want[i].Key):
			t.Fatalf("record %.40s: key %q, want %q", r.Value, r.Key, want[i].Key)
		}
		seen[string(r.Value)] = true
		if j, ok := last[string(r.Key)]; ok && j > i {
			t.Fatalf("key %s: record %d read after %d", r.Key, i, j)
		}
		last[string(r.Key)] = i
	}
}

// carries returns a fault's When that picks the produce requests carrying
// a record whose value holds marker (uncompressed batches).
func carries(marker string) func(kmsg.Request) bool {
	return func(kr kmsg.Request) bool {
		for _, tp := range kr.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				var rb kmsg.RecordBatch
				if rb.ReadFrom(p.Records) != nil {
					continue
				}
				recs, _ := kgoRecords(&rb)
				for _, r := range recs {
					if bytes.Contains(r.Value, []byte(marker)) {
						return true
					}
				}
			}
		}
		return false
	}
}

// partitionOf is the partition of key among n, as the shipper balances.
func partitionOf(key string, n int) int32 {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return int32((&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(key)}, parts...))
}

func TestARecordKafkaRefusesForGoodIsQuarantinedAndTheOthersShipOn(t *testing.T) {
	t.Parallel()
	// 1000 records and, in their middle, one the broker refuses whatever
	// is done: the 1000 are delivered, each once and each key's in order,
	// the one is in the quarantine file, counted once and logged at Warn
	// without its key or value, and the shipper ships what comes after.
	// A batch over the topic's limit whose records each fit is delivered
	// in parts, with nothing quarantined.
	const small = "b2s.small"
	cases := []struct {
		name    string
		topic   string
		culprit []byte // nil: none
		code    kafka.Error
		configs map[string]string // the topic's
		fault   *kerr.Error       // answered for the culprit's partition when a request carries it
	}{
		{name: "too large for the topic's max.message.bytes", topic: small, culprit: bigValue(100 << 10), code: kafka.MessageSizeTooLarge,
			configs: map[string]string{"max.message.bytes": "65536"}},
		{name: "a batch too large for the topic, each record small enough", topic: small,
			configs: map[string]string{"max.message.bytes": "2048"}},
		{name: "invalid record", topic: topic, culprit: []byte(`{"n":"poison"}`), code: kafka.InvalidRecord, fault: kerr.InvalidRecord},
		{name: "corrupt message", topic: topic, culprit: []byte(`{"n":"poison"}`), code: kafka.InvalidMessage, fault: kerr.CorruptMessage},
		{name: "invalid timestamp", topic: topic, culprit: []byte(`{"n":"poison"}`), code: kafka.InvalidTimestamp, fault: kerr.InvalidTimestamp},
		{name: "record list too large", topic: topic, culprit: []byte(`{"n":"poison"}`), code: kafka.RecordListTooLarge, fault: kerr.RecordListTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBroker(t)
			if c.configs != nil {
				testproc.CreateTopic(t, b.ListenAddrs(), c.topic, 3, c.configs)
			}
			culpritKey, _ := msg(500)
			if c.fault != nil {
				b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: c.topic, Partitions: []int32{partitionOf(culpritKey, 3)},
					Err: c.fault, Count: -1, When: carries("poison")})
			}
			core, logs := observer.New(zapcore.InfoLevel)
			stats := new(Stats)
			s, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Topic: c.topic, Stats: stats, Compression: "none", Logger: zap.New(core)})
			var want []kafka.Message
			for i := range 1001 {
				k, v := msg(i)
				if i == 500 {
					if c.culprit == nil {
						continue
					}
					v = c.culprit
				} else {
					want = append(want, kafka.Message{Key: []byte(k), Value: v})
				}
				if err := sp.Append(k, v); err != nil {
					t.Fatal(err)
				}
			}
			quarantined := 0
			if c.culprit != nil {
				quarantined = 1
			}
			waitFor(t, func() bool { return sp.Lag() == 0 && stats.Shipped.Load() == uint64(len(want)) })
			checkInOrder(t, consumeTopic(t, b.ListenAddrs(), c.topic, len(want)), want)
			if got := stats.Shipped.Load(); got != uint64(len(want)) {
				t.Fatalf("%d records shipped, want %d", got, len(want))
			}
			if q, d := stats.Quarantined.Load(), stats.QuarantineDropped.Load(); q != uint64(quarantined) || d != 0 {
				t.Fatalf("quarantined %d, dropped %d; want %d and 0", q, d, quarantined)
			}
			if stats.WriteErrors.Load() != 0 || s.Failing() {
				t.Fatalf("%d write errors, failing %v: a refusal is no outage", stats.WriteErrors.Load(), s.Failing())
			}

			lines := readQuarantine(t, filepath.Join(sp.Dir(), "quarantine.jsonl"))
			if len(lines) != quarantined {
				t.Fatalf("%d lines in the quarantine, want %d", len(lines), quarantined)
			}
			warned := logs.FilterLevelExact(zapcore.WarnLevel).All()
			if len(warned) != quarantined {
				t.Fatalf("%d warnings, want %d", len(warned), quarantined)
			}
			if c.culprit == nil {
				return
			}
			l := lines[0]
			if l.Key == nil || *l.Key != culpritKey || l.Value == nil || *l.Value != string(c.culprit) || l.ValueB64 != nil {
				t.Fatalf("quarantined key %v, value of %d bytes; want %s and the culprit's %d", l.Key, len(deref(l.Value)), culpritKey, len(c.culprit))
			}
			if l.Code != int16(c.code) || l.Topic != c.topic || l.Partition != partitionOf(culpritKey, 3) || l.Error == "" ||
				time.Since(l.Appended) > time.Minute || time.Since(l.Time) > time.Minute {
				t.Fatalf("quarantine line %+v", l)
			}
			fields := warned[0].ContextMap()
			if fields["code"] != int16(c.code) || fields["partition"] != l.Partition || fields["bytes"] != int64(len(culpritKey)+len(c.culprit)) {
				t.Fatalf("warning fields %v", fields)
			}
			for k, v := range fields {
				if s := fmt.Sprint(v); strings.Contains(s, culpritKey) || strings.Contains(s, "poison") || len(s) > 1000 {
					t.Fatalf("warning field %s gives the record away: %.100s", k, s)
				}
			}

			// Not stuck: what comes next ships.
			put(t, sp, 2000, 10)
			waitFor(t, func() bool { return stats.Shipped.Load() == uint64(len(want)+10) })
		})
	}
}

func bigValue(n int) []byte {
	return []byte(`{"n":"big","pad":"` + strings.Repeat("x", n) + `"}`)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func TestAnOutageIsRetriedNotQuarantined(t *testing.T) {
	t.Parallel()
	// The broker answers the partition of one record with an error of an
	// outage, or of a setting for the operator, for as long as it lasts:
	// the partition's records wait in the spool, retried, the shipper
	// failing, and nothing is quarantined; once it clears, all arrive.
	for _, e := range []*kerr.Error{kerr.NotLeaderForPartition, kerr.NotEnoughReplicas, kerr.UnknownTopicOrPartition,
		kerr.TopicAuthorizationFailed, kerr.KafkaStorageError, kerr.UnsupportedCompressionType} {
		t.Run(e.Message, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t)
			culpritKey, _ := msg(500)
			h := b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Partitions: []int32{partitionOf(culpritKey, 3)},
				Err: e, Count: -1, When: carries(`"n":500}`)})
			stats := new(Stats)
			s, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, Compression: "none"})
			put(t, sp, 0, 1000)
			waitFor(t, func() bool { return h.Hits() >= 4 })
			if !s.Failing() || stats.Shipped.Load() >= 1000 || sp.Lag() == 0 || stats.WriteErrors.Load() < 3 {
				t.Fatalf("failing %v, %d shipped, %d write errors: the refused partition's records should wait",
					s.Failing(), stats.Shipped.Load(), stats.WriteErrors.Load())
			}
			h.Remove()
			checkExactly(t, consume(t, b.ListenAddrs(), 1000), 0, 1000)
			waitFor(t, func() bool { return stats.Shipped.Load() == 1000 && !s.Failing() })
			if stats.Quarantined.Load() != 0 || stats.QuarantineDropped.Load() != 0 {
				t.Fatal("a retriable error quarantined a record")
			}
			if _, err := os.Stat(filepath.Join(sp.Dir(), "quarantine.jsonl")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("quarantine file: %v", err)
			}
		})
	}
}

func TestTheQuarantineSurvivesARestart(t *testing.T) {
	t.Parallel()
	// A record quarantined before a restart stays in the file, is not
	// quarantined again, and the next one is appended after it.
	b := newBroker(t)
	b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.InvalidRecord, Count: -1, When: carries("poison")})
	dir := t.TempDir()
	qpath := filepath.Join(t.TempDir(), "q", "refused.jsonl") // elsewhere than the spool, in a directory to create
	stats := new(Stats)
	for run := range 2 {
		sp := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
		s, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats, Compression: "none", Quarantine: qpath})
		if err != nil {
			t.Fatal(err)
		}
		put(t, sp, run*100, 50)
		if err := sp.Append("visitor-x", []byte(fmt.Sprintf(`{"poison":%d}`, run))); err != nil {
			t.Fatal(err)
		}
		put(t, sp, run*100+50, 50)
		waitFor(t, func() bool {
			return stats.Quarantined.Load() == uint64(run+1) && stats.Shipped.Load() == uint64(100*(run+1))
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		sp.Close()
	}
	lines := readQuarantine(t, qpath)
	if len(lines) != 2 || deref(lines[0].Value) != `{"poison":0}` || deref(lines[1].Value) != `{"poison":1}` {
		t.Fatalf("quarantine after a restart: %+v", lines)
	}
	if fi, err := os.Stat(qpath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("quarantine file: %v %v, want mode 0600: it holds visitors' IDs and addresses", fi.Mode(), err)
	}
	got := consume(t, b.ListenAddrs(), 200)
	checkExactly(t, got, 0, 200)
	if stats.Quarantined.Load() != 2 || stats.Shipped.Load() != 200 {
		t.Fatalf("quarantined %d, shipped %d", stats.Quarantined.Load(), stats.Shipped.Load())
	}
}

func TestAFullQuarantineCountsItsDrops(t *testing.T) {
	t.Parallel()
	// Five records refused for good, a quarantine with room for two: two
	// are kept, three dropped and counted, every other record delivered.
	b := newBroker(t)
	b.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.InvalidRecord, Count: -1, When: carries("poison")})
	stats := new(Stats)
	core, logs := observer.New(zapcore.InfoLevel)
	poison := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"poison":%d,"pad":"%s"}`, i, strings.Repeat("p", 300)))
	}
	line, _ := json.Marshal(quarantineLine{Value: new(string(poison(0)))})
	maxSize := int64(2*len(line) + 400) // two lines and their other fields, not three
	_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, Compression: "none", QuarantineMaxSize: maxSize, Logger: zap.New(core)})
	var want []kafka.Message
	for i := range 100 {
		k, v := msg(i)
		if i%20 == 10 {
			v = poison(i)
		} else {
			want = append(want, kafka.Message{Key: []byte(k), Value: v})
		}
		if err := sp.Append(k, v); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return sp.Lag() == 0 && stats.Shipped.Load() == 95 })
	checkInOrder(t, consume(t, b.ListenAddrs(), 95), want)
	if q, d := stats.Quarantined.Load(), stats.QuarantineDropped.Load(); q != 2 || d != 3 {
		t.Fatalf("quarantined %d, dropped %d; want 2 and 3", q, d)
	}
	path := filepath.Join(sp.Dir(), "quarantine.jsonl")
	lines := readQuarantine(t, path)
	if len(lines) != 2 || deref(lines[0].Value) != string(poison(10)) || deref(lines[1].Value) != string(poison(30)) {
		t.Fatalf("quarantine holds %d lines, want the first two refused", len(lines))
	}
	if fi, _ := os.Stat(path); fi.Size() > maxSize {
		t.Fatalf("quarantine of %d bytes, over its %d", fi.Size(), maxSize)
	}
	if errs := logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet("dropped").Len(); errs != 1 {
		t.Fatalf("%d error lines for the drops, want 1 (rate-limited)", errs)
	}
}

func TestAQuarantinedValueThatIsNotUTF8IsKeptInBase64(t *testing.T) {
	t.Parallel()
	q := quarantine{path: filepath.Join(t.TempDir(), "q.jsonl"), maxSize: 1 << 20}
	defer q.close()
	m := kafka.Message{Key: []byte{0xff, 'k'}, Value: []byte{0xc3, 0x28, '\n', 0}, Time: time.Now()}
	if err := q.add(topic, m, &partitionError{partition: 1, code: kafka.InvalidRecord, message: "bad"}); err != nil {
		t.Fatal(err)
	}
	lines := readQuarantine(t, q.path)
	if len(lines) != 1 || lines[0].Key != nil || lines[0].Value != nil || !bytes.Equal(lines[0].KeyB64, m.Key) ||
		!bytes.Equal(lines[0].ValueB64, m.Value) || lines[0].Message != "bad" || lines[0].Code != 87 {
		t.Fatalf("%+v", lines)
	}
}
