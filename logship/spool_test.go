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
	"testing"
	"time"
)

func openSpool(t *testing.T, cfg SpoolConfig) *Spool {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Fsync == 0 {
		cfg.Fsync = FsyncNever
	}
	s, err := OpenSpool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendN(t *testing.T, s *Spool, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append(fmt.Sprintf("k%d", i%7), []byte(fmt.Sprintf("record-%06d", i))); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// drain reads and acknowledges everything the spool holds now.
func drain(t *testing.T, s *Spool) []string {
	t.Helper()
	stop := make(chan struct{})
	close(stop) // return at once when caught up
	var got []string
	var buf []Entry
	for {
		entries, next, err := s.Read(stop, buf[:0], 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 {
			return got
		}
		for _, e := range entries {
			got = append(got, string(e.Value))
		}
		buf = entries
		if err := s.Ack(next); err != nil {
			t.Fatal(err)
		}
	}
}

func want(from, n int) []string {
	var w []string
	for i := from; i < from+n; i++ {
		w = append(w, fmt.Sprintf("record-%06d", i))
	}
	return w
}

func TestSpoolReturnsRecordsInOrderOnce(t *testing.T) {
	t.Parallel()
	s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10})
	appendN(t, s, 0, 10_000)
	if got := drain(t, s); !slices.Equal(got, want(0, 10_000)) {
		t.Fatalf("read %d records, not the 10000 appended in order", len(got))
	}
	if got := drain(t, s); len(got) != 0 {
		t.Fatalf("read %d records again after they were acknowledged", len(got))
	}
}

func TestSpoolKeepsWhatWasNotAcknowledgedAcrossARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s, 0, 3000)
	stop := make(chan struct{})
	close(stop)
	entries, next, err := s.Read(stop, nil, 1000, 1<<20)
	if err != nil || len(entries) == 0 {
		t.Fatal(err, len(entries))
	}
	shipped := len(entries)
	if err := s.Ack(next); err != nil {
		t.Fatal(err)
	}
	// Read more but do not acknowledge: those must come back.
	if _, _, err := s.Read(stop, nil, 1000, 1<<20); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s2, 3000, 10)
	if got := drain(t, s2); !slices.Equal(got, want(shipped, 3010-shipped)) {
		t.Fatalf("after restart read %d records, want the %d not acknowledged plus 10 new", len(got), 3010-shipped)
	}
}

func TestSpoolRepairsATornTail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		intact int
	}{
		// Nothing after the newest segment's end says how many records
		// damage there held: it counts as one, a torn append.
		{"garbage written after the last record", func(t *testing.T, path string) {
			appendBytes(t, path, []byte("\x00\x13\x37garbage after a crash"))
		}, 100},
		{"the last record cut in half", func(t *testing.T, path string) {
			truncateBy(t, path, 7)
		}, 99},
		{"the last record's header cut", func(t *testing.T, path string) {
			truncateBy(t, path, int64(entryHeaderLen+bodyFixedLen+len("k1")+len("record-000099")-4)) // 4 bytes of its header remain
		}, 99},
		{"a flipped byte in the last record", func(t *testing.T, path string) {
			flipByte(t, path, -3)
		}, 99},
		{"a length field pointing past the end", func(t *testing.T, path string) {
			appendBytes(t, path, []byte{0xff, 0xff, 0x0f, 0x00, 1, 2, 3, 4, 5})
		}, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			stats := new(Stats)
			s := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
			appendN(t, s, 0, 100)
			s.Close()
			c.damage(t, lastSegment(t, dir))

			s2 := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
			if r, d := stats.SpoolRepairs.Load(), stats.DroppedDamaged.Load(); r != 1 || d != 1 {
				t.Fatalf("SpoolRepairs = %d, DroppedDamaged = %d; want 1, 1", r, d)
			}
			appendN(t, s2, 100, 5)
			got := drain(t, s2)
			if !slices.Equal(got, append(want(0, c.intact), want(100, 5)...)) {
				t.Fatalf("read %d records: %v...; want the %d intact ones and the 5 new", len(got), got[:min(3, len(got))], c.intact)
			}
		})
	}
}

