package logship

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

const topic = "b2s.events"

// newBroker starts an in-process Kafka-protocol broker, reached over TCP.
func newBroker(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// consume reads records from the start of topic with franz-go, an
// independent client, until it has want of them or the deadline passes.
func consume(t *testing.T, addrs []string, want int) []*kgo.Record {
	t.Helper()
	return consumeTopic(t, addrs, topic, want)
}

// consumeTopic reads as consume does; opts add to the client's options
// (TLS, SASL).
func consumeTopic(t *testing.T, addrs []string, topic string, want int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records, want %d", len(got), want)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	return got
}

// newShipper starts a shipper on a new spool; it is closed at cleanup.
func newShipper(t *testing.T, cfg Config) (*Shipper, *Spool) {
	t.Helper()
	if cfg.Stats == nil {
		cfg.Stats = new(Stats)
	}
	sp := openSpool(t, SpoolConfig{Stats: cfg.Stats})
	s, err := NewShipper(sp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s, sp
}

func msg(i int) (string, []byte) {
	return fmt.Sprintf("visitor-%d", i%17), []byte(`{"n":` + strconv.Itoa(i) + `}`)
}

func put(t *testing.T, sp *Spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		k, v := msg(i)
		if err := sp.Append(k, v); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// checkExactly checks that got holds records from..from+n-1, each once,
// with its key.
func checkExactly(t *testing.T, got []*kgo.Record, from, n int) {
	t.Helper()
	seen := map[string]string{}
	for _, r := range got {
		if _, dup := seen[string(r.Value)]; dup {
			t.Fatalf("record %s delivered twice", r.Value)
		}
		seen[string(r.Value)] = string(r.Key)
	}
	for i := from; i < from+n; i++ {
		k, v := msg(i)
		if got, ok := seen[string(v)]; !ok || got != k {
			t.Fatalf("record %s: key %q, delivered %v; want key %q", v, got, ok, k)
		}
	}
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
}

func TestShipperDeliversEveryRecordWithItsKey(t *testing.T) {
	t.Parallel()
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run("compression "+codec, func(t *testing.T) {
			b := newBroker(t)
			stats := new(Stats)
			_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Compression: codec, Stats: stats})
			const n = 2500
			put(t, sp, 0, n)
			checkExactly(t, consume(t, b.ListenAddrs(), n), 0, n)
			waitFor(t, func() bool { return stats.Shipped.Load() == n && sp.Lag() == 0 })
		})
	}
}

// produceLog records, for every produce request a broker receives, the
// partitions it carries and their records' values, in order.
type produceLog struct {
	mu       sync.Mutex
	requests [][]partitionRecords
}

type partitionRecords struct {
	partition int32
	values    []string
}

func (l *produceLog) observe(t *testing.T, kr kmsg.Request) {
	var req []partitionRecords
	for _, tp := range kr.(*kmsg.ProduceRequest).Topics {
		for _, p := range tp.Partitions {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(p.Records); err != nil {
				t.Errorf("partition %d: reading its record batch: %v", p.Partition, err)
				continue
			}
			pr := partitionRecords{partition: p.Partition}
			recs, err := kgoRecords(&rb)
			if err != nil {
				t.Errorf("partition %d: %v", p.Partition, err)
			}
			for _, r := range recs {
				pr.values = append(pr.values, string(r.Value))
			}
			req = append(req, pr)
		}
	}
	l.mu.Lock()
	l.requests = append(l.requests, req)
	l.mu.Unlock()
}

// kgoRecords decodes a produce request's record batch (uncompressed).
func kgoRecords(rb *kmsg.RecordBatch) ([]kmsg.Record, error) {
	if rb.Attributes&7 != 0 {
		return nil, fmt.Errorf("compressed batch (attributes %#x): the test writes without compression", rb.Attributes)
	}
	recs := make([]kmsg.Record, rb.NumRecords)
	raw := rb.Records
	for i := range recs {
		n, used := binary.Varint(raw)
		if used <= 0 || int(n)+used > len(raw) {
			return nil, fmt.Errorf("record %d: bad length", i)
		}
		if err := recs[i].ReadFrom(raw[:used+int(n)]); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		raw = raw[used+int(n):]
	}
	return recs, nil
}

