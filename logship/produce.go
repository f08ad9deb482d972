package logship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
)

// The shipper produces through kafka-go's Transport rather than its Writer.
// The Writer is built for many goroutines each writing a few messages: it
// keeps a batch per partition, filled until it is full or its timer fires,
// sent in a produce request of its own. The shipper writes from one
// goroutine, a spool read at a time, and waits for the acknowledgement, so
// none of that machinery helps it, and some of it costs: every partition
// batch starts with room for BatchSize messages (1000 x 152 bytes), however
// few it gets. Under live traffic a spool read holds a few dozen records,
// and each write then left ~900 KB of garbage to the collector for 6
// partitions (~58 KB per record at 16 records a write, measured), which the
// request path paid for in garbage collection. Here one write is one
// produce request per partition leader (one in all, with one broker),
// carrying each partition's records as one record batch, so a partition's
// records are written, or fail, together and in order; the cost of a write
// is a few dozen allocations whatever the number of records.

// producer is one Kafka configuration in use. Its writes go through
// kafka-go's Transport (send, below); one write at a time.
type producer struct {
	cfg        Config
	rt         kafka.RoundTripper
	addr       net.Addr
	own        *kafka.Transport // created here, so closed here; nil when cfg.Transport is the caller's
	attributes protocol.Attributes
	// Murmur2 is the Java client's default partitioner, which franz-go
	// and librdkafka (murmur2_random) reproduce: a key lands in the same
	// partition whichever client wrote it. Records without a key are
	// spread at random.
	balancer kafka.Murmur2Balancer

	mu         sync.Mutex // held by a write; close waits for it
	partitions []int      // 0..n-1 for the balancer
	byPart     [][]int32  // per partition, the indexes of its records
	reqs       []leaderRequest
}

// close waits for a write in flight and closes the producer's connections.
func (p *producer) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
	return nil
}

func newProducer(cfg Config) (*producer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	setSnappyLevel()
	codec, _ := ParseCompression(cfg.Compression)
	p := &producer{cfg: cfg, rt: cfg.Transport, addr: kafka.TCP(cfg.Brokers...), attributes: protocol.Attributes(codec) & 7}
	if p.rt == nil {
		p.own = newTransport(cfg)
		p.rt = p.own
	}
	return p, nil
}

// newTransport is the transport of a producer that was not given one.
// Metadata is refreshed every second rather than kafka-go's 6s, so
// shipping resumes within a second of a broker coming back. Each producer
// has its own, so that a reload to other brokers or other credentials
// closes the connections made with the old ones.
func newTransport(cfg Config) *kafka.Transport {
	t := &kafka.Transport{MetadataTTL: time.Second}
	if cfg.TLS != nil {
		t.TLS = cfg.TLS.Clone()
	}
	if cfg.SASL != nil {
		t.SASL, _ = cfg.SASL.mechanism() // checked by Validate
	}
	return t
}

// errUnsent marks a record not written yet.
var errUnsent = errors.New("not written")

// errPartitionMissing is a partition's result when the broker's response
// does not mention it.
var errPartitionMissing = errors.New("partition missing from the produce response")

