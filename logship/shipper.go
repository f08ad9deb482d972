package logship

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

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
	// q is the quarantine file, the shipper goroutine's; see quarantine.go.
	q             quarantine
	quarantineLog rateLimitedLog // records quarantined, at Warn
	dropLog       rateLimitedLog // records the quarantine could not take
	// failing is set while Kafka refuses writes: the last attempt failed.
	failing atomic.Bool
	errs    []error // each record's outcome in a write, reused
}

// Failing reports whether the last write to Kafka failed, so records are
// waiting in the spool for Kafka to come back.
func (s *Shipper) Failing() bool { return s.failing.Load() }

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
	s.quarantineLog = rateLimitedLog{logger: cfg.Logger, every: cfg.LogInterval}
	s.dropLog = rateLimitedLog{logger: cfg.Logger, every: cfg.LogInterval}
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
	defer s.q.close()
	var entries []Entry
	var msgs []kafka.Message
	for {
		p := s.w.Load()
		var next Pos
		var err error
		entries, next, err = s.spool.Read(s.stop, entries[:0], p.cfg.BatchSize, readBytes(p.cfg.BatchSize))
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				s.logger.Error("reading spool", zap.Error(err))
			}
			return
		}
		if len(entries) == 0 {
			return // stopped and nothing left
		}
		if len(entries) < p.cfg.BatchSize && p.cfg.BatchTimeout > 0 {
			if s.linger(entries[0].Appended.Add(p.cfg.BatchTimeout)) {
				// The same records from the cursor, and those since.
				if entries, next, err = s.spool.Read(s.stop, entries[:0], p.cfg.BatchSize, readBytes(p.cfg.BatchSize)); err != nil {
					continue // reported by the next read
				}
			}
		}
		msgs = msgs[:0]
		for _, e := range entries {
			key := e.Key
			if len(key) == 0 {
				key = nil // no visitor ID: spread over the partitions, not all on murmur2("")
			}
			msgs = append(msgs, kafka.Message{Key: key, Value: e.Value, Time: e.Appended})
		}
		if !s.write(msgs) {
			return // aborted: the batch stays in the spool
		}
		if err := s.spool.Ack(next); err != nil {
			s.logger.Error("saving spool cursor", zap.Error(err))
		}
	}
}

// linger waits until t, or until the shipper is told to stop; it reports
// whether it waited.
func (s *Shipper) linger(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-s.stop:
	}
	return true
}

// readBytes bounds the records' bytes in one write of up to batchSize
// records. With the record batch's framing (its header, and at most 16
// bytes a record for lengths and deltas) an uncompressed partition batch
// stays under the broker's default message.max.bytes (1 MiB + 12 bytes).
func readBytes(batchSize int) int {
	return max(1<<20-16*batchSize-4<<10, 64<<10)
}

// write delivers batch, retrying with backoff until Kafka acknowledged
// every record or refused it for good. After a partial failure only the
// failed records are sent again (a partition's records succeed or fail
// together), so a retry duplicates nothing known to be written and keeps
// each partition's records in order. Records refused for good (see
// refusedForGood) are isolated: sent again in halves, each half delivered
// before the next, until a partition's batch holds the refused record
// alone, which is quarantined. It returns false when the flush deadline
// passed first.
func (s *Shipper) write(batch []kafka.Message) bool {
	backoff := 50 * time.Millisecond
	for len(batch) > 0 {
		p := s.w.Load()
		if cap(s.errs) < len(batch) {
			s.errs = make([]error, len(batch))
		}
		errs := s.errs[:len(batch)]
		ctx, cancel := context.WithTimeout(s.abort, p.cfg.WriteTimeout)
		err := p.send(ctx, batch, errs)
		cancel()
		if err == nil {
			s.failing.Store(false)
			s.stats.Writes.Add(1)
			s.stats.Shipped.Add(uint64(len(batch)))
			s.errLog.recovered("kafka writes recovered", zap.String("topic", p.cfg.Topic))
			return true
		}
		var refused []kafka.Message // rare: allocated only then
		var why *partitionError     // why the last of them was refused
		var retry error
		failed := batch[:0]
		for i, e := range errs {
			if e == nil {
				continue
			}
			if pe, ok := refusedForGood(e); ok {
				refused, why = append(refused, batch[i]), pe
				continue
			}
			failed, retry = append(failed, batch[i]), e
		}
		if n := len(batch) - len(failed) - len(refused); n > 0 {
			s.stats.Writes.Add(1)
			s.stats.Shipped.Add(uint64(n))
		}
		if len(failed) == 0 {
			// The broker answered: no outage, whatever it refused.
			s.failing.Store(false)
			s.errLog.recovered("kafka writes recovered", zap.String("topic", p.cfg.Topic))
		} else {
			s.stats.WriteErrors.Add(1)
			s.failing.Store(true)
			s.errLog.log("writing to kafka", retry, zap.String("topic", p.cfg.Topic), zap.Int("records", len(failed)))
		}
		switch {
		case len(refused) == 1:
			// Its partition's batch held it alone.
			s.quarantine(p, refused[0], why)
		case len(refused) > 1:
			h := len(refused) / 2
			if !s.write(refused[:h]) || !s.write(refused[h:]) {
				return false
			}
		}
		batch = failed
		if len(batch) == 0 {
			return true
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
