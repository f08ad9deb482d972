package logship

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
)

// A record the broker refuses for what it is, not for the broker's state,
// would be refused however often it is sent again; retried like an outage,
// it held up every record behind it. The shipper isolates it (write sends
// a refused partition's records again in halves until the refused one is
// alone), appends it to the quarantine file, counts it and ships on.
//
// The quarantine is a file of JSON lines, one a record, appended and
// fsynced before the spool's cursor moves past the record, readable with
// jq and replayable with kcat once the cause is fixed (docs/spool.md):
//
//	{"time":"2026-12-06T19:20:00.1Z","topic":"b2s.events","partition":2,
//	 "code":10,"error":"Message Size Too Large","message":"...",
//	 "appended":"2026-12-06T19:19:59.9Z","key":"2ba4d43f...","value":"{...}"}
//
// time is when the record was quarantined, appended when it was spooled;
// code is the Kafka error code and message the broker's words (produce v8
// and later). key is absent for a record without one; key and value hold
// the record's bytes as JSON strings, or, when they are not valid UTF-8,
// key_b64 and value_b64 hold them in base64. The file is bounded by
// Config.QuarantineMaxSize: a record it cannot take is dropped and counted
// (Stats.QuarantineDropped). Like Kafka, it holds a record at least once:
// one quarantined when the process died, or Close's deadline passed,
// before the spool's cursor moved past its batch is quarantined again.

// refusedForGood returns the broker's error when err refuses a partition's
// record batch for what the batch holds: sent again unchanged it would be
// refused again, but the batch's other records may pass without it.
//
//   - MESSAGE_TOO_LARGE (10): the batch exceeds the topic's
//     max.message.bytes (or the broker's message.max.bytes);
//   - RECORD_LIST_TOO_LARGE (18): the batch exceeds a log segment;
//   - INVALID_RECORD (87): a record breaks the topic's rules (a record
//     without a key on a compacted topic, for one);
//   - CORRUPT_MESSAGE (2): what older brokers answer for the same, and for
//     a batch that fails its checks; a batch damaged in transit passes when
//     sent again, which the isolation does before it blames a record;
//   - INVALID_TIMESTAMP (32): a record's timestamp is out of the topic's
//     message.timestamp.*.max.ms.
//
// Every other error is retried, the batch kept whole and in order: those
// of an outage (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE,
// NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR, network
// errors) and those an operator fixes for every record at once, shown in
// health meanwhile (UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED,
// UNSUPPORTED_COMPRESSION_TYPE, and any code not listed above).
func refusedForGood(err error) (*partitionError, bool) {
	var pe *partitionError
	if !errors.As(err, &pe) {
		return nil, false
	}
	switch pe.code {
	case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge, kafka.InvalidRecord, kafka.InvalidMessage, kafka.InvalidTimestamp:
		return pe, true
	}
	return nil, false
}

// DefaultQuarantineMaxSize is Config.QuarantineMaxSize's default.
const DefaultQuarantineMaxSize = 64 << 20

// quarantineFile is the default quarantine, in the spool's directory.
const quarantineFile = "quarantine.jsonl"

// errQuarantineFull is the reason a record was dropped when the quarantine
// file had no room for it.
var errQuarantineFull = errors.New("quarantine file full")

// quarantine appends records to the quarantine file. It belongs to the
// shipper's goroutine.
type quarantine struct {
	path    string
	maxSize int64
	f       *os.File // opened at the first record; nil after a write error, to open again
	size    int64
}

// quarantineLine is a line of the quarantine file.
type quarantineLine struct {
	Time      time.Time `json:"time"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Code      int16     `json:"code"`
	Error     string    `json:"error"`
	Message   string    `json:"message,omitempty"`
	Appended  time.Time `json:"appended"`
	Key       *string   `json:"key,omitempty"`
	KeyB64    []byte    `json:"key_b64,omitempty"`
	Value     *string   `json:"value,omitempty"`
	ValueB64  []byte    `json:"value_b64,omitempty"`
}

// add appends m's line, refused with pe on topic, and syncs the file.
func (q *quarantine) add(topic string, m kafka.Message, pe *partitionError) error {
	l := quarantineLine{
		Time:      time.Now().UTC(),
		Topic:     topic,
		Partition: pe.partition,
		Code:      int16(pe.code),
		Error:     pe.code.Title(),
		Message:   pe.message,
		Appended:  m.Time.UTC(),
	}
	switch {
	case len(m.Key) == 0:
	case utf8.Valid(m.Key):
		k := string(m.Key)
		l.Key = &k
	default:
		l.KeyB64 = m.Key
	}
	if utf8.Valid(m.Value) {
		v := string(m.Value)
		l.Value = &v
	} else {
		l.ValueB64 = m.Value
	}
	line, err := json.Marshal(&l)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if q.f == nil {
		if err := q.open(); err != nil {
			return err
		}
	}
	if q.size+int64(len(line)) > q.maxSize {
		return errQuarantineFull
	}
	if _, err := q.f.Write(line); err != nil {
		// Cut a partial line, so the next one starts a line of its own.
		_ = q.f.Truncate(q.size)
		q.close()
		return fmt.Errorf("writing quarantine file: %w", err)
	}
	if err := q.f.Sync(); err != nil {
		q.close()
		return fmt.Errorf("syncing quarantine file: %w", err)
	}
	q.size += int64(len(line))
	return nil
}

func (q *quarantine) open() error {
	if err := os.MkdirAll(filepath.Dir(q.path), 0o700); err != nil {
		return fmt.Errorf("creating quarantine directory: %w", err)
	}
	_, err := os.Stat(q.path)
	created := errors.Is(err, os.ErrNotExist)
	f, err := os.OpenFile(q.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening quarantine file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening quarantine file: %w", err)
	}
	if created {
		syncDir(filepath.Dir(q.path))
	}
	q.f, q.size = f, fi.Size()
	return nil
}

func (q *quarantine) close() {
	if q.f != nil {
		q.f.Close()
		q.f = nil
	}
}

// quarantine puts m, which the broker refused for good with pe, in the
// quarantine file, counts it and logs it (never its key or value, which
// identify a visitor).
func (s *Shipper) quarantine(p *producer, m kafka.Message, pe *partitionError) {
	path := p.cfg.Quarantine
	if path == "" {
		path = filepath.Join(s.spool.Dir(), quarantineFile)
	}
	if s.q.path != path || s.q.maxSize != p.cfg.QuarantineMaxSize {
		s.q.close()
		s.q = quarantine{path: path, maxSize: p.cfg.QuarantineMaxSize}
	}
	fields := []zap.Field{
		zap.String("topic", p.cfg.Topic), zap.Int32("partition", pe.partition),
		zap.Int16("code", int16(pe.code)), zap.String("error", pe.code.Title()),
		zap.Int("bytes", len(m.Key)+len(m.Value)), zap.String("quarantine", path),
	}
	if err := s.q.add(p.cfg.Topic, m, pe); err != nil {
		s.stats.QuarantineDropped.Add(1)
		s.dropLog.log("kafka refused a record for good and the quarantine could not take it: record dropped", err, fields...)
		return
	}
	s.stats.Quarantined.Add(1)
	s.quarantineLog.warn("kafka refused a record for good: quarantined", fields...)
}
