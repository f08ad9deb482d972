package logship

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"
)

// bigRecord is record i of n bytes: its number, then a byte of its own.
func bigRecord(i, n int) []byte {
	v := bytes.Repeat([]byte{byte('a' + i%26)}, n)
	copy(v, fmt.Sprintf("%08d", i))
	return v
}

func TestSpoolRefusesARecordTooLargeAndStaysUsable(t *testing.T) {
	t.Parallel()
	// A record that would not fit in one segment, or past the entry
	// limits, is refused with an error and counted; the spool is as it
	// was and takes the next records. A record that fits exactly is
	// taken and read back whole.
	const key = "visitor"
	fixed := entryHeaderLen + bodyFixedLen + len(key)
	cases := []struct {
		name     string
		cfg      SpoolConfig
		key      string
		value    int
		accepted bool
		tooLarge string // in the error
	}{
		{"a record that fills a segment exactly", SpoolConfig{MaxSize: 1 << 20, SegmentSize: 64 << 10}, key, 64<<10 - segmentHeaderLen - fixed, true, ""},
		{"a byte more than a segment holds", SpoolConfig{MaxSize: 1 << 20, SegmentSize: 64 << 10}, key, 64<<10 - segmentHeaderLen - fixed + 1, false, "larger than a spool segment"},
		{"as large as a segment", SpoolConfig{MaxSize: 1 << 20, SegmentSize: 64 << 10}, key, 64 << 10, false, "larger than a spool segment"},
		{"an entry of the largest body", SpoolConfig{MaxSize: 16 << 20, SegmentSize: 4 << 20}, key, MaxEntryLen - bodyFixedLen - len(key), true, ""},
		{"an entry a byte over the largest body", SpoolConfig{MaxSize: 16 << 20, SegmentSize: 4 << 20}, key, MaxEntryLen - bodyFixedLen - len(key) + 1, false, "too large for the spool"},
		{"the longest key", SpoolConfig{}, strings.Repeat("k", 0xffff), 10, true, ""},
		{"a key a byte longer", SpoolConfig{}, strings.Repeat("k", 0x10000), 10, false, "too large for the spool"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stats := new(Stats)
			c.cfg.Stats = stats
			s := openSpool(t, c.cfg)
			appendN(t, s, 0, 3)
			size := s.Size()
			v := bigRecord(7, c.value)
			err := s.Append(c.key, v)
			if c.accepted != (err == nil) {
				t.Fatalf("Append: %v, want accepted %v", err, c.accepted)
			}
			if !c.accepted {
				if errors.Is(err, ErrSpoolFull) || !strings.Contains(err.Error(), c.tooLarge) {
					t.Fatalf("error %q, want one that says %q", err, c.tooLarge)
				}
				if stats.DroppedError.Load() != 1 || s.Size() != size {
					t.Fatalf("dropped %d, size %d -> %d: want 1 counted and the spool as it was", stats.DroppedError.Load(), size, s.Size())
				}
			}
			appendN(t, s, 3, 3)
			stop := make(chan struct{})
			close(stop)
			var got []string
			for {
				entries, next, err := s.Read(stop, nil, 100, 4<<20)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) == 0 {
					break
				}
				for _, e := range entries {
					if len(e.Value) == len(v) {
						if !bytes.Equal(e.Value, v) || string(e.Key) != c.key {
							t.Fatal("the large record read back changed")
						}
						got = append(got, "large")
						continue
					}
					got = append(got, string(e.Value))
				}
				if err := s.Ack(next); err != nil {
					t.Fatal(err)
				}
			}
			w := append(want(0, 3), want(3, 3)...)
			if c.accepted {
				w = slices.Insert(w, 3, "large")
			}
			if !slices.Equal(got, w) {
				t.Fatalf("read %v, want %v", got, w)
			}
			if stats.DroppedDamaged.Load() != 0 || stats.SpoolRepairs.Load() != 0 {
				t.Fatal("damage counted")
			}
		})
	}
}

func TestSpoolReadReturnsNoMoreThanAsked(t *testing.T) {
	t.Parallel()
	// Read returns at most max entries and maxBytes of them, but one at
	// least whatever its size; what it leaves comes with the next read,
	// in order, and nothing twice.
	entrySize := entryHeaderLen + bodyFixedLen + len("k0") + len("record-000000") // as appendN writes them
	cases := []struct {
		name          string
		max, maxBytes int
		per           int // entries a read returns
	}{
		{"one at a time", 1, 1 << 20, 1},
		{"seven at a time", 7, 1 << 20, 7},
		{"three entries' bytes", 1000, 3 * entrySize, 3},
		{"a byte less than three entries", 1000, 3*entrySize - 1, 2},
		{"a byte more than three entries", 1000, 3*entrySize + 1, 3},
		{"fewer bytes than one entry", 1000, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openSpool(t, SpoolConfig{})
			appendN(t, s, 0, 50)
			stop := make(chan struct{})
			close(stop)
			var got []string
			for {
				entries, next, err := s.Read(stop, nil, c.max, c.maxBytes)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) == 0 {
					break
				}
				if len(got)+c.per <= 50 && len(entries) != c.per || len(entries) > c.per {
					t.Fatalf("a read after %d entries returned %d, want %d", len(got), len(entries), c.per)
				}
				for _, e := range entries {
					got = append(got, string(e.Value))
				}
				if err := s.Ack(next); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got, want(0, 50)) {
				t.Fatalf("read %d entries, not the 50 in order", len(got))
			}
		})
	}
}

