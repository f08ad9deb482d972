// Command appendlat measures how long each logship Spool.Append takes, the
// one disk operation on b2s_collect's request path, and prints the
// distribution as one JSON object. Go's benchmarks give the mean; a beacon's
// tail latency depends on the slowest appends (a segment roll, a page
// fault on a page being written back), which only a distribution shows.
//
//	appendlat [-n 1000000] [-fsync 1s|-1ns] [-dir DIR]
//
// Records are 640-byte values with a 32-byte key, appended from one
// goroutine as fast as it can; the spool has the product's defaults
// otherwise (16 MiB segments).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/b2scom/b2s-edge/logship"
)

type result struct {
	Fsync    string  `json:"fsync"`
	N        int     `json:"appends"`
	MeanNS   float64 `json:"mean_ns"`
	P50NS    int64   `json:"p50_ns"`
	P99NS    int64   `json:"p99_ns"`
	P999NS   int64   `json:"p99_9_ns"`
	P9999NS  int64   `json:"p99_99_ns"`
	MaxNS    int64   `json:"max_ns"`
	Over1ms  int     `json:"over_1ms"`
	Segments int64   `json:"segments_filled"`
}

func main() {
	n := flag.Int("n", 1_000_000, "appends")
	fsync := flag.Duration("fsync", time.Second, "fsync interval; -1ns for never")
	dir := flag.String("dir", "", "spool `directory` (default: a temporary one, removed at exit)")
	flag.Parse()
	if err := run(*n, *fsync, *dir); err != nil {
		fmt.Fprintf(os.Stderr, "appendlat: %v\n", err)
		os.Exit(1)
	}
}

func run(n int, fsync time.Duration, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "appendlat-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	sp, err := logship.OpenSpool(logship.SpoolConfig{Dir: dir, Fsync: fsync, MaxSize: 64 << 30})
	if err != nil {
		return err
	}
	defer sp.Close()
	const key = "2ba4d43fa2ecb3a3656759d4833980c0"
	value := make([]byte, 640)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range lat {
		t := time.Now()
		if err := sp.Append(key, value); err != nil {
			return err
		}
		lat[i] = time.Since(t)
	}
	total := time.Since(start)
	slices.Sort(lat)
	q := func(p float64) int64 { return int64(lat[int(p*float64(len(lat)-1))]) }
	res := result{Fsync: fsync.String(), N: n, MeanNS: float64(total) / float64(n),
		P50NS: q(0.5), P99NS: q(0.99), P999NS: q(0.999), P9999NS: q(0.9999), MaxNS: int64(lat[len(lat)-1]),
		Segments: int64(n) * int64(8+10+len(key)+len(value)) / logship.DefaultSpoolSegment}
	if fsync < 0 {
		res.Fsync = "never"
	}
	for _, l := range lat {
		if l > time.Millisecond {
			res.Over1ms++
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
