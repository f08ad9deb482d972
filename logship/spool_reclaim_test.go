package logship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// smallDisk is a writeAt for a spool whose segments are not mapped: a
// write that would take the segment files past size bytes fails with
// ENOSPC and writes nothing, as on a full file system. hook, if set, runs
// instead of the write.
type smallDisk struct {
	dir  string
	size int64

	mu   sync.Mutex
	hook func(f *os.File, b []byte, off int64, write func() (int, error)) (int, error)
}

func (d *smallDisk) used() int64 {
	m, _ := filepath.Glob(filepath.Join(d.dir, "*.seg"))
	var n int64
	for _, p := range m {
		if st, err := os.Stat(p); err == nil {
			n += st.Size()
		}
	}
	return n
}

func (d *smallDisk) writeAt(f *os.File, b []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	write := func() (int, error) {
		st, err := f.Stat()
		if err != nil {
			return 0, err
		}
		if grow := off + int64(len(b)) - st.Size(); grow > 0 && d.used()+grow > d.size {
			return 0, syscall.ENOSPC
		}
		return f.WriteAt(b, off)
	}
	if d.hook != nil {
		return d.hook(f, b, off, write)
	}
	return write()
}

// appendRecord appends record i of round, about 1000 bytes, and reports
// whether it was accepted.
func appendRecord(t *testing.T, s *Spool, round string, i int) (string, bool) {
	t.Helper()
	v := fmt.Sprintf("%s-%06d-%s", round, i, strings.Repeat("v", 1000))
	switch err := s.Append("k", []byte(v)); {
	case err == nil:
		return v, true
	case errors.Is(err, ErrSpoolFull):
		t.Fatalf("the spool's own limit applied, not the disk's: %v", err)
	}
	return v, false
}

// outage appends n records of round with nothing read, and returns those
// accepted and how many were refused, failing if none was: the disk must
// fill up.
func outage(t *testing.T, s *Spool, round string, n int) ([]string, int) {
	t.Helper()
	var accepted []string
	refused := 0
	for i := range n {
		if v, ok := appendRecord(t, s, round, i); ok {
			accepted = append(accepted, v)
		} else {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("%d records of about 1000 bytes never filled the disk up", n)
	}
	return accepted, refused
}

// smallTmpfs mounts a tmpfs of size ("8m") on a new directory for the
// test, or skips the test where it cannot.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the tmpfs: %v", err)
		}
	})
	return dir
}

func activeSegment(s *Spool) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeN
}

func nextSeq(s *Spool) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq
}

// changes returns, after fn, whether the active segment changed.
func changes(s *Spool, fn func()) bool {
	before := activeSegment(s)
	fn()
	return activeSegment(s) != before
}

// A disk smaller than a segment: the active segment, written with
// write(2), takes all of it. Once every record in it is shipped, its space
// is reclaimed, and records are kept again, three times the disk over,
// read back once, in order, with unbroken sequence numbers.
func TestAFullDiskTakesRecordsAgainOnceTheActiveSegmentIsShipped(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// outage: the disk fills with nothing read, then the spool is
		// drained, and the Ack that catches up reclaims the segment.
		// Otherwise shipping keeps up, and the append that finds the disk
		// full reclaims it.
		outage bool
	}{
		{"after an outage, by the Ack that catches up", true},
		{"while shipping keeps up, by the append that finds the disk full", false},
	}
	const disk = 256 << 10
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			d := &smallDisk{dir: dir, size: disk}
			stats := new(Stats)
			s := openSpool(t, SpoolConfig{Dir: dir, MaxSize: 64 << 20, SegmentSize: 8 << 20, Stats: stats,
				writeAt: d.writeAt, noMap: true})

			var accepted, got []string
			refused := 0
			if c.outage {
				// Three times what the disk holds, nothing read.
				accepted, refused = outage(t, s, "full", 3*disk/1000)
				if d := stats.DroppedError.Load(); d != uint64(refused) {
					t.Fatalf("DroppedError = %d, want the %d refused", d, refused)
				}
				if !changes(s, func() { got = drain(t, s) }) {
					t.Fatal("the Ack that caught up left the full segment active")
				}
				if !slices.Equal(got, accepted) {
					t.Fatalf("read %d records, want the %d accepted, once each, in order", len(got), len(accepted))
				}
				if d.used() > 4<<10 {
					t.Errorf("the disk holds %d bytes of segments once every record is shipped", d.used())
				}
				accepted, got = accepted[:0], got[:0]
			}

			// Three times the disk, each record shipped before the next.
			first := activeSegment(s)
			var rolledBy string
			for i := range 3 * disk / 1000 {
				var v string
				var ok bool
				if changes(s, func() { v, ok = appendRecord(t, s, "room", i) }) && rolledBy == "" {
					rolledBy = "append"
				}
				if !ok {
					t.Fatalf("record %d refused with every record before it shipped (active segment %d, disk %d of %d bytes)", i, activeSegment(s), d.used(), disk)
				}
				accepted = append(accepted, v)
				if changes(s, func() { got = append(got, drain(t, s)...) }) && rolledBy == "" {
					rolledBy = "ack"
				}
			}
			got = append(got, drain(t, s)...)
			if !slices.Equal(got, accepted) {
				t.Fatalf("read %d records, want the %d accepted, once each, in order", len(got), len(accepted))
			}
			if n := activeSegment(s) - first; n < 2 || n > 3*4+1 {
				t.Errorf("%d segments reclaimed writing three times the disk: want one every quarter of it or so, not none, not one per batch", n)
			}
			if want := map[bool]string{true: "ack", false: "append"}[c.outage]; rolledBy != want {
				t.Errorf("the first segment written after the disk had room was reclaimed by %q, want %q", rolledBy, want)
			}
			if d := stats.DroppedError.Load(); d != uint64(refused) {
				t.Errorf("DroppedError = %d, want the %d refused while the disk was full", d, refused)
			}
			if n, a := nextSeq(s), stats.Accepted.Load(); n != a+1 {
				t.Errorf("next sequence number %d after %d records accepted: numbers skipped or reused", n, a)
			}
			if d, r := stats.DroppedDamaged.Load(), stats.SpoolRepairs.Load(); d != 0 || r != 0 {
				t.Errorf("DroppedDamaged = %d, SpoolRepairs = %d: reclaiming must look like no damage", d, r)
			}
			// What the spool counts as held is what is on the disk: the
			// active segment's bytes, every segment before it deleted.
			if st, err := os.Stat(filepath.Join(dir, segName(activeSegment(s)))); err != nil || s.Size() != st.Size() {
				t.Errorf("Size() = %d with every record shipped, want the active segment's bytes (%v, %v)", s.Size(), st, err)
			}

			// An open finds the same.
			copied := crashCopy(t, dir)
			stats2 := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: copied, SegmentSize: 8 << 20, Stats: stats2})
			if got := drain(t, s2); len(got) != 0 {
				t.Fatalf("after a reopen %d records were read again", len(got))
			}
			if n := nextSeq(s2); n != nextSeq(s) {
				t.Errorf("after a reopen the next sequence number is %d, want %d", n, nextSeq(s))
			}
			if d, r := stats2.DroppedDamaged.Load(), stats2.SpoolRepairs.Load(); d != 0 || r != 0 {
				t.Errorf("after a reopen DroppedDamaged = %d, SpoolRepairs = %d", d, r)
			}
		})
	}
}