func TestSpoolReadsRecordsAcrossItsReadWindow(t *testing.T) {
	t.Parallel()
	// The reader takes a segment in 2MiB windows: records of a few
	// hundred kilobytes, of sizes that do not divide it, cross the end of
	// a window again and again. Each is read back whole, in order, and
	// no damage is counted; read one at a time (the window kept across
	// reads) and many at a time.
	sizes := func(i int) int { return 200_000 + (i*7919)%150_000 }
	const n = 40 // about 11MiB: several windows in one segment
	for _, max := range []int{1, 3, 1000} {
		t.Run(fmt.Sprintf("%d a read", max), func(t *testing.T) {
			stats := new(Stats)
			s := openSpool(t, SpoolConfig{MaxSize: 256 << 20, Stats: stats})
			for i := range n {
				if err := s.Append(fmt.Sprint(i), bigRecord(i, sizes(i))); err != nil {
					t.Fatal(err)
				}
			}
			stop := make(chan struct{})
			close(stop)
			i := 0
			for {
				entries, next, err := s.Read(stop, nil, max, 8<<20)
				if err != nil {
					t.Fatal(err)
				}
				if len(entries) == 0 {
					break
				}
				for _, e := range entries {
					if string(e.Key) != fmt.Sprint(i) || !bytes.Equal(e.Value, bigRecord(i, sizes(i))) {
						t.Fatalf("entry %d: key %q, %d bytes, not record %d as appended", i, e.Key, len(e.Value), i)
					}
					i++
				}
				if err := s.Ack(next); err != nil {
					t.Fatal(err)
				}
			}
			if i != n || stats.DroppedDamaged.Load() != 0 || stats.SpoolRepairs.Load() != 0 {
				t.Fatalf("read %d records of %d, %d counted damaged", i, n, stats.DroppedDamaged.Load())
			}
		})
	}
}

func TestSpoolWithFsyncAlways(t *testing.T) {
	t.Parallel()
	// With fsync always, records are synced as they are appended, across
	// rolls, and read back before and after a reopen.
	dir := t.TempDir()
	core, logs := observer.New(zapcore.WarnLevel)
	cfg := SpoolConfig{Dir: dir, Fsync: FsyncAlways, MaxSize: 1 << 20, SegmentSize: 64 << 10, Logger: zap.New(core)}
	s, err := OpenSpool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Fsync() != FsyncAlways {
		t.Fatalf("Fsync() = %v", s.Fsync())
	}
	value := bytes.Repeat([]byte("x"), 4000)
	for i := range 40 { // 16 to a segment: two rolls
		if err := s.Append(fmt.Sprint(i), append(fmt.Appendf(nil, "%02d", i), value...)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(segments(t, dir)); n != 3 {
		t.Fatalf("%d segments with records, want 3", n)
	}
	// Every record was synced as it was appended: a rolled segment is
	// closed at once, not kept for a sync loop there is not.
	s.bg.Wait()
	if n := openSegments(t, dir); n > 2 {
		t.Fatalf("%d segments open, want the active one and the next, prepared", n)
	}
	stop := make(chan struct{})
	close(stop)
	entries, next, err := s.Read(stop, nil, 10, 1<<20)
	if err != nil || len(entries) != 10 || string(entries[0].Value[:2]) != "00" {
		t.Fatalf("read %d entries, %v", len(entries), err)
	}
	if err := s.Ack(next); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSpool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append("40", append([]byte("40"), value...)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		entries, next, err := s.Read(stop, nil, 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			break
		}
		for _, e := range entries {
			got = append(got, string(e.Value[:2]))
		}
		if err := s.Ack(next); err != nil {
			t.Fatal(err)
		}
	}
	var w []string
	for i := 10; i <= 40; i++ {
		w = append(w, fmt.Sprintf("%02d", i))
	}
	if !slices.Equal(got, w) {
		t.Fatalf("after the reopen read %v, want %v", got, w)
	}
	for _, e := range logs.All() {
		t.Errorf("logged %s: %s %v", e.Level, e.Message, e.ContextMap())
	}
}

func TestSpoolReadsNewRecordsAfterReopeningWithEverythingRead(t *testing.T) {
	t.Parallel()
	// The cursor at the end of the last segment, every record read: each
	// reopen (one, or several without a record between) must read the
	// records appended next, and none of the old ones again.
	for _, reopens := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d reopens", reopens), func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, SpoolConfig{Dir: dir})
			appendN(t, s, 0, 100)
			if got := drain(t, s); !slices.Equal(got, want(0, 100)) {
				t.Fatalf("read %d records", len(got))
			}
			size := s.Size()
			s.Close()
			stats := new(Stats)
			for range reopens {
				s = openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
				// What it held, and the header of a new active segment.
				if s.Size() != size+segmentHeaderLen {
					t.Fatalf("size %d after a reopen, want %d", s.Size(), size+segmentHeaderLen)
				}
				if got := drain(t, s); len(got) != 0 {
					t.Fatalf("read %d records again after a reopen", len(got))
				}
				// The segment before, read to its end, is deleted once the
				// reader has moved past it, records after it or not.
				if s.Size() != segmentHeaderLen {
					t.Fatalf("size %d after reading everything, want the active segment's header alone", s.Size())
				}
				size = s.Size()
				s.Close()
			}
			// Segments without a record (the active one at each close) are
			// no damage.
			if r, d := stats.SpoolRepairs.Load(), stats.DroppedDamaged.Load(); r != 0 || d != 0 {
				t.Fatalf("SpoolRepairs = %d, DroppedDamaged = %d after reopens", r, d)
			}
			s = openSpool(t, SpoolConfig{Dir: dir})
			// A reader waiting from the start, as the shipper does, gets
			// the first record appended, not an empty read.
			type read struct {
				entries []Entry
				err     error
			}
			first := make(chan read, 1)
			go func() {
				entries, _, err := s.Read(make(chan struct{}), nil, 1, 1<<20)
				first <- read{entries, err}
			}()
			time.Sleep(100 * time.Millisecond)
			appendN(t, s, 100, 10)
			if r := <-first; r.err != nil || len(r.entries) != 1 || string(r.entries[0].Value) != want(100, 1)[0] {
				t.Fatalf("the waiting read returned %d entries: %v", len(r.entries), r.err)
			}
			if got := drain(t, s); !slices.Equal(got, want(100, 10)) {
				t.Fatalf("read %v after reopening, want records 100-109", got)
			}
		})
	}
}

