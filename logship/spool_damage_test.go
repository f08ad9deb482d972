package logship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// span is where one record of a segment is.
type span struct {
	off, size int64
	value     string
}

// layout returns the records of an intact segment file, up to zeros.
func layout(t *testing.T, path string) []span {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []span
	for p := int64(segmentHeaderLen); p < int64(len(b)); {
		size, _, skip, st := entryAt(b[p:], int64(len(b))-p, false)
		if st == entryZeros {
			break
		}
		if st != entryOK || skip {
			t.Fatalf("%s is not intact at %d: %v", path, p, st)
		}
		out = append(out, span{off: p, size: size, value: string(decodeEntry(b[p:], size, false).Value)})
		p += size
	}
	return out
}

// overlapping returns the values of the records with a byte in [from, to).
func overlapping(spans []span, from, to int64) []string {
	var out []string
	for _, sp := range spans {
		if sp.off < to && sp.off+sp.size > from {
			out = append(out, sp.value)
		}
	}
	return out
}

// without returns all but the values in lost.
func without(all, lost []string) []string {
	var out []string
	for _, v := range all {
		if !slices.Contains(lost, v) {
			out = append(out, v)
		}
	}
	return out
}

func writeAtFile(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// damagedForReal fails t unless a strict parse of one of the segments
// stops before its end: the control that the damage hit a record.
func damagedForReal(t *testing.T, segs []string) {
	t.Helper()
	for _, path := range segs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		first, hdr := readHeader(b)
		if hdr != headerOK {
			return // a damaged header
		}
		_, p := parseEntries(b[segmentHeaderLen:], int64(len(b)-segmentHeaderLen), false, first, nil, 1<<30, 1<<30)
		if p.status != entryOK || p.consumed != int64(len(b)-segmentHeaderLen) {
			return
		}
	}
	t.Fatal("the damage left every entry intact")
}