// A crash at each step of reclaiming the active segment: the reopened
// spool reads again no record that was shipped, loses none that was not,
// counts no damage, goes on from the next sequence number, and keeps the
// records appended after it.
func TestACrashWhileReclaimingTheActiveSegmentKeepsEveryRecordOnce(t *testing.T) {
	t.Parallel()
	steps := []string{
		"cursor saved, segment whole",
		"segment whole under its new header",
		"segment cut, the next one not stamped",
		"the next segment active",
		"the reader moved on, the segment deleted",
	}
	for _, byAck := range []bool{true, false} {
		name := "while shipping keeps up, by the append that finds the disk full"
		if byAck {
			name = "after an outage, by the Ack that catches up"
		}
		t.Run(name, func(t *testing.T) {
			const disk = 256 << 10
			const segment = 8 << 20
			dir := t.TempDir()
			d := &smallDisk{dir: dir, size: disk}
			s := openSpool(t, SpoolConfig{Dir: dir, MaxSize: 64 << 20, SegmentSize: segment,
				writeAt: d.writeAt, noMap: true})
			var accepted []string
			shipped := 0

			type crash struct {
				dir     string
				nextSeq uint64   // the spool's when it crashed
				left    []string // accepted, not acknowledged
			}
			crashes := map[string]crash{}
			// snap copies the directory as a crash at step would leave it.
			snap := func(step string, next uint64, left []string) {
				crashes[step] = crash{dir: crashCopy(t, dir), nextSeq: next, left: slices.Clone(left)}
			}
			d.hook = func(f *os.File, b []byte, off int64, write func() (int, error)) (int, error) {
				if off != 0 || len(b) != segmentHeaderLen {
					return write()
				}
				st, err := f.Stat()
				if err != nil {
					return 0, err
				}
				// In a reclaim (segments are not filled here: every roll is
				// one), the spool's lock is held by this goroutine, and every
				// record accepted is acknowledged.
				switch first := binary.LittleEndian.Uint64(b[8:]); {
				case st.Size() > segmentHeaderLen: // the header of the segment reclaimed
					snap(steps[0], s.nextSeq, nil)
					n, err := write()
					snap(steps[1], s.nextSeq, nil)
					return n, err
				case st.Size() == segmentHeaderLen && first != 0: // the next segment's, as it becomes active
					snap(steps[2], s.nextSeq, nil)
				}
				return write()
			}

			if byAck {
				accepted, _ = outage(t, s, "full", 2*disk/1000)
				shipped += len(drain(t, s)) // its last Ack reclaims
			} else {
				for i := 0; len(crashes) == 0; i++ {
					if i == 3*disk/1000 {
						t.Fatal("no append reclaimed the segment")
					}
					v, ok := appendRecord(t, s, "room", i)
					if !ok {
						t.Fatalf("record %d refused with every record before it shipped", i)
					}
					accepted = append(accepted, v)
					if len(crashes) == 0 {
						shipped += len(drain(t, s))
					}
				}
			}
			snap(steps[3], nextSeq(s), accepted[shipped:])
			shipped += len(drain(t, s))
			snap(steps[4], nextSeq(s), nil)
			if shipped != len(accepted) {
				t.Fatalf("shipped %d of the %d records accepted", shipped, len(accepted))
			}

			for _, step := range steps {
				c, ok := crashes[step]
				if !ok {
					t.Errorf("%s: no such step was seen", step)
					continue
				}
				stats := new(Stats)
				s2 := openSpool(t, SpoolConfig{Dir: c.dir, SegmentSize: segment, Stats: stats})
				if n := nextSeq(s2); n != c.nextSeq {
					t.Errorf("%s: the next sequence number is %d after the crash, %d before", step, n, c.nextSeq)
				}
				if got := drain(t, s2); !slices.Equal(got, c.left) {
					t.Errorf("%s: read %d records after the crash, want the %d not acknowledged", step, len(got), len(c.left))
				}
				for i := range 5 {
					if _, ok := appendRecord(t, s2, "after", i); !ok {
						t.Fatalf("%s: appending after the crash failed", step)
					}
				}
				if got := drain(t, s2); len(got) != 5 || !strings.HasPrefix(got[0], "after-000000-") {
					t.Errorf("%s: read %d records appended after the crash, want the 5", step, len(got))
				}
				if dd, r := stats.DroppedDamaged.Load(), stats.SpoolRepairs.Load(); dd != 0 || r != 0 {
					t.Errorf("%s: DroppedDamaged = %d, SpoolRepairs = %d after the crash", step, dd, r)
				}
				s2.Close()
			}
		})
	}
}