func TestSpoolCursorSavedPastADamagedEnd(t *testing.T) {
	t.Parallel()
	// Every record read and acknowledged, then the end of the segment is
	// lost (a crash, a disk that did not keep it): the saved cursor points
	// past the segment's end. The open moves it to that end, reads none of
	// the old records again, and the records appended next are read.
	for _, lose := range []int64{10, 41, 200} {
		t.Run(fmt.Sprintf("%d bytes lost", lose), func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, SpoolConfig{Dir: dir})
			appendN(t, s, 0, 100)
			drain(t, s)
			seg := filepath.Base(lastSegment(t, dir))
			copied := crashCopy(t, dir)
			path := filepath.Join(copied, seg)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			end := s.writeEnd.Off
			if err := os.WriteFile(path, b[:end-lose], 0o600); err != nil {
				t.Fatal(err)
			}
			stats := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: copied, Stats: stats})
			if got := drain(t, s2); len(got) != 0 {
				t.Fatalf("read %d records again: %v", len(got), got)
			}
			appendN(t, s2, 100, 10)
			if got := drain(t, s2); !slices.Equal(got, want(100, 10)) {
				t.Fatalf("read %v, want records 100-109", got)
			}
			repairs := uint64(1) // the torn entry cut off
			if lose%41 == 0 {
				repairs = 0 // whole entries lost, nothing torn: nothing to repair
			}
			if stats.SpoolRepairs.Load() != repairs {
				t.Fatalf("%d repairs counted, want %d", stats.SpoolRepairs.Load(), repairs)
			}
		})
	}
}

