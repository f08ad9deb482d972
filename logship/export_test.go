package logship

import (
	"context"

	"github.com/segmentio/kafka-go"
)

// What the benchmarks of package logship_test (writer_bench_test.go) use
// of the package's insides. They compare the shipper's producer with the
// reference Writer of internal/refwriter, which imports logship: so they
// cannot be in package logship.

// Topic is the tests' topic.
const Topic = topic

// BenchRecord is a typical beacon record; BenchKeys returns visitor IDs.
var (
	BenchRecord = benchRecord
	BenchKeys   = benchKeys
)

// Producer is the shipper's producer.
type Producer = producer

// NewProducer is newProducer.
func NewProducer(cfg Config) (*Producer, error) { return newProducer(cfg) }

// Send is send.
func (p *producer) Send(ctx context.Context, msgs []kafka.Message, errs []error) error {
	return p.send(ctx, msgs, errs)
}

// Close is close.
func (p *producer) Close() error { return p.close() }
