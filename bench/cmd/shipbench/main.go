// Command shipbench measures shipping records to a Kafka-protocol broker in
// another process: from b2s-edge's durable spool through logship's Shipper,
// against kafka-go writing the same records straight from memory with the
// same Writer settings, and against franz-go's kgo as a reference client.
//
// It starts nothing: bench/run.sh starts a fresh broker (test/kbroker) for
// each run, with the topic already created, and pins both processes. One
// invocation is one path:
//
//	shipbench -brokers 127.0.0.1:19092 -topic t -path spool|kafkago|kgo-sync|kgo-async [-compression snappy] [-records 200000] [-batch-timeout 1ms] [-cpuprofile FILE]
//	shipbench -brokers 127.0.0.1:19092 -topic t -path live [-rate 25000] [-duration 5s] [-batch-timeout 5ms|-1ns]
//	shipbench -brokers 127.0.0.1:19092 -topic t -count
//
// It prints one JSON object on stdout: records, seconds, records/s, CPU
// microseconds per record (getrusage of this process, so the client's work
// only), bytes the client wrote to the broker's sockets, and the records
// the broker holds afterwards (the sum of its partitions' end offsets).
// Records are typical ~600-byte beacon records keyed by 10,000 distinct
// 32-hex cookie IDs, generated from a fixed seed so every path ships the
// same bytes. With -count it only prints how many records the topic holds,
// an independent check of what b2s-edge shipped.
//
// The live path is the shipper under steady traffic rather than draining a
// backlog: records are appended at -rate records/s, in a burst every
// millisecond as request handlers would, for -duration, while the Shipper
// ships them with its linger (-batch-timeout). It adds the writes Kafka
// acknowledged, the records per write, and two delivery delays: Spool.Lag
// (the age of the oldest record read and not yet acknowledged) sampled
// about every millisecond, and each record's time from its append to its
// acknowledgement; their p50, p99 and maximum. CPU per record is then the
// appends and the shipping together, in one process.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/b2scom/b2s-edge/internal/refwriter"
	"github.com/b2scom/b2s-edge/logship"
)

type result struct {
	Path            string  `json:"path"`
	Compression     string  `json:"compression"`
	BatchTimeout    string  `json:"batch_timeout,omitempty"`
	Topic           string  `json:"topic"`
	Records         int     `json:"records"`
	RecordBytes     float64 `json:"record_bytes_avg"`
	Seconds         float64 `json:"seconds"`
	RecordsPerSec   float64 `json:"records_per_s"`
	CPUMicros       float64 `json:"cpu_us_per_record"`
	WireBytes       int64   `json:"wire_bytes"`
	WireBytesPerRec float64 `json:"wire_bytes_per_record"`
	BrokerRecords   int64   `json:"broker_records"`
	FillSeconds     float64 `json:"spool_fill_seconds,omitempty"`
	FillPerSec      float64 `json:"spool_appends_per_s,omitempty"`
	*liveResult             // the live path's figures; nil (left out) for the others
	GOMAXPROCS      string  `json:"gomaxprocs"`
	// CPUBusy is each CPU's busy fraction over the timed window
	// (/proc/stat), to tell whether the client's or the broker's core
	// was the limit.
	CPUBusy []float64 `json:"cpu_busy"`
}