func TestADamagedRecordCostsOnlyItself(t *testing.T) {
	t.Parallel()
	const seg = 64 << 10
	cases := []struct {
		name string
		// damage damages the segments (with records, in order) and
		// returns the records it destroyed.
		damage  func(t *testing.T, segs []string) []string
		repairs uint64
	}{
		{"a flipped byte in a record's value", func(t *testing.T, segs []string) []string {
			sp := layout(t, segs[1])[10]
			flipByte(t, segs[1], sp.off+entryHeaderLen+bodyFixedLen+5)
			return []string{sp.value}
		}, 1},
		{"a flipped byte in a record's length", func(t *testing.T, segs []string) []string {
			sp := layout(t, segs[1])[10]
			flipByte(t, segs[1], sp.off)
			return []string{sp.value}
		}, 1},
		{"a length pointing past the segment's end", func(t *testing.T, segs []string) []string {
			sp := layout(t, segs[1])[10]
			flipByte(t, segs[1], sp.off+2)
			return []string{sp.value}
		}, 1},
		{"a flipped byte in a record's sequence number", func(t *testing.T, segs []string) []string {
			sp := layout(t, segs[1])[10]
			flipByte(t, segs[1], sp.off+9)
			return []string{sp.value}
		}, 1},
		{"two damaged records apart", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[1])
			flipByte(t, segs[1], l[3].off+20)
			flipByte(t, segs[1], l[30].off+20)
			return []string{l[3].value, l[30].value}
		}, 2},
		{"a run of damaged records", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[1])
			for i := 5; i < 9; i++ {
				flipByte(t, segs[1], l[i].off+20)
			}
			return []string{l[5].value, l[6].value, l[7].value, l[8].value}
		}, 1},
		{"a flipped byte in a segment header's magic", func(t *testing.T, segs []string) []string {
			flipByte(t, segs[1], 3)
			return nil
		}, 1},
		{"a flipped byte in a segment header's sequence number", func(t *testing.T, segs []string) []string {
			flipByte(t, segs[1], 9)
			return nil
		}, 1},
		{"a zeroed 4KiB page in the middle of a segment", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[1])
			writeAtFile(t, segs[1], make([]byte, 4096), 8192)
			return overlapping(l, 8192, 8192+4096)
		}, 1},
		{"a segment's first page zeroed, header included", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[1])
			writeAtFile(t, segs[1], make([]byte, 4096), 0)
			return overlapping(l, 0, 4096)
		}, 2}, // the header, then the records
		{"a rolled segment cut in the middle of a record", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[1])
			if err := os.Truncate(segs[1], 30_000); err != nil {
				t.Fatal(err)
			}
			return overlapping(l, 30_000, 1<<62)
		}, 1},
		{"a rolled segment's end overwritten", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[1])
			end := l[len(l)-1].off + l[len(l)-1].size
			writeAtFile(t, segs[1], []byte(string(make([]byte, 0))+string(fmt.Appendf(nil, "%0300d", 7))), end-300)
			return overlapping(l, end-300, end)
		}, 1},
		{"the newest segment cut in the middle of its last record", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[len(segs)-1])
			truncateBy(t, segs[len(segs)-1], 7)
			return []string{l[len(l)-1].value}
		}, 1},
		{"a rolled segment cut in the middle of a skip entry's run", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[1])
			var skip [entryHeaderLen]byte
			putSkip(skip[:], 1000, 9)
			writeAtFile(t, segs[1], skip[:], l[100].off)
			if err := os.Truncate(segs[1], l[100].off+30); err != nil {
				t.Fatal(err)
			}
			return overlapping(l, l[100].off, 1<<62)
		}, 1},
		{"bytes inserted between two records, as long as a skip entry's header", func(t *testing.T, segs []string) []string {
			at := layout(t, segs[1])[10].off
			b, err := os.ReadFile(segs[1])
			if err != nil {
				t.Fatal(err)
			}
			b = slices.Concat(b[:at], []byte("sixteen bytes!!!"), b[at:])
			if err := os.WriteFile(segs[1], b, 0o600); err != nil {
				t.Fatal(err)
			}
			return nil
		}, 1},
		{"a whole segment's records damaged", func(t *testing.T, segs []string) []string {
			l := layout(t, segs[1])
			for _, sp := range l {
				flipByte(t, segs[1], sp.off+20)
			}
			return overlapping(l, 0, 1<<62)
		}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: seg})
			appendN(t, s, 0, 5000) // four segments and some
			s.Close()
			segs := segments(t, dir)
			if len(segs) < 3 {
				t.Fatalf("only %d segments", len(segs))
			}
			lost := c.damage(t, segs)
			if len(lost) > 0 {
				damagedForReal(t, segs)
			}

			stats := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: seg, Stats: stats})
			if got := drain(t, s2); !slices.Equal(got, without(want(0, 5000), lost)) {
				t.Fatalf("read %d records, want the %d intact ones, once each, in order", len(got), 5000-len(lost))
			}
			if d := stats.DroppedDamaged.Load(); d != uint64(len(lost)) {
				t.Errorf("DroppedDamaged = %d, want %d", d, len(lost))
			}
			if r := stats.SpoolRepairs.Load(); r != c.repairs {
				t.Errorf("SpoolRepairs = %d, want %d", r, c.repairs)
			}
			s2.Close()

			// Counted once: a second open finds the damage skipped.
			stats2 := new(Stats)
			if err := os.Remove(filepath.Join(dir, "cursor")); err != nil {
				t.Fatal(err)
			}
			s3 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: seg, Stats: stats2})
			drain(t, s3)
			if d, r := stats2.DroppedDamaged.Load(), stats2.SpoolRepairs.Load(); d != 0 || r != 0 {
				t.Errorf("reopened: DroppedDamaged = %d, SpoolRepairs = %d; want the damage counted once", d, r)
			}
		})
	}
}

// spanOf finds the record with value v in the spool's segments, waiting
// for rolled segments to be trimmed.
func spanOf(t *testing.T, s *Spool, v string) (string, span) {
	t.Helper()
	s.bg.Wait()
	m, _ := filepath.Glob(filepath.Join(s.Dir(), "*.seg"))
	for _, p := range m {
		b, _ := os.ReadFile(p)
		if _, hdr := readHeader(b); hdr != headerOK {
			continue
		}
		for _, sp := range layout(t, p) {
			if sp.value == v {
				return p, sp
			}
		}
	}
	t.Fatalf("record %s not found", v)
	return "", span{}
}