func TestASpooledBatchGoesToTheBrokerInOneProduceRequest(t *testing.T) {
	t.Parallel()
	// One spool read is one produce request to the partitions' leader,
	// each partition's records in one record batch, in spool order.
	b := newBroker(t, kfake.SeedTopics(6, topic))
	var log produceLog
	b.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		log.observe(t, kr)
		return nil, nil, false // observed, handled as usual
	})
	stats := new(Stats)
	sp := openSpool(t, SpoolConfig{Stats: stats})
	const n = 1000 // one read: the default BatchSize
	put(t, sp, 0, n)
	s, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats, Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	waitFor(t, func() bool { return stats.Shipped.Load() == n })

	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.requests) != 1 {
		t.Fatalf("%d produce requests, want 1", len(log.requests))
	}
	records, last := 0, map[string]int{}
	for _, pr := range log.requests[0] {
		records += len(pr.values)
		for _, v := range pr.values {
			var i int
			fmt.Sscanf(v, `{"n":%d}`, &i)
			k, _ := msg(i)
			if j, ok := last[k]; ok && j > i {
				t.Fatalf("partition %d: record %d after %d of the same key", pr.partition, i, j)
			}
			last[k] = i
		}
	}
	if len(log.requests[0]) != 6 || records != n {
		t.Fatalf("%d records for %d partitions in the request, want %d for all 6", records, len(log.requests[0]), n)
	}
}

func TestAPartitionThatFailsIsSentAgainAloneAndInOrder(t *testing.T) {
	t.Parallel()
	// The broker leaves partition 0 out of its answers to the first three
	// produce requests that carry it, as a broker failing one partition
	// would. Only partition 0's records are sent again, in their order,
	// and nothing is duplicated.
	b := newBroker(t, kfake.SeedTopics(3, topic))
	var log produceLog
	var mu sync.Mutex
	refused := 0
	b.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		log.observe(t, kr)
		mu.Lock()
		defer mu.Unlock()
		req := kr.(*kmsg.ProduceRequest)
		for ti := range req.Topics {
			parts := req.Topics[ti].Partitions[:0]
			for _, p := range req.Topics[ti].Partitions {
				if p.Partition == 0 && refused < 3 {
					refused++
					continue
				}
				parts = append(parts, p)
			}
			req.Topics[ti].Partitions = parts
		}
		return nil, nil, false
	})
	stats := new(Stats)
	sp := openSpool(t, SpoolConfig{Stats: stats})
	const n = 300
	put(t, sp, 0, n)
	_, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats, Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return stats.Shipped.Load() == n })
	got := consume(t, b.ListenAddrs(), n)
	checkExactly(t, got, 0, n)
	if stats.WriteErrors.Load() == 0 {
		t.Fatal("no write error counted for the refused partition")
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	var p0 [][]string // partition 0's record values, per request
	for _, req := range log.requests {
		for _, pr := range req {
			if pr.partition == 0 {
				p0 = append(p0, pr.values)
			}
		}
	}
	if len(p0) != 4 {
		t.Fatalf("partition 0 was sent %d times, want 4 (3 refused)", len(p0))
	}
	for i := 1; i < len(p0); i++ {
		if strings.Join(p0[i], ",") != strings.Join(p0[0], ",") {
			t.Fatalf("partition 0's records changed between attempts:\n%v\n%v", p0[0], p0[i])
		}
	}
	for _, req := range log.requests[1:] {
		if len(req) != 1 || req[0].partition != 0 {
			t.Fatalf("a retry carried partitions other than the refused one: %+v", req)
		}
	}
	// In Kafka, each key's records in the order they were spooled.
	last := map[string]int{}
	for _, r := range got {
		var i int
		fmt.Sscanf(string(r.Value), `{"n":%d}`, &i)
		if j, ok := last[string(r.Key)]; ok && j > i {
			t.Fatalf("key %s: record %d after %d", r.Key, i, j)
		}
		last[string(r.Key)] = i
	}
}

