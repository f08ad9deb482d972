package logship

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
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
	// QueueSize is how many records may wait in memory. Default 65536.
	QueueSize int
	// BatchSize is the most records written in one request. Default 1000.
	BatchSize int
	// BatchTimeout is how long kafka-go waits to fill a partition's batch.
	// Default 1ms: the shipper already batches, so a longer wait only adds
	// latency to every synchronous write.
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
	// Transport overrides kafka-go's transport (TLS, SASL, dialer).
	Transport kafka.RoundTripper
}

// Defaults.
const (
	DefaultTopic       = "b2s.events"
	DefaultCompression = "snappy"
	DefaultQueueSize   = 65536
	DefaultBatchSize   = 1000
)

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = time.Millisecond
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

// Shipper queues records and writes them to Kafka in the background.
type Shipper struct {
	cfg    Config
	w      *kafka.Writer
	stats  *Stats
	queue  chan Message
	mu     sync.RWMutex // guards closed against Put, so nothing enters after Close
	closed bool
	stop   chan struct{}   // closed by Close: drain what is queued, then exit
	abort  context.Context // cancelled when the flush timeout runs out
	cancel context.CancelFunc
	done   chan struct{}
	errLog rateLimitedLog
}

// New validates cfg and starts a Shipper. It does not connect: a broker
// that is down or a topic that does not exist yet shows up as write
// errors, retried until they clear.
func New(cfg Config) (*Shipper, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	codec, _ := ParseCompression(cfg.Compression)
	w := &kafka.Writer{
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
		Transport:       cfg.Transport,
	}
	s := &Shipper{
		cfg:    cfg,
		w:      w,
		stats:  cfg.Stats,
		queue:  make(chan Message, cfg.QueueSize),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		errLog: rateLimitedLog{logger: cfg.Logger, every: cfg.LogInterval},
	}
	s.abort, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Put queues m without blocking. It returns false, and counts the drop,
// when the queue is full or the shipper is closed.
func (s *Shipper) Put(m Message) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.stats.DroppedClosed.Add(1)
		return false
	}
	select {
	case s.queue <- m:
		s.stats.Accepted.Add(1)
		s.stats.Queued.Add(1)
		return true
	default:
		s.stats.DroppedFull.Add(1)
		return false
	}
}

// Close stops taking records and delivers what is queued, waiting until
// ctx is done at the latest. Records still queued then are counted as
// dropped and logged. Close is safe to call more than once.
func (s *Shipper) Close(ctx context.Context) error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if !already {
		close(s.stop)
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
	s.cancel()
	return s.w.Close()
}

func (s *Shipper) run() {
	defer close(s.done)
	batch := make([]kafka.Message, 0, s.cfg.BatchSize)
	for {
		batch = batch[:0]
		select {
		case m := <-s.queue:
			batch = append(batch, toKafka(m))
		case <-s.stop:
			// Deliver the rest, then exit.
			for {
				batch = s.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				if !s.write(batch) {
					s.dropRemaining(len(batch))
					return
				}
			}
		}
		batch = s.fill(batch)
		if !s.write(batch) {
			s.dropRemaining(len(batch))
			return
		}
	}
}

// fill takes queued records without waiting, up to the batch size.
func (s *Shipper) fill(batch []kafka.Message) []kafka.Message {
	for len(batch) < s.cfg.BatchSize {
		select {
		case m := <-s.queue:
			batch = append(batch, toKafka(m))
		default:
			return batch
		}
	}
	return batch
}

// dropRemaining counts what could not be delivered before the flush
// timeout: the batch in hand and everything still queued.
func (s *Shipper) dropRemaining(inBatch int) {
	n := inBatch + len(s.queue)
	for len(s.queue) > 0 {
		<-s.queue
	}
	s.stats.DroppedClosed.Add(uint64(n))
	s.stats.Queued.Add(-int64(n))
	s.cfg.Logger.Error("kafka unreachable at shutdown, records dropped",
		zap.Int("records", n), zap.String("topic", s.cfg.Topic))
}

// write delivers batch, retrying with backoff until Kafka acknowledged
// every record. After a partial failure only the failed records are sent
// again, so a retry duplicates nothing kafka-go knew was written. It
// returns false when the flush timeout ran out first.
func (s *Shipper) write(batch []kafka.Message) bool {
	backoff := 100 * time.Millisecond
	for len(batch) > 0 {
		ctx, cancel := context.WithTimeout(s.abort, s.cfg.WriteTimeout)
		err := s.w.WriteMessages(ctx, batch...)
		cancel()
		if err == nil {
			s.delivered(len(batch))
			s.errLog.recovered("kafka writes recovered", zap.String("topic", s.cfg.Topic))
			return true
		}
		s.stats.WriteErrors.Add(1)
		s.errLog.log("writing to kafka", err, zap.String("topic", s.cfg.Topic), zap.Int("records", len(batch)))
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(batch) {
			failed := batch[:0]
			for i, e := range werrs {
				if e != nil {
					failed = append(failed, batch[i])
				}
			}
			s.delivered(len(batch) - len(failed))
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

func (s *Shipper) delivered(n int) {
	s.stats.Shipped.Add(uint64(n))
	s.stats.Queued.Add(-int64(n))
}

func toKafka(m Message) kafka.Message {
	return kafka.Message{Key: []byte(m.Key), Value: m.Value}
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
