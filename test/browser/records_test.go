package browser

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/b2scom/b2s-edge/internal/recordschema"
)

// record is one record read back from Kafka.
type record struct {
	Schema      int               `json:"schema"`
	EventID     string            `json:"event_id"`
	TS          string            `json:"ts"`
	Kind        string            `json:"kind"`
	Host        string            `json:"host"`
	IP          string            `json:"ip"`
	CookieID    string            `json:"cookie_id"`
	CookieState string            `json:"cookie_state"`
	Method      string            `json:"method"`
	URL         string            `json:"url"`
	Referrer    string            `json:"referrer"`
	UserAgent   string            `json:"user_agent"`
	Status      int               `json:"status"`
	Event       string            `json:"event"`
	Bot         string            `json:"bot"`
	Params      map[string]string `json:"params"`

	key       string // the Kafka key
	partition int32
	offset    int64
	raw       []byte
}

func (r *record) String() string {
	return fmt.Sprintf("%d@%d key %q %s", r.partition, r.offset, r.key, r.raw)
}

// recordReader consumes the test's topic from the start with franz-go, in
// the background, for as long as the test runs. Every record is checked as
// it arrives: valid against the published schema, no duplicate keys, a ts
// inside the test's window, the cookie ID as Kafka key, an event_id not
// seen before.
type recordReader struct {
	feed[*record]
}

func newRecordReader(t *testing.T, broker, topic string, start time.Time) *recordReader {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(broker),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("starting the kafka consumer: %v", err)
	}
	r := &recordReader{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// The consumer stops before the test ends: it reports through t.
	t.Cleanup(func() {
		cancel()
		<-done
		cl.Close()
	})
	go func() {
		defer close(done)
		events := map[string]bool{}
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachError(func(topic string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("consuming %s/%d: %v", topic, p, err)
				}
			})
			fs.EachRecord(func(m *kgo.Record) {
				rec := checkRecord(t, m, start)
				if events[rec.EventID] {
					t.Errorf("event_id %s is in two records; the second: %s", rec.EventID, rec)
				}
				events[rec.EventID] = true
				r.add(rec)
			})
		}
	}()
	return r
}

func checkRecord(t *testing.T, m *kgo.Record, start time.Time) *record {
	r := &record{key: string(m.Key), partition: m.Partition, offset: m.Offset, raw: m.Value}
	if err := recordschema.Validate(m.Value); err != nil {
		t.Errorf("record %s: %v", r, err)
	}
	if err := recordschema.NoDuplicateKeys(m.Value); err != nil {
		t.Errorf("record %s: %v", r, err)
	}
	if err := json.Unmarshal(m.Value, r); err != nil {
		t.Errorf("record %s: %v", r, err)
	}
	if ts, err := time.Parse(time.RFC3339Nano, r.TS); err != nil {
		t.Errorf("record %s: ts: %v", r, err)
	} else if now := time.Now(); ts.Before(start.Truncate(time.Microsecond)) || ts.After(now) {
		t.Errorf("record %s: ts is outside the test's window %s..%s", r, start.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	if r.CookieID == "" || r.key != r.CookieID {
		t.Errorf("record %s: Kafka key %q, want the record's cookie_id %q", r, r.key, r.CookieID)
	}
	return r
}

// waitRecord waits for the first record that match is true of.
func (r *recordReader) waitRecord(t *testing.T, what string, match func(*record) bool) *record {
	t.Helper()
	return r.waitRecords(t, what, 1, match)[0]
}

// waitRecords waits until n records match, and returns the matches.
func (r *recordReader) waitRecords(t *testing.T, what string, n int, match func(*record) bool) []*record {
	t.Helper()
	var found []*record
	r.wait(t, fmt.Sprintf("%d record(s) of %s", n, what), func(rs []*record) bool {
		found = found[:0]
		for _, rec := range rs {
			if match(rec) {
				found = append(found, rec)
			}
		}
		return len(found) >= n
	}, func(rs []*record) string {
		var b strings.Builder
		for _, rec := range rs {
			b.WriteString("  " + rec.String() + "\n")
		}
		return b.String()
	})
	return found
}

// all returns the records read so far.
func (r *recordReader) all() []*record {
	items, _ := r.snapshot()
	return items
}

// pageRecord matches the page record of url.
func pageRecord(url string) func(*record) bool {
	return func(r *record) bool { return r.Kind == "page" && r.URL == url }
}

// ---------------------------------------------------------------------------
// The cookie

var cookieRe = regexp.MustCompile(`^1\.([0-9a-f]{32})\.([0-9a-f]{8})\.([A-Za-z0-9_-]{22})$`)

// verifyCookie checks a b2sid value the way the edge documents it
// (beacon/cookie.go), independently of its code:
// 1.<id, 32 hex>.<issued, 8 hex>.<base64url of the first 16 bytes of
// HMAC-SHA256 of what precedes the last dot>, and returns its ID and
// issue time.
func verifyCookie(value, key string) (id string, issued time.Time, err error) {
	m := cookieRe.FindStringSubmatch(value)
	if m == nil {
		return "", time.Time{}, fmt.Errorf("cookie value %q is not 1.<32 hex>.<8 hex>.<22 base64url>", value)
	}
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(value[:len(value)-len(m[3])-1]))
	if want := base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16]); !hmac.Equal([]byte(m[3]), []byte(want)) {
		return "", time.Time{}, fmt.Errorf("cookie value %q does not verify with the secret", value)
	}
	sec, _ := strconv.ParseUint(m[2], 16, 32)
	return m[1], time.Unix(int64(sec), 0), nil
}