func TestPartitionsLedByDifferentBrokersAreWrittenInParallelRequests(t *testing.T) {
	t.Parallel()
	// Three brokers lead the six partitions between them: a write sends
	// one request to each leader, carrying only the partitions it leads.
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var log produceLog
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		log.observe(t, kr)
		return nil, nil, false
	})
	stats := new(Stats)
	sp := openSpool(t, SpoolConfig{Stats: stats})
	const n = 1000
	put(t, sp, 0, n)
	_, err = NewShipper(sp, Config{Brokers: c.ListenAddrs()[:1], Stats: stats, Compression: "none"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return stats.Shipped.Load() == n })
	checkExactly(t, consume(t, c.ListenAddrs(), n), 0, n)

	log.mu.Lock()
	defer log.mu.Unlock()
	seen := map[int32]int{}
	for _, req := range log.requests {
		for _, pr := range req {
			seen[pr.partition]++
		}
	}
	if len(log.requests) < 2 || len(log.requests) > 3 || len(seen) != 6 {
		t.Fatalf("%d requests for partitions %v, want one per leader (2 or 3) for all 6", len(log.requests), seen)
	}
	if w, e := stats.Writes.Load(), stats.WriteErrors.Load(); w != 1 || e != 0 {
		t.Fatalf("%d writes, %d failed: the leaders' requests must go out together, in one write", w, e)
	}
	for p, k := range seen {
		if k != 1 {
			t.Fatalf("partition %d in %d requests, want 1", p, k)
		}
	}
}

func TestKeysLandInTheJavaClientsPartition(t *testing.T) {
	t.Parallel()
	// franz-go's default partitioner hashes keys as the Java client does
	// (murmur2); kafka-go's Murmur2Balancer must agree, so consumers and
	// other producers see one visitor in one partition.
	b := newBroker(t)
	_, sp := newShipper(t, Config{Brokers: b.ListenAddrs()})
	const n = 200
	for i := range n {
		sp.Append(fmt.Sprintf("%032x", i*7919), []byte("shipper"))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(fmt.Sprintf("%032x", i*7919)), Value: []byte("franz")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	part := map[string]map[string]int32{"shipper": {}, "franz": {}}
	for _, r := range consume(t, b.ListenAddrs(), 2*n) {
		part[string(r.Value)][string(r.Key)] = r.Partition
	}
	used := map[int32]bool{}
	for k, p := range part["franz"] {
		used[p] = true
		if q, ok := part["shipper"][k]; !ok || q != p {
			t.Fatalf("key %s: franz-go partition %d, shipper partition %d (present %v)", k, p, q, ok)
		}
	}
	if len(used) < 2 {
		t.Fatalf("all keys in %d partition(s): the check proves nothing", len(used))
	}
}

func TestShipperWaitsOutABrokerThatIsDownAtStart(t *testing.T) {
	t.Parallel()
	port := testproc.FreePort(t)
	stats := new(Stats)
	_, sp := newShipper(t, Config{Brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}, Stats: stats, WriteTimeout: time.Second})
	put(t, sp, 0, 10)
	waitFor(t, func() bool { return stats.WriteErrors.Load() > 0 })
	if stats.Shipped.Load() != 0 {
		t.Fatal("records counted shipped while the broker is down")
	}
	b := newBroker(t, kfake.Ports(port))
	checkExactly(t, consume(t, b.ListenAddrs(), 10), 0, 10)
	waitFor(t, func() bool { return stats.Shipped.Load() == 10 })
	if n := stats.Quarantined.Load() + stats.QuarantineDropped.Load(); n != 0 {
		t.Fatalf("%d records quarantined for a broker that was down", n)
	}
}

func TestCloseDeliversWhatIsSpooled(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	stats := new(Stats)
	sp := openSpool(t, SpoolConfig{Stats: stats})
	put(t, sp, 0, 5000)
	s, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stats.Shipped.Load(); got != 5000 {
		t.Fatalf("Close returned with %d of 5000 shipped", got)
	}
	checkExactly(t, consume(t, b.ListenAddrs(), 5000), 0, 5000)
}