func TestTheReaderSkipsDamageFoundWhileRunning(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		damage []int // records damaged
		page   int   // or, if not 0, the record in whose segment the 4KiB page at 8KiB is zeroed
	}{
		{"a record in a rolled segment", []int{500}, 0},
		{"a record in the active segment", []int{1900}, 0},
		{"the last record of the active segment", []int{1999}, 0},
		{"the last record of a rolled segment and the first of the next", nil, 0}, // filled in below
		{"a zeroed page in a rolled segment", nil, 500},
		{"a zeroed page in the active segment", nil, 1900},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stats := new(Stats)
			s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10, Stats: stats})
			appendN(t, s, 0, 100)
			stop := make(chan struct{})
			close(stop)
			entries, next, err := s.Read(stop, nil, 100, 1<<20)
			if err != nil || len(entries) != 100 {
				t.Fatal(err, len(entries))
			}
			if err := s.Ack(next); err != nil {
				t.Fatal(err)
			}
			// The reader is running; damage appears in what it has yet
			// to read.
			appendN(t, s, 100, 1900)
			damage := c.damage
			if c.page != 0 {
				path, _ := spanOf(t, s, want(c.page, 1)[0])
				for _, v := range overlapping(layout(t, path), 8192, 8192+4096) {
					var i int
					fmt.Sscanf(v, "record-%d", &i)
					damage = append(damage, i)
				}
			} else if damage == nil {
				// The records either side of the first roll.
				p, _ := spanOf(t, s, want(0, 1)[0])
				l := layout(t, p)
				n := len(l)
				damage = []int{n - 1, n}
			}
			var lost, paths []string
			var spans []span
			for _, i := range damage {
				v := want(i, 1)[0]
				path, sp := spanOf(t, s, v)
				paths, spans, lost = append(paths, path), append(spans, sp), append(lost, v)
			}
			for i, path := range paths {
				if c.page != 0 {
					writeAtFile(t, path, make([]byte, 4096), 8192)
					break
				}
				writeAtFile(t, path, []byte{0xde, 0xad}, spans[i].off+entryHeaderLen+bodyFixedLen+3)
			}
			// Each batch read twice before it is acknowledged, as the
			// shipper does when it lingers: the damage counted once.
			var got []string
			for {
				entries, _, err := s.Read(stop, nil, 300, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				var first []string
				for _, e := range entries {
					first = append(first, string(e.Value))
				}
				again, next, err := s.Read(stop, nil, 300, 1<<30)
				if err != nil {
					t.Fatal(err)
				}
				for i, v := range first {
					// The second may go on past damage the first stopped at.
					if i >= len(again) || string(again[i].Value) != v {
						t.Fatalf("read %d entries, then from the same cursor %d, not the same first", len(first), len(again))
					}
				}
				if len(again) == 0 {
					break
				}
				for _, e := range again {
					got = append(got, string(e.Value))
				}
				if err := s.Ack(next); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(got, without(want(100, 1900), lost)) {
				t.Fatalf("read %d records, want the %d intact ones, once each, in order", len(got), 1900-len(lost))
			}
			if d := stats.DroppedDamaged.Load(); d != uint64(len(lost)) {
				t.Errorf("DroppedDamaged = %d, want %d", d, len(lost))
			}
			appendN(t, s, 2000, 10)
			if got := drain(t, s); !slices.Equal(got, want(2000, 10)) {
				t.Fatalf("after the damage, read %v; want the 10 new records", got)
			}
			dir := s.Dir()
			s.Close()
			stats2 := new(Stats)
			if err := os.Remove(filepath.Join(dir, "cursor")); err != nil {
				t.Fatal(err)
			}
			openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats2})
			if d := stats2.DroppedDamaged.Load(); d != 0 {
				t.Errorf("reopened: DroppedDamaged = %d; the damage was counted again", d)
			}
		})
	}
}