// The same on a real file system smaller than a segment: the segment
// cannot be allocated in full, so appends to it use write(2) and it
// grows until the disk is full. Once drained, records are kept again.
func TestASegmentLargerThanTheFileSystemIsReclaimedOnceShipped(t *testing.T) {
	t.Parallel()
	dir := smallTmpfs(t, "8m")
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{Dir: dir + "/spool", MaxSize: 1 << 30, Stats: stats, Fsync: FsyncNever})
	if s.cfg.SegmentSize <= 8<<20 {
		t.Fatalf("segments of %d bytes fit the file system", s.cfg.SegmentSize)
	}
	accepted, refused := outage(t, s, "full", 12_000) // 12 MB
	if s.mapped != nil {
		t.Fatal("a segment larger than the file system was mapped")
	}
	got := drain(t, s)
	// Twice the file system, shipped as it goes.
	for i := range 16_000 {
		v, ok := appendRecord(t, s, "room", i)
		if !ok {
			t.Fatalf("record %d refused after the spool was drained", i)
		}
		accepted = append(accepted, v)
		if i%1000 == 999 {
			got = append(got, drain(t, s)...)
		}
	}
	got = append(got, drain(t, s)...)
	if !slices.Equal(got, accepted) {
		t.Fatalf("read %d records, want the %d accepted, once each, in order", len(got), len(accepted))
	}
	if d := stats.DroppedError.Load(); d != uint64(refused) {
		t.Errorf("DroppedError = %d, want the %d refused while the disk was full", d, refused)
	}
	if d := stats.DroppedDamaged.Load(); d != 0 {
		t.Errorf("DroppedDamaged = %d", d)
	}
	if n, a := nextSeq(s), stats.Accepted.Load(); n != a+1 {
		t.Errorf("next sequence number %d after %d records accepted", n, a)
	}
	t.Logf("accepted %d, refused %d while full", len(accepted), refused)
}

func TestWhenTheActiveSegmentIsWorthReclaiming(t *testing.T) {
	t.Parallel()
	// Ack reclaims a caught-up active segment on a tight disk once it
	// holds a quarter of what the spool held when the disk was found full
	// (room), at most a sixteenth of a segment, a sixteenth if the disk
	// was never found full.
	cases := []struct {
		name      string
		segment   int64
		room      int64
		threshold int64
	}{
		{"never found full", 8 << 20, 0, 512 << 10},
		{"found full holding little", 8 << 20, 1 << 20, 256 << 10},
		{"found full holding much", 8 << 20, 16 << 20, 512 << 10},
	}
	for _, c := range cases {
		s := &Spool{cfg: SpoolConfig{SegmentSize: c.segment}, room: c.room}
		if got := s.reclaimFrom(); got != c.threshold {
			t.Errorf("%s: reclaims from %d bytes, want %d", c.name, got, c.threshold)
		}
	}

	// Only a segment that holds records, all acknowledged.
	s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10, noMap: true})
	reclaimable := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.reclaimable()
	}
	if reclaimable() {
		t.Fatal("a new, empty active segment is reclaimable")
	}
	appendN(t, s, 0, 3)
	if reclaimable() {
		t.Fatal("an active segment with records not read is reclaimable")
	}
	drain(t, s)
	if !reclaimable() {
		t.Fatal("an active segment whose records are all acknowledged is not reclaimable")
	}
}
