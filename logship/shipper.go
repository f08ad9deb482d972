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

// Message is one record on its way to Kafka.
type Message struct {
	// Key is the Kafka message key: the visitor's cookie ID, so that one
	// visitor's records stay in one partition, in order.
	Key string
	// Value is the encoded record.
	Value []byte
}

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
	// BatchTimeout is how long kafka-go waits to fill a partition's batch.
	// Default 1µs: the shipper hands kafka-go each batch whole, as read
	// from the spool, and waits for it to be acknowledged, so nothing more
	// can join a batch and any wait only delays every write. kafka-go adds
	// a call's records for a partition under one lock, so even this short
	// a timer sends all of them together. (At 1ms, each 1000-record write
	// to 6 partitions waited out the timer: shipping through the spool ran
	// at about three quarters of its speed at 1µs, measured.)
	BatchTimeout time.Duration
	// WriteTimeout bounds one write attempt, acknowledgement included.
	// Default 10s.
	WriteTimeout time.Duration
	// MaxAttempts is how many times kafka-go tries a write before the
	// shipper backs off and tries again itself. Default 3.
	MaxAttempts int
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
	DefaultBatchTimeout = time.Microsecond
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
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
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
}

// Failing reports whether the last write to Kafka failed, so records are
// waiting in the spool for Kafka to come back.
func (s *Shipper) Failing() bool { return s.failing.Load() }

// producer is one Kafka configuration in use.
type producer struct {
	cfg Config
	w   *kafka.Writer
	own *kafka.Transport // created here, so closed here; nil when cfg.Transport is the caller's
}

// close waits for writes in flight and closes the producer's connections.
func (p *producer) close() error {
	err := p.w.Close()
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
	return err
}

func newProducer(cfg Config) (*producer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	codec, _ := ParseCompression(cfg.Compression)
	transport, own := cfg.Transport, (*kafka.Transport)(nil)
	if transport == nil {
		// Metadata refreshed every second rather than kafka-go's 6s, so
		// shipping resumes within a second of a broker coming back. Its
		// own transport, so that a reload to other brokers or other
		// credentials closes the connections made with the old ones.
		own = &kafka.Transport{MetadataTTL: time.Second}
		if cfg.TLS != nil {
			own.TLS = cfg.TLS.Clone()
		}
		if cfg.SASL != nil {
			own.SASL, _ = cfg.SASL.mechanism() // checked by Validate
		}
		transport = own
	}
	return &producer{cfg: cfg, own: own, w: &kafka.Writer{
		Addr:  kafka.TCP(cfg.Brokers...),
		Topic: cfg.Topic,
		// Murmur2 is the Java client's default partitioner, which
		// franz-go and librdkafka (murmur2_random) reproduce: a key lands
		// in the same partition whichever client wrote it.
		Balancer: &kafka.Murmur2Balancer{},
		// Every in-sync replica must acknowledge: a record is only
		// counted shipped when losing one broker cannot lose it.
		RequiredAcks:    kafka.RequireAll,
		MaxAttempts:     cfg.MaxAttempts,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
		BatchSize:       cfg.BatchSize,
		BatchBytes:      1 << 20,
		BatchTimeout:    cfg.BatchTimeout,
		ReadTimeout:     cfg.WriteTimeout,
		WriteTimeout:    cfg.WriteTimeout,
		Compression:     codec,
		Transport:       transport,
	}}, nil
}

// NewWriter returns the kafka-go Writer a Shipper would use for cfg, for
// callers that measure or compare against it with the same settings.
// When cfg.Transport is nil the writer has a transport of its own, which
// closing the writer does not close: set cfg.Transport to own it.
func NewWriter(cfg Config) (*kafka.Writer, error) {
	p, err := newProducer(cfg)
	if err != nil {
		return nil, err
	}
	return p.w, nil
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
		entries, next, err = s.spool.Read(s.stop, entries[:0], p.cfg.BatchSize, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				s.logger.Error("reading spool", zap.Error(err))
			}
			return
		}
		if len(entries) == 0 {
			return // stopped and nothing left
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

// write delivers batch, retrying with backoff until Kafka acknowledged
// every record. After a partial failure only the failed records are sent
// again, so a retry duplicates nothing kafka-go knew was written. It
// returns false when the flush deadline passed first.
func (s *Shipper) write(batch []kafka.Message) bool {
	backoff := 100 * time.Millisecond
	for len(batch) > 0 {
		p := s.w.Load()
		ctx, cancel := context.WithTimeout(s.abort, p.cfg.WriteTimeout)
		err := p.w.WriteMessages(ctx, batch...)
		cancel()
		if err == nil {
			s.failing.Store(false)
			s.stats.Shipped.Add(uint64(len(batch)))
			s.errLog.recovered("kafka writes recovered", zap.String("topic", p.cfg.Topic))
			return true
		}
		s.stats.WriteErrors.Add(1)
		s.failing.Store(true)
		s.errLog.log("writing to kafka", err, zap.String("topic", p.cfg.Topic), zap.Int("records", len(batch)))
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(batch) {
			failed := batch[:0]
			for i, e := range werrs {
				if e != nil {
					failed = append(failed, batch[i])
				}
			}
			s.stats.Shipped.Add(uint64(len(batch) - len(failed)))
			batch = failed
			if len(batch) == 0 {
				return true
			}
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

// rateLimitedLog logs the first error and then at most one line per
// interval, with the number of errors it held back.
type rateLimitedLog struct {
	logger     *zap.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
	failing    bool
}

// recovered logs msg once after a run of errors.
func (l *rateLimitedLog) recovered(msg string, fields ...zap.Field) {
	l.mu.Lock()
	was := l.failing
	l.failing, l.last, l.suppressed = false, time.Time{}, 0
	l.mu.Unlock()
	if was {
		l.logger.Info(msg, fields...)
	}
}

func (l *rateLimitedLog) log(msg string, err error, fields ...zap.Field) {
	l.mu.Lock()
	l.failing = true
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	l.logger.Error(msg, append(fields, zap.Error(err), zap.Int("suppressed", n))...)
}
