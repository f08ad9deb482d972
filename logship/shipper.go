package logship

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/compress/snappy"
	"go.uber.org/zap"
)

// Config configures a Shipper. The zero value of a field means its default.
type Config struct {
	// Brokers are the bootstrap addresses, host:port. Required.
	Brokers []string
	// Topic is the topic written to. Default "b2s.events".
	Topic string
	// Compression is the batch compression codec: none, gzip, snappy,
	// lz4 or zstd. Default snappy.
	Compression string
	// BatchSize is the most records written in one request. Default 1000.
	BatchSize int
	// BatchTimeout is how long records may wait in the spool for others
	// to join their write, when a read finds fewer than BatchSize: the
	// shipper waits until the oldest of them is that old, then reads
	// again (linger.ms in librdkafka and the Java client). Default 20ms.
	// Without it, a write goes out for every few records that arrive
	// while the previous one is in flight, and each write costs the
	// proxy's core a few hundred microseconds whatever it carries (mostly
	// the socket write, in which the kernel does the loopback receiver's
	// work too). Appending 25,000 records/s on one core, with the broker
	// in another process (bench/cmd/shipbench -path live): at once, ~29
	// records a write and 13.6-14.1µs of CPU per record (appends
	// included); 5ms (librdkafka's and the Java client's default), ~160
	// and 5.5-6.4µs; 20ms, ~527 and 4.5-4.7µs, for a p99 delivery delay
	// of ~27ms instead of ~9ms. Negative: write at once.
	BatchTimeout time.Duration
	// WriteTimeout bounds one write attempt, acknowledgement included.
	// Default 10s.
	WriteTimeout time.Duration
	// Logger receives errors, at most one line per LogInterval.
	Logger *zap.Logger
	// LogInterval bounds how often write errors are logged. Default 10s.
	LogInterval time.Duration
	// Stats receives the counters. Default: a private Stats.
	Stats *Stats
	// TLS, when set, connects to the brokers over TLS with this
	// configuration; when its ServerName is empty, each broker's host name
	// is verified. Default: plaintext.
	TLS *tls.Config
	// SASL, when set, authenticates every connection to a broker.
	// Default: none.
	SASL *SASL
	// Transport replaces the transport the shipper builds for itself. TLS
	// and SASL are then the Transport's business, and setting them here
	// too is an error.
	Transport kafka.RoundTripper
}

// Defaults.
const (
	DefaultTopic        = "b2s.events"
	DefaultCompression  = "snappy"
	DefaultBatchSize    = 1000
	DefaultBatchTimeout = 20 * time.Millisecond
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.LogInterval <= 0 {
		c.LogInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
}

func init() {
	// kafka-go compresses snappy with s2's "better" mode unless told
	// otherwise: batches about 3% smaller than standard snappy's for about
	// a fifth more of the shipper's CPU per record (measured with
	// bench/cmd/shipbench), which bounds what one core ships. Standard
	// snappy is also what the Java client and librdkafka write. kafka-go
	// has one snappy codec per process, set here before any writer uses it.
	compress.SnappyCodec.Compression = snappy.FasterCompression
}

// ParseCompression maps a codec name to kafka-go's codec.
func ParseCompression(name string) (compress.Compression, error) {
	switch strings.ToLower(name) {
	case "none", "":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("unknown compression %q (want none, gzip, snappy, lz4 or zstd)", name)
}

// Validate checks c without connecting anywhere.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("no brokers")
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return fmt.Errorf("broker address %q is not host:port", b)
		}
	}
	if c.Topic != "" && !validTopic(c.Topic) {
		return fmt.Errorf("topic %q is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])", c.Topic)
	}
	if _, err := ParseCompression(c.Compression); err != nil {
		return err
	}
	if c.SASL != nil {
		if _, err := c.SASL.mechanism(); err != nil {
			return err
		}
	}
	if c.Transport != nil && (c.TLS != nil || c.SASL != nil) {
		return errors.New("TLS and SASL are set on a Transport of the caller's own, not beside it")
	}
	return nil
}

