package logship

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
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
	// Quarantine is the file where records Kafka refuses for good (too
	// large for the topic, invalid) are appended, one JSON line each, so
	// that the records behind them ship on; docs/spool.md gives the
	// format and how to send them again. It holds the records' keys and
	// values, visitor IDs and IP addresses among them, and is created
	// with mode 0600. Default: quarantine.jsonl in the spool's directory.
	Quarantine string
	// QuarantineMaxSize bounds the quarantine file, in bytes: a record
	// that would grow it beyond is dropped and counted in
	// Stats.QuarantineDropped. Default 64 MiB.
	QuarantineMaxSize int64
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
	if c.QuarantineMaxSize <= 0 {
		c.QuarantineMaxSize = DefaultQuarantineMaxSize
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
