package logship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Read returns up to max entries and maxBytes of entries, headers
// included (but one entry at least, whatever its size), after the cursor
// and the position after the last one, waiting until there is at least
// one or stop is closed. Entries are only valid until the next Read. It
// must be followed by Ack(next) once the entries are delivered; reading
// again without Ack returns the same entries. Damaged entries are skipped
// and counted (Stats.DroppedDamaged), never returned.
func (s *Spool) Read(stop <-chan struct{}, buf []Entry, max int, maxBytes int) ([]Entry, Pos, error) {
	for {
		s.mu.Lock()
		end, endSeq, closed := s.writeEnd, s.nextSeq, s.closed
		s.mu.Unlock()
		if closed {
			return nil, s.cursor, ErrClosed
		}
		if s.cursor.Less(end) {
			entries, next, err := s.readFrom(s.cursor, end, endSeq, buf[:0], max, maxBytes)
			if err != nil || len(entries) > 0 {
				if len(entries) > 0 {
					s.head.Store(entries[0].Appended.UnixNano())
				}
				return entries, next, err
			}
			// Only segment boundaries or damage between here and end:
			// move on.
			if next != s.cursor {
				if err := s.Ack(next); err != nil {
					return nil, s.cursor, err
				}
				continue
			}
		}
		s.head.Store(0)
		select {
		case <-stop:
			return nil, s.cursor, nil
		case <-s.more:
		}
	}
}

// readFrom reads entries from pos up to end, at which the writer's next
// sequence number was endSeq.
func (s *Spool) readFrom(pos, end Pos, endSeq uint64, out []Entry, max, maxBytes int) ([]Entry, Pos, error) {
	var expect uint64 // the sequence number of the entry at pos, if known
	if pos == s.rdAt {
		expect = s.rdSeq
	}
	defer func() { s.rdAt, s.rdSeq = pos, expect }()
	for len(out) < max && pos.Less(end) {
		sg, _ := s.segInfo(pos.Seg)
		if pos.Off <= sg.start {
			pos.Off = sg.start
			if expect == 0 {
				// Unless a gap at the first entry was passed over.
				expect = sg.first
			}
		}
		if s.rf == nil || s.rfSeg != pos.Seg {
			if s.rf != nil {
				s.rf.Close()
				s.rf = nil
			}
			f, err := os.OpenFile(s.segPath(pos.Seg), os.O_RDONLY|unix.O_NOFOLLOW, 0)
			if err != nil {
				return out, pos, fmt.Errorf("opening spool segment: %w", err)
			}
			s.rf, s.rfSeg = f, pos.Seg
			s.win = s.win[:0]
		}
		segEnd, segEndSeq := end.Off, endSeq
		if pos.Seg != end.Seg {
			// Not the file's size: a segment rolled a moment ago may not
			// be trimmed yet.
			segEnd, segEndSeq = sg.end, s.nextSegment(pos.Seg).first
		}
		if pos.Off > segEnd {
			pos.Off = segEnd // a cursor saved past an end since cut off
		}
		b, err := s.window(pos.Off, segEnd)
		if err != nil {
			return out, pos, err
		}
		n0 := len(out)
		var p parsed
		out, p = parseEntries(b, segEnd-pos.Off, sg.v1(), expect, out, max, maxBytes)
		if p.status == entryOK && p.consumed == 0 && pos.Off < segEnd {
			p.status = entryBad // a window always holds a whole entry: no progress is damage
		}
		pos.Off += p.consumed
		expect = p.expect
		switch p.status {
		case entryGap:
			// Records missing between two intact entries, counted at
			// open in a segment checked then.
			if !sg.checked {
				s.countDamage(pos, p.seq-expect, pos.Off+1)
			}
			expect = p.seq
		case entryBad, entryZeros:
			// Damage found while running (a disk error, or zeros where
			// the segment's end says entries are).
			if pos, expect, err = s.skipDamage(sg, pos, segEnd, expect, segEndSeq); err != nil {
				return out, pos, err
			}
		}
		if p.status != entryOK && len(out) == 0 {
			continue
		}
		if p.status != entryOK {
			break // the entries point into the window, which reading on may overwrite
		}
		if pos.Off >= segEnd && pos.Seg != end.Seg {
			next := s.nextSegment(pos.Seg)
			pos, expect = Pos{Seg: next.n, Off: next.start}, next.first
			if len(out) == n0 {
				continue // an empty or exhausted segment: go on to the next
			}
		}
		// One window per call: the caller ships it and comes back.
		break
	}
	return out, pos, nil
}

