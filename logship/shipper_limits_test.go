package logship

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestShipperShipsNewRecordsAfterARestartWithEverythingShipped(t *testing.T) {
	t.Parallel()
	// A restart finds the cursor at the end of the last segment, every
	// record shipped. The shipper started then must ship what is appended
	// next, however many times the edge restarts with nothing new.
	for _, restarts := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d restarts", restarts), func(t *testing.T) {
			b := newBroker(t)
			dir := t.TempDir()
			stats := new(Stats)
			core, logs := observer.New(zapcore.WarnLevel)
			cfg := Config{Brokers: b.ListenAddrs(), Stats: stats, BatchTimeout: -1, Logger: zap.New(core)}
			start := func() (*Shipper, *Spool) {
				sp, err := OpenSpool(SpoolConfig{Dir: dir, Stats: stats, Fsync: FsyncNever})
				if err != nil {
					t.Fatal(err)
				}
				s, err := NewShipper(sp, cfg)
				if err != nil {
					t.Fatal(err)
				}
				return s, sp
			}
			stop := func(s *Shipper, sp *Spool) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.Close(ctx); err != nil {
					t.Error(err)
				}
				if err := sp.Close(); err != nil {
					t.Error(err)
				}
			}
			s, sp := start()
			put(t, sp, 0, 100)
			waitFor(t, func() bool { return stats.Shipped.Load() == 100 && sp.Lag() == 0 })
			stop(s, sp)
			for range restarts - 1 {
				s, sp = start()
				stop(s, sp)
			}
			s, sp = start()
			defer stop(s, sp)
			time.Sleep(100 * time.Millisecond) // the shipper has read to the end and waits
			put(t, sp, 100, 50)
			checkExactly(t, consume(t, b.ListenAddrs(), 150), 0, 150)
			waitFor(t, func() bool { return stats.Shipped.Load() == 150 && sp.Lag() == 0 })
			for _, e := range logs.All() {
				t.Errorf("logged %s: %s %v", e.Level, e.Message, e.ContextMap())
			}
		})
	}
}

// refuseEveryProduce makes the broker answer every produce request with
// a retriable error for each partition, and counts the requests.
func refuseEveryProduce(b *kfake.Cluster) *atomic.Int64 {
	var n atomic.Int64
	b.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		b.KeepControl()
		n.Add(1)
		req := kr.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range req.Topics {
			t := kmsg.NewProduceResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewProduceResponseTopicPartition()
				p.Partition, p.ErrorCode = rp.Partition, kerr.NotEnoughReplicas.Code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, true
	})
	return &n
}

func TestShipperBacksOffBetweenFailedWrites(t *testing.T) {
	t.Parallel()
	// A broker that refuses every write: the shipper keeps trying, but
	// waits 50ms after the first failure, twice as long after each next
	// one, up to 5s, so an outage costs the broker and the edge a few
	// requests, not a loop. In 1.5s after the first failure that is 4
	// more attempts (at 50, 150, 350 and 750ms); no more than 6 are
	// allowed here, and 3 more at all show that it keeps trying.
	b := newBroker(t)
	produced := refuseEveryProduce(b)
	stats := new(Stats)
	sp := openSpool(t, SpoolConfig{Stats: stats})
	s, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats, BatchTimeout: -1, WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The broker refuses what is spooled: do not wait for it.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = s.Close(ctx)
	})
	put(t, sp, 0, 10)
	waitFor(t, func() bool { return produced.Load() >= 1 && stats.WriteErrors.Load() >= 1 })
	from := produced.Load()
	time.Sleep(1500 * time.Millisecond)
	if n := produced.Load() - from; n > 6 {
		t.Fatalf("%d produce requests in 1.5s after the first failure, want 6 at most", n)
	}
	// And it keeps trying (however slow the machine, hence no time bound
	// here but waitFor's).
	waitFor(t, func() bool { return produced.Load()-from >= 3 })
	if stats.Shipped.Load() != 0 || stats.Writes.Load() != 0 || !s.Failing() || sp.Lag() == 0 {
		t.Fatalf("shipped %d in %d writes, failing %v, lag %v: the broker took nothing", stats.Shipped.Load(), stats.Writes.Load(), s.Failing(), sp.Lag())
	}
}