func TestCloseWithTheBrokerDownLeavesRecordsForTheNextStart(t *testing.T) {
	t.Parallel()
	port := testproc.FreePort(t)
	dir := t.TempDir()
	stats := new(Stats)
	sp := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
	s, err := NewShipper(sp, Config{Brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	put(t, sp, 0, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = s.Close(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after its deadline with the broker down")
	}
	sp.Close()

	// Next start, broker up: all 50 arrive.
	b := newBroker(t, kfake.Ports(port))
	sp2 := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
	s2, err := NewShipper(sp2, Config{Brokers: b.ListenAddrs(), Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	checkExactly(t, consume(t, b.ListenAddrs(), 50), 0, 50)
}

func TestReconfigureMovesToTheNewTopicWithoutLossOrDuplicates(t *testing.T) {
	t.Parallel()
	b := newBroker(t, kfake.SeedTopics(3, "b2s.other"))
	stats := new(Stats)
	s, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats})
	put(t, sp, 0, 100)
	waitFor(t, func() bool { return stats.Shipped.Load() == 100 })
	if err := s.Reconfigure(Config{Brokers: b.ListenAddrs(), Topic: "b2s.other", Stats: stats, Logger: nil}); err != nil {
		t.Fatal(err)
	}
	put(t, sp, 100, 100)
	waitFor(t, func() bool { return stats.Shipped.Load() == 200 })
	checkExactly(t, consume(t, b.ListenAddrs(), 100), 0, 100)
	checkExactly(t, consumeTopic(t, b.ListenAddrs(), "b2s.other", 100), 100, 100)
	if err := s.Reconfigure(Config{Brokers: []string{"nohost"}}); err == nil {
		t.Fatal("Reconfigure accepted an invalid config")
	}
	if s.Config().Topic != "b2s.other" {
		t.Fatal("an invalid Reconfigure replaced the config in use")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no brokers", Config{}},
		{"broker without port", Config{Brokers: []string{"localhost"}}},
		{"bad topic", Config{Brokers: []string{"localhost:9092"}, Topic: "b2s events"}},
		{"topic too long", Config{Brokers: []string{"localhost:9092"}, Topic: string(make([]byte, 250))}},
		{"unknown compression", Config{Brokers: []string{"localhost:9092"}, Compression: "brotli"}},
	}
	sp := openSpool(t, SpoolConfig{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewShipper(sp, c.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShipperWaitsForATopicThatDoesNotExistYet(t *testing.T) {
	t.Parallel()
	b := newBroker(t) // seeds only the default topic
	stats := new(Stats)
	_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Topic: "b2s.later", Stats: stats, WriteTimeout: time.Second})
	put(t, sp, 0, 20)
	waitFor(t, func() bool { return stats.WriteErrors.Load() > 0 })
	if stats.Shipped.Load() != 0 {
		t.Fatal("records counted shipped to a topic that does not exist")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "b2s.later", 3, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("creating the topic: %v %+v", err, resp)
	}
	checkExactly(t, consumeTopic(t, b.ListenAddrs(), "b2s.later", 20), 0, 20)
}

func TestBatchTimeoutGathersRecordsIntoOneWrite(t *testing.T) {
	t.Parallel()
	// Five records appended 20ms apart: with a 500ms BatchTimeout they
	// wait for each other and go in one produce request; with a negative
	// one, each goes as soon as it is spooled.
	for _, c := range []struct {
		linger time.Duration
		one    bool
	}{{500 * time.Millisecond, true}, {-1, false}} {
		t.Run(fmt.Sprintf("batch_timeout=%v", c.linger), func(t *testing.T) {
			b := newBroker(t)
			var log produceLog
			b.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				b.KeepControl()
				log.observe(t, kr)
				return nil, nil, false
			})
			stats := new(Stats)
			_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, Compression: "none", BatchTimeout: c.linger})
			for i := range 5 {
				put(t, sp, i, 1)
				time.Sleep(20 * time.Millisecond)
			}
			waitFor(t, func() bool { return stats.Shipped.Load() == 5 })
			checkExactly(t, consume(t, b.ListenAddrs(), 5), 0, 5)
			log.mu.Lock()
			defer log.mu.Unlock()
			if got := len(log.requests) == 1; got != c.one {
				t.Fatalf("%d produce requests for 5 records", len(log.requests))
			}
		})
	}
}

func TestCloseCutsTheLingerShort(t *testing.T) {
	t.Parallel()
	// A long batch_timeout holds a few records back; shutdown must not
	// wait it out: Close delivers them at once.
	b := newBroker(t)
	stats := new(Stats)
	s, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, BatchTimeout: time.Hour})
	put(t, sp, 0, 3)
	time.Sleep(100 * time.Millisecond) // the shipper has read them and is lingering
	if got := stats.Shipped.Load(); got != 0 {
		t.Fatalf("%d records shipped before the linger ended", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second || stats.Shipped.Load() != 3 {
		t.Fatalf("Close took %v and shipped %d of 3", d, stats.Shipped.Load())
	}
	checkExactly(t, consume(t, b.ListenAddrs(), 3), 0, 3)
}
