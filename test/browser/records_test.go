package browser

import (
	"context"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/b2scom/b2s-edge/internal/recordschema"
	"github.com/b2scom/b2s-edge/internal/testrecord"
)

// record is one record read back from Kafka.
type record struct {
	testrecord.Record

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
// inside the test's window, an event_id not seen before, and what its
// consent allows (see checkConsent).
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
	if err := checkConsent(r); err != nil {
		t.Errorf("record %s: %v", r, err)
	}
	return r
}

// truncatedLoopback is the browser's address, 127.0.0.1, cut to the
// default IPv4 prefix of 24 bits.
const truncatedLoopback = "127.0.0.0"

// checkConsent checks what every record promises about the visitor: it
// names its consent; the Kafka key is the cookie ID, so a record without
// one (every record without full consent) has no key; and a record
// without full consent carries no identifier and the browser's address
// truncated. The edges under test keep full IPs for full consent.
func checkConsent(r *record) error {
	mail := r.Kind == "open" || r.Kind == "click" || r.Kind == "unsubscribe"
	switch {
	case mail && (r.key != r.MemberID || r.CookieID != ""):
		// A recipient's mail events are keyed by the member, when named.
		return fmt.Errorf("mail record with Kafka key %q and cookie_id %q, want the record's member_id %q and no cookie", r.key, r.CookieID, r.MemberID)
	case !mail && r.key != r.CookieID:
		return fmt.Errorf("Kafka key %q, want the record's cookie_id %q", r.key, r.CookieID)
	}
	switch r.Consent {
	case "full":
		if r.IPTruncated || r.IP != "127.0.0.1" {
			return fmt.Errorf("full consent with ip %q, ip_truncated %v; want the browser's 127.0.0.1 as it is", r.IP, r.IPTruncated)
		}
	case "optout", "gpc", "child", "pending":
		// An unsubscribe names its member whatever the consent.
		if r.CookieID != "" || r.CookieState != "" || r.NetworkID != "" || r.PrevNetworkID != "" || (r.MemberID != "" && r.Kind != "unsubscribe") {
			return fmt.Errorf("consent %s with identifiers: cookie_id %q (%q), network_id %q, prev_network_id %q, member_id %q",
				r.Consent, r.CookieID, r.CookieState, r.NetworkID, r.PrevNetworkID, r.MemberID)
		}
		if !r.IPTruncated || r.IP != truncatedLoopback {
			return fmt.Errorf("consent %s with ip %q, ip_truncated %v; want %s, truncated", r.Consent, r.IP, r.IPTruncated, truncatedLoopback)
		}
	default:
		return fmt.Errorf("consent %q, want full, optout, gpc, child or pending", r.Consent)
	}
	return nil
}

// waitRecord waits for the first record that match is true of.
func (r *recordReader) waitRecord(t *testing.T, what string, match func(*record) bool) *record {
	t.Helper()
	return r.waitRecords(t, what, 1, match)[0]
}

// waitRecords waits until n records match, and returns the matches in the
// order the edge received their requests (by ts). Records arrive from
// several partitions, so the order they are read in is not that one.
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
	// ts has a fixed number of digits: as strings, they sort as times.
	slices.SortStableFunc(found, func(a, b *record) int { return strings.Compare(a.TS, b.TS) })
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

var cookieRe = regexp.MustCompile(`^(?:1\.([0-9a-f]{32})\.([0-9a-f]{8})|2\.([0-9a-f]{32})\.([0-9a-f]{8})\.([0-9a-f]{32})|3\.([0-9a-f]{32})\.([0-9a-f]{8})\.([A-Za-z0-9_-]{22}))\.([A-Za-z0-9_-]{22})$`)

// visitorCookie is what a b2sid value says.
type visitorCookie struct {
	Version   int
	ID        string
	NetworkID string // the ID itself in a version 1 value
	Issued    time.Time
}

