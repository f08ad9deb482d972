package logship

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
)

// abandoningTransport answers metadata with one partition, and a produce
// request as kafka-go's Transport does on a timeout: at once, with the
// context's error, keeping the request, which its connection's goroutine
// would still be encoding. During the call it reads the first record, as
// that goroutine may have done by then.
type abandoningTransport struct {
	kept      *produceAPI.Request
	readEarly string // the first record's value, read during RoundTrip
}

func (t *abandoningTransport) RoundTrip(_ context.Context, _ net.Addr, req protocol.Message) (protocol.Message, error) {
	switch r := req.(type) {
	case *metadataAPI.Request:
		return &metadataAPI.Response{Topics: []metadataAPI.ResponseTopic{{Name: r.TopicNames[0],
			Partitions: []metadataAPI.ResponsePartition{{PartitionIndex: 0, LeaderID: 1}}}}}, nil
	case *produceAPI.Request:
		t.kept = r
		rec, err := r.Topics[0].Partitions[0].RecordSet.Records.ReadRecord()
		if err == nil {
			b, _ := io.ReadAll(rec.Value)
			t.readEarly = string(b)
		}
		return nil, context.DeadlineExceeded
	}
	return nil, errors.New("unexpected request")
}

// TestAnAbandonedProduceRequestReadsNoMoreRecords checks that a produce
// request its write gave up on (kafka-go's RoundTrip returned on a timeout
// while the connection may still be encoding it) reads none of the
// caller's records once the write has returned: the shipper then reuses
// them (retry, compaction, quarantine), and an encoding still under way
// must fail rather than send records changed under it. The control is the
// record read while the write was still in RoundTrip, which succeeds.
func TestAnAbandonedProduceRequestReadsNoMoreRecords(t *testing.T) {
	tr := &abandoningTransport{}
	p, err := newProducer(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []kafka.Message{{Value: []byte("first")}, {Value: []byte("second")}, {Value: []byte("third")}}
	errs := make([]error, len(msgs))
	if err := p.send(context.Background(), msgs, errs); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send = %v, want the transport's deadline error", err)
	}
	if tr.readEarly != "first" {
		t.Fatalf("control: the record read during RoundTrip = %q, want first", tr.readEarly)
	}
	msgs[1].Value = []byte("changed by the shipper after the write returned")
	rec, err := tr.kept.Topics[0].Partitions[0].RecordSet.Records.ReadRecord()
	if !errors.Is(err, errSendEnded) {
		var v []byte
		if rec != nil {
			v, _ = io.ReadAll(rec.Value)
		}
		t.Errorf("after the write returned, the abandoned request read %q (error %v), want errSendEnded", v, err)
	}
	if v := tr.kept.Topics[0].Partitions[0].RecordSet.Version; v != 2 {
		t.Errorf("record set version %d, want 2 set by the producer (else Prepare writes it on the connection's goroutine)", v)
	}
}