func TestACursorPastADamagedEndDoesNotStopReading(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats})
	appendN(t, s, 0, 5000)
	s.Close()
	segs := segments(t, dir)
	l := layout(t, segs[1])
	n, _ := segNumber(segs[1])
	// Shipped up to record 40 of segment 2; its end then cut at record 20.
	cut := l[20].off + 5
	if err := os.Truncate(segs[1], cut); err != nil {
		t.Fatal(err)
	}
	var c [cursorLen]byte
	binary.LittleEndian.PutUint64(c[0:], n)
	binary.LittleEndian.PutUint64(c[8:], uint64(l[40].off))
	binary.LittleEndian.PutUint32(c[16:], crc32.Checksum(c[:16], crcTable))
	if err := os.WriteFile(filepath.Join(dir, "cursor"), c[:], 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats})
	first := l[0].value
	var from int
	fmt.Sscanf(first, "record-%d", &from)
	next := from + len(l) // the first record of the segment after
	if got := drain(t, s2); !slices.Equal(got, want(next, 5000-next)) {
		t.Fatalf("read %d records, want the %d of the segments after the cursor's", len(got), 5000-next)
	}
}

func TestReadFromAPositionPastASegmentsEnd(t *testing.T) {
	t.Parallel()
	s := openSpool(t, SpoolConfig{SegmentSize: 64 << 10})
	appendN(t, s, 0, 2000)
	s.mu.Lock()
	rolled := s.segments[0]
	s.mu.Unlock()
	s.cursor = Pos{Seg: rolled.n, Off: rolled.end + 1000} // as a cursor saved before damage cut the segment
	got := drain(t, s)
	if len(got) == 0 || got[len(got)-1] != want(1999, 1)[0] {
		t.Fatalf("read %d records, want those of the segments after", len(got))
	}
}

func segNumber(path string) (uint64, error) {
	var n uint64
	_, err := fmt.Sscanf(filepath.Base(path), "%020d.seg", &n)
	return n, err
}

// writeV1Segment writes a segment as the version before sequence numbers
// did: records from..from+n.
func writeV1Segment(t *testing.T, path string, from, n int) []int64 {
	t.Helper()
	b := []byte(segmentMagicV1)
	var offs []int64
	for i := from; i < from+n; i++ {
		key, value := fmt.Sprintf("k%d", i%7), fmt.Sprintf("record-%06d", i)
		body := binary.LittleEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
		body = binary.LittleEndian.AppendUint16(body, uint16(len(key)))
		body = append(append(body, key...), value...)
		offs = append(offs, int64(len(b)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(body, crcTable))
		b = append(b, body...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return offs
}

func TestSegmentsOfTheVersionBeforeAreStillShipped(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		damage  func(t *testing.T, path string, offs []int64)
		intact  []string
		dropped uint64
	}{
		{"intact", func(*testing.T, string, []int64) {}, want(0, 300), 0},
		{"a damaged record ends the segment, as it did", func(t *testing.T, path string, offs []int64) {
			flipByte(t, path, offs[150]+20)
		}, append(want(0, 150), want(200, 100)...), 1},
		{"a segment of its header alone, no record", func(t *testing.T, path string, offs []int64) {
			if err := os.Truncate(path, headerLenV1); err != nil {
				t.Fatal(err)
			}
		}, want(200, 100), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			offs := writeV1Segment(t, filepath.Join(dir, segName(1)), 0, 200)
			writeV1Segment(t, filepath.Join(dir, segName(2)), 200, 100)
			c.damage(t, filepath.Join(dir, segName(1)), offs)
			stats := new(Stats)
			s := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
			appendN(t, s, 300, 10)
			if got := drain(t, s); !slices.Equal(got, append(c.intact, want(300, 10)...)) {
				t.Fatalf("read %d records, want %d", len(got), len(c.intact)+10)
			}
			if d := stats.DroppedDamaged.Load(); d != c.dropped {
				t.Errorf("DroppedDamaged = %d, want %d", d, c.dropped)
			}
			if r := stats.SpoolRepairs.Load(); r != c.dropped {
				t.Errorf("SpoolRepairs = %d, want %d", r, c.dropped)
			}
		})
	}
}

func TestACursorOfTheVersionBeforeIsKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	offs := writeV1Segment(t, filepath.Join(dir, segName(1)), 0, 100)
	var c [cursorLen]byte
	binary.LittleEndian.PutUint64(c[0:], 1)
	binary.LittleEndian.PutUint64(c[8:], uint64(offs[40]))
	binary.LittleEndian.PutUint32(c[16:], crc32.Checksum(c[:16], crcTable))
	if err := os.WriteFile(filepath.Join(dir, "cursor"), c[:], 0o600); err != nil {
		t.Fatal(err)
	}
	s := openSpool(t, SpoolConfig{Dir: dir})
	if got := drain(t, s); !slices.Equal(got, want(40, 60)) {
		t.Fatalf("read %d records, want the 60 after the cursor", len(got))
	}
}

