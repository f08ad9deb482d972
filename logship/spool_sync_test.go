package logship

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// syncLog counts the syncs of each file of a spool directory, by name
// ("dir" for the directory itself), and syncs them.
type syncLog struct {
	dir string
	mu  sync.Mutex
	n   map[string]int
}

func (l *syncLog) sync(f *os.File) error {
	name := filepath.Base(f.Name())
	if f.Name() == l.dir {
		name = "dir"
	}
	l.mu.Lock()
	l.n[name]++
	l.mu.Unlock()
	return f.Sync()
}

func (l *syncLog) count(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[name]
}

func TestSpoolSyncsWhatItsFsyncPolicySays(t *testing.T) {
	t.Parallel()
	// Which files are synced, and how often, under each policy: a spool
	// opened, filled past a roll (the segment after prepared ahead), then
	// closed; reopened with a record damaged in its first segment (repaired
	// at open) and one in its second (repaired by the reader).
	type counts struct{ seg1, seg2, dir, cursor int }
	cases := []struct {
		name  string
		fsync time.Duration
		// The syncs of the first run; seg1 and seg2 besides the records
		// appended to each, with fsync always.
		run counts
		// The syncs of the segments and the cursor in the second run (dir
		// -1: not counted), and whether each
		// append is synced.
		reopened     counts
		everyAppend  bool
		explicitSync bool // the test calls Sync before closing, as the sync loop would
		prepareFails bool // preparing segments ahead fails: the roll creates the next one
	}{
		// Only the cursor, at Close.
		{"never", FsyncNever, counts{0, 0, 0, 1}, counts{0, 0, -1, 1}, false, false, false},
		// The directory when the first segment is created, each segment
		// prepared ahead, and the segment closed last; each record as it
		// is appended.
		{"always", FsyncAlways, counts{0, 1, 4, 1}, counts{1, 1, -1, 1}, true, false, false},
		// The directory when the first segment is created, the segment
		// created at the roll, and the one closed last.
		{"always, with no segment prepared ahead", FsyncAlways, counts{0, 1, 3, 1}, counts{1, 1, -1, 1}, true, false, true},
		// The directory when the first segment is created; then, at each
		// Sync, the rolled segments, the active one and the directory; at
		// Close the active segment and the directory.
		{"an interval", time.Hour, counts{1, 2, 3, 1}, counts{1, 1, -1, 1}, false, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			log := &syncLog{dir: dir, n: map[string]int{}}
			cfg := SpoolConfig{Dir: dir, Fsync: c.fsync, SegmentSize: 64 << 10, sync: log.sync}
			s, err := OpenSpool(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if c.prepareFails {
				s.prepareHook = func(uint64) error { return errors.New("no room for a segment ahead") }
			}
			first := activeSegment(s)
			seg1, seg2 := segName(first), segName(first+1)
			value := bytes.Repeat([]byte("x"), 4000)
			appended := map[string]int{}
			for i := 0; activeSegment(s) == first || appended[seg2] < 3; i++ {
				if err := s.Append(fmt.Sprint(i), value); err != nil {
					t.Fatal(err)
				}
				appended[segName(activeSegment(s))]++
			}
			waitPrepared(t, s) // the segment after seg2
			if c.explicitSync {
				s.Sync()
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			want := c.run
			if c.everyAppend {
				want.seg1 += appended[seg1]
				want.seg2 += appended[seg2]
			}
			got := counts{log.count(seg1), log.count(seg2), log.count("dir"), log.count("cursor")}
			if got != want {
				t.Fatalf("synced %+v, want %+v (records appended: %v)", got, want, appended)
			}

			// Damage found at open, and damage found by the reader.
			l1, l2 := layout(t, filepath.Join(dir, seg1)), layout(t, filepath.Join(dir, seg2))
			flipByte(t, filepath.Join(dir, seg1), l1[1].off+entryHeaderLen+bodyFixedLen+4)
			log2 := &syncLog{dir: dir, n: map[string]int{}}
			cfg.sync = log2.sync
			s2, err := OpenSpool(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if n := log2.count(seg2); n != 0 {
				t.Fatalf("the intact segment synced %d times at open", n)
			}
			flipByte(t, filepath.Join(dir, seg2), l2[1].off+entryHeaderLen+bodyFixedLen+4)
			if n := len(drain(t, s2)); n != appended[seg1]+appended[seg2]-2 {
				t.Fatalf("read %d records, want all but the 2 damaged", n)
			}
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			got = counts{log2.count(seg1), log2.count(seg2), -1, log2.count("cursor")}
			if got != c.reopened {
				t.Fatalf("reopened: synced %+v, want %+v", got, c.reopened)
			}
		})
	}
}
