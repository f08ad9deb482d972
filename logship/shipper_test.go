package logship

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
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

func newShipper(t *testing.T, cfg Config) *Shipper {
	t.Helper()
	if cfg.Stats == nil {
		cfg.Stats = new(Stats)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func msg(i int) Message {
	return Message{Key: fmt.Sprintf("visitor-%d", i%17), Value: []byte(`{"n":` + strconv.Itoa(i) + `}`)}
}

func TestShipperDeliversEveryRecordWithItsKey(t *testing.T) {
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run("compression "+codec, func(t *testing.T) {
			b := newBroker(t)
			stats := new(Stats)
			s := newShipper(t, Config{Brokers: b.ListenAddrs(), Compression: codec, Stats: stats})
			const n = 2500
			for i := range n {
				if !s.Put(msg(i)) {
					t.Fatalf("Put %d refused", i)
				}
			}
			got := consume(t, b.ListenAddrs(), n)
			seen := map[string]string{}
			for _, r := range got {
				seen[string(r.Value)] = string(r.Key)
			}
			for i := range n {
				m := msg(i)
				if k, ok := seen[string(m.Value)]; !ok || k != m.Key {
					t.Fatalf("record %s: key %q, delivered %v; want key %q", m.Value, k, ok, m.Key)
				}
			}
			if len(got) != n {
				t.Fatalf("read %d records, want exactly %d (duplicates)", len(got), n)
			}
			waitFor(t, func() bool { return stats.Shipped.Load() == n && stats.Queued.Load() == 0 })
		})
	}
}

func TestKeysLandInTheJavaClientsPartition(t *testing.T) {
	// franz-go's default partitioner hashes keys as the Java client does
	// (murmur2); kafka-go's Murmur2Balancer must agree, so consumers and
	// other producers see one visitor in one partition.
	b := newBroker(t)
	s := newShipper(t, Config{Brokers: b.ListenAddrs()})
	const n = 200
	for i := range n {
		s.Put(Message{Key: fmt.Sprintf("%032x", i*7919), Value: []byte("shipper")})
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
	port := freePort(t)
	stats := new(Stats)
	s := newShipper(t, Config{Brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}, Stats: stats, WriteTimeout: time.Second})
	for i := range 10 {
		s.Put(msg(i))
	}
	waitFor(t, func() bool { return stats.WriteErrors.Load() > 0 })
	if stats.Shipped.Load() != 0 {
		t.Fatal("records counted shipped while the broker is down")
	}
	b := newBroker(t, kfake.Ports(port))
	got := consume(t, b.ListenAddrs(), 10)
	if len(got) != 10 {
		t.Fatalf("delivered %d, want 10", len(got))
	}
	waitFor(t, func() bool { return stats.Shipped.Load() == 10 })
}

func TestAFullQueueDropsAndCountsTheNewest(t *testing.T) {
	port := freePort(t) // nothing listens: the shipper cannot drain
	stats := new(Stats)
	s := newShipper(t, Config{Brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}, QueueSize: 100, BatchSize: 10, Stats: stats})
	accepted := 0
	for i := range 500 {
		if s.Put(msg(i)) {
			accepted++
		}
	}
	// The shipper holds at most one batch outside the queue.
	if accepted < 100 || accepted > 110 {
		t.Fatalf("accepted %d of 500 with a queue of 100 and batches of 10", accepted)
	}
	if got := stats.DroppedFull.Load(); got != uint64(500-accepted) {
		t.Fatalf("DroppedFull = %d, want %d", got, 500-accepted)
	}
}

func TestCloseDeliversWhatIsQueued(t *testing.T) {
	b := newBroker(t)
	stats := new(Stats)
	s, err := New(Config{Brokers: b.ListenAddrs(), Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		s.Put(msg(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stats.Shipped.Load(); got != 5000 {
		t.Fatalf("Close returned with %d of 5000 shipped", got)
	}
	if s.Put(msg(1)) {
		t.Fatal("Put accepted a record after Close")
	}
	if got := stats.DroppedClosed.Load(); got != 1 {
		t.Fatalf("DroppedClosed = %d, want the 1 record offered after Close", got)
	}
	if got := len(consume(t, b.ListenAddrs(), 5000)); got != 5000 {
		t.Fatalf("read %d", got)
	}
}

func TestCloseWithTheBrokerDownEndsAtTheDeadline(t *testing.T) {
	port := freePort(t)
	stats := new(Stats)
	s, err := New(Config{Brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}, Stats: stats})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		s.Put(msg(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = s.Close(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after its deadline with the broker down")
	}
	if got := stats.DroppedClosed.Load(); got != 50 {
		t.Fatalf("DroppedClosed = %d, want all 50", got)
	}
	if got := stats.Queued.Load(); got != 0 {
		t.Fatalf("Queued = %d after close", got)
	}
}

func TestConfigValidation(t *testing.T) {
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
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(c.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