// skipDamage resynchronises the reader on the first intact entry after
// the damaged one at pos, in segment sg, whose entries end at segEnd with
// sequence number endSeq next. The records lost are counted; the damaged
// bytes are overwritten by a skip entry (in a segment of version 2), so
// that no later read or open counts them again. It returns where to
// read on and the sequence number expected there.
func (s *Spool) skipDamage(sg segment, pos Pos, segEnd int64, expect, endSeq uint64) (Pos, uint64, error) {
	to, next := segEnd, endSeq
	if !sg.v1() {
		b := make([]byte, segEnd-pos.Off)
		if _, err := s.rf.ReadAt(b, pos.Off); err != nil && err != io.EOF {
			return pos, expect, fmt.Errorf("reading spool segment: %w", err)
		}
		if c, seq, ok := resync(b, 0, expect); ok {
			to, next = pos.Off+c, seq
		}
	}
	lost := uint64(1) // all that is known without sequence numbers
	if expect != 0 && next >= expect && !sg.v1() {
		lost = next - expect
	}
	s.countDamage(pos, lost, to)
	if !sg.v1() && to-pos.Off >= entryHeaderLen {
		if err := s.patchFile(s.segPath(pos.Seg), pos.Off, to, next); err != nil {
			s.cfg.Logger.Warn("marking damaged spool entries skipped", zap.Error(err))
		}
	}
	s.win = s.win[:0] // it holds the damaged bytes
	return Pos{Seg: pos.Seg, Off: to}, next, nil
}

// patchFile is patch on the segment at path.
func (s *Spool) patchFile(path string, from, to int64, seq uint64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	err = s.patch(f, from, to, seq)
	if err == nil && s.cfg.Fsync != FsyncNever {
		err = s.cfg.sync(f)
	}
	return errors.Join(err, f.Close())
}

// countDamage counts lost records for damage at pos, up to to in the same
// segment, unless counted already.
func (s *Spool) countDamage(pos Pos, lost uint64, to int64) {
	if pos.Less(s.damagedTo) {
		return
	}
	s.damagedTo = Pos{Seg: pos.Seg, Off: to}
	s.damaged(s.segPath(pos.Seg), pos.Off, to-pos.Off, lost)
}

// window returns the segment's bytes from off, up to segEnd, from the read
// buffer when it holds enough of them, else reading them in. Keeping the
// window across calls means each byte is read from the file about once,
// with one system call for thousands of records.
func (s *Spool) window(off, segEnd int64) ([]byte, error) {
	if cap(s.win) == 0 {
		s.win = make([]byte, 0, readChunk)
	}
	inWin := off >= s.winOff && off <= s.winOff+int64(len(s.win))
	if inWin {
		avail := s.winOff + int64(len(s.win)) - off
		want := min(segEnd-off, int64(readChunk/2))
		if avail >= want {
			return s.win[off-s.winOff : min(int64(len(s.win)), segEnd-s.winOff)], nil
		}
	}
	n := min(int64(cap(s.win)), segEnd-off)
	s.win = s.win[:n]
	if _, err := s.rf.ReadAt(s.win, off); err != nil && err != io.EOF {
		s.win = s.win[:0]
		return nil, fmt.Errorf("reading spool segment: %w", err)
	}
	s.winOff = off
	return s.win, nil
}

// nextSegment returns the segment after n: the active one if none is
// listed between.
func (s *Spool) nextSegment(n uint64) segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sg := range s.segments {
		if sg.n > n {
			return sg
		}
	}
	return s.segments[len(s.segments)-1]
}

// segInfo returns segment n; a deleted one has nothing left to read.
func (s *Spool) segInfo(n uint64) (segment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sg := range s.segments {
		if sg.n == n {
			return sg, true
		}
	}
	return segment{n: n, start: segmentHeaderLen, end: segmentHeaderLen}, false
}

