package logship_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/b2scom/b2s-edge/internal/refwriter"
	"github.com/b2scom/b2s-edge/logship"
)

// BenchmarkShipFromMemory writes records straight from memory, in writes
// of 1000 (a spool read under backlog) and of 16 (a read under live
// traffic, where the spool holds what arrived during the previous write):
// with kafka-go's Writer and the shipper's settings (the reference,
// internal/refwriter), and with the shipper's own producer. B/op and
// allocs/op are per write.
func BenchmarkShipFromMemory(b *testing.B) {
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, logship.Topic))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	keys := logship.BenchKeys()
	for _, n := range []int{1000, 16} {
		msgs := make([]kafka.Message, n)
		fill := func(i int) {
			for k := range msgs {
				msgs[k] = kafka.Message{Key: []byte(keys[(i*n+k)%len(keys)]), Value: logship.BenchRecord}
			}
		}
		report := func(b *testing.B) {
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
		}
		b.Run(fmt.Sprintf("client=writer/records=%d", n), func(b *testing.B) {
			w, err := refwriter.New(logship.Config{Brokers: cl.ListenAddrs()})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				fill(i)
				if err := w.WriteMessages(context.Background(), msgs...); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(fmt.Sprintf("client=shipper/records=%d", n), func(b *testing.B) {
			p, err := logship.NewProducer(logship.Config{Brokers: cl.ListenAddrs()})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			errs := make([]error, n)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				fill(i)
				if err := p.Send(context.Background(), msgs, errs); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
}