func TestSpoolLosesOnlyTheDamagedRecordAtASegmentsStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{Dir: dir, Stats: stats, SegmentSize: 64 << 10})
	appendN(t, s, 0, 5000) // several segments
	s.Close()
	segs := segments(t, dir)
	if len(segs) < 3 {
		t.Fatalf("only %d segments", len(segs))
	}
	flipByte(t, segs[0], segmentHeaderLen+entryHeaderLen+12) // inside the first record's body

	s2 := openSpool(t, SpoolConfig{Dir: dir, Stats: stats, SegmentSize: 64 << 10})
	got := drain(t, s2)
	if r, d := stats.SpoolRepairs.Load(), stats.DroppedDamaged.Load(); r != 1 || d != 1 {
		t.Fatalf("SpoolRepairs = %d, DroppedDamaged = %d; want 1, 1", r, d)
	}
	if !slices.Equal(got, want(1, 4999)) {
		t.Fatalf("read %d records, want the 4999 after the damaged one", len(got))
	}
}

func TestSpoolStartsFromTheOldestSegmentWhenTheCursorIsDamaged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir})
	appendN(t, s, 0, 10)
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, "cursor"), []byte("garbage garbage garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openSpool(t, SpoolConfig{Dir: dir})
	if got := drain(t, s2); !slices.Equal(got, want(0, 10)) {
		t.Fatalf("read %v", got)
	}
}

func TestAFullSpoolRefusesAndCountsThenFreesSpaceAsItShips(t *testing.T) {
	t.Parallel()
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{MaxSize: 1 << 20, SegmentSize: 64 << 10, Stats: stats})
	value := []byte(strings.Repeat("x", 1000))
	accepted, refused := 0, 0
	for range 2000 {
		switch err := s.Append("k", value); err {
		case nil:
			accepted++
		case ErrSpoolFull:
			refused++
		default:
			t.Fatal(err)
		}
	}
	if refused == 0 || accepted == 0 {
		t.Fatalf("accepted %d, refused %d: the cap did not apply", accepted, refused)
	}
	if stats.DroppedFull.Load() != uint64(refused) || stats.Accepted.Load() != uint64(accepted) {
		t.Fatalf("counted %d accepted, %d dropped; want %d, %d", stats.Accepted.Load(), stats.DroppedFull.Load(), accepted, refused)
	}
	if size := s.Size(); size > 1<<20 {
		t.Fatalf("spool grew to %d bytes past its 1MiB cap", size)
	}
	if got := len(drain(t, s)); got != accepted {
		t.Fatalf("read %d, want %d", got, accepted)
	}
	if err := s.Append("k", value); err != nil {
		t.Fatalf("after shipping, append still fails: %v", err)
	}
	if size := s.Size(); size > 128<<10 {
		t.Fatalf("shipped segments not deleted: %d bytes", size)
	}
}

func TestOneSpoolDirectoryHasOneOwner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openSpool(t, SpoolConfig{Dir: dir})
	if s, err := OpenSpool(SpoolConfig{Dir: dir, Fsync: FsyncNever}); err == nil {
		s.Close()
		t.Fatal("a second open of the same directory succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("error %q does not say the directory is in use", err)
	}
}