func TestSpoolSizesDefaultsAndBounds(t *testing.T) {
	t.Parallel()
	// The sizes SpoolConfig documents: MaxSize 1GiB by default and no
	// less than 1MiB; segments of 16MiB by default, at most a quarter of
	// MaxSize and at least 64KiB.
	cases := []struct {
		name         string
		max, segment int64
		wantMax      int64
		wantSegment  int64
	}{
		{"defaults", 0, 0, 1 << 30, 16 << 20},
		{"negative sizes take the defaults", -1, -1, 1 << 30, 16 << 20},
		{"the smallest maximum", 1 << 20, 0, 1 << 20, 256 << 10},
		{"segments at most a quarter of the maximum", 8 << 20, 0, 8 << 20, 2 << 20},
		{"a segment size below the maximum's quarter kept", 8 << 20, 1 << 20, 8 << 20, 1 << 20},
		{"segments of at least 64KiB", 64 << 20, 1000, 64 << 20, 64 << 10},
		{"a segment of 64KiB kept", 64 << 20, 64 << 10, 64 << 20, 64 << 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openSpool(t, SpoolConfig{MaxSize: c.max, SegmentSize: c.segment})
			if s.MaxSize() != c.wantMax || s.cfg.SegmentSize != c.wantSegment {
				t.Fatalf("maximum %d, segments of %d; want %d and %d", s.MaxSize(), s.cfg.SegmentSize, c.wantMax, c.wantSegment)
			}
			st, err := os.Stat(filepath.Join(s.Dir(), segName(s.activeN)))
			if err != nil {
				t.Fatal(err)
			}
			if s.mapped != nil && st.Size() != c.wantSegment {
				t.Fatalf("the active segment is allocated at %d bytes, want %d", st.Size(), c.wantSegment)
			}
		})
	}
	t.Run("a maximum below 1MiB is refused", func(t *testing.T) {
		_, err := OpenSpool(SpoolConfig{Dir: t.TempDir(), MaxSize: 1<<20 - 1})
		if err == nil || !strings.Contains(err.Error(), "below the minimum of 1MiB") {
			t.Fatalf("OpenSpool: %v", err)
		}
	})
	t.Run("SetMaxSize takes 1MiB or more, ignores less", func(t *testing.T) {
		s := openSpool(t, SpoolConfig{})
		s.SetMaxSize(1<<20 - 1)
		if s.MaxSize() != 1<<30 {
			t.Fatalf("MaxSize %d after SetMaxSize below the minimum", s.MaxSize())
		}
		s.SetMaxSize(1 << 20)
		if s.MaxSize() != 1<<20 {
			t.Fatalf("MaxSize %d after SetMaxSize(1MiB)", s.MaxSize())
		}
	})
}

// canAllocate reports whether dir's file system allocates files in full
// and maps them (fallocate(2), mmap(2)), as ext4, xfs and tmpfs do.
func canAllocate(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if unix.Fallocate(int(f.Fd()), 0, 0, 64<<10) != nil {
		return false
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return false
	}
	unix.Munmap(m)
	return true
}

func TestSpoolMapsItsSegmentsWhereTheFileSystemAllows(t *testing.T) {
	t.Parallel()
	// On a file system that can allocate and map, every active segment
	// is allocated in full (a full disk shows at the roll, not as a
	// SIGBUS in an append) and mapped, and trimmed to its entries once
	// rolled.
	dir := t.TempDir()
	if !canAllocate(t, dir) {
		t.Skip("this file system cannot allocate and map files")
	}
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	for i := range 3 {
		if s.mapped == nil {
			t.Fatalf("segment %d is not mapped", i)
		}
		st, err := os.Stat(filepath.Join(dir, segName(s.activeN)))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != 64<<10 {
			t.Fatalf("the active segment holds %d bytes, want its full 64KiB allocated", st.Size())
		}
		rolled := s.activeN
		for s.activeN == rolled {
			appendN(t, s, 0, 100)
		}
		s.bg.Wait()
		st, err = os.Stat(filepath.Join(dir, segName(rolled)))
		if err != nil {
			t.Fatal(err)
		}
		if sg, _ := s.segInfo(rolled); st.Size() != sg.end {
			t.Fatalf("rolled segment of %d bytes, want it trimmed to its entries' end %d", st.Size(), sg.end)
		}
	}
}

func TestSpoolFillsToExactlyItsMaximum(t *testing.T) {
	t.Parallel()
	// Entries of 6553 bytes: 40 fill a 256KiB segment after its header
	// exactly, and four such segments are MaxSize (1MiB) exactly. The
	// 160th record brings the spool to its maximum and is taken; the
	// next is refused, and taken again once the first are shipped.
	const entry = 6553
	value := func(i int) []byte { return bigRecord(i, entry-entryHeaderLen-bodyFixedLen-1) }
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{MaxSize: 1 << 20, SegmentSize: 256 << 10, Stats: stats})
	for i := range 160 {
		if err := s.Append("k", value(i)); err != nil {
			t.Fatalf("record %d: %v (spool size %d)", i, err, s.Size())
		}
	}
	if s.Size() != 1<<20 {
		t.Fatalf("spool size %d, want 1MiB", s.Size())
	}
	if err := s.Append("k", value(160)); !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("a record past the maximum: %v", err)
	}
	stop := make(chan struct{})
	close(stop)
	entries, next, err := s.Read(stop, nil, 40, 1<<20)
	if err != nil || len(entries) != 40 || !bytes.Equal(entries[39].Value, value(39)) {
		t.Fatalf("read %d entries (%v), want the first segment's 40", len(entries), err)
	}
	if err := s.Ack(next); err != nil {
		t.Fatal(err)
	}
	if err := s.Append("k", value(160)); err != nil {
		t.Fatalf("after shipping a segment: %v", err)
	}
	got := 40
	for {
		entries, next, err := s.Read(stop, nil, 1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			break
		}
		for _, e := range entries {
			if !bytes.Equal(e.Value, value(got)) {
				t.Fatalf("entry %d is not record %d", got, got)
			}
			got++
		}
		if err := s.Ack(next); err != nil {
			t.Fatal(err)
		}
	}
	if got != 161 || stats.DroppedFull.Load() != 1 {
		t.Fatalf("read %d records, %d refused; want 161 and 1", got, stats.DroppedFull.Load())
	}
}

