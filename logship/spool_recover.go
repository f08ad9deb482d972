package logship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// recover lists the segments, reads the cursor, checks every segment still
// to be shipped and starts a new active segment.
func (s *Spool) recover() error {
	names, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("reading spool directory: %w", err)
	}
	var found []uint64
	var highest uint64 // refused names included: a new segment must not collide
	for _, e := range names {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			continue
		}
		highest = max(highest, n)
		if !e.Type().IsRegular() {
			s.refuse(s.segPath(n), e.Type())
			continue
		}
		found = append(found, n)
	}
	slices.Sort(found)

	s.cf, err = os.OpenFile(filepath.Join(s.cfg.Dir, "cursor"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("opening spool cursor: %w", err)
	}
	cur, ok := s.readCursor()
	if !ok || !slices.Contains(found, cur.Seg) {
		// No usable cursor: start from the oldest segment. At worst this
		// ships some records again (same event_id), never loses any.
		cur = Pos{}
		if len(found) > 0 {
			cur = Pos{Seg: found[0]}
		}
	}

	// Drop what was shipped, check the rest.
	var c chain
	for _, n := range found {
		if n < cur.Seg {
			_ = os.Remove(s.segPath(n))
			continue
		}
		curOff := int64(-1)
		if n == cur.Seg {
			curOff = cur.Off
		}
		sg, at, err := s.checkSegment(n, &c, curOff)
		if errors.Is(err, errRefused) {
			continue
		}
		if err != nil {
			return err
		}
		if n == cur.Seg {
			cur.Off = at
		}
		s.size += sg.end
		s.segments = append(s.segments, sg)
	}
	c.resolve(s, 0)
	s.cursor = cur
	if !slices.ContainsFunc(s.segments, func(sg segment) bool { return sg.n == cur.Seg }) {
		s.cursor = Pos{}
		if len(s.segments) > 0 {
			s.cursor = Pos{Seg: s.segments[0].n, Off: s.segments[0].start}
		}
	}

	s.nextSeq = max(c.expect, 1)
	next := highest + 1
	if s.cursor.Seg == 0 {
		s.cursor = Pos{Seg: next, Off: segmentHeaderLen}
	}
	sf := s.createSegment(next)
	if sf.err != nil {
		return sf.err
	}
	if err := s.stamp(sf); err != nil {
		_ = s.discard(sf)
		return fmt.Errorf("writing spool segment header: %w", err)
	}
	if sf.mapped != nil {
		readAhead(sf.mapped)
	}
	s.activate(sf)
	s.acked = s.cursor
	return s.writeCursor(s.cursor)
}

// chain follows sequence numbers from one segment to the next at open.
type chain struct {
	expect uint64 // sequence number of the next record, 0 if unknown
	// tail is a damaged end cut off the last segment, whose records are
	// counted once the next segment's first sequence number is known.
	tail *damage
}

// damage is a run of damaged bytes in a segment.
type damage struct {
	path     string
	from, to int64
}

// resolve counts the records of a damaged tail once the segment after it
// starts with sequence number first (0: unknown, or no segment after).
func (c *chain) resolve(s *Spool, first uint64) {
	if c.tail == nil {
		return
	}
	lost := uint64(1) // unknown: the torn append that a damaged tail most often is
	if c.expect != 0 && first != 0 && first >= c.expect {
		lost = first - c.expect
	}
	s.damaged(c.tail.path, c.tail.from, c.tail.to-c.tail.from, lost)
	c.tail = nil
}

var errRefused = errors.New("refused")