func TestConcurrentAppendsAreAllReadOnce(t *testing.T) {
	t.Parallel()
	s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10})
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Append("k", []byte(fmt.Sprintf("%d-%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Read while they write.
	seen := map[string]bool{}
	stop := make(chan struct{})
	var buf []Entry
	for len(seen) < writers*each {
		entries, next, err := s.Read(stop, buf[:0], 500, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if seen[string(e.Value)] {
				t.Fatalf("%s read twice", e.Value)
			}
			seen[string(e.Value)] = true
		}
		buf = entries
		s.Ack(next)
	}
	wg.Wait()
}

func TestReadWaitsForAnAppendOrStop(t *testing.T) {
	t.Parallel()
	s := openSpool(t, SpoolConfig{})
	stop := make(chan struct{})
	got := make(chan int)
	go func() {
		entries, _, _ := s.Read(stop, nil, 10, 1<<20)
		got <- len(entries)
	}()
	select {
	case n := <-got:
		t.Fatalf("Read returned %d entries from an empty spool", n)
	case <-time.After(50 * time.Millisecond):
	}
	appendN(t, s, 0, 1)
	if n := <-got; n != 1 {
		t.Fatalf("Read returned %d entries after one append", n)
	}
	go func() {
		entries, _, _ := s.Read(stop, nil, 10, 1<<20)
		got <- len(entries)
	}()
	close(stop)
	if n := <-got; n != 1 {
		// The first Read was not acknowledged: the entry comes back.
		t.Fatalf("Read after stop returned %d entries, want the unacknowledged 1", n)
	}
}

func TestLagIsTheAgeOfTheOldestUnshippedRecord(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := openSpool(t, SpoolConfig{Now: func() time.Time { return now }})
	appendN(t, s, 0, 3)
	stop := make(chan struct{})
	close(stop)
	_, next, _ := s.Read(stop, nil, 10, 1<<20)
	now = now.Add(42 * time.Second)
	if lag := s.Lag(); lag != 42*time.Second {
		t.Fatalf("Lag = %v, want 42s", lag)
	}
	s.Ack(next)
	s.Read(stop, nil, 10, 1<<20)
	if lag := s.Lag(); lag != 0 {
		t.Fatalf("Lag after catching up = %v", lag)
	}
}

func TestAppendAfterCloseIsCountedAsDropped(t *testing.T) {
	t.Parallel()
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{Stats: stats})
	s.Close()
	if err := s.Append("k", []byte("v")); err != ErrClosed {
		t.Fatalf("Append after Close: %v", err)
	}
	if stats.DroppedError.Load() != 1 {
		t.Fatal("drop not counted")
	}
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	// Skip segments without a record (a header, then nothing or zeros),
	// such as a new active segment or the next one, prepared ahead.
	var out []string
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err == nil && len(b) >= segmentHeaderLen+entryHeaderLen && binary.LittleEndian.Uint64(b[segmentHeaderLen:]) != 0 {
			out = append(out, p)
		}
	}
	return out
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	s := segments(t, dir)
	if len(s) == 0 {
		t.Fatal("no segment with records")
	}
	return s[len(s)-1]
}

func readCount(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := readHeader(b)
	if r := scanEntries(b, segmentHeaderLen, false, first, 0, -1); r.tail || len(r.damage) > 0 {
		t.Fatalf("%s is damaged", path)
	}
	out, p := parseEntries(b[segmentHeaderLen:], int64(len(b)-segmentHeaderLen), false, first, nil, 1<<30, 1<<30)
	if p.status == entryBad || p.status == entryGap {
		t.Fatalf("%s: %v", path, p.status)
	}
	return len(out)
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-n); err != nil {
		t.Fatal(err)
	}
}

// flipByte flips the byte at off, counted from the end when negative.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x5a
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// crashCopy copies an open spool's directory as a crash would leave it:
// the active segment at its full allocated size, zeros after the last
// entry, no trim, no cursor update since the last Ack.
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestSpoolAfterACrashKeepsEveryAppendedRecord(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string, end int64)
		intact  int
		repairs uint64
	}{
		{"the zeroed end of the segment is trimmed, not counted as damage", func(*testing.T, string, int64) {}, 100, 0},
		{"garbage after the zeros is damage", func(t *testing.T, path string, _ int64) {
			appendBytes(t, path, []byte("garbage after a crash"))
		}, 100, 1},
		{"the last record half written", func(t *testing.T, path string, end int64) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 10), end-10); err != nil {
				t.Fatal(err)
			}
		}, 99, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, SpoolConfig{Dir: dir})
			appendN(t, s, 0, 100)
			seg := lastSegment(t, dir)
			if st, _ := os.Stat(seg); st.Size() != s.cfg.SegmentSize {
				t.Skipf("segments are not allocated in full on this file system (size %d)", st.Size())
			}
			end := s.writeEnd.Off
			copied := crashCopy(t, dir)
			c.damage(t, filepath.Join(copied, filepath.Base(seg)), end)

			stats := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: copied, Stats: stats})
			if got := stats.SpoolRepairs.Load(); got != c.repairs {
				t.Errorf("SpoolRepairs = %d, want %d", got, c.repairs)
			}
			if got := drain(t, s2); !slices.Equal(got, want(0, c.intact)) {
				t.Fatalf("read %d records, want the %d intact", len(got), c.intact)
			}
		})
	}
}

