package logship

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"
)

// Read returns up to max entries (and about maxBytes) after the cursor
// and the position after the last one, waiting until there is at least
// one or stop is closed. Entries are only valid until the next Read. It
// must be followed by Ack(next) once the entries are delivered; reading
// again without Ack returns the same entries.
func (s *Spool) Read(stop <-chan struct{}, buf []Entry, max int, maxBytes int) ([]Entry, Pos, error) {
	for {
		s.mu.Lock()
		end, closed := s.writeEnd, s.closed
		s.mu.Unlock()
		if closed {
			return nil, s.cursor, ErrClosed
		}
		if s.cursor.Less(end) {
			entries, next, err := s.readFrom(s.cursor, end, buf[:0], max, maxBytes)
			if err != nil || len(entries) > 0 {
				if len(entries) > 0 {
					s.head.Store(entries[0].Appended.UnixNano())
				}
				return entries, next, err
			}
			// Only segment boundaries between here and end: move on.
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

func (s *Spool) readFrom(pos, end Pos, out []Entry, max, maxBytes int) ([]Entry, Pos, error) {
	for len(out) < max && pos.Less(end) {
		if s.rf == nil || s.rfSeg != pos.Seg {
			if s.rf != nil {
				s.rf.Close()
				s.rf = nil
			}
			f, err := os.Open(s.segPath(pos.Seg))
			if err != nil {
				return out, pos, fmt.Errorf("opening spool segment: %w", err)
			}
			s.rf, s.rfSeg = f, pos.Seg
			s.win = s.win[:0]
		}
		segEnd := end.Off
		if pos.Seg != end.Seg {
			// Not the file's size: a segment rolled a moment ago may not
			// be trimmed yet.
			segEnd = s.segmentEnd(pos.Seg)
		}
		b, err := s.window(pos.Off, segEnd)
		if err != nil {
			return out, pos, err
		}
		n0 := len(out)
		var consumed int
		var damaged bool
		out, consumed, damaged = parseEntries(b, pos.Off, segEnd, out, max, maxBytes)
		pos.Off += int64(consumed)
		if consumed == 0 && pos.Off < segEnd {
			damaged = true // a window always holds a whole entry: no progress is damage
		}
		if damaged {
			// Damage found while running (a disk error, or the torn
			// write of a failed append): skip the rest of the segment,
			// as a restart would after truncating it.
			s.repaired(s.segPath(pos.Seg), pos.Off, segEnd-pos.Off)
			pos.Off = segEnd
		}
		if pos.Off >= segEnd && pos.Seg != end.Seg {
			pos = Pos{Seg: s.nextSegment(pos.Seg), Off: int64(len(segmentHeader))}
			if len(out) == n0 {
				continue // an empty or exhausted segment: go on to the next
			}
		}
		// One window per call: the caller ships it and comes back.
		break
	}
	return out, pos, nil
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

func (s *Spool) nextSegment(n uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sg := range s.segments {
		if sg.n > n {
			return sg.n
		}
	}
	return s.activeN
}

// segmentEnd returns the end of the entries of segment n, which is no
// longer the active one.
func (s *Spool) segmentEnd(n uint64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sg := range s.segments {
		if sg.n == n {
			return sg.end
		}
	}
	return int64(len(segmentHeader)) // deleted: nothing left to read
}

// Ack records that everything before pos was delivered: the cursor is
// saved and segments wholly before it are deleted.
func (s *Spool) Ack(pos Pos) error {
	if !s.cursor.Less(pos) {
		return nil
	}
	s.cursor = pos
	if err := s.writeCursor(pos); err != nil {
		return err
	}
	s.mu.Lock()
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

// segReader reads entries from a segment file between off and end.
type segReader struct {
	f   *os.File
	off int64
	end int64
	buf []byte
}

// read reads one chunk of the segment from off and appends the entries
// it holds, up to max entries and about maxBytes, advancing off past them.
// Entries point into the reader's buffer. damaged is true when the entry
// at off is short, too long or fails its CRC.
func (r *segReader) read(out []Entry, max, maxBytes int) (_ []Entry, damaged bool, _ error) {
	if r.off >= r.end {
		return out, false, nil
	}
	if r.buf == nil {
		r.buf = make([]byte, readChunk)
	}
	b := r.buf[:min(int64(len(r.buf)), r.end-r.off)]
	if _, err := r.f.ReadAt(b, r.off); err != nil && err != io.EOF {
		return out, false, err
	}
	out, n, damaged := parseEntries(b, r.off, r.end, out, max, maxBytes)
	r.off += int64(n)
	return out, damaged, nil
}

// parseEntries appends the entries at the start of b, which holds the
// segment's bytes from file offset off, up to max entries and about
// maxBytes. It returns how many bytes of b they took, and whether the
// entry after them is damaged (as opposed to continuing past b).
func parseEntries(b []byte, off, end int64, out []Entry, max, maxBytes int) (_ []Entry, consumed int, damaged bool) {
	bytes := 0
	for len(out) < max && bytes < maxBytes && consumed < len(b) {
		rest := b[consumed:]
		at := off + int64(consumed)
		if len(rest) < entryHeaderLen {
			return out, consumed, at+int64(len(rest)) >= end
		}
		if binary.LittleEndian.Uint64(rest[0:]) == 0 {
			return out, consumed, false // unused, zeroed end of an allocated segment
		}
		bodyLen := int64(binary.LittleEndian.Uint32(rest[0:]))
		if bodyLen < bodyFixedLen || bodyLen > MaxEntryLen || at+entryHeaderLen+bodyLen > end {
			return out, consumed, true
		}
		if entryHeaderLen+bodyLen > int64(len(rest)) {
			return out, consumed, false // continues past b
		}
		body := rest[entryHeaderLen : entryHeaderLen+bodyLen]
		if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(rest[4:]) {
			return out, consumed, true
		}
		kl := int64(binary.LittleEndian.Uint16(body[8:]))
		if bodyFixedLen+kl > bodyLen {
			return out, consumed, true
		}
		out = append(out, Entry{
			Appended: time.Unix(0, int64(binary.LittleEndian.Uint64(body[0:]))),
			Key:      body[bodyFixedLen : bodyFixedLen+kl],
			Value:    body[bodyFixedLen+kl:],
		})
		bytes += len(body)
		consumed += entryHeaderLen + int(bodyLen)
	}
	return out, consumed, false
}