// checkSegment checks segment n entry by entry: damage in the middle is
// overwritten by skip entries and its records counted, a damaged or
// zeroed end cut off, a damaged header rewritten. curOff, unless
// negative, is the cursor's offset in it; the returned offset is the
// first entry at or after it.
func (s *Spool) checkSegment(n uint64, c *chain, curOff int64) (segment, int64, error) {
	path := s.segPath(n)
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ELOOP) {
		s.refuse(path, fs.ModeSymlink)
		return segment{}, 0, errRefused
	}
	if err != nil {
		return segment{}, 0, fmt.Errorf("opening spool segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return segment{}, 0, err
	}
	if !st.Mode().IsRegular() {
		s.refuse(path, st.Mode().Type())
		return segment{}, 0, errRefused
	}
	data, release, err := loadSegment(f, st.Size())
	if err != nil {
		return segment{}, 0, fmt.Errorf("reading spool segment: %w", err)
	}
	defer release()

	sg := segment{n: n, start: segmentHeaderLen, checked: true}
	first, hdr := readHeader(data)
	if hdr == headerV1 {
		sg.start = headerLenV1
	}
	if hdr == headerBad && allZero(data) || hdr == headerUnset && allZero(data[segmentHeaderLen:]) {
		// Empty: created (or prepared ahead) when the process died, before
		// its header or any record was written. Not damage.
		data, hdr = nil, headerUnset
	} else if hdr == headerUnset {
		hdr = headerBad // records after a header without a sequence number
	}
	switch hdr {
	case headerOK:
		c.resolve(s, first)
		c.expect = first
	case headerV1:
		c.resolve(s, 0)
		c.expect = 0 // no sequence numbers
	case headerBad:
		s.damaged(path, 0, min(int64(len(data)), segmentHeaderLen), 0) // its records are counted by sequence numbers
		if c.tail != nil && c.expect != 0 {
			// The records of the damaged tail before are in the first
			// gap found here.
			c.resolve(s, c.expect)
		}
	}
	r := scanEntries(data, sg.start, hdr == headerV1, c.expect, max(curOff, 0), curOff)
	if c.tail != nil && r.first != 0 {
		c.resolve(s, 0) // no sequence number before to bound it
	}
	for _, d := range r.damage {
		s.damaged(path, d.from, d.to-d.from, d.lost)
		if err := s.patch(f, d.from, d.to, d.seq); err != nil {
			return segment{}, 0, fmt.Errorf("repairing spool segment: %w", err)
		}
	}
	s.stats.DroppedDamaged.Add(r.gaps)
	if hdr == headerBad || hdr == headerUnset {
		// Rewritten, with the first sequence number inferred: the one
		// expected after the segment before, else the first found.
		if first = c.expect; first == 0 {
			first = r.first
		}
		var h [segmentHeaderLen]byte
		copy(h[:], segmentMagic)
		if first != 0 {
			putHeader(h[:], first)
		}
		if _, err := f.WriteAt(h[:], 0); err != nil {
			return segment{}, 0, fmt.Errorf("repairing spool segment: %w", err)
		}
		r.end = max(r.end, segmentHeaderLen)
	}
	sg.first = first
	if r.end < st.Size() {
		if r.tail {
			c.resolve(s, c.expect) // one before, in a segment without records: the next gap counts it
			c.tail = &damage{path: path, from: r.end, to: st.Size()}
		}
		if err := f.Truncate(r.end); err != nil {
			return segment{}, 0, fmt.Errorf("trimming spool segment: %w", err)
		}
	}
	if hdr != headerV1 {
		c.expect = max(c.expect, r.expect)
	}
	sg.end = r.end
	if s.cfg.Fsync != FsyncNever && (len(r.damage) > 0 || hdr == headerBad || r.tail) {
		if err := s.cfg.sync(f); err != nil {
			return segment{}, 0, fmt.Errorf("repairing spool segment: %w", err)
		}
	}
	at := max(r.cursor, sg.start)
	return sg, at, nil
}

// readHeader returns a segment header's state and, for an intact header
// of version 2, the sequence number of the segment's first record.
func readHeader(b []byte) (uint64, int) {
	switch {
	case len(b) >= headerLenV1 && string(b[:headerLenV1]) == segmentMagicV1:
		return 0, headerV1
	case len(b) < segmentHeaderLen || string(b[:8]) != segmentMagic:
		return 0, headerBad
	}
	first, crc := binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint32(b[16:])
	switch {
	case crc == crc32.Checksum(b[:16], crcTable) && first != 0:
		return first, headerOK
	case first == 0 && crc == 0:
		return 0, headerUnset
	}
	return 0, headerBad
}

// Segment header states at open.
const (
	headerBad   = iota // damaged
	headerOK           // version 2, intact
	headerV1           // version 1, which has no sequence number
	headerUnset        // version 2 without a sequence number: prepared, never used
)