// waitPrepared waits until the next segment has been prepared ahead.
func waitPrepared(t *testing.T, s *Spool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.prepared) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the next segment was never prepared")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSpoolPreparesTheNextSegmentAheadAndRollsOntoIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s, 0, 1000) // the next segment is prepared at the first
	waitPrepared(t, s)
	s.mu.Lock()
	next := s.activeN + 1
	s.mu.Unlock()
	st, err := os.Stat(s.segPath(next))
	if err != nil {
		t.Fatalf("segment %d was not prepared: %v", next, err)
	}
	if st.Size() != 64<<10 && st.Size() != segmentHeaderLen {
		t.Fatalf("prepared segment is %d bytes, want the segment size or a header", st.Size())
	}
	appendN(t, s, 1000, 2000) // rolls onto it
	s.mu.Lock()
	active := s.activeN
	s.mu.Unlock()
	if active != next {
		t.Fatalf("active segment %d after the roll, want the prepared %d", active, next)
	}
	if got := drain(t, s); !slices.Equal(got, want(0, 3000)) {
		t.Fatalf("read %d records, not the 3000 appended in order", len(got))
	}
}

func TestSpoolAfterACrashWithAPreparedSegment(t *testing.T) {
	t.Parallel()
	const seg = 64 << 10
	cases := []struct {
		name    string
		damage  func(t *testing.T, prepared, rolled string)
		repairs uint64
	}{
		{"a prepared segment never written to is passed over", func(*testing.T, string, string) {}, 0},
		{"a prepared segment cut before its header is not damage", func(t *testing.T, prepared, _ string) {
			if err := os.Truncate(prepared, 0); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"a prepared segment of zeros without a header is not damage", func(t *testing.T, prepared, _ string) {
			if err := os.WriteFile(prepared, make([]byte, seg), 0o600); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"a rolled segment not yet trimmed is trimmed, not counted", func(t *testing.T, _, rolled string) {
			if err := os.Truncate(rolled, seg); err != nil {
				t.Fatal(err)
			}
		}, 0},
		{"garbage instead of a prepared segment's header is damage", func(t *testing.T, prepared, _ string) {
			if err := os.WriteFile(prepared, []byte("not a spool segment"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: seg})
			appendN(t, s, 0, 3000) // one full segment, the next over half full
			waitPrepared(t, s)
			s.mu.Lock()
			rolled, prepared := s.segPath(s.activeN-1), s.segPath(s.activeN+1)
			s.mu.Unlock()
			if st, err := os.Stat(prepared); err != nil {
				t.Fatal(err)
			} else if st.Size() != seg {
				t.Skipf("segments are not allocated in full on this file system (size %d)", st.Size())
			}
			copied := crashCopy(t, dir)
			prepared = filepath.Join(copied, filepath.Base(prepared))
			rolled = filepath.Join(copied, filepath.Base(rolled))
			c.damage(t, prepared, rolled)

			stats := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: copied, SegmentSize: seg, Stats: stats})
			if got := stats.SpoolRepairs.Load(); got != c.repairs {
				t.Errorf("SpoolRepairs = %d, want %d", got, c.repairs)
			}
			if got := drain(t, s2); !slices.Equal(got, want(0, 3000)) {
				t.Fatalf("read %d records, want the 3000 appended, once each, in order", len(got))
			}
			appendN(t, s2, 3000, 10)
			if got := drain(t, s2); !slices.Equal(got, want(3000, 10)) {
				t.Fatalf("after the reopen read %v, want the 10 new records", got)
			}
		})
	}
}

func TestRollsUnderConcurrentAppendsKeepEveryRecordOnceInOrder(t *testing.T) {
	t.Parallel()
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10, Stats: stats})
	const writers, each = 4, 3000
	pad := strings.Repeat("x", 200) // about 50 rolls in all
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Append("k", fmt.Appendf(nil, "%d %d %s", w, i, pad)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, writers) // each writer's next record
	stop := make(chan struct{})
	var buf []Entry
	for n := 0; n < writers*each; {
		entries, pos, err := s.Read(stop, buf[:0], 500, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			var w, i int
			if _, err := fmt.Sscanf(string(e.Value), "%d %d", &w, &i); err != nil {
				t.Fatalf("record %q: %v", e.Value, err)
			}
			if i != next[w] {
				t.Fatalf("writer %d: read record %d, want %d (lost, repeated or out of order)", w, i, next[w])
			}
			next[w]++
			n++
		}
		buf = entries
		if err := s.Ack(pos); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if got := drain(t, s); len(got) != 0 {
		t.Fatalf("read %d records more than were appended", len(got))
	}
	if r := stats.SpoolRepairs.Load(); r != 0 {
		t.Fatalf("SpoolRepairs = %d while rolling, want 0", r)
	}
	s.mu.Lock()
	size, active, segs := s.size, s.writeEnd.Off, len(s.segments)
	s.mu.Unlock()
	if segs != 1 || size != active {
		t.Fatalf("after shipping everything: %d segments, size %d; want the active segment only, %d bytes", segs, size, active)
	}
}