func TestShipperKeepsEachProduceRequestUnderTheBrokersMessageLimit(t *testing.T) {
	t.Parallel()
	// Records of one key go to one partition: one record batch per write,
	// which the broker refuses whole when it passes message.max.bytes
	// (1MiB + 12 bytes by default). A spool read takes so many bytes that
	// the batch stays under it, whatever the records' size, and every
	// record is delivered without a refusal to recover from. Checked on
	// the produce requests the broker receives, uncompressed.
	const limit = 1048588 // Kafka's and kfake's default message.max.bytes
	cases := []struct {
		name  string
		n     int
		value int
		batch int // BatchSize
	}{
		{"records of about 52KB, 1000 a write", 60, 52_500, 1000},
		{"records of about half a megabyte, two a write", 4, 526_256, 2},
		{"small records, 1000 a write", 5000, 200, 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBroker(t)
			var mu sync.Mutex
			var largest, requests int
			b.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				b.KeepControl()
				mu.Lock()
				defer mu.Unlock()
				requests++
				for _, tp := range kr.(*kmsg.ProduceRequest).Topics {
					for _, p := range tp.Partitions {
						largest = max(largest, len(p.Records))
					}
				}
				return nil, nil, false
			})
			stats := new(Stats)
			sp := openSpool(t, SpoolConfig{Stats: stats, MaxSize: 64 << 20})
			for i := range c.n {
				v := append(fmt.Appendf(nil, "%06d:", i), bytes.Repeat([]byte{byte('a' + i%26)}, c.value)...)
				if err := sp.Append("one-visitor", v); err != nil {
					t.Fatal(err)
				}
			}
			s, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats, Compression: "none", BatchTimeout: -1, BatchSize: c.batch})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			waitFor(t, func() bool { return stats.Shipped.Load() == uint64(c.n) && sp.Lag() == 0 })
			got := consume(t, b.ListenAddrs(), c.n)
			if len(got) != c.n {
				t.Fatalf("%d records delivered, want %d", len(got), c.n)
			}
			for i, r := range got {
				if want := fmt.Sprintf("%06d:", i); !bytes.HasPrefix(r.Value, []byte(want)) || len(r.Value) != len(want)+c.value {
					t.Fatalf("record %d: %.10q of %d bytes", i, r.Value, len(r.Value))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if largest > limit || stats.Quarantined.Load() != 0 || stats.WriteErrors.Load() != 0 {
				t.Fatalf("largest record batch %d bytes (limit %d), %d quarantined, %d write errors",
					largest, limit, stats.Quarantined.Load(), stats.WriteErrors.Load())
			}
			t.Logf("%d produce requests, the largest batch %d bytes", requests, largest)
		})
	}
}

// countingTransport is a caller's Transport that counts its round trips.
type countingTransport struct {
	kafka.RoundTripper
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(ctx, addr, req)
}

func TestShipperWritesThroughTheCallersTransportAndLeavesItOpen(t *testing.T) {
	t.Parallel()
	// A Transport given in Config carries every write, and closing the
	// shipper leaves it to its owner: it still works afterwards.
	b := newBroker(t)
	own := &kafka.Transport{}
	defer own.CloseIdleConnections()
	tr := &countingTransport{RoundTripper: own}
	stats := new(Stats)
	sp := openSpool(t, SpoolConfig{Stats: stats})
	s, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	put(t, sp, 0, 100)
	checkExactly(t, consume(t, b.ListenAddrs(), 100), 0, 100)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	used := tr.n.Load()
	if used < 2 { // the topic's metadata, a produce request
		t.Fatalf("%d round trips through the caller's transport", used)
	}
	s2, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	put(t, sp, 100, 10)
	checkExactly(t, consume(t, b.ListenAddrs(), 110), 0, 110)
	if tr.n.Load() == used {
		t.Fatal("the second shipper did not write through the caller's transport")
	}
}

func TestAFullBatchIsWrittenWithoutWaitingForBatchTimeout(t *testing.T) {
	t.Parallel()
	// BatchTimeout holds back a read of fewer than BatchSize records, not
	// a full one: with an hour's linger, BatchSize records go at once,
	// and a few more wait.
	b := newBroker(t)
	stats := new(Stats)
	sp := openSpool(t, SpoolConfig{Stats: stats})
	put(t, sp, 0, 10)
	s, err := NewShipper(sp, Config{Brokers: b.ListenAddrs(), Stats: stats, BatchSize: 10, BatchTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	waitFor(t, func() bool { return stats.Shipped.Load() == 10 })
	put(t, sp, 10, 5)
	time.Sleep(300 * time.Millisecond)
	if got := stats.Shipped.Load(); got != 10 {
		t.Fatalf("%d records shipped: 5 of them before their BatchTimeout", got)
	}
}

// connsTo counts this machine's established TCP connections to addr
// (an IPv4 host:port), from the client's side.
func connsTo(t *testing.T, addr string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		t.Fatalf("broker address %q: not IPv4 (%v)", addr, err)
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skip("no /proc/net/tcp")
	}
	ip := ap.Addr().As4()
	// /proc/net/tcp writes the address as a little-endian word.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[2] == want && f[3] == "01" {
			n++
		}
	}
	return n
}