// scanned is what scanEntries found in a segment.
type scanned struct {
	end    int64  // end of the last intact entry
	tail   bool   // damaged bytes, not only zeros, from end to the segment's end
	expect uint64 // sequence number expected at end, 0 if unknown
	first  uint64 // sequence number of the first intact entry, 0 if none
	gaps   uint64 // records missing between intact entries, damage aside
	damage []damageRun
	cursor int64 // the first entry at or after the cursor (or end)
}

// damageRun is damage in the middle of a segment, from, to the intact
// entry at to, whose sequence number is seq; lost records are counted.
type damageRun struct {
	from, to int64
	seq      uint64
	lost     uint64
}

// scanEntries walks a segment's entries in b (the whole segment, from
// offset 0) from start, resynchronising past damage. expect is the
// sequence number of the first record, if known. Records lost before
// countFrom (damage found behind the cursor: shipped already) are not
// counted; cur is the cursor's offset, or negative.
func scanEntries(b []byte, start int64, v1 bool, expect uint64, countFrom, cur int64) scanned {
	r := scanned{expect: expect, cursor: -1}
	p := min(start, int64(len(b)))
	for p < int64(len(b)) {
		if cur >= 0 && r.cursor < 0 && p >= cur {
			r.cursor = p
		}
		size, seq, skip, st := entryAt(b[p:], int64(len(b))-p, v1)
		if st == entryOK {
			if r.first == 0 {
				r.first = seq
			}
			switch {
			case skip:
				r.expect = seq
			case !v1:
				if r.expect != 0 && seq > r.expect && p >= countFrom {
					r.gaps += seq - r.expect
				}
				r.expect = seq + 1
			}
			p += size
			continue
		}
		if st == entryZeros && allZero(b[p:]) {
			break // the unused end of an allocated segment
		}
		var c int64
		var ok bool
		if !v1 {
			c, seq, ok = resync(b, p, r.expect)
		}
		if !ok {
			r.tail = true
			break
		}
		d := damageRun{from: p, to: c, seq: seq, lost: 1}
		if r.expect != 0 && seq >= r.expect {
			d.lost = seq - r.expect
		}
		if c <= countFrom {
			d.lost = 0
		}
		r.damage = append(r.damage, d)
		r.expect = seq
		p = c
	}
	r.end = p
	if r.cursor < 0 {
		r.cursor = p
	}
	return r
}

// patch overwrites the damaged bytes from, to with skip entries, the last
// followed by the record with sequence number seq. A run too short for a
// skip entry's header is left as it is: the reader skips it again, and
// counts it only once per process.
func (s *Spool) patch(f *os.File, from, to int64, seq uint64) error {
	const most = 1 << 30
	var b [entryHeaderLen]byte
	for to-from >= entryHeaderLen {
		n := min(to-from, most)
		if rest := to - from - n; rest > 0 && rest < entryHeaderLen {
			n -= entryHeaderLen
		}
		putSkip(b[:], n, seq)
		if _, err := s.cfg.writeAt(f, b[:], from); err != nil {
			return err
		}
		from += n
	}
	return nil
}

// loadSegment returns a segment's bytes, mapped when it can be.
func loadSegment(f *os.File, size int64) ([]byte, func(), error) {
	if size == 0 {
		return nil, func() {}, nil
	}
	if m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED); err == nil {
		return m, func() { _ = unix.Munmap(m) }, nil
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, nil, err
	}
	return b, func() {}, nil
}

// damaged counts and logs a run of damaged bytes and the records it held.
func (s *Spool) damaged(path string, off, n int64, lost uint64) {
	s.stats.SpoolRepairs.Add(1)
	s.stats.DroppedDamaged.Add(lost)
	s.cfg.Logger.Warn("spool segment damaged, skipped to the next intact record",
		zap.String("segment", path), zap.Int64("offset", off), zap.Int64("bytes_discarded", n), zap.Uint64("records_lost", lost))
}

// refuse logs and counts a file named as a segment that is not a regular
// file. It is left as it is.
func (s *Spool) refuse(path string, mode fs.FileMode) {
	s.stats.SpoolRefused.Add(1)
	s.cfg.Logger.Error("spool segment is not a regular file, left untouched and unread",
		zap.String("segment", path), zap.Stringer("type", mode))
}