// liveResult is what the live path adds: the target rate, the rate the
// appends achieved, the writes Kafka acknowledged, Spool.Lag sampled during
// the run, and each record's delay from its append to its
// acknowledgement, in milliseconds.
//
// The two delays differ. Lag is the age of the oldest record the shipper
// has read and Kafka not yet acknowledged (b2s_shipper_lag_seconds), over
// time: its p50 is the age it had half the time. Records appended but not
// read yet count as none, so a shipper that writes at once, waiting in its
// read between writes, shows 0 most of the time. The record delay is per
// record: the sampler sees a record acknowledged when Stats.Shipped has
// passed it (records are acknowledged in spool order), so it is up to a
// sampling interval, about a millisecond, late.
type liveResult struct {
	Rate            float64 `json:"rate"`
	AppendedPerSec  float64 `json:"appended_per_s"`
	Writes          uint64  `json:"writes"`
	RecordsPerWrite float64 `json:"records_per_write"`
	LagSamples      int     `json:"lag_samples"`
	LagP50          float64 `json:"lag_p50_ms"`
	LagP99          float64 `json:"lag_p99_ms"`
	LagMax          float64 `json:"lag_max_ms"`
	LagMean         float64 `json:"lag_mean_ms"`
	DelayP50        float64 `json:"record_delay_p50_ms"`
	DelayP99        float64 `json:"record_delay_p99_ms"`
	DelayMax        float64 `json:"record_delay_max_ms"`
	DelayMean       float64 `json:"record_delay_mean_ms"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "shipbench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		brokers     = flag.String("brokers", "127.0.0.1:9092", "bootstrap `host:port` list, comma-separated")
		topic       = flag.String("topic", "", "topic to write to; must exist (required)")
		path        = flag.String("path", "spool", "what to time: spool (logship spool + Shipper), kafkago (kafka-go Writer from memory), kgo-sync (franz-go ProduceSync, 1000-record calls), kgo-async (franz-go Produce all, then Flush) or live (appends at -rate for -duration while a Shipper ships them)")
		compression = flag.String("compression", "snappy", "batch compression: none, snappy, lz4 or zstd")
		records     = flag.Int("records", 200_000, "records to ship; for -path live, the most records appended (default: rate × duration)")
		rate        = flag.Float64("rate", 25_000, "records/s appended, for -path live")
		duration    = flag.Duration("duration", 5*time.Second, "how long records are appended, for -path live")
		dir         = flag.String("dir", "", "`directory` for the spool (default: a new temporary directory, removed at exit)")
		timeout     = flag.Duration("timeout", 5*time.Minute, "give up after this long")
		count       = flag.Bool("count", false, "only print the number of records the topic holds (sum of end offsets) and exit")
		batchWait   = flag.Duration("batch-timeout", 0, "the Shipper's BatchTimeout (linger) for the spool and live paths: 0 is logship's default, 5ms; a negative value such as -1ns writes at once")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the timed part to `file`")
	)
	flag.Parse()
	if *topic == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	addrs := strings.Split(*brokers, ",")
	if *count {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := brokerRecords(ctx, addrs, *topic)
		if err != nil {
			return err
		}
		fmt.Println(n)
		return nil
	}
	if *path == "live" {
		if *rate <= 0 || *duration <= 0 {
			return errors.New("-rate and -duration must be positive")
		}
		n := int(math.Ceil(*rate * duration.Seconds()))
		recordsSet := false
		flag.Visit(func(f *flag.Flag) { recordsSet = recordsSet || f.Name == "records" })
		if recordsSet && *records < n {
			fmt.Fprintf(os.Stderr, "shipbench: -records %d bounds the live run to %d records (%.0f/s for %s wants %d)\n",
				*records, *records, *rate, *duration, n)
			n = *records
		}
		*records = n
	}
	keys, values := makeRecords(*records)
	var total int
	for _, v := range values {
		total += len(v)
	}
	res := result{Path: *path, Compression: *compression, BatchTimeout: batchWait.String(), Topic: *topic, Records: *records,
		RecordBytes: float64(total) / float64(len(values)), GOMAXPROCS: os.Getenv("GOMAXPROCS")}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var wire atomic.Int64
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, n: &wire}, nil
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		profiling = f
	}
	var err error
	switch *path {
	case "spool":
		err = shipSpool(ctx, &res, addrs, *topic, *compression, *batchWait, *dir, keys, values, dial)
	case "kafkago":
		err = shipKafkaGo(ctx, &res, addrs, *topic, *compression, keys, values, dial)
	case "kgo-sync", "kgo-async":
		err = shipKgo(ctx, &res, addrs, *topic, *compression, *path == "kgo-async", keys, values, dial)
	case "live":
		res.liveResult = &liveResult{Rate: *rate}
		// The linger in effect, not the flag's 0 for the default.
		res.BatchTimeout = logship.Config{BatchTimeout: *batchWait}.WithDefaults().BatchTimeout.String()
		err = shipLive(ctx, &res, addrs, *topic, *compression, *batchWait, *rate, *dir, keys, values, dial)
	default:
		return fmt.Errorf("unknown -path %q", *path)
	}
	if err != nil {
		return err
	}
	res.RecordsPerSec = float64(res.Records) / res.Seconds
	res.WireBytes = wire.Load()
	res.WireBytesPerRec = float64(res.WireBytes) / float64(res.Records)
	if res.BrokerRecords, err = brokerRecords(ctx, addrs, *topic); err != nil {
		return fmt.Errorf("counting records on the broker: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// profiling, when set, receives a CPU profile of the timed part.
var profiling *os.File

// timer measures wall time and this process's CPU time.
type timer struct {
	start time.Time
	cpu   time.Duration
	cpus  []cpuStat
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startTimer() timer {
	if profiling != nil {
		_ = pprof.StartCPUProfile(profiling)
	}
	return timer{start: time.Now(), cpu: cpuTime(), cpus: readCPUStats()}
}

func (t timer) stop(res *result) {
	if profiling != nil {
		pprof.StopCPUProfile()
	}
	res.Seconds = time.Since(t.start).Seconds()
	res.CPUMicros = float64((cpuTime() - t.cpu).Microseconds()) / float64(res.Records)
	end := readCPUStats()
	if len(end) == len(t.cpus) {
		for i := range end {
			busy, total := end[i].busy-t.cpus[i].busy, end[i].total-t.cpus[i].total
			if total > 0 {
				res.CPUBusy = append(res.CPUBusy, float64(int(1000*float64(busy)/float64(total)))/1000)
			}
		}
	}
}

// cpuStat is one CPU's line of /proc/stat, in clock ticks.
type cpuStat struct{ busy, total uint64 }

// readCPUStats reads the per-CPU lines of /proc/stat; busy is everything
// but idle and iowait.
func readCPUStats() []cpuStat {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	var out []cpuStat
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var st cpuStat
		for i, v := range f[1:] {
			n, _ := strconv.ParseUint(v, 10, 64)
			st.total += n
			if i != 3 && i != 4 { // idle, iowait
				st.busy += n
			}
		}
		out = append(out, st)
	}
	return out
}

// openSpool opens a spool in dir, or in a new temporary directory when dir
// is empty; done closes it and removes the temporary directory.
func openSpool(dir string, fsync time.Duration) (sp *logship.Spool, stats *logship.Stats, done func(), err error) {
	remove := func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", "shipbench-spool-")
		if err != nil {
			return nil, nil, nil, err
		}
		remove = func() { os.RemoveAll(d) }
		dir = d
	}
	stats = new(logship.Stats)
	sp, err = logship.OpenSpool(logship.SpoolConfig{Dir: dir, Fsync: fsync, MaxSize: 64 << 30, Stats: stats})
	if err != nil {
		remove()
		return nil, nil, nil, err
	}
	return sp, stats, func() { sp.Close(); remove() }, nil
}

// shipSpool fills a spool, then times a Shipper draining it.
func shipSpool(ctx context.Context, res *result, brokers []string, topic, compression string, batchWait time.Duration, dir string,
	keys []string, values [][]byte, dial func(context.Context, string, string) (net.Conn, error)) error {
	sp, stats, done, err := openSpool(dir, time.Second)
	if err != nil {
		return err
	}
	defer done()
	fill := time.Now()
	for i, v := range values {
		if err := sp.Append(keys[i], v); err != nil {
			return fmt.Errorf("filling the spool: %w", err)
		}
	}
	res.FillSeconds = time.Since(fill).Seconds()
	res.FillPerSec = float64(len(values)) / res.FillSeconds

	n := uint64(len(values))
	t := startTimer()
	// The product's Shipper with its defaults; only the transport's
	// dialer is ours, to count bytes, with the product's metadata TTL.
	s, err := logship.NewShipper(sp, logship.Config{Brokers: brokers, Topic: topic, Compression: compression,
		BatchTimeout: batchWait, Stats: stats, Transport: &kafka.Transport{MetadataTTL: time.Second, Dial: dial}})
	if err != nil {
		return err
	}
	for stats.Shipped.Load() < n {
		if ctx.Err() != nil {
			s.Close(context.Background())
			return fmt.Errorf("shipped %d of %d records before the timeout (write errors: %d)", stats.Shipped.Load(), n, stats.WriteErrors.Load())
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.stop(res)
	if err := s.Close(ctx); err != nil {
		return err
	}
	if e := stats.WriteErrors.Load(); e > 0 {
		fmt.Fprintf(os.Stderr, "shipbench: %d kafka write errors (retried)\n", e)
	}
	return nil
}

// liveWarmup is how many records the live path ships before the timed
// part, so that the connection and the topic's metadata are in place.
const liveWarmup = 100

// shipLive appends records to a fresh spool at a steady rate, in a burst
// every millisecond, while the product's Shipper ships them with the given
// linger. It times from the first append until Kafka acknowledged the
// last, and samples Spool.Lag and the records acknowledged meanwhile.
func shipLive(ctx context.Context, res *result, brokers []string, topic, compression string, batchWait time.Duration, rate float64,
	dir string, keys []string, values [][]byte, dial func(context.Context, string, string) (net.Conn, error)) error {
	sp, stats, done, err := openSpool(dir, logship.DefaultFsync)
	if err != nil {
		return err
	}
	defer done()
	// The product's Shipper with its defaults but the linger; only the
	// transport's dialer is ours, to count bytes, with the product's
	// metadata TTL.
	s, err := logship.NewShipper(sp, logship.Config{Brokers: brokers, Topic: topic, Compression: compression,
		BatchTimeout: batchWait, Stats: stats, Transport: &kafka.Transport{MetadataTTL: time.Second, Dial: dial}})
	if err != nil {
		return err
	}
	defer func() { // on an error; a second Close returns at once
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(c)
	}()
	waitShipped := func(n uint64) error {
		for stats.Shipped.Load() < n {
			if ctx.Err() != nil {
				return fmt.Errorf("shipped %d of %d records before the timeout (write errors: %d)", stats.Shipped.Load(), n, stats.WriteErrors.Load())
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}
	warm := min(liveWarmup, len(values))
	for i := range warm {
		if err := sp.Append(keys[i], values[i]); err != nil {
			return err
		}
	}
	if err := waitShipped(uint64(warm)); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	shipped0, writes0 := stats.Shipped.Load(), stats.Writes.Load()
	n := len(values)
	want := shipped0 + uint64(n)

	// delays[i] is record i's append time, then its delay: time since
	// start, then from its append until it was seen acknowledged.
	delays := make([]time.Duration, n)

	t := startTimer()
	start := t.start
	// The producer: by each millisecond's tick, as many records as the
	// rate calls for since the start, so a late tick catches up rather
	// than lowering the rate.
	appended := make(chan error, 1)
	var appendEnd time.Time
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		i := 0
		for i < n {
			now := time.Since(start)
			due := min(n, int(rate*now.Seconds())+1)
			for ; i < due; i++ {
				delays[i] = now
				if err := sp.Append(keys[i], values[i]); err != nil {
					appended <- fmt.Errorf("append %d: %w", i, err)
					return
				}
			}
			if i < n {
				<-tick.C
			}
		}
		appendEnd = time.Now()
		appended <- nil
	}()
	// Meanwhile, about every millisecond (at jittered times, so as not to
	// lock onto the producer's ticks) until everything is acknowledged:
	// Spool.Lag, and the delay of the records acknowledged since the last
	// look.
	rng := rand.New(rand.NewPCG(3, 4))
	var lags []time.Duration
	var appendErr error
	appending := true
	acked := 0
	for {
		shipped := stats.Shipped.Load()
		now := time.Since(start)
		for k := min(n, int(shipped-shipped0)); acked < k; acked++ {
			delays[acked] = now - delays[acked]
		}
		if shipped >= want {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("shipped %d of %d records before the timeout (write errors: %d)", stats.Shipped.Load()-shipped0, n, stats.WriteErrors.Load())
		}
		if appending {
			select {
			case appendErr = <-appended:
				appending = false
				if appendErr != nil {
					return appendErr
				}
			default:
			}
		}
		lags = append(lags, sp.Lag())
		// A sleep overshoots by about half a millisecond here: samples
		// come about every millisecond.
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
	}
	t.stop(res)
	if appending {
		if appendErr = <-appended; appendErr != nil {
			return appendErr
		}
	}
	res.AppendedPerSec = float64(n) / appendEnd.Sub(start).Seconds()
	res.Writes = stats.Writes.Load() - writes0
	res.RecordsPerWrite = float64(stats.Shipped.Load()-shipped0) / float64(res.Writes)
	res.LagSamples = len(lags)
	res.LagP50, res.LagP99, res.LagMax, res.LagMean = summary(lags)
	res.DelayP50, res.DelayP99, res.DelayMax, res.DelayMean = summary(delays)
	if err := s.Close(ctx); err != nil {
		return err
	}
	if e := stats.WriteErrors.Load(); e > 0 {
		fmt.Fprintf(os.Stderr, "shipbench: %d kafka write errors (retried)\n", e)
	}
	return nil
}

// summary sorts d and returns its p50, p99, maximum and mean in
// milliseconds (to the microsecond).
func summary(d []time.Duration) (p50, p99, maxi, mean float64) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(v time.Duration) float64 { return math.Round(float64(v)/1e3) / 1e3 }
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return ms(q(0.50)), ms(q(0.99)), ms(d[len(d)-1]), ms(sum / time.Duration(len(d)))
}

// shipKafkaGo writes the records from memory with a kafka-go Writer set up
// as refwriter.New does (RequiredAcks all, Murmur2Balancer, BatchSize
// 1000, BatchTimeout 1µs, the codec), in synchronous 1000-record calls as
// the shipper reads them.
func shipKafkaGo(ctx context.Context, res *result, brokers []string, topic, compression string,
	keys []string, values [][]byte, dial func(context.Context, string, string) (net.Conn, error)) error {
	// The shipper's own writer settings, with a transport that counts bytes.
	tr := &kafka.Transport{MetadataTTL: time.Second, Dial: dial}
	w, err := refwriter.New(logship.Config{Brokers: brokers, Topic: topic, Compression: compression, Transport: tr})
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Key: []byte(keys[i]), Value: v}
	}
	t := startTimer()
	for i := 0; i < len(msgs); i += w.BatchSize {
		batch := msgs[i:min(i+w.BatchSize, len(msgs))]
		if err := w.WriteMessages(ctx, batch...); err != nil {
			return fmt.Errorf("kafka-go write at record %d: %w", i, err)
		}
	}
	t.stop(res)
	return nil
}

// shipKgo produces the records with franz-go: the reference client, with
// its defaults (acks all, idempotent, murmur2 for keyed records) and the
// codec. kgo-sync makes 1000-record ProduceSync calls, the shipper's shape;
// kgo-async produces everything and then flushes, the way kgo is meant to
// be used.
func shipKgo(ctx context.Context, res *result, brokers []string, topic, compression string, async bool,
	keys []string, values [][]byte, dial func(context.Context, string, string) (net.Conn, error)) error {
	var codec kgo.CompressionCodec
	switch compression {
	case "none":
		codec = kgo.NoCompression()
	case "snappy":
		codec = kgo.SnappyCompression()
	case "lz4":
		codec = kgo.Lz4Compression()
	case "zstd":
		codec = kgo.ZstdCompression()
	case "gzip":
		codec = kgo.GzipCompression()
	default:
		return fmt.Errorf("unknown compression %q", compression)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(codec), kgo.Dialer(dial))
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Key: []byte(keys[i]), Value: v}
	}
	t := startTimer()
	if async {
		var failed atomic.Pointer[error]
		for _, r := range recs {
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if p := failed.Load(); p != nil {
			return fmt.Errorf("kgo produce: %w", *p)
		}
	} else {
		for i := 0; i < len(recs); i += 1000 {
			if err := cl.ProduceSync(ctx, recs[i:min(i+1000, len(recs))]...).FirstErr(); err != nil {
				return fmt.Errorf("kgo produce at record %d: %w", i, err)
			}
		}
	}
	t.stop(res)
	return nil
}

// brokerRecords sums the end offsets of the topic's partitions.
func brokerRecords(ctx context.Context, brokers []string, topic string) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if len(mresp.Topics) != 1 || mresp.Topics[0].ErrorCode != 0 {
		return 0, errors.New("topic not found")
	}
	lreq := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range mresp.Topics[0].Partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition = p.Partition
		lp.Timestamp = -1 // latest
		lt.Partitions = append(lt.Partitions, lp)
	}
	lreq.Topics = append(lreq.Topics, lt)
	lresp, err := lreq.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range lresp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return 0, fmt.Errorf("partition %d: error code %d", p.Partition, p.ErrorCode)
			}
			n += p.Offset
		}
	}
	return n, nil
}

// countingConn counts the bytes a client writes to the broker.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// makeRecords returns n keyed beacon records of about 600 bytes, varied
// the way real ones are (event IDs, times, addresses, pages, browsers), so
// that compression ratios mean something. The seed is fixed.
func makeRecords(n int) (keys []string, values [][]byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
	}
	pages := []string{"products/cnc-spindle", "products/servo-drive-400w", "products/linear-guide-hgr20",
		"products/ball-screw-sfu1605", "category/motion-control", "category/spindles", "blog/choosing-a-spindle",
		"about", "contact", "cart", "search?q=stepper+motor", "products/stepper-nema23"}
	refs := []string{"https://www.b2s.com/", "https://search.example/?q=cnc+spindle", "https://www.b2s.com/category/spindles", ""}
	agents := []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
	}
	geos := []string{
		`{"country":"CN","subdivision":"GD","city":"Shenzhen","lat":22.5431,"lon":114.0579}`,
		`{"country":"CN","subdivision":"SH","city":"Shanghai","lat":31.2222,"lon":121.4581}`,
		`{"country":"DE","subdivision":"BY","city":"Munich","lat":48.1374,"lon":11.5755}`,
		`{"country":"US","subdivision":"CA","city":"San Jose","lat":37.3394,"lon":-121.895}`,
	}
	events := []string{"pageview", "pageview", "pageview", "click", "scroll"}
	t0 := time.Date(2026, 11, 28, 20, 0, 0, 0, time.UTC)
	keys = make([]string, n)
	values = make([][]byte, n)
	for i := range n {
		id := ids[rng.IntN(len(ids))]
		ts := t0.Add(time.Duration(i) * 37 * time.Microsecond)
		ev := rng.Uint64()
		keys[i] = id
		values[i] = fmt.Appendf(nil, `{"schema":1,"event_id":"%08x-%04x-7%03x-%04x-%012x","ts":"%s","kind":"beacon",`+
			`"host":"www.b2s.com","ip":"203.0.%d.%d","cookie_id":"%s","cookie_state":"returning","method":"GET",`+
			`"url":"https://www.b2s.com/%s","referrer":"%s","user_agent":"%s","status":200,"bytes":43,"event":"%s",`+
			`"geo":%s,"params":{"product":"%d","lang":"zh-CN"}}`,
			uint32(ts.UnixMilli()>>16), uint16(ts.UnixMilli()), ev&0xfff, 0x8000|(ev>>12)&0x3fff, ev>>26&0xffffffffffff,
			ts.Format("2006-01-02T15:04:05.000000Z"), rng.IntN(256), rng.IntN(256), id,
			pages[rng.IntN(len(pages))], refs[rng.IntN(len(refs))], agents[rng.IntN(len(agents))],
			events[rng.IntN(len(events))], geos[rng.IntN(len(geos))], rng.IntN(5000))
	}
	return keys, values
}