// Ack records that everything before pos was delivered: the cursor is
// saved and segments wholly before it are deleted. When pos is the end of
// the active segment, appended to with write(2) on a disk found full
// (tight) and holding reclaimFrom bytes or more, its space is reclaimed
// (see reclaim).
func (s *Spool) Ack(pos Pos) error {
	if !s.cursor.Less(pos) {
		return nil
	}
	s.cursor = pos
	if err := s.writeCursor(pos); err != nil {
		return err
	}
	s.mu.Lock()
	s.acked = pos
	if s.tight && s.mapped == nil && pos == s.writeEnd && s.writeEnd.Off >= s.reclaimFrom() && s.reclaimable() {
		if err := s.reclaim(); err != nil {
			// Appends find the segment broken and roll, or refuse
			// records until one can be created.
			s.cfg.Logger.Warn("reclaiming a shipped spool segment", zap.Error(err))
		}
	}
	var removed []uint64
	keep := s.segments[:0]
	for _, sg := range s.segments {
		if sg.n < pos.Seg && sg.n != s.activeN {
			removed = append(removed, sg.n)
			s.size -= sg.end
			continue
		}
		keep = append(keep, sg)
	}
	s.segments = keep
	s.mu.Unlock()
	for _, n := range removed {
		_ = os.Remove(s.segPath(n))
		if s.rf != nil && s.rfSeg == n {
			s.rf.Close()
			s.rf, s.win = nil, s.win[:0]
		}
	}
	return nil
}

func (s *Spool) readCursor() (Pos, bool) {
	var b [cursorLen]byte
	if _, err := s.cf.ReadAt(b[:], 0); err != nil {
		return Pos{}, false
	}
	if crc32.Checksum(b[:16], crcTable) != binary.LittleEndian.Uint32(b[16:]) {
		return Pos{}, false
	}
	return Pos{Seg: binary.LittleEndian.Uint64(b[0:]), Off: int64(binary.LittleEndian.Uint64(b[8:]))}, true
}

// writeCursor overwrites the cursor in place. A torn write fails its CRC
// and the next open starts from the oldest segment: duplicates, not loss.
func (s *Spool) writeCursor(p Pos) error {
	var b [cursorLen]byte
	binary.LittleEndian.PutUint64(b[0:], p.Seg)
	binary.LittleEndian.PutUint64(b[8:], uint64(p.Off))
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], crcTable))
	if _, err := s.cf.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("saving spool cursor: %w", err)
	}
	return nil
}

// readChunk is how much of a segment one read takes in: enough for the
// largest entry, and large enough that reading costs a system call per
// thousands of records, not per record.
const readChunk = 2 * (MaxEntryLen + entryHeaderLen)

// entryStatus is what parsing found at an entry.
type entryStatus uint8

const (
	entryOK    entryStatus = iota // an intact entry (or, from parseEntries, the limits reached)
	entryPast                     // the entry continues past the bytes at hand
	entryZeros                    // an all-zero entry header: an allocated segment's unused end, or zeroed damage
	entryBad                      // damage: a length that does not fit, a CRC that does not match
	entryGap                      // an intact entry whose sequence number is past the one expected
)

// entryAt checks the entry at the start of b, with room bytes (len(b) or
// more) left in the segment from there. It returns its size, sequence
// number and whether it is a skip entry.
func entryAt(b []byte, room int64, v1 bool) (size int64, seq uint64, skip bool, st entryStatus) {
	eh := int64(entryHeaderLen)
	if v1 {
		eh = entryHeaderLenV1
	}
	if int64(len(b)) < eh {
		if room > int64(len(b)) {
			return 0, 0, false, entryPast
		}
		if allZero(b) {
			return 0, 0, false, entryZeros
		}
		return 0, 0, false, entryBad
	}
	if binary.LittleEndian.Uint64(b) == 0 {
		return 0, 0, false, entryZeros
	}
	l := binary.LittleEndian.Uint32(b)
	if !v1 {
		seq = binary.LittleEndian.Uint64(b[8:])
		if l&skipFlag != 0 {
			size = eh + int64(l&^skipFlag)
			if size > room || skipCRC(b) != binary.LittleEndian.Uint32(b[4:]) {
				return 0, 0, false, entryBad
			}
			return size, seq, true, entryOK
		}
	}
	bodyLen := int64(l)
	if bodyLen < bodyFixedLen || bodyLen > MaxEntryLen || eh+bodyLen > room {
		return 0, 0, false, entryBad
	}
	size = eh + bodyLen
	if size > int64(len(b)) {
		return 0, 0, false, entryPast
	}
	// From byte 8: the sequence number and body, or (version 1) the body.
	if crc32.Checksum(b[8:size], crcTable) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, 0, false, entryBad
	}
	if bodyFixedLen+int64(binary.LittleEndian.Uint16(b[eh+8:])) > bodyLen {
		return 0, 0, false, entryBad
	}
	return size, seq, false, entryOK
}