func TestReconfigureClosesTheOldConnections(t *testing.T) {
	t.Parallel()
	// Each configuration has its own connections: a reconfigure (a Caddy
	// reload) closes those of the configuration it replaces, or every
	// reload would leave connections open to the brokers.
	b := newBroker(t)
	addr := b.ListenAddrs()[0]
	stats := new(Stats)
	s, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, BatchTimeout: -1})
	put(t, sp, 0, 10)
	waitFor(t, func() bool { return stats.Shipped.Load() == 10 })
	one := connsTo(t, addr)
	if one == 0 {
		t.Fatal("no connection to the broker found")
	}
	for i, codec := range []string{"none", "gzip", "lz4", "zstd"} {
		cfg := s.Config()
		cfg.Compression = codec
		if err := s.Reconfigure(cfg); err != nil {
			t.Fatal(err)
		}
		put(t, sp, 10*(i+1), 10)
		waitFor(t, func() bool { return stats.Shipped.Load() == uint64(10*(i+2)) })
	}
	waitFor(t, func() bool { return connsTo(t, addr) <= one })
	checkExactly(t, consume(t, b.ListenAddrs(), 50), 0, 50)
}

func TestAPartitionNumberedOutOfRangeInTheMetadataWaits(t *testing.T) {
	t.Parallel()
	// The broker's metadata lists partitions 0, 1 and 3 of a topic of
	// three (as a broker part way through a change might): the shipper
	// balances over indexes 0-2, writes the records of 0 and 1, and keeps
	// those of index 2, which no listed partition carries, unsent and
	// retried, without a panic. Once the metadata is whole they follow,
	// each record once.
	b := newBroker(t)
	host, port, _ := net.SplitHostPort(b.ListenAddrs()[0])
	portN, _ := strconv.Atoi(port)
	var gapped atomic.Bool
	gapped.Store(true)
	b.ControlKey(int16(kmsg.Metadata), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		if !gapped.Load() {
			return nil, nil, false // answered by the broker, and no longer controlled
		}
		b.KeepControl()
		resp := kr.(*kmsg.MetadataRequest).ResponseKind().(*kmsg.MetadataResponse)
		br := kmsg.NewMetadataResponseBroker()
		br.NodeID, br.Host, br.Port = 0, host, int32(portN)
		resp.Brokers = []kmsg.MetadataResponseBroker{br}
		resp.ControllerID = 0
		mt := kmsg.NewMetadataResponseTopic()
		mt.Topic = kmsg.StringPtr(topic)
		for _, i := range []int32{0, 1, 3} {
			p := kmsg.NewMetadataResponseTopicPartition()
			p.Partition, p.Leader, p.Replicas, p.ISR = i, 0, []int32{0}, []int32{0}
			mt.Partitions = append(mt.Partitions, p)
		}
		resp.Topics = []kmsg.MetadataResponseTopic{mt}
		return resp, nil, true
	})
	stats := new(Stats)
	s, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, BatchTimeout: -1, WriteTimeout: time.Second})
	// Records of keys in each of the three partitions.
	var inRange, outOfRange int
	for i := range 60 {
		k, v := msg(i)
		if partitionOf(k, 3) == 2 {
			outOfRange++
		} else {
			inRange++
		}
		if err := sp.Append(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if inRange == 0 || outOfRange == 0 {
		t.Fatalf("keys in range %d, out of range %d: the test needs both", inRange, outOfRange)
	}
	waitFor(t, func() bool { return stats.Shipped.Load() == uint64(inRange) && stats.WriteErrors.Load() >= 2 })
	if !s.Failing() {
		t.Fatal("records left unsent, and the shipper does not report failing")
	}
	gapped.Store(false)
	waitFor(t, func() bool { return stats.Shipped.Load() == 60 })
	checkExactly(t, consume(t, b.ListenAddrs(), 60), 0, 60)
}