// cutOut removes the bytes from, to of the file at path, moving the rest
// back: entries missing with no damaged byte left.
func cutOut(t *testing.T, path string, from, to int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b[:from:from], b[to:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRecordsCutOutCleanlyAreCountedOnce(t *testing.T) {
	t.Parallel()
	// Whole entries missing between two intact ones, every byte left
	// intact: the open finds the gap in sequence numbers and counts it,
	// and the reader, passing over it, does not count it again. Every
	// record written is either read or counted as dropped.
	const seg = 64 << 10
	cases := []struct {
		name string
		seg  int // the segment with records cut out
		from int // its first record cut out
		n    int // and how many
		read int // records read and acknowledged before the restart
	}{
		{"records in the middle of a rolled segment", 1, 10, 5, 0},
		{"the first records of a rolled segment", 1, 0, 3, 0},
		{"records in the newest segment", -1, 4, 2, 0},
		{"records after the cursor in its segment", 0, 300, 4, 50},
		{"the records at the cursor, not shipped yet", 0, 50, 4, 50},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			const written = 5000
			s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: seg})
			appendN(t, s, 0, written)
			var read []string
			if c.read > 0 {
				stop := make(chan struct{})
				close(stop)
				entries, next, err := s.Read(stop, nil, c.read, 1<<20)
				if err != nil || len(entries) != c.read {
					t.Fatalf("read %d entries: %v", len(entries), err)
				}
				for _, e := range entries {
					read = append(read, string(e.Value))
				}
				if err := s.Ack(next); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			segs := segments(t, dir)
			path := segs[(c.seg+len(segs))%len(segs)]
			l := layout(t, path)
			var lost []string
			for _, sp := range l[c.from : c.from+c.n] {
				lost = append(lost, sp.value)
			}
			cutOut(t, path, l[c.from].off, l[c.from+c.n].off)
			// The control: the segment has no damaged byte, only a gap.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			first, _ := readHeader(b)
			if r := scanEntries(b, segmentHeaderLen, false, first, 0, -1); r.tail || len(r.damage) > 0 || r.gaps != uint64(c.n) {
				t.Fatalf("the cut left damage (%v, %d runs) or a gap of %d records, want %d", r.tail, len(r.damage), r.gaps, c.n)
			}

			stats := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: seg, Stats: stats})
			read = append(read, drain(t, s2)...)
			if !slices.Equal(read, without(want(0, written), lost)) {
				t.Fatalf("read %d records, want the %d left, once each, in order", len(read), written-c.n)
			}
			if d := stats.DroppedDamaged.Load(); uint64(len(read))+d != written || d != uint64(c.n) {
				t.Fatalf("%d written, %d read, DroppedDamaged = %d; want the %d cut out counted once", written, len(read), d, c.n)
			}
		})
	}
}

func TestRecordsMissingFromASegmentWrittenSinceOpenAreCountedByTheReader(t *testing.T) {
	t.Parallel()
	// Sequence numbers skipped in the active segment, which no open has
	// checked: the reader finds the gap and counts it, once. Read again
	// after a restart from the oldest segment, the open counts it, once.
	dir := t.TempDir()
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{Dir: dir, Stats: stats})
	appendN(t, s, 0, 100)
	s.mu.Lock()
	s.nextSeq += 3 // three records missing
	s.mu.Unlock()
	appendN(t, s, 100, 100)
	if got := drain(t, s); !slices.Equal(got, want(0, 200)) {
		t.Fatalf("read %d records, want the 200 written", len(got))
	}
	if d := stats.DroppedDamaged.Load(); d != 3 {
		t.Fatalf("DroppedDamaged = %d, want the 3 missing", d)
	}
	s.Close()
	if err := os.Remove(filepath.Join(dir, "cursor")); err != nil {
		t.Fatal(err)
	}
	stats2 := new(Stats)
	s2 := openSpool(t, SpoolConfig{Dir: dir, Stats: stats2})
	if got := drain(t, s2); !slices.Equal(got, want(0, 200)) {
		t.Fatalf("reopened: read %d records, want the 200", len(got))
	}
	if d := stats2.DroppedDamaged.Load(); d != 3 {
		t.Fatalf("reopened: DroppedDamaged = %d, want the 3 missing", d)
	}
}

