package logship

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	bolt "go.etcd.io/bbolt"
)

// benchRecord is the size of a typical beacon record.
var benchRecord = []byte(`{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"beacon","host":"www.b2s.com","ip":"203.0.113.7","cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","cookie_state":"returning","method":"GET","url":"https://www.b2s.com/products/cnc-spindle","referrer":"https://www.b2s.com/","user_agent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36","status":200,"bytes":43,"event":"pageview","geo":{"country":"CN","subdivision":"GD","city":"Shenzhen","lat":22.5431,"lon":114.0579},"params":{}}`)

const benchKey = "2ba4d43fa2ecb3a3656759d4833980c0"

// The log candidates, appending one record as the request path does.

func BenchmarkAppendSpool(b *testing.B) {
	for _, fsync := range []struct {
		name string
		d    time.Duration
	}{{"fsync=1s", time.Second}, {"fsync=never", FsyncNever}} {
		b.Run(fsync.name, func(b *testing.B) {
			s, err := OpenSpool(SpoolConfig{Dir: b.TempDir(), Fsync: fsync.d, MaxSize: 64 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ReportAllocs()
			b.SetBytes(int64(len(benchRecord)))
			for b.Loop() {
				if err := s.Append(benchKey, benchRecord); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendSpoolParallel(b *testing.B) {
	s, err := OpenSpool(SpoolConfig{Dir: b.TempDir(), Fsync: time.Second, MaxSize: 64 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRecord)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(benchKey, benchRecord); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendBbolt appends with one bbolt transaction per record, which
// the request path would need for the record to be in the file before the
// response. NoSync matches the spool's fsync=never; the default syncs each
// transaction.
func BenchmarkAppendBbolt(b *testing.B) {
	for _, noSync := range []bool{true, false} {
		b.Run(fmt.Sprintf("nosync=%v", noSync), func(b *testing.B) {
			db, err := bolt.Open(filepath.Join(b.TempDir(), "spool.db"), 0o600, &bolt.Options{NoSync: noSync, NoFreelistSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			bucket := []byte("records")
			b.ReportAllocs()
			b.SetBytes(int64(len(benchRecord)))
			for b.Loop() {
				err := db.Update(func(tx *bolt.Tx) error {
					bk, err := tx.CreateBucketIfNotExists(bucket)
					if err != nil {
						return err
					}
					seq, _ := bk.NextSequence()
					var k [8]byte
					binary.BigEndian.PutUint64(k[:], seq)
					return bk.Put(k[:], benchRecord)
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Shipping: records/s from the spool to a Kafka-protocol broker, against
// kafka-go writing the same records straight from memory with the same
// writer settings (BenchmarkShipFromMemory, in writer_bench_test.go). The
// broker runs in this process (franz-go's kfake); both sides pay for it
// equally.

const shipBatch = 100_000

func BenchmarkShipThroughSpool(b *testing.B) {
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, topic))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	stats := new(Stats)
	sp, err := OpenSpool(SpoolConfig{Dir: b.TempDir(), Fsync: time.Second, MaxSize: 8 << 30, Stats: stats})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	keys := benchKeys()
	// Fill the spool first, so that only shipping is timed.
	for j := range b.N * shipBatch {
		if err := sp.Append(keys[j%len(keys)], benchRecord); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	s, err := NewShipper(sp, Config{Brokers: cl.ListenAddrs(), Stats: stats})
	if err != nil {
		b.Fatal(err)
	}
	for stats.Shipped.Load() < uint64(b.N*shipBatch) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	s.Close(context.Background())
	b.ReportMetric(float64(b.N*shipBatch)/b.Elapsed().Seconds(), "records/s")
}

func benchKeys() []string {
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("%032x", i*2654435761)
	}
	return keys
}