func TestDamageCountsOnlyRecordsNotShippedYet(t *testing.T) {
	t.Parallel()
	// Records before the cursor were shipped: damage to them found at
	// open is repaired (and counted as a repair) but costs no record. The
	// record at the cursor was not shipped: damage to it costs it.
	cases := []struct {
		name    string
		damaged int // the record damaged; the cursor is at record 50
		lost    []string
	}{
		{"the record just before the cursor, ending at it", 49, nil},
		{"a record well before the cursor", 10, nil},
		{"the record at the cursor", 50, want(50, 1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openSpool(t, SpoolConfig{Dir: dir})
			appendN(t, s, 0, 100)
			stop := make(chan struct{})
			close(stop)
			entries, next, err := s.Read(stop, nil, 50, 1<<20)
			if err != nil || len(entries) != 50 {
				t.Fatalf("read %d entries: %v", len(entries), err)
			}
			if err := s.Ack(next); err != nil {
				t.Fatal(err)
			}
			s.Close()
			seg := lastSegment(t, dir)
			l := layout(t, seg)
			if l[50].off != next.Off {
				t.Fatalf("the cursor is at %d, record 50 at %d", next.Off, l[50].off)
			}
			flipByte(t, seg, l[c.damaged].off+entryHeaderLen+bodyFixedLen+4)

			stats := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
			if got := drain(t, s2); !slices.Equal(got, without(want(50, 50), c.lost)) {
				t.Fatalf("read %v", got)
			}
			if d, r := stats.DroppedDamaged.Load(), stats.SpoolRepairs.Load(); d != uint64(len(c.lost)) || r != 1 {
				t.Fatalf("DroppedDamaged = %d, SpoolRepairs = %d; want %d and 1", d, r, len(c.lost))
			}
		})
	}
}

func TestGarbageAfterARolledSegmentsLastRecordCostsNoRecord(t *testing.T) {
	t.Parallel()
	// Bytes written past the last record of a segment that is not the
	// newest (the next one starts with the sequence number that follows
	// its last record): a repair, and no record lost.
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s, 0, 3000)
	s.Close()
	segs := segments(t, dir)
	if len(segs) < 2 {
		t.Fatalf("%d segments", len(segs))
	}
	garbage := []byte("bytes that are no entry at all")
	appendBytes(t, segs[0], garbage)
	stats := new(Stats)
	core, logs := observer.New(zapcore.WarnLevel)
	s2 := openSpool(t, SpoolConfig{Dir: dir, Stats: stats, Logger: zap.New(core)})
	if got := drain(t, s2); !slices.Equal(got, want(0, 3000)) {
		t.Fatalf("read %d records, want the 3000", len(got))
	}
	if d, r := stats.DroppedDamaged.Load(), stats.SpoolRepairs.Load(); d != 0 || r != 1 {
		t.Fatalf("DroppedDamaged = %d, SpoolRepairs = %d; want 0 and 1", d, r)
	}
	// The repair is logged with the bytes it cut off.
	if l := logs.FilterMessage("spool segment damaged, skipped to the next intact record").All(); len(l) != 1 ||
		l[0].ContextMap()["bytes_discarded"] != int64(len(garbage)) || l[0].ContextMap()["records_lost"] != uint64(0) {
		t.Fatalf("logged %v, want one repair of %d bytes and no record", l, len(garbage))
	}
}

func TestRefusedRecordsAreLoggedAtABoundedRate(t *testing.T) {
	t.Parallel()
	// A full spool refuses every record, each counted; the log gets the
	// first refusal and then at most a line every 10s, not a line per
	// request.
	core, logs := observer.New(zapcore.InfoLevel)
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{MaxSize: 1 << 20, Stats: stats, Logger: zap.New(core)})
	value := bytes.Repeat([]byte("x"), 4000)
	for s.Append("k", value) == nil {
	}
	for range 500 {
		if err := s.Append("k", value); !errors.Is(err, ErrSpoolFull) {
			t.Fatalf("append to a full spool: %v", err)
		}
	}
	if n := stats.DroppedFull.Load(); n != 501 {
		t.Fatalf("DroppedFull = %d, want 501", n)
	}
	if n := logs.FilterMessage("spool full, record dropped").Len(); n != 1 {
		t.Fatalf("%d lines logged for 501 refusals in a moment, want 1", n)
	}
}

