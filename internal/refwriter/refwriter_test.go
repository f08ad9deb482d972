package refwriter

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/compress/snappy"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/b2scom/b2s-edge/logship"
)

func TestTheWriterHasTheShippersSettings(t *testing.T) {
	w, err := New(logship.Config{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Topic != logship.DefaultTopic || w.BatchSize != logship.DefaultBatchSize || w.Compression != kafka.Snappy ||
		w.RequiredAcks != kafka.RequireAll || w.BatchTimeout != time.Microsecond {
		t.Errorf("topic %q, batch size %d, compression %v, acks %v, batch timeout %v",
			w.Topic, w.BatchSize, w.Compression, w.RequiredAcks, w.BatchTimeout)
	}
	if _, ok := w.Balancer.(*kafka.Murmur2Balancer); !ok {
		t.Errorf("balancer %T, want murmur2", w.Balancer)
	}
	tr, ok := w.Transport.(*kafka.Transport)
	if !ok || tr.MetadataTTL != time.Second || tr.TLS != nil {
		t.Errorf("transport %#v, want its own, plaintext, with a 1s metadata TTL", w.Transport)
	}
	if got := compress.SnappyCodec.Compression; got != snappy.FasterCompression {
		t.Errorf("kafka-go's snappy level is %v, want the shipper's (FasterCompression)", got)
	}
}

func TestTheWriterConnectsWithTLSAndRefusesSASL(t *testing.T) {
	conf := &tls.Config{ServerName: "broker.test"}
	w, err := New(logship.Config{Brokers: []string{"127.0.0.1:9093"}, TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if tr := w.Transport.(*kafka.Transport); tr.TLS == nil || tr.TLS == conf || tr.TLS.ServerName != "broker.test" {
		t.Errorf("transport TLS %#v, want a copy of the configuration", tr.TLS)
	}
	_, err = New(logship.Config{Brokers: []string{"127.0.0.1:9093"},
		SASL: &logship.SASL{Mechanism: logship.SASLPlain, Username: "u", Password: "p"}})
	if err == nil || !strings.Contains(err.Error(), "SASL is not supported") {
		t.Errorf("SASL: %v, want it refused", err)
	}
	if _, err := New(logship.Config{}); err == nil {
		t.Error("a configuration without brokers was accepted")
	}
}

func TestTheWriterUsesTheCallersTransportAndWrites(t *testing.T) {
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, logship.DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tr := &kafka.Transport{MetadataTTL: time.Second}
	defer tr.CloseIdleConnections()
	w, err := New(logship.Config{Brokers: cl.ListenAddrs(), Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Transport != tr {
		t.Fatalf("transport %p, want the caller's %p", w.Transport, tr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("visitor"), Value: []byte("record")}); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats().Messages; got != 1 {
		t.Errorf("%d messages written, want 1", got)
	}
}