// send writes msgs and reports each record's outcome in errs (len(msgs)):
// nil when acknowledged, else its partition's error. It returns the last
// error when a record is unacknowledged; the shipper backs off and sends
// those again.
func (p *producer) send(ctx context.Context, msgs []kafka.Message, errs []error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range errs {
		errs[i] = errUnsent // until its partition's answer says otherwise
	}
	// Asked on every write, but not a round trip per write: kafka-go's
	// Transport answers a metadata request that does not ask for topic
	// creation from the cluster metadata it caches, filtered to the topics
	// named (one it does not know comes back as UnknownTopicOrPartition).
	// A goroutine of the Transport refreshes that cache from a broker after
	// a random delay of up to MetadataTTL each time (1s, see newTransport),
	// and keeps the last metadata when a refresh fails; until one has
	// succeeded, the answer is the last refresh's error. Only the first
	// request on a new Transport waits for its first refresh. See
	// connPool.roundTrip, discover and update in kafka-go's transport.go.
	r, err := p.rt.RoundTrip(ctx, p.addr, &metadataAPI.Request{TopicNames: []string{p.cfg.Topic}})
	if err != nil {
		return p.failAll(errs, fmt.Errorf("reading the topic's metadata: %w", err))
	}
	meta, ok := r.(*metadataAPI.Response)
	if !ok {
		return p.failAll(errs, fmt.Errorf("metadata request answered with %T", r))
	}
	var topic *metadataAPI.ResponseTopic
	for i := range meta.Topics {
		if t := &meta.Topics[i]; t.Name == p.cfg.Topic {
			topic = t
		}
	}
	switch {
	case topic == nil:
		return p.failAll(errs, fmt.Errorf("topic %q: %w", p.cfg.Topic, kafka.UnknownTopicOrPartition))
	case topic.ErrorCode != 0:
		return p.failAll(errs, fmt.Errorf("topic %q: %w", p.cfg.Topic, kafka.Error(topic.ErrorCode)))
	case len(topic.Partitions) == 0:
		return p.failAll(errs, fmt.Errorf("topic %q has no partitions", p.cfg.Topic))
	}

	// Each record to its partition, in order.
	n := len(topic.Partitions)
	if len(p.partitions) != n {
		p.partitions = make([]int, n)
		for i := range p.partitions {
			p.partitions[i] = i
		}
		p.byPart = make([][]int32, n)
	}
	for i := range p.byPart {
		p.byPart[i] = p.byPart[i][:0]
	}
	for i := range msgs {
		part := p.balancer.Balance(msgs[i], p.partitions...)
		p.byPart[part] = append(p.byPart[part], int32(i))
	}

	// One request per leader; the partitions of a leader share it. Their
	// record readers share guard, ended before send returns.
	guard := new(sendGuard)
	defer guard.end()
	reqs := p.reqs[:0]
	for _, tp := range topic.Partitions {
		if tp.PartitionIndex < 0 || int(tp.PartitionIndex) >= n {
			continue // not one the balancer assigns: its records stay unsent and are retried
		}
		idx := p.byPart[tp.PartitionIndex]
		if len(idx) == 0 {
			continue
		}
		var req *leaderRequest
		for i := range reqs {
			if reqs[i].leader == tp.LeaderID {
				req = &reqs[i]
			}
		}
		if req == nil {
			if len(reqs) < cap(reqs) {
				reqs = reqs[:len(reqs)+1] // keeps the parts slice of an earlier write
			} else {
				reqs = append(reqs, leaderRequest{})
			}
			req = &reqs[len(reqs)-1]
			req.leader, req.parts = tp.LeaderID, req.parts[:0]
		}
		req.parts = append(req.parts, produceAPI.RequestPartition{
			Partition: tp.PartitionIndex,
			RecordSet: protocol.RecordSet{
				// Set, so that the request's Prepare (which sets it when
				// 0, on the connection's goroutine) writes nothing of ours.
				Version:    2,
				Attributes: p.attributes,
				Records:    &recordReader{msgs: msgs, idx: idx, guard: guard},
			},
		})
	}
	p.reqs = reqs

	if len(reqs) == 1 {
		p.produce(ctx, &reqs[0], msgs, errs)
	} else {
		var wg sync.WaitGroup
		for i := range reqs {
			wg.Go(func() { p.produce(ctx, &reqs[i], msgs, errs) })
		}
		wg.Wait()
	}
	var last error
	for _, e := range errs {
		if e != nil {
			last = e
		}
	}
	if last != nil {
		// A request that failed may still be being encoded by the
		// connection's goroutine (RoundTrip returns on a timeout or a
		// cancelled context without waiting for it), reading its parts
		// and index slices: the next write makes new ones rather than
		// reusing them. Failures are rare; the allocation with them.
		p.reqs, p.byPart, p.partitions = nil, nil, nil
	}
	return last
}

// leaderRequest is one produce request: the partitions one broker leads.
type leaderRequest struct {
	leader int32
	parts  []produceAPI.RequestPartition
}