func TestADamagedTailBeforeADamagedHeaderIsCountedOnce(t *testing.T) {
	t.Parallel()
	// A segment's end damaged (its last records cut off at open) and the
	// next segment's header damaged too: the records of the tail are
	// counted once, by the sequence numbers where they are known (the
	// gap at the next segment's first record), as one record where they
	// are not (a segment of version 1, without sequence numbers).
	const seg = 64 << 10
	cases := []struct {
		name    string
		v1      bool // the first segment is of version 1
		tail    int  // records damaged at the first segment's end
		dropped uint64
	}{
		{"after a segment with sequence numbers", false, 3, 3},
		{"after a segment of version 1", true, 3, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			from := 0
			var v1offs []int64
			if c.v1 {
				v1offs = writeV1Segment(t, filepath.Join(dir, segName(1)), 0, 200)
				from = 200
			}
			s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: seg})
			appendN(t, s, from, 5000)
			s.Close()
			segs := segments(t, dir)
			if len(segs) < 3 { // the third has an intact header
				t.Fatalf("%d segments", len(segs))
			}
			// The tail of the first segment with records, and the header
			// of the one after.
			var lost []string
			if c.v1 {
				for _, off := range v1offs[200-c.tail:] {
					flipByte(t, segs[0], off+12)
				}
				lost = want(200-c.tail, c.tail)
			} else {
				l := layout(t, segs[0])
				for _, sp := range l[len(l)-c.tail:] {
					flipByte(t, segs[0], sp.off+entryHeaderLen+bodyFixedLen+4)
					lost = append(lost, sp.value)
				}
			}
			flipByte(t, segs[1], 9) // the header's sequence number

			stats := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: seg, Stats: stats})
			if got := drain(t, s2); !slices.Equal(got, without(want(0, from+5000), lost)) {
				t.Fatalf("read %d records, want the %d intact ones, once each, in order", len(got), from+5000-c.tail)
			}
			if d, r := stats.DroppedDamaged.Load(), stats.SpoolRepairs.Load(); d != c.dropped || r != 2 {
				t.Fatalf("DroppedDamaged = %d, SpoolRepairs = %d; want %d and 2 (the tail, the header)", d, r, c.dropped)
			}
		})
	}
}

func TestARepairThatCannotBeWrittenIsReported(t *testing.T) {
	t.Parallel()
	// Marking damage skipped is a write; when it fails at open, the open
	// fails and says so (the segment is left as it was for the next one);
	// when it fails while running, the reader logs it and reads on (see
	// TestASkipEntryDamagedWhileRunningCostsNoRecord).
	dir := t.TempDir()
	s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
	appendN(t, s, 0, 3000)
	s.Close()
	path := segments(t, dir)[0]
	l := layout(t, path)
	flipByte(t, path, l[10].off+entryHeaderLen+bodyFixedLen+4)
	failSkips := func(f *os.File, b []byte, off int64) (int, error) {
		if len(b) == entryHeaderLen && binary.LittleEndian.Uint32(b)&skipFlag != 0 {
			return 0, errors.New("disk failing")
		}
		return f.WriteAt(b, off)
	}
	_, err := OpenSpool(SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Fsync: FsyncNever, writeAt: failSkips})
	if err == nil || !strings.Contains(err.Error(), "repairing spool segment") {
		t.Fatalf("open with the repair failing: %v, want an error repairing the segment", err)
	}
	// The control: with the repair written, the same damage opens.
	stats := new(Stats)
	s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats})
	if got := drain(t, s2); !slices.Equal(got, without(want(0, 3000), []string{l[10].value})) {
		t.Fatalf("read %d records, want 2999", len(got))
	}
	if d := stats.DroppedDamaged.Load(); d != 1 {
		t.Fatalf("DroppedDamaged = %d, want 1", d)
	}
}