func TestCloseLeavesNoSegmentOpen(t *testing.T) {
	t.Parallel()
	// Close closes every segment file: the writer's, the one prepared
	// ahead, and the reader's.
	for _, c := range []struct{ read, noMap bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		read := c.read
		t.Run(fmt.Sprintf("read %v, mapped %v", c.read, !c.noMap), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, noMap: c.noMap})
			appendN(t, s, 0, 3000)
			waitPrepared(t, s) // the next segment, for Close to remove
			if read {
				// Across every segment, each deleted once read.
				if got := drain(t, s); !slices.Equal(got, want(0, 3000)) {
					t.Fatalf("read %d records", len(got))
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if n := openFiles(t, dir); n != 0 {
				t.Fatalf("%d segment files (deleted ones included) still open after Close", n)
			}
			written := 2
			if read {
				written = 1 // the active one; the one before was deleted once read
			}
			if m, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(m) != written {
				t.Fatalf("%d segment files after Close, want %d: the one prepared ahead was left", len(m), written)
			}
		})
	}
}

func TestReadReportsASegmentItCannotOpen(t *testing.T) {
	t.Parallel()
	// A segment removed from under the spool: Read reports it, with no
	// entries and no panic.
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s, 0, 3000)
	segs := segments(t, dir)
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	close(stop)
	entries, _, err := s.Read(stop, nil, 100, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "opening spool segment") || len(entries) != 0 {
		t.Fatalf("Read: %d entries, %v; want an error opening the segment", len(entries), err)
	}
}

// openFiles counts this process's open descriptors of dir's segments,
// deleted ones included.
func openFiles(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") && strings.Contains(target, ".seg") {
			n++
		}
	}
	return n
}

func TestDamageMetAtTheStartOfAReadCountsEveryRecordItTook(t *testing.T) {
	t.Parallel()
	// Damage that appears while the spool is open, over three records,
	// right where a read starts: the first read of a segment, or the read
	// after an Ack. The reader counts the three, from the sequence number
	// it expected there, not one for a run of unknown length.
	for _, from := range []int{0, 50} {
		t.Run(fmt.Sprintf("records %d-%d", from, from+2), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stats := new(Stats)
			s := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
			appendN(t, s, 0, 100)
			stop := make(chan struct{})
			close(stop)
			if from > 0 {
				entries, next, err := s.Read(stop, nil, from, 1<<20)
				if err != nil || len(entries) != from {
					t.Fatalf("read %d: %v", len(entries), err)
				}
				if err := s.Ack(next); err != nil {
					t.Fatal(err)
				}
			}
			// More records: the reader's window no longer holds what is
			// left, so the next read reads the file again from the cursor.
			appendN(t, s, 100, 10)
			seg := filepath.Join(dir, segName(s.activeN))
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			l := layout(t, seg)
			for i := from; i < from+3; i++ {
				off := l[i].off + entryHeaderLen + bodyFixedLen + 4
				writeAtFile(t, seg, []byte{b[off] ^ 0x5a}, off) // in place: the segment is mapped
			}
			if got := drain(t, s); !slices.Equal(got, want(from+3, 107-from)) {
				t.Fatalf("read %v", got)
			}
			if d := stats.DroppedDamaged.Load(); d != 3 {
				t.Fatalf("DroppedDamaged = %d, want 3", d)
			}
		})
	}
}

func TestAFailedRollWithEverythingShippedReclaimsAndTakesTheRecord(t *testing.T) {
	t.Parallel()
	// Segments written with write(2) on a disk that the first one fills:
	// the roll to the next fails for lack of space (no segment prepared
	// ahead). With every record shipped, the append reclaims the full
	// segment's space and writes its record into the next one.
	dir := t.TempDir()
	const entry = 16 + 10 + 1 + 1009           // appendRecord's records
	full := int64(segmentHeaderLen + 63*entry) // 63 fill a 64KiB segment
	d := &smallDisk{dir: dir, size: full + 10}
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{Dir: dir, MaxSize: 64 << 20, SegmentSize: 64 << 10, Stats: stats, writeAt: d.writeAt, noMap: true})
	s.prepareHook = func(uint64) error { return errors.New("no segment prepared ahead in this test") }
	var accepted []string
	for i := range 63 {
		v, ok := appendRecord(t, s, "r", i)
		if !ok {
			t.Fatalf("record %d refused", i)
		}
		accepted = append(accepted, v)
	}
	if d.used() != full {
		t.Fatalf("the segment holds %d bytes, want %d", d.used(), full)
	}
	got := drain(t, s)
	v, ok := appendRecord(t, s, "r", 63)
	if !ok {
		t.Fatalf("the record after a failed roll was refused, with every record shipped (disk %d of %d bytes)", d.used(), d.size)
	}
	accepted = append(accepted, v)
	got = append(got, drain(t, s)...)
	if !slices.Equal(got, accepted) || stats.DroppedError.Load() != 0 {
		t.Fatalf("read %d records of %d, %d refused", len(got), len(accepted), stats.DroppedError.Load())
	}
}

