package logship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// segFile is a segment file ready to become the active one.
type segFile struct {
	n      uint64
	f      *os.File
	mapped []byte // nil when appends to it use write(2)
	short  bool   // not allocated in full for lack of space
	err    error
}

// createSegment creates segment n with its header, without a sequence
// number yet (see stamp), allocates it in full and maps it; on a file
// system that cannot, the file is left for write(2) appends. It takes no
// lock.
func (s *Spool) createSegment(n uint64) segFile {
	f, err := os.OpenFile(s.segPath(n), os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return segFile{n: n, err: fmt.Errorf("creating spool segment: %w", err)}
	}
	var hdr [segmentHeaderLen]byte
	copy(hdr[:], segmentMagic)
	if _, err := s.cfg.writeAt(f, hdr[:], 0); err != nil {
		f.Close()
		_ = os.Remove(s.segPath(n))
		return segFile{n: n, err: fmt.Errorf("writing spool segment: %w", err)}
	}
	sf := segFile{n: n, f: f}
	if s.cfg.noMap {
		return sf
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, s.cfg.SegmentSize); err == nil {
		m, err := unix.Mmap(int(f.Fd()), 0, int(s.cfg.SegmentSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err == nil {
			sf.mapped = m
		} else {
			_ = f.Truncate(segmentHeaderLen)
		}
	} else {
		// A failed allocation (a full disk) may have grown the file
		// part of the way; write(2) appends must follow the header.
		_ = f.Truncate(segmentHeaderLen)
		sf.short = errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
	}
	return sf
}

// prepare creates segment n ahead of its use and hands it to the roll
// that will need it. It starts when the segment before takes its first
// record, not later: with GOMAXPROCS=1 and a goroutine appending without
// pause, it may first run when the scheduler preempts that one (every
// 10ms), and each of its system calls long enough for the scheduler to
// hand the processor back costs another round. Measured so (appendlat,
// one core): started at half a segment, it was not ready for more than
// half of the rolls; started at the first record, for a few in forty.
func (s *Spool) prepare(n uint64) {
	if s.prepareHook != nil {
		if err := s.prepareHook(n); err != nil {
			s.prepared <- segFile{n: n, err: err}
			return
		}
	}
	sf := s.createSegment(n)
	if sf.err == nil && s.cfg.Fsync == FsyncAlways {
		// Its name is durable before any record goes in. With an fsync
		// interval, syncing the segment before it after the roll does it.
		s.syncDir()
	}
	if sf.mapped != nil {
		readAhead(sf.mapped)
	}
	s.prepared <- sf
}

// readAhead brings a new segment's pages (zeros: its blocks are allocated
// but unwritten) into the page cache, without mapping them. Otherwise the
// first append to fault on a page past the header starts the kernel's
// readahead from the append path: with a large read_ahead_kb (8 MiB on
// some virtual disks) that stalled one append per segment for 3-4 ms,
// measured.
func readAhead(mapped []byte) { _ = unix.Madvise(mapped, unix.MADV_WILLNEED) }

// roll makes segment activeN+1 the active one: the one prepared ahead,
// waiting for its preparation if that is still running (no longer than
// creating it here would take), or, when there is none or it failed, one
// created now. Called with mu held.
func (s *Spool) roll() error {
	if s.preparing {
		s.preparing = false
		sf := <-s.prepared
		err := sf.err
		if err == nil {
			if err = s.stamp(sf); err == nil {
				s.activate(sf)
				return nil
			}
			_ = s.discard(sf)
		}
		s.cfg.Logger.Warn("preparing the next spool segment failed, creating it now", zap.Error(err))
	}
	sf := s.createSegment(s.activeN + 1)
	if sf.err != nil {
		return sf.err
	}
	if err := s.stamp(sf); err != nil {
		_ = s.discard(sf)
		return fmt.Errorf("writing spool segment header: %w", err)
	}
	if s.cfg.Fsync == FsyncAlways {
		s.syncDir()
	}
	s.activate(sf)
	return nil
}

// stamp writes the sequence number of the next record into the header of
// sf, about to become the active segment: a copy when it is mapped.
// Called with mu held or before the spool is shared.
func (s *Spool) stamp(sf segFile) error {
	var hdr [segmentHeaderLen]byte
	putHeader(hdr[:], s.nextSeq)
	if sf.mapped != nil {
		copy(sf.mapped, hdr[:])
		return nil
	}
	_, err := s.cfg.writeAt(sf.f, hdr[:], 0)
	return err
}

// putHeader writes a segment header whose first record is first.
func putHeader(b []byte, first uint64) {
	copy(b, segmentMagic)
	binary.LittleEndian.PutUint64(b[8:], first)
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], crcTable))
	binary.LittleEndian.PutUint32(b[20:], 0)
}

