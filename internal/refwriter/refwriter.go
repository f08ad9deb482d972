// Package refwriter builds the reference that the shipper's benchmarks
// (logship's BenchmarkShipFromMemory, bench/cmd/shipbench) compare it
// with: kafka-go's Writer with the shipper's settings. It is for
// benchmarks only and is not part of the product, which ships with
// logship.Shipper.
package refwriter

import (
	"errors"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/compress/snappy"

	"github.com/b2scom/b2s-edge/logship"
)

// New returns a kafka-go Writer with the shipper's settings (acks
// from every in-sync replica, murmur2, the codec, BatchSize records per
// partition batch), the reference that measurements compare the shipper
// with. Its BatchTimeout is 1µs, the Writer's best for calls that hand it
// whole batches and wait (measured, docs/spool.md); cfg.BatchTimeout, the
// shipper's linger, does not apply. When cfg.Transport is nil the writer has a transport of
// its own, which closing the writer does not close: set cfg.Transport to
// own it. That transport refreshes metadata every second, as the
// shipper's does, and connects with cfg.TLS. cfg.SASL is refused: for
// SASL, put a kafka.Transport with its mechanism in cfg.Transport.
//
// Snappy is compressed at the shipper's level: New sets kafka-go's
// process-wide snappy codec as the shipper's producer does (see
// setSnappyLevel in logship/compression.go for why).
func New(cfg logship.Config) (*kafka.Writer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SASL != nil {
		return nil, errors.New("refwriter: SASL is not supported; put a kafka.Transport with its SASL mechanism in Config.Transport instead")
	}
	snappyLevelOnce.Do(func() { compress.SnappyCodec.Compression = snappy.FasterCompression })
	codec, _ := logship.ParseCompression(cfg.Compression)
	transport := cfg.Transport
	if transport == nil {
		transport = &kafka.Transport{MetadataTTL: time.Second, TLS: cfg.TLS.Clone()}
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

var snappyLevelOnce sync.Once