// verifyCookie checks a b2sid value of a visitor who is not linked to
// another site (version 1) and returns its ID and issue time.
func verifyCookie(value, key string) (id string, issued time.Time, err error) {
	c, err := verifyAnyCookie(value, key)
	if err == nil && c.Version != 1 {
		err = fmt.Errorf("cookie value %q is version %d, want 1: a visitor not linked from another site", value, c.Version)
	}
	return c.ID, c.Issued, err
}

// verifyAnyCookie checks a b2sid value the way the edge documents it
// (beacon/cookie.go), independently of its code:
// 1.<id, 32 hex>.<issued, 8 hex>.<sig> or, for a visitor linked from
// another site of the network, 3.<id>.<issued>.<sealed network ID>.<sig>
// (2.<id>.<issued>.<network ID, 32 hex>.<sig> from earlier versions),
// where sig is the base64url of the first 16 bytes of HMAC-SHA256 of what
// precedes the last dot, and the sealed network ID the base64url of
// AES-256(network ID XOR ID) under HMAC-SHA256(secret, "b2s-edge cookie
// network id key v1").
func verifyAnyCookie(value, key string) (visitorCookie, error) {
	m := cookieRe.FindStringSubmatch(value)
	if m == nil {
		return visitorCookie{}, fmt.Errorf("cookie value %q is none of 1.<32 hex>.<8 hex>.<22 base64url>, 2.<32 hex>.<8 hex>.<32 hex>.<22 base64url> or 3.<32 hex>.<8 hex>.<22 base64url>.<22 base64url>", value)
	}
	if !hmac.Equal([]byte(m[9]), []byte(hmacTag(key, value[:len(value)-len(m[9])-1]))) {
		return visitorCookie{}, fmt.Errorf("cookie value %q does not verify with the secret", value)
	}
	c := visitorCookie{Version: 1, ID: m[1], NetworkID: m[1]}
	issued := m[2]
	switch {
	case m[3] != "":
		c = visitorCookie{Version: 2, ID: m[3], NetworkID: m[5]}
		issued = m[4]
	case m[6] != "":
		nid, err := openNetworkID(key, m[6], m[8])
		if err != nil {
			return visitorCookie{}, fmt.Errorf("cookie value %q: %v", value, err)
		}
		c = visitorCookie{Version: 3, ID: m[6], NetworkID: nid}
		issued = m[7]
	}
	sec, _ := strconv.ParseUint(issued, 16, 32)
	c.Issued = time.Unix(int64(sec), 0)
	return c, nil
}

// openNetworkID decrypts the sealed network ID of a version 3 cookie of id.
func openNetworkID(key, id, sealed string) (string, error) {
	k := hmac.New(sha256.New, []byte(key))
	k.Write([]byte("b2s-edge cookie network id key v1"))
	block, err := aes.NewCipher(k.Sum(nil))
	if err != nil {
		return "", err
	}
	ct, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(ct) != aes.BlockSize {
		return "", fmt.Errorf("sealed network ID %q is not 16 bytes of base64url", sealed)
	}
	idb, err := hex.DecodeString(id)
	if err != nil {
		return "", err
	}
	pt := make([]byte, aes.BlockSize)
	block.Decrypt(pt, ct)
	subtle.XORBytes(pt, pt, idb)
	return hex.EncodeToString(pt), nil
}

// hmacTag is the edge's signature of msg: the base64url of the first 16
// bytes of its HMAC-SHA256.
func hmacTag(key, msg string) string {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// verifyMemberCookie checks a b2sid_m value, <member ID>.<sig>, where sig
// signs "m.<cookie ID>.<member ID>" (beacon/cookie.go): a member cookie is
// good only with the cookie ID it was issued to. It returns the member ID.
func verifyMemberCookie(value, cookieID, key string) (string, error) {
	i := strings.LastIndexByte(value, '.')
	if i <= 0 {
		return "", fmt.Errorf("member cookie value %q is not <member ID>.<signature>", value)
	}
	member, sig := value[:i], value[i+1:]
	if !hmac.Equal([]byte(sig), []byte(hmacTag(key, "m."+cookieID+"."+member))) {
		return "", fmt.Errorf("member cookie value %q does not bind its member to cookie ID %s", value, cookieID)
	}
	return member, nil
}