func TestACaughtUpReaderLeavesTheActiveSegmentOnADiskWithRoom(t *testing.T) {
	t.Parallel()
	// Reclaiming the active segment is for a disk found full; with room,
	// a reader catching up with a write(2) segment leaves it active.
	s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10, noMap: true})
	for i := range 100 { // a roll
		if _, ok := appendRecord(t, s, "r", i); !ok {
			t.Fatalf("record %d refused", i)
		}
	}
	if changes(s, func() { drain(t, s) }) {
		t.Fatal("the active segment was reclaimed on a disk with room")
	}
}

func TestARepairedSegmentHeaderIsRepairedOnce(t *testing.T) {
	t.Parallel()
	// A damaged segment header is rewritten at open, with the sequence
	// number of its first record: the next open finds it intact, and
	// counts and logs nothing. The damage run in the middle of a segment
	// is logged with its length.
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s, 0, 3000)
	s.Close()
	segs := segments(t, dir)
	flipByte(t, segs[1], 9) // the header's sequence number
	l := layout(t, segs[0])
	flipByte(t, segs[0], l[100].off+entryHeaderLen+bodyFixedLen+4)
	stats := new(Stats)
	core, logs := observer.New(zapcore.WarnLevel)
	s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats, Logger: zap.New(core)})
	if r, d := stats.SpoolRepairs.Load(), stats.DroppedDamaged.Load(); r != 2 || d != 1 {
		t.Fatalf("first open: SpoolRepairs = %d, DroppedDamaged = %d; want 2 and 1", r, d)
	}
	var run int64
	for _, e := range logs.All() {
		if e.ContextMap()["segment"] == segs[0] {
			run = e.ContextMap()["bytes_discarded"].(int64)
		}
	}
	if run != l[100].size {
		t.Fatalf("the damaged record's run logged as %d bytes, want %d", run, l[100].size)
	}
	s2.Close()
	stats2 := new(Stats)
	s3 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats2})
	if r, d := stats2.SpoolRepairs.Load(), stats2.DroppedDamaged.Load(); r != 0 || d != 0 {
		t.Fatalf("second open: SpoolRepairs = %d, DroppedDamaged = %d; want the damage counted once", r, d)
	}
	if got := drain(t, s3); !slices.Equal(got, without(want(0, 3000), []string{l[100].value})) {
		t.Fatalf("read %d records, want 2999", len(got))
	}
}

func TestASkipEntryDamagedWhileRunningCostsNoRecord(t *testing.T) {
	t.Parallel()
	// Bytes that are no entry, between two records, are overwritten by a
	// skip entry at open (a repair, no record lost). That skip entry,
	// damaged in turn while the spool runs, is a second repair that costs
	// no record either: the record after it has the sequence number
	// expected. The reader marks it skipped again, in place; where it
	// cannot (the segment's name now a symlink), it logs that and reads on.
	cases := []struct {
		name    string
		symlink bool
	}{
		{"marked skipped in place", false},
		{"the segment's name replaced by a symlink", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
			appendN(t, s, 0, 3000)
			s.Close()
			path := segments(t, dir)[0]
			l := layout(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			at := l[20].off
			garbage := []byte("forty bytes that are no entry whatsoever")
			b = slices.Concat(b[:at], garbage, b[at:])
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}

			stats := new(Stats)
			core, logs := observer.New(zapcore.WarnLevel)
			s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats, Logger: zap.New(core)})
			if d, r := stats.DroppedDamaged.Load(), stats.SpoolRepairs.Load(); d != 0 || r != 1 {
				t.Fatalf("at open: DroppedDamaged = %d, SpoolRepairs = %d; want 0 and 1", d, r)
			}
			b, err = os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if size, _, skip, st := entryAt(b[at:], int64(len(b))-at, false); st != entryOK || !skip || size != int64(len(garbage)) {
				t.Fatalf("at %d after open: %d bytes, skip %v, %v; want a skip entry over the %d bytes", at, size, skip, st, len(garbage))
			}
			flipByte(t, path, at+9) // the skip entry's sequence number

			stop := make(chan struct{})
			close(stop)
			got := drainFrom(t, s2, stop, 5) // the reader has the segment open
			if c.symlink {
				moved := path + ".moved"
				if err := os.Rename(path, moved); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(moved, path); err != nil {
					t.Fatal(err)
				}
			}
			for len(got) < 100 { // past the damage, in the same segment
				entries, next, err := s2.Read(stop, nil, 100, 1<<20)
				if err != nil || len(entries) == 0 {
					t.Fatalf("read %d entries: %v", len(entries), err)
				}
				for _, e := range entries {
					got = append(got, string(e.Value))
				}
				if err := s2.Ack(next); err != nil {
					t.Fatal(err)
				}
			}
			if !c.symlink {
				b, err = os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, skip, st := entryAt(b[at:], int64(len(b))-at, false); st != entryOK || !skip {
					t.Fatalf("at %d after the read: skip %v, %v; want the skip entry marked again", at, skip, st)
				}
			}
			got = append(got, drain(t, s2)...)
			if !slices.Equal(got, want(0, 3000)) {
				t.Fatalf("read %d records, want the 3000", len(got))
			}
			if d, r := stats.DroppedDamaged.Load(), stats.SpoolRepairs.Load(); d != 0 || r != 2 {
				t.Fatalf("DroppedDamaged = %d, SpoolRepairs = %d; want 0 and 2", d, r)
			}
			// Each repair logged with the bytes it passed over: the garbage
			// at open, the damaged skip entry over it while running.
			for i, e := range logs.FilterMessage("spool segment damaged, skipped to the next intact record").All() {
				if n := e.ContextMap()["bytes_discarded"]; i > 1 || n != int64(len(garbage)) {
					t.Fatalf("repair %d logged with %v bytes discarded, want 2 repairs of %d", i+1, n, len(garbage))
				}
			}
			refused := logs.FilterMessage("marking damaged spool entries skipped").Len()
			if wantRefused := map[bool]int{false: 0, true: 1}[c.symlink]; refused != wantRefused {
				t.Fatalf("logged the damage not marked skipped %d times, want %d", refused, wantRefused)
			}
		})
	}
}

