package logship

import (
	"testing"

	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/compress/snappy"
)

func TestAProducerSetsStandardSnappy(t *testing.T) {
	t.Parallel()
	p, err := newProducer(Config{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if got := compress.SnappyCodec.Compression; got != snappy.FasterCompression {
		t.Fatalf("kafka-go's snappy level is %v, want standard snappy's (FasterCompression)", got)
	}
}