// activate makes sf the active segment, with nothing but assignments: the
// old active segment is unmapped and trimmed to its entries by a
// goroutine, since that takes a millisecond or more (unmapping alone tears
// down thousands of page table entries). Its entries are in the page cache
// already, and the reader stops at their recorded end, not at the file's
// size. Close waits for the goroutine. With an fsync interval, the old
// segment is then synced and closed by the next Sync, with the directory
// that holds the new one's name: within the interval, as its records
// require, and in the sync loop's goroutine, not in one per roll. (An
// fsync blocks for milliseconds, and with GOMAXPROCS=1 the goroutine
// blocked in it keeps the only processor until the scheduler's monitor
// takes it back, up to 20ms later: one per roll stalled appends far more
// than one per interval, measured. At rates far above the edge's, it
// makes each interval's fsync larger: see docs/spool.md.) With fsync
// always, every record was synced when appended; with never, nothing is.
// Called with mu held or before the spool is shared.
func (s *Spool) activate(sf segFile) {
	if old := s.active; old != nil {
		mapped, end := s.mapped, s.writeEnd.Off
		s.segments[len(s.segments)-1].end = end
		var trimmed chan struct{}
		if s.cfg.Fsync > 0 {
			trimmed = make(chan struct{})
			s.unsynced = append(s.unsynced, sealed{f: old, trimmed: trimmed})
			s.dirDirty = true
		}
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			_ = unmap(old, mapped, end)
			if trimmed != nil {
				close(trimmed) // Sync syncs and closes it
			} else {
				_ = old.Close()
			}
		}()
	} else if s.cfg.Fsync != FsyncNever {
		s.syncDir()
	}
	s.active, s.activeN, s.mapped = sf.f, sf.n, sf.mapped
	s.tight = sf.mapped == nil && (s.tight || sf.short)
	s.segments = append(s.segments, segment{n: sf.n, start: segmentHeaderLen, first: s.nextSeq})
	s.size += segmentHeaderLen
	s.writeEnd = Pos{Seg: sf.n, Off: segmentHeaderLen}
}

// sealed is a segment no longer written to, waiting for Sync.
type sealed struct {
	f       *os.File
	trimmed chan struct{} // closed once it is unmapped and trimmed
}

// unmap unmaps a segment that is no longer written to and trims it to its
// entries.
func unmap(f *os.File, mapped []byte, end int64) error {
	if mapped == nil {
		return nil
	}
	return errors.Join(unix.Munmap(mapped), f.Truncate(end))
}

// closeActive unmaps, trims and finishes the active segment. Called with
// mu held.
func (s *Spool) closeActive() error {
	f := s.active
	if f == nil {
		return nil
	}
	err := unmap(f, s.mapped, s.writeEnd.Off)
	s.active, s.mapped = nil, nil
	return errors.Join(err, s.finish(f))
}

// discard removes a prepared segment that was never used.
func (s *Spool) discard(sf segFile) error {
	if sf.err != nil {
		return nil
	}
	var err error
	if sf.mapped != nil {
		err = unix.Munmap(sf.mapped)
	}
	return errors.Join(err, sf.f.Close(), os.Remove(s.segPath(sf.n)))
}

// finish syncs (unless fsync is never) and closes a segment that is no
// longer written to, and syncs the directory.
func (s *Spool) finish(f *os.File) error {
	var err error
	if s.cfg.Fsync != FsyncNever {
		err = s.cfg.sync(f)
		s.syncDir()
	}
	return errors.Join(err, f.Close())
}