func TestCloseWhileTheNextSegmentIsBeingPrepared(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats})
	started, release := make(chan uint64, 1), make(chan struct{})
	s.prepareHook = func(n uint64) error {
		started <- n
		<-release
		return nil
	}
	appendN(t, s, 0, 1000)
	n := <-started
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	for {
		s.mu.Lock()
		c := s.closed
		s.mu.Unlock()
		if c {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.segPath(n)); !os.IsNotExist(err) {
		t.Fatalf("the segment prepared during Close is still there: %v", err)
	}
	s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats})
	if got := drain(t, s2); !slices.Equal(got, want(0, 1000)) {
		t.Fatalf("read %d records, want the 1000 appended", len(got))
	}
	if r := stats.SpoolRepairs.Load(); r != 0 {
		t.Fatalf("SpoolRepairs = %d, want 0", r)
	}
}

func TestRollsWithoutAPreparedSegment(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		hook func(release <-chan struct{}) func(uint64) error
	}{
		{"every preparation fails: segments are created on roll", func(<-chan struct{}) func(uint64) error {
			return func(uint64) error { return errors.New("no space left on device") }
		}},
		{"a preparation still running when the segment is full is waited for", func(release <-chan struct{}) func(uint64) error {
			return func(uint64) error {
				<-release
				return nil
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stats := new(Stats)
			s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10, Stats: stats})
			release := make(chan struct{})
			s.prepareHook = c.hook(release)
			done := make(chan struct{})
			go func() {
				defer close(done)
				appendN(t, s, 0, 10_000) // five segments
			}()
			time.Sleep(10 * time.Millisecond) // let the appends reach a roll, usually
			close(release)
			<-done
			if got := drain(t, s); !slices.Equal(got, want(0, 10_000)) {
				t.Fatalf("read %d records, not the 10000 appended in order", len(got))
			}
			if d, r := stats.DroppedError.Load(), stats.SpoolRepairs.Load(); d != 0 || r != 0 {
				t.Fatalf("%d records dropped, %d repairs; want none", d, r)
			}
		})
	}
}

func TestTheReaderStopsAtARolledSegmentsLastEntryBeforeItIsTrimmed(t *testing.T) {
	t.Parallel()
	const seg = 64 << 10
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{SegmentSize: seg, Stats: stats})
	appendN(t, s, 0, 3000) // rolled once
	s.bg.Wait()            // the rolled segment is trimmed...
	s.mu.Lock()
	rolled := s.segPath(s.activeN - 1)
	s.mu.Unlock()
	if err := os.Truncate(rolled, seg); err != nil { // ...and zeros put back, as before its trim
		t.Fatal(err)
	}
	if got := drain(t, s); !slices.Equal(got, want(0, 3000)) {
		t.Fatalf("read %d records, want the 3000 appended", len(got))
	}
	if r := stats.SpoolRepairs.Load(); r != 0 {
		t.Fatalf("SpoolRepairs = %d: the untrimmed end was taken for damage", r)
	}
}

// openSegments counts this process's open descriptors of dir's segments.
func openSegments(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && filepath.Dir(target) == dir && strings.HasSuffix(target, ".seg") {
			n++
		}
	}
	return n
}

func TestRolledSegmentsAreSyncedAndClosedByTheNextSync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// An interval the test never waits for: it calls Sync itself.
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Fsync: time.Hour})
	appendN(t, s, 0, 10_000) // five segments
	s.bg.Wait()              // the rolled segments are unmapped and trimmed
	if n := openSegments(t, dir); n < 4 {
		t.Fatalf("%d segments open after four rolls: rolled segments were closed before being synced", n)
	}
	s.Sync()
	if n := openSegments(t, dir); n > 2 {
		t.Fatalf("%d segments open after Sync, want the active one and the next, prepared", n)
	}
	appendN(t, s, 10_000, 5_000)
	s.bg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := openSegments(t, dir); n != 0 {
		t.Fatalf("%d segments still open after Close", n)
	}
	s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	if got := drain(t, s2); !slices.Equal(got, want(0, 15_000)) {
		t.Fatalf("read %d records after a reopen, want the 15000 appended", len(got))
	}
}