// drainFrom reads one batch of at most n records and acknowledges it.
func drainFrom(t *testing.T, s *Spool, stop chan struct{}, n int) []string {
	t.Helper()
	entries, next, err := s.Read(stop, nil, n, 1<<20)
	if err != nil || len(entries) != n {
		t.Fatalf("read %d entries: %v", len(entries), err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, string(e.Value))
	}
	if err := s.Ack(next); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestASegmentCutShortUnderTheRunningReader(t *testing.T) {
	t.Parallel()
	// A rolled segment, not read yet, cut in the middle of a record while
	// the spool runs (its recorded end is past the file's end now): the
	// reader reads what is left, counts the records cut off, and goes on
	// to the next segment.
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10, Stats: stats})
	appendN(t, s, 0, 3000)
	path, _ := spanOf(t, s, want(0, 1)[0])
	l := layout(t, path)
	if err := os.Truncate(path, l[1000].off+5); err != nil {
		t.Fatal(err)
	}
	var lost []string
	for _, sp := range l[1000:] {
		lost = append(lost, sp.value)
	}
	if got := drain(t, s); !slices.Equal(got, without(want(0, 3000), lost)) {
		t.Fatalf("read %d records, want the %d left", len(got), 3000-len(lost))
	}
	if d := stats.DroppedDamaged.Load(); d != uint64(len(lost)) {
		t.Fatalf("DroppedDamaged = %d, want the %d cut off", d, len(lost))
	}
}

func TestAShippedSegmentsFileIsClosedOnceDeleted(t *testing.T) {
	t.Parallel()
	// A read that ends a segment leaves the reader's file of it open; the
	// Ack that deletes the segment closes it, rather than leaving a
	// deleted file open until the next read.
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s, 0, 3000)
	s.bg.Wait() // the rolled segments trimmed and closed by the writer
	first := s.cursor.Seg
	stop := make(chan struct{})
	close(stop)
	for {
		entries, next, err := s.Read(stop, nil, 100, 1<<20)
		if err != nil || len(entries) == 0 {
			t.Fatalf("read %d entries: %v; the first segment never ended", len(entries), err)
		}
		if next.Seg == first {
			if err := s.Ack(next); err != nil {
				t.Fatal(err)
			}
			continue
		}
		// The control: the reader still has the first segment open.
		if n := descriptorsOf(t, filepath.Join(dir, segName(first))); n != 1 {
			t.Fatalf("%d descriptors of the segment read to its end, want the reader's", n)
		}
		if err := s.Ack(next); err != nil {
			t.Fatal(err)
		}
		break
	}
	if _, err := os.Stat(filepath.Join(dir, segName(first))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the shipped segment is still there: %v", err)
	}
	if n := descriptorsOf(t, filepath.Join(dir, segName(first))); n != 0 {
		t.Fatalf("%d descriptors of the deleted segment still open", n)
	}
}

// descriptorsOf counts this process's open descriptors of the file at
// path, deleted or not.
func descriptorsOf(t *testing.T, path string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && (target == path || target == path+" (deleted)") {
			n++
		}
	}
	return n
}

func TestOpenLeavesNoCheckedSegmentMapped(t *testing.T) {
	t.Parallel()
	// Open maps each segment to check it, and unmaps it once checked:
	// only the new active segment stays mapped.
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s, 0, 3000)
	s.Close()
	checked := segments(t, dir)
	if len(checked) < 2 {
		t.Fatalf("%d segments", len(checked))
	}
	s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps")
	}
	for _, line := range strings.Split(string(maps), "\n") {
		for _, path := range checked {
			if strings.HasSuffix(line, " "+path) || strings.HasSuffix(line, " "+path+" (deleted)") {
				t.Fatalf("%s still mapped after open: %s", path, line)
			}
		}
	}
	if got := drain(t, s2); !slices.Equal(got, want(0, 3000)) {
		t.Fatalf("read %d records, want the 3000", len(got))
	}
}