// validTopic follows Kafka's own rule (org.apache.kafka.common.internals.Topic).
func validTopic(t string) bool {
	if len(t) == 0 || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Shipper reads records from a Spool and writes them to Kafka, advancing
// the spool's cursor only after Kafka acknowledged them.
type Shipper struct {
	spool  *Spool
	stats  *Stats
	logger *zap.Logger
	w      atomic.Pointer[producer]
	stop   chan struct{} // closed by Close: deliver what is spooled, then exit
	abort  context.Context
	cancel context.CancelFunc // called when the flush deadline passes
	done   chan struct{}
	errLog rateLimitedLog
	once   sync.Once
	// failing is set while Kafka refuses writes: the last attempt failed.
	failing atomic.Bool
	errs    []error // each record's outcome in a write, reused
}

// Failing reports whether the last write to Kafka failed, so records are
// waiting in the spool for Kafka to come back.
func (s *Shipper) Failing() bool { return s.failing.Load() }

// NewWriter returns a kafka-go Writer with the shipper's settings (acks
// from every in-sync replica, murmur2, the codec, BatchSize records per
// partition batch), the reference that measurements compare the shipper
// with. Its BatchTimeout is 1µs, the Writer's best for calls that hand it
// whole batches and wait (measured, docs/spool.md); cfg.BatchTimeout, the
// shipper's linger, does not apply. When cfg.Transport is nil the writer has a transport of
// its own, which closing the writer does not close: set cfg.Transport to
// own it.
func NewWriter(cfg Config) (*kafka.Writer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	codec, _ := ParseCompression(cfg.Compression)
	transport := cfg.Transport
	if transport == nil {
		transport = newTransport(cfg)
	}
	return &kafka.Writer{
		Addr:            kafka.TCP(cfg.Brokers...),
		Topic:           cfg.Topic,
		Balancer:        &kafka.Murmur2Balancer{},
		RequiredAcks:    kafka.RequireAll,
		MaxAttempts:     3,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
		BatchSize:       cfg.BatchSize,
		BatchBytes:      1 << 20,
		BatchTimeout:    time.Microsecond,
		ReadTimeout:     cfg.WriteTimeout,
		WriteTimeout:    cfg.WriteTimeout,
		Compression:     codec,
		Transport:       transport,
	}, nil
}

// NewShipper validates cfg and starts shipping from sp. It does not
// connect: a broker that is down or a topic that does not exist yet shows
// up as write errors, retried until they clear, while records wait in the
// spool.
func NewShipper(sp *Spool, cfg Config) (*Shipper, error) {
	p, err := newProducer(cfg)
	if err != nil {
		return nil, err
	}
	cfg = p.cfg
	s := &Shipper{
		spool:  sp,
		stats:  cfg.Stats,
		logger: cfg.Logger,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		errLog: rateLimitedLog{logger: cfg.Logger, every: cfg.LogInterval},
	}
	s.w.Store(p)
	s.abort, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Reconfigure switches to another Kafka configuration (brokers, topic,
// compression...). The batch in flight finishes or is retried with the
// new one; nothing is dropped or sent twice by the switch itself.
func (s *Shipper) Reconfigure(cfg Config) error {
	p, err := newProducer(cfg)
	if err != nil {
		return err
	}
	old := s.w.Swap(p)
	if old != nil && old != p {
		// Close waits for writes in flight, which may be retrying
		// against a dead broker: do not hold up the caller.
		go old.close()
	}
	return nil
}

// Config returns the Kafka configuration in use.
func (s *Shipper) Config() Config { return s.w.Load().cfg }

// Close stops shipping. It first delivers what the spool holds, until ctx
// is done; what is left stays in the spool for the next start. It does not
// close the spool.
func (s *Shipper) Close(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
	s.cancel()
	return s.w.Load().close()
}

func (s *Shipper) run() {
	defer close(s.done)
	var entries []Entry
	var msgs []kafka.Message
	for {
		p := s.w.Load()
		var next Pos
		var err error
		entries, next, err = s.spool.Read(s.stop, entries[:0], p.cfg.BatchSize, readBytes(p.cfg.BatchSize))
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				s.logger.Error("reading spool", zap.Error(err))
			}
			return
		}
		if len(entries) == 0 {
			return // stopped and nothing left
		}
		if len(entries) < p.cfg.BatchSize && p.cfg.BatchTimeout > 0 {
			if s.linger(entries[0].Appended.Add(p.cfg.BatchTimeout)) {
				// The same records from the cursor, and those since.
				if entries, next, err = s.spool.Read(s.stop, entries[:0], p.cfg.BatchSize, readBytes(p.cfg.BatchSize)); err != nil {
					continue // reported by the next read
				}
			}
		}
		msgs = msgs[:0]
		for _, e := range entries {
			key := e.Key
			if len(key) == 0 {
				key = nil // no visitor ID: spread over the partitions, not all on murmur2("")
			}
			msgs = append(msgs, kafka.Message{Key: key, Value: e.Value})
		}
		if !s.write(msgs) {
			return // aborted: the batch stays in the spool
		}
		if err := s.spool.Ack(next); err != nil {
			s.logger.Error("saving spool cursor", zap.Error(err))
		}
	}
}

// linger waits until t, or until the shipper is told to stop; it reports
// whether it waited.
func (s *Shipper) linger(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-s.stop:
	}
	return true
}

// readBytes bounds the records' bytes in one write of up to batchSize
// records. With the record batch's framing (its header, and at most 16
// bytes a record for lengths and deltas) an uncompressed partition batch
// stays under the broker's default message.max.bytes (1 MiB + 12 bytes).
func readBytes(batchSize int) int {
	return max(1<<20-16*batchSize-4<<10, 64<<10)
}

// write delivers batch, retrying with backoff until Kafka acknowledged
// every record. After a partial failure only the failed records are sent
// again (a partition's records succeed or fail together), so a retry
// duplicates nothing known to be written and keeps each partition's
// records in order. It returns false when the flush deadline passed first.
func (s *Shipper) write(batch []kafka.Message) bool {
	backoff := 50 * time.Millisecond
	for len(batch) > 0 {
		p := s.w.Load()
		if cap(s.errs) < len(batch) {
			s.errs = make([]error, len(batch))
		}
		errs := s.errs[:len(batch)]
		ctx, cancel := context.WithTimeout(s.abort, p.cfg.WriteTimeout)
		err := p.send(ctx, batch, errs)
		cancel()
		if err == nil {
			s.failing.Store(false)
			s.stats.Writes.Add(1)
			s.stats.Shipped.Add(uint64(len(batch)))
			s.errLog.recovered("kafka writes recovered", zap.String("topic", p.cfg.Topic))
			return true
		}
		s.stats.WriteErrors.Add(1)
		s.failing.Store(true)
		s.errLog.log("writing to kafka", err, zap.String("topic", p.cfg.Topic), zap.Int("records", len(batch)))
		failed := batch[:0]
		for i, e := range errs {
			if e != nil {
				failed = append(failed, batch[i])
			}
		}
		if len(failed) < len(batch) {
			s.stats.Writes.Add(1)
			s.stats.Shipped.Add(uint64(len(batch) - len(failed)))
		}
		batch = failed
		if len(batch) == 0 {
			return true
		}
		t := time.NewTimer(backoff)
		select {
		case <-s.abort.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return true
}