// skipCRC is the checksum of a skip entry: of its length and sequence
// number.
func skipCRC(b []byte) uint32 {
	return crc32.Update(crc32.Checksum(b[0:4], crcTable), crcTable, b[8:16])
}

// putSkip writes the header of a skip entry of size bytes into b.
func putSkip(b []byte, size int64, seq uint64) {
	binary.LittleEndian.PutUint32(b[0:], skipFlag|uint32(size-entryHeaderLen))
	binary.LittleEndian.PutUint64(b[8:], seq)
	binary.LittleEndian.PutUint32(b[4:], skipCRC(b))
}

// decodeEntry returns the record of an intact entry of size bytes at the
// start of b. Key and Value point into b.
func decodeEntry(b []byte, size int64, v1 bool) Entry {
	eh := int64(entryHeaderLen)
	if v1 {
		eh = entryHeaderLenV1
	}
	body := b[eh:size]
	kl := int64(binary.LittleEndian.Uint16(body[8:]))
	return Entry{
		Appended: time.Unix(0, int64(binary.LittleEndian.Uint64(body[0:]))),
		Key:      body[bodyFixedLen : bodyFixedLen+kl],
		Value:    body[bodyFixedLen+kl:],
	}
}

// parsed is what parseEntries found.
type parsed struct {
	consumed int64       // bytes of entries parsed, from the start
	status   entryStatus // what stopped it at consumed
	expect   uint64      // the sequence number expected at consumed, 0 if unknown
	seq      uint64      // with entryGap, the sequence number of the entry at consumed
}

// parseEntries appends the records at the start of b, which holds a
// segment's bytes from some offset, with room bytes (len(b) or more) to
// its end, up to max entries and maxBytes of entries (one entry at least,
// whatever its size), passing over skip entries. expect is the sequence
// number of the first, if known. It stops at damage, zeros, a sequence
// number past the one expected, the end of b or the limits.
func parseEntries(b []byte, room int64, v1 bool, expect uint64, out []Entry, max, maxBytes int) ([]Entry, parsed) {
	p := parsed{expect: expect}
	bytes := 0
	for len(out) < max && p.consumed < int64(len(b)) {
		rest := b[p.consumed:]
		size, seq, skip, st := entryAt(rest, room-p.consumed, v1)
		if st == entryPast {
			return out, p
		}
		if st != entryOK {
			p.status = st
			return out, p
		}
		if skip {
			p.expect = seq
			p.consumed += size
			continue
		}
		if bytes > 0 && bytes+int(size) > maxBytes {
			return out, p // the entry is read again, first, by the next call
		}
		if !v1 {
			if p.expect != 0 && seq > p.expect {
				p.status, p.seq = entryGap, seq
				return out, p
			}
			p.expect = seq + 1
		}
		e := decodeEntry(rest, size, v1)
		out = append(out, e)
		bytes += int(size)
		p.consumed += size
	}
	return out, p
}

// resync returns the offset in b, after a, of the first intact entry
// (record or skip entry) that can follow damage at a, and its sequence
// number. b holds the segment's bytes to its end. With expect known, a
// candidate's sequence number must be at least expect and no more records
// past it than the bytes from a could have held: together with the length
// and the CRC, random bytes pass for an entry about never.
func resync(b []byte, a int64, expect uint64) (int64, uint64, bool) {
	for c := a + 1; c+entryHeaderLen <= int64(len(b)); c++ {
		if binary.LittleEndian.Uint32(b[c:]) == 0 {
			continue // zeros, the common case: no entry is that short
		}
		seq := binary.LittleEndian.Uint64(b[c+8:])
		if expect != 0 && (seq < expect || seq-expect > uint64(c-a)/minEntryLen) {
			continue
		}
		if _, seq, _, st := entryAt(b[c:], int64(len(b))-c, false); st == entryOK {
			return c, seq, true
		}
	}
	return 0, 0, false
}

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