// Append writes one record. It returns ErrSpoolFull, without writing, when
// the spool would grow past its maximum size. Every refusal is counted
// and logged at a bounded rate. A record refused for any reason left the
// spool as it was: nothing of it is ever read.
func (s *Spool) Append(key string, value []byte) error {
	err := s.append(key, value)
	if err == nil {
		s.stats.Accepted.Add(1)
		return nil
	}
	if err == ErrSpoolFull {
		s.stats.DroppedFull.Add(1)
		s.dropLog.log("spool full, record dropped", err, zap.String("dir", s.cfg.Dir), zap.Int64("max_size", s.maxSize.Load()))
	} else {
		s.stats.DroppedError.Add(1)
		s.dropLog.log("record dropped", err, zap.String("dir", s.cfg.Dir))
	}
	return err
}

func (s *Spool) append(key string, value []byte) error {
	bodyLen := bodyFixedLen + len(key) + len(value)
	if bodyLen > MaxEntryLen || len(key) > 0xffff {
		return fmt.Errorf("record of %d bytes is too large for the spool", bodyLen)
	}
	n := int64(entryHeaderLen + bodyLen)
	if n > s.cfg.SegmentSize-segmentHeaderLen {
		return fmt.Errorf("record of %d bytes is larger than a spool segment", n)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.size+n > s.maxSize.Load() {
		s.mu.Unlock()
		return ErrSpoolFull
	}
	reclaimed := false
again:
	if s.broken || s.writeEnd.Off+n > s.cfg.SegmentSize {
		// A broken segment is never appended to again: until a new one
		// can be created, records are refused.
		err := s.roll()
		if err != nil {
			s.tight, s.room = true, s.size
		}
		if err != nil && s.reclaimable() {
			// No room for the next segment (a full disk), but every
			// record of this one is shipped: its space is the room.
			err = s.reclaim()
		}
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.broken = false
	}
	var b []byte
	if s.mapped != nil {
		b = s.mapped[s.writeEnd.Off : s.writeEnd.Off+n]
	} else {
		b = slices.Grow(s.buf[:0], int(n))[:n]
		s.buf = b
	}
	binary.LittleEndian.PutUint32(b[0:], uint32(bodyLen))
	binary.LittleEndian.PutUint64(b[8:], s.nextSeq)
	binary.LittleEndian.PutUint64(b[16:], uint64(s.cfg.Now().UnixNano()))
	binary.LittleEndian.PutUint16(b[24:], uint16(len(key)))
	copy(b[26:], key)
	copy(b[26+len(key):], value)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], crcTable))
	if s.mapped != nil {
		// In the page cache already.
	} else if _, err := s.cfg.writeAt(s.active, b, s.writeEnd.Off); err != nil {
		s.cutFailedWrite(n)
		s.tight, s.room = true, s.size
		if !reclaimed && s.reclaimable() {
			// A full disk, most likely, with every record of the
			// active segment shipped: reclaim its space and write the
			// record into the next segment, once.
			if rerr := s.reclaim(); rerr == nil {
				reclaimed = true
				goto again
			}
		}
		s.mu.Unlock()
		return fmt.Errorf("writing to spool: %w", err)
	}
	if s.cfg.Fsync == FsyncAlways {
		if err := s.cfg.sync(s.active); err != nil {
			// Not synced, so not accepted: the next append overwrites it.
			s.cutFailedWrite(n)
			s.mu.Unlock()
			return fmt.Errorf("syncing spool: %w", err)
		}
	}
	s.nextSeq++
	s.dirty = true
	s.writeEnd.Off += n
	s.size += n
	if !s.preparing {
		// The first record in a new segment: prepare the next one now,
		// which leaves its goroutine the time it takes to fill this one
		// to be scheduled, even on one busy core (see prepare).
		s.preparing = true
		go s.prepare(s.activeN + 1)
	}
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
	return nil
}

// reclaimFrom is the size from which Ack reclaims the active segment of a
// caught-up reader while the disk is tight: a quarter of what the spool
// held when the disk was last found full, at most a sixteenth of a
// segment. Reclaiming is a roll: not at every catch-up (every batch, under
// live traffic) for a few records.
func (s *Spool) reclaimFrom() int64 {
	if s.room > 0 {
		return min(s.cfg.SegmentSize/16, s.room/4)
	}
	return s.cfg.SegmentSize / 16
}

// reclaimable reports whether the active segment holds records and the
// reader has acknowledged every one of them. Called with mu held.
func (s *Spool) reclaimable() bool {
	return s.active != nil && !s.closed && s.writeEnd.Off > segmentHeaderLen && !s.acked.Less(s.writeEnd)
}