// produce sends req and records each partition's outcome in errs. Requests
// to different leaders run in parallel; each writes only its own records'
// entries.
func (p *producer) produce(ctx context.Context, req *leaderRequest, msgs []kafka.Message, errs []error) {
	// settle sets the outcome of a partition's records: nil (written) or
	// the error.
	settle := func(part produceAPI.RequestPartition, err error) {
		for _, i := range part.RecordSet.Records.(*recordReader).idx {
			errs[i] = err
		}
	}
	timeout := p.cfg.WriteTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	r, err := p.rt.RoundTrip(ctx, p.addr, &produceAPI.Request{
		Acks:    int16(kafka.RequireAll),
		Timeout: int32(max(timeout.Milliseconds(), 1)),
		Topics:  []produceAPI.RequestTopic{{Topic: p.cfg.Topic, Partitions: req.parts}},
	})
	if err != nil {
		for _, part := range req.parts {
			settle(part, err)
		}
		return
	}
	res, ok := r.(*produceAPI.Response)
	if !ok {
		for _, part := range req.parts {
			settle(part, fmt.Errorf("produce request answered with %T", r))
		}
		return
	}
	for _, part := range req.parts {
		result := errPartitionMissing
		for _, t := range res.Topics {
			if t.Topic != p.cfg.Topic {
				continue
			}
			for _, rp := range t.Partitions {
				if rp.Partition == part.Partition {
					result = nil
					if rp.ErrorCode != 0 {
						result = &partitionError{partition: rp.Partition, code: kafka.Error(rp.ErrorCode), message: rp.ErrorMessage}
					}
				}
			}
		}
		settle(part, result)
	}
}

// partitionError is a broker's answer refusing a partition's records.
type partitionError struct {
	partition int32
	code      kafka.Error
	message   string // the broker's own words, from produce v8 on; may be empty
}

func (e *partitionError) Error() string {
	if e.message != "" {
		return fmt.Sprintf("partition %d: %v: %s", e.partition, e.code, e.message)
	}
	return fmt.Sprintf("partition %d: %v", e.partition, e.code)
}

func (e *partitionError) Unwrap() error { return e.code }

func (p *producer) failAll(errs []error, err error) error {
	for i := range errs {
		errs[i] = err
	}
	return err
}

// sendGuard ends the reading of the caller's records by the requests of
// one send. kafka-go's RoundTrip returns on a timeout or a cancelled
// context without waiting for the connection's goroutine, which may still
// be encoding the request, reading msgs through its recordReaders; the
// shipper then reuses msgs (to retry, compact, quarantine). Once end has
// run, under mu, ReadRecord reads nothing more and fails that encoding, so
// such a request cannot send records the caller has since changed.
type sendGuard struct {
	mu    sync.Mutex
	ended bool
}

func (g *sendGuard) end() {
	g.mu.Lock()
	g.ended = true
	g.mu.Unlock()
}

// errSendEnded fails the encoding of a request its send gave up on.
var errSendEnded = errors.New("produce request abandoned: its write already returned")

// recordReader hands kafka-go one partition's records, msgs[idx...], in
// order, without copying them.
type recordReader struct {
	msgs       []kafka.Message
	idx        []int32
	guard      *sendGuard
	next       int
	record     protocol.Record
	key, value bytesReader
}

func (r *recordReader) ReadRecord() (*protocol.Record, error) {
	r.guard.mu.Lock()
	defer r.guard.mu.Unlock()
	if r.guard.ended {
		return nil, errSendEnded
	}
	if r.next >= len(r.idx) {
		return nil, io.EOF
	}
	m := &r.msgs[r.idx[r.next]]
	r.next++
	r.record = protocol.Record{}
	if m.Key != nil {
		r.key.Reset(m.Key)
		r.record.Key = &r.key
	}
	r.value.Reset(m.Value)
	r.record.Value = &r.value
	return &r.record, nil
}

type bytesReader struct{ bytes.Reader }

func (*bytesReader) Close() error { return nil }
