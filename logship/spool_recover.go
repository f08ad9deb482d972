package logship

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// recover lists the segments, reads the cursor, checks every segment still
// to be shipped and starts a new active segment.
func (s *Spool) recover() error {
	names, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("reading spool directory: %w", err)
	}
	var found []uint64
	for _, e := range names {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			continue
		}
		found = append(found, n)
	}
	slices.Sort(found)

	s.cf, err = os.OpenFile(filepath.Join(s.cfg.Dir, "cursor"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening spool cursor: %w", err)
	}
	cur, ok := s.readCursor()
	if !ok || !slices.Contains(found, cur.Seg) {
		// No usable cursor: start from the oldest segment. At worst this
		// ships some records again (same event_id), never loses any.
		cur = Pos{}
		if len(found) > 0 {
			cur = Pos{Seg: found[0], Off: int64(len(segmentHeader))}
		}
	}

	// Drop what was shipped, check the rest.
	for _, n := range found {
		if n < cur.Seg {
			_ = os.Remove(s.segPath(n))
			continue
		}
		size, err := s.checkSegment(n)
		if err != nil {
			return err
		}
		if n == cur.Seg && cur.Off > size {
			cur.Off = size
		}
		s.size += size
		s.segments = append(s.segments, segment{n: n, end: size})
	}
	s.cursor = cur

	next := uint64(1)
	if len(s.segments) > 0 {
		next = s.segments[len(s.segments)-1].n + 1
	}
	if s.cursor.Seg == 0 {
		s.cursor = Pos{Seg: next, Off: int64(len(segmentHeader))}
	}
	sf := s.createSegment(next)
	if sf.err != nil {
		return sf.err
	}
	if sf.mapped != nil {
		readAhead(sf.mapped)
	}
	s.activate(sf)
	return s.writeCursor(s.cursor)
}

// checkSegment validates segment n entry by entry, truncating it at the
// first damaged entry. It returns the segment's size after repair.
func (s *Spool) checkSegment(n uint64) (int64, error) {
	path := s.segPath(n)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("opening spool segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	hdr := make([]byte, len(segmentHeader))
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr) != segmentHeader {
		// Not even a header: nothing in it can be trusted. An empty or
		// all-zero file is a segment that was being created (or prepared
		// ahead) when the process died, before its header was written:
		// no entry can have been appended to it, so it is not damage.
		if !zerosFrom(f, 0, st.Size()) {
			s.repaired(path, 0, st.Size())
		}
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		if _, err := f.WriteAt([]byte(segmentHeader), 0); err != nil {
			return 0, err
		}
		return int64(len(segmentHeader)), nil
	}
	r := segReader{f: f, off: int64(len(segmentHeader)), end: st.Size()}
	for {
		entries, damaged, err := r.read(nil, 1<<30, 1<<30)
		if err != nil {
			return 0, fmt.Errorf("reading spool segment: %w", err)
		}
		if damaged {
			s.repaired(path, r.off, st.Size()-r.off)
			if err := f.Truncate(r.off); err != nil {
				return 0, fmt.Errorf("repairing spool segment: %w", err)
			}
			return r.off, f.Sync()
		}
		if len(entries) == 0 {
			if r.off < st.Size() {
				// Stopped at an all-zero header: the unused end of a
				// segment allocated in full and not truncated (a crash).
				// Anything but zeros after it is damage.
				if !zerosFrom(f, r.off, st.Size()) {
					s.repaired(path, r.off, st.Size()-r.off)
				}
				if err := f.Truncate(r.off); err != nil {
					return 0, fmt.Errorf("trimming spool segment: %w", err)
				}
			}
			return r.off, nil
		}
	}
}

// zerosFrom reports whether f holds only zero bytes from off to end.
func zerosFrom(f *os.File, off, end int64) bool {
	buf := make([]byte, 1<<20)
	for off < end {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		for _, c := range buf[:n] {
			if c != 0 {
				return false
			}
		}
		if err != nil && err != io.EOF {
			return false
		}
		if n == 0 {
			break
		}
		off += int64(n)
	}
	return true
}

func (s *Spool) repaired(path string, off, lost int64) {
	s.stats.SpoolRepairs.Add(1)
	s.cfg.Logger.Warn("spool segment damaged, truncated at the last intact record",
		zap.String("segment", path), zap.Int64("offset", off), zap.Int64("bytes_discarded", lost))
}