// reclaim frees the disk space of the active segment, all of whose
// records are acknowledged (reclaimable), and rolls on to the next
// segment. Its header is stamped with the next sequence number first (an
// overwrite in place, which needs no space), then it is cut to its
// header, so that on a full disk the space is there for the next one. A
// crash at any point leaves it whole or cut, with the new header or the
// old one before it, and the cursor at its old end: an open finds no
// record to read again and goes on from the next sequence number (its
// entries' numbers are below the header's, which an open accepts). The
// reader's cursor is then past the segment's new end, which is where a
// read or an open moves it, to the same records (none); the next record
// goes to the next segment, never to this one: positions only grow. If
// the roll fails, the segment is broken: records are refused until a
// segment can be created. Called with mu held.
func (s *Spool) reclaim() error {
	if s.mapped != nil {
		// Only when a roll failed: the mapping holds the space the next
		// segment needs. Nothing past writeEnd is read or kept.
		if err := unix.Munmap(s.mapped); err != nil {
			return fmt.Errorf("reclaiming spool segment: %w", err)
		}
		s.mapped = nil
		s.broken = true // its end past writeEnd is zeros, not cut: roll before appending
	}
	var hdr [segmentHeaderLen]byte
	putHeader(hdr[:], s.nextSeq)
	if _, err := s.cfg.writeAt(s.active, hdr[:], 0); err != nil {
		s.broken = true // the header may be torn: never appended to again
		return fmt.Errorf("reclaiming spool segment: %w", err)
	}
	s.segments[len(s.segments)-1].first = s.nextSeq
	s.broken = true // its positions up to the cursor are spent: never appended to again
	if err := s.active.Truncate(segmentHeaderLen); err != nil {
		return fmt.Errorf("reclaiming spool segment: %w", err)
	}
	n, freed := s.activeN, s.writeEnd.Off-segmentHeaderLen
	s.size -= freed
	s.writeEnd.Off = segmentHeaderLen
	if err := s.roll(); err != nil {
		return err
	}
	s.broken = false
	s.cfg.Logger.Debug("spool segment shipped in full, its space reclaimed", zap.Uint64("segment", n),
		zap.Int64("bytes", freed))
	return nil
}

// cutFailedWrite cuts off what a failed write(2) append left after the
// last complete entry (a short write leaves part of a record), so that
// the segment is as it was. If even that fails, the segment is broken:
// the next append rolls first. The reader stops at writeEnd meanwhile,
// and an open cuts the torn bytes off as a damaged tail. Called with mu
// held.
func (s *Spool) cutFailedWrite(n int64) {
	if s.mapped != nil {
		// Nothing past writeEnd counts and the next append overwrites
		// it, but an open after a crash would find an intact entry.
		clear(s.mapped[s.writeEnd.Off : s.writeEnd.Off+n])
		return
	}
	if err := s.active.Truncate(s.writeEnd.Off); err != nil {
		s.broken = true
	}
}

// syncLoop bounds the power-loss window to the fsync interval.
func (s *Spool) syncLoop(every time.Duration) {
	defer close(s.fsyncDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stopFsync:
			return
		case <-t.C:
			s.Sync()
		}
	}
}

// Sync flushes appended records to stable storage: those of the active
// segment and of the segments rolled since the last Sync, and the names
// of new segments. It is the sync loop's; Close does the same.
func (s *Spool) Sync() {
	s.mu.Lock()
	f, dirty := s.active, s.dirty
	s.dirty = false
	rolled, dir := s.unsynced, s.dirDirty
	s.unsynced, s.dirDirty = nil, false
	s.mu.Unlock()
	for _, r := range rolled {
		<-r.trimmed
		_ = s.cfg.sync(r.f)
		_ = r.f.Close()
	}
	if dirty && f != nil {
		_ = s.cfg.sync(f) // with fsync never or always, a roll may have closed it: nothing to sync then
	}
	if dir {
		s.syncDir()
	}
}

// syncDir syncs the spool's directory: the names of its segments.
func (s *Spool) syncDir() {
	if d, err := os.Open(s.cfg.Dir); err == nil {
		_ = s.cfg.sync(d)
		d.Close()
	}
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
