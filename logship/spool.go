package logship

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The spool is a directory of segment files that the request path appends
// to and one shipper reads from, in order:
//
//	LOCK                      flock(2)ed while open: one process per directory
//	cursor                    where the shipper resumes: segment, offset, CRC
//	00000000000000000001.seg  segments, numbered in append order
//
// A segment starts with the 8-byte header "B2SSPL1\n" and holds entries:
//
//	[4] body length, little endian   [4] CRC-32C of the body   [body]
//	body: [8] append time, unix ns   [2] key length   [key]   [value]
//
// The active segment is allocated at its full size (fallocate(2), so the
// disk space is reserved and a full disk shows up as an error, never as a
// SIGBUS) and mapped into memory with MAP_SHARED: an append is a copy into
// the kernel's page cache under the spool's lock, with no system call. Once
// Append returns the entry survives the death of the process; the fsync
// policy bounds what a power loss can take. On a file system that cannot
// allocate or map, appends fall back to one write(2) each. A segment is
// truncated to its entries when it is rolled or the spool closed; after a
// crash, the zeros after the last entry are found and cut on open. On
// open, every segment still to be shipped is checked entry by entry; the
// first entry that is short or fails its CRC ends the segment, which is
// truncated there (a torn tail after a crash), and the repair is counted.
// Appends always go to a new segment after an open.
//
// Rolling must not stall appends: creating, allocating and mapping a
// segment takes a few hundred microseconds, unmapping and trimming the old
// one about a millisecond more. So the next segment is prepared by a
// goroutine as soon as the active one takes its first record, and the old
// one is unmapped, trimmed, synced and closed by another after the roll;
// under the lock a roll only swaps them. A prepared segment is a header
// and zeros (or, if the process died while creating it, less): the next
// open trims it to its header like any zeroed end, without counting a
// repair, and the reader passes over it. It is allocated, not counted:
// MaxSize bounds the records, and the disk holds up to two segments more
// (the active one's unused end, and the next).
const (
	segmentHeader  = "B2SSPL1\n"
	entryHeaderLen = 8
	bodyFixedLen   = 10
	// MaxEntryLen bounds one entry's body, so a corrupt length field
	// cannot make the reader allocate without limit.
	MaxEntryLen = 1 << 20
	cursorLen   = 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrSpoolFull is returned by Append when the spool has reached its
// maximum size.
var ErrSpoolFull = errors.New("spool full")

// ErrClosed is returned by a closed spool.
var ErrClosed = errors.New("spool closed")

// Fsync policies, see SpoolConfig.Fsync.
const (
	// FsyncNever leaves flushing to the kernel (typically within 30s).
	FsyncNever time.Duration = -1
	// FsyncAlways syncs each append before it returns: nothing
	// acknowledged is lost even on power loss, at a large cost per request.
	FsyncAlways time.Duration = 0
)

// SpoolConfig configures a Spool. The zero value of a field means its
// default, except Fsync, whose zero is FsyncAlways: use NewSpoolConfig.
type SpoolConfig struct {
	// Dir holds the spool's files. Required; created if missing.
	Dir string
	// MaxSize bounds the bytes of the records held, segment headers
	// included. The disk holds up to two segments more: the active segment
	// is allocated in full, and so is the next one, prepared ahead.
	// Default 1 GiB.
	MaxSize int64
	// SegmentSize is the size at which a new segment file is started, and
	// the size of the active segment's memory map. Default 16 MiB, at most
	// MaxSize/4.
	SegmentSize int64
	// Fsync is the longest time an appended record may stay unsynced: a
	// power loss (not a crash of the process) can lose at most the records
	// of this window. FsyncAlways syncs every append; FsyncNever leaves it
	// to the kernel.
	Fsync time.Duration
	// Stats receives the counters. Default: a private Stats.
	Stats *Stats
	// Logger receives repairs and errors.
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of SpoolConfig.
const (
	DefaultSpoolMaxSize    = 1 << 30
	DefaultSpoolSegment    = 16 << 20
	DefaultFsync           = time.Second
	minimumSpoolMaxSize    = 1 << 20
	minimumSpoolSegmentLen = 64 << 10
)

func (c *SpoolConfig) setDefaults() {
	if c.MaxSize <= 0 {
		c.MaxSize = DefaultSpoolMaxSize
	}
	if c.SegmentSize <= 0 {
		c.SegmentSize = DefaultSpoolSegment
	}
	c.SegmentSize = min(c.SegmentSize, c.MaxSize/4)
	c.SegmentSize = max(c.SegmentSize, minimumSpoolSegmentLen)
	if c.Stats == nil {
		c.Stats = new(Stats)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Pos is a position in the spool: a segment number and a byte offset.
type Pos struct {
	Seg uint64
	Off int64
}

// Less reports whether p comes before q.
func (p Pos) Less(q Pos) bool { return p.Seg < q.Seg || p.Seg == q.Seg && p.Off < q.Off }

// Entry is one record read back from the spool.
type Entry struct {
	Key      []byte
	Value    []byte
	Appended time.Time
}

// Spool is a bounded, checksummed, append-only log on disk with one reader.
// Append is safe for concurrent use; Read and Ack belong to one reader.
type Spool struct {
	cfg   SpoolConfig
	stats *Stats
	lock  *os.File

	mu        sync.Mutex // guards the writing side
	closed    bool
	active    *os.File
	mapped    []byte // the active segment's memory map; nil when appends use write(2)
	activeN   uint64
	writeEnd  Pos    // end of the last complete entry
	buf       []byte // entry being written
	dirty     bool   // appended since the last fsync
	segments  []segment
	size      int64    // bytes of entries and headers in all segments
	preparing bool     // segment activeN+1 is being or has been prepared: its result is in (or on its way to) prepared
	unsynced  []sealed // segments rolled since the last Sync, with an fsync interval
	dirDirty  bool     // a segment was activated since the last Sync, with an fsync interval

	prepared chan segFile // the next segment, prepared ahead; capacity 1
	// prepareHook, set by tests only, runs before a segment is prepared;
	// an error fails the preparation.
	prepareHook func(n uint64) error

	more chan struct{} // signalled after each append

	// Reader side, owned by the single reader.
	rf     *os.File
	rfSeg  uint64
	win    []byte // bytes of segment rfSeg from winOff, see window
	winOff int64
	cursor Pos // acknowledged position
	cf     *os.File

	maxSize   atomic.Int64
	bg        sync.WaitGroup // segments being synced and closed after a roll
	head      atomic.Int64   // append time (ns) of the oldest unacknowledged entry read, 0 if none
	dropLog   rateLimitedLog
	stopFsync chan struct{}
	fsyncDone chan struct{}
}

// OpenSpool opens or creates the spool in cfg.Dir, repairing a torn or
// corrupt tail. It fails only when the directory cannot be used at all
// (permissions, another process holding it).
func OpenSpool(cfg SpoolConfig) (*Spool, error) {
	cfg.setDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("no spool directory")
	}
	if cfg.MaxSize < minimumSpoolMaxSize {
		return nil, fmt.Errorf("spool maximum size %d is below the minimum of 1MiB", cfg.MaxSize)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating spool directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening spool lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool directory %s is in use by another process: %w", cfg.Dir, err)
	}
	s := &Spool{cfg: cfg, stats: cfg.Stats, lock: lock, more: make(chan struct{}, 1), prepared: make(chan segFile, 1),
		dropLog: rateLimitedLog{logger: cfg.Logger, every: 10 * time.Second}}
	s.maxSize.Store(cfg.MaxSize)
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	if cfg.Fsync > 0 {
		s.stopFsync, s.fsyncDone = make(chan struct{}), make(chan struct{})
		go s.syncLoop(cfg.Fsync)
	}
	return s, nil
}

// segment is one segment file of the spool.
type segment struct {
	n   uint64
	end int64 // the end of its entries once it is no longer active (the active one's is writeEnd)
}

func segName(n uint64) string { return fmt.Sprintf("%020d.seg", n) }

func (s *Spool) segPath(n uint64) string { return filepath.Join(s.cfg.Dir, segName(n)) }

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

// segFile is a segment file ready to become the active one.
type segFile struct {
	n      uint64
	f      *os.File
	mapped []byte // nil when appends to it use write(2)
	err    error
}

// createSegment creates segment n with its header, allocates it in full
// and maps it; on a file system that cannot, the file is left for write(2)
// appends. It takes no lock.
func (s *Spool) createSegment(n uint64) segFile {
	f, err := os.OpenFile(s.segPath(n), os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return segFile{n: n, err: fmt.Errorf("creating spool segment: %w", err)}
	}
	if _, err := f.Write([]byte(segmentHeader)); err != nil {
		f.Close()
		_ = os.Remove(s.segPath(n))
		return segFile{n: n, err: fmt.Errorf("writing spool segment: %w", err)}
	}
	sf := segFile{n: n, f: f}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, s.cfg.SegmentSize); err == nil {
		m, err := unix.Mmap(int(f.Fd()), 0, int(s.cfg.SegmentSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err == nil {
			sf.mapped = m
		} else {
			_ = f.Truncate(int64(len(segmentHeader)))
		}
	} else {
		// A failed allocation (a full disk) may have grown the file
		// part of the way; write(2) appends must follow the header.
		_ = f.Truncate(int64(len(segmentHeader)))
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
		syncDir(s.cfg.Dir)
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
		if sf.err == nil {
			s.activate(sf)
			return nil
		}
		s.cfg.Logger.Warn("preparing the next spool segment failed, creating it now", zap.Error(sf.err))
	}
	sf := s.createSegment(s.activeN + 1)
	if sf.err != nil {
		return sf.err
	}
	if s.cfg.Fsync == FsyncAlways {
		syncDir(s.cfg.Dir)
	}
	s.activate(sf)
	return nil
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
		syncDir(s.cfg.Dir)
	}
	s.active, s.activeN, s.mapped = sf.f, sf.n, sf.mapped
	s.segments = append(s.segments, segment{n: sf.n})
	s.size += int64(len(segmentHeader))
	s.writeEnd = Pos{Seg: sf.n, Off: int64(len(segmentHeader))}
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
		err = f.Sync()
		syncDir(s.cfg.Dir)
	}
	return errors.Join(err, f.Close())
}

// Append writes one record. It returns ErrSpoolFull, without writing, when
// the spool would grow past its maximum size. Every refusal is counted
// and logged at a bounded rate.
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
	if n > s.cfg.SegmentSize-int64(len(segmentHeader)) {
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
	if s.writeEnd.Off+n > s.cfg.SegmentSize {
		if err := s.roll(); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	var b []byte
	if s.mapped != nil {
		b = s.mapped[s.writeEnd.Off : s.writeEnd.Off+n]
	} else {
		b = slices.Grow(s.buf[:0], int(n))[:n]
		s.buf = b
	}
	binary.LittleEndian.PutUint32(b[0:], uint32(bodyLen))
	binary.LittleEndian.PutUint64(b[8:], uint64(s.cfg.Now().UnixNano()))
	binary.LittleEndian.PutUint16(b[16:], uint16(len(key)))
	copy(b[18:], key)
	copy(b[18+len(key):], value)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], crcTable))
	if s.mapped != nil {
		// In the page cache already.
	} else if _, err := s.active.Write(b); err != nil {
		// A short write may leave a torn entry that writeEnd does not
		// cover; start a clean segment after it. The reader stops at
		// writeEnd and the next open truncates the torn bytes.
		_ = s.roll()
		s.mu.Unlock()
		return fmt.Errorf("writing to spool: %w", err)
	}
	if s.cfg.Fsync == FsyncAlways {
		if err := s.active.Sync(); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("syncing spool: %w", err)
		}
	}
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
		_ = r.f.Sync()
		_ = r.f.Close()
	}
	if dirty && f != nil {
		_ = f.Sync() // with fsync never or always, a roll may have closed it: nothing to sync then
	}
	if dir {
		syncDir(s.cfg.Dir)
	}
}

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

// Lag is the age of the oldest record read but not yet acknowledged, or 0
// when the reader has caught up.
func (s *Spool) Lag() time.Duration {
	h := s.head.Load()
	if h == 0 {
		return 0
	}
	return s.cfg.Now().Sub(time.Unix(0, h))
}

// SetMaxSize changes the maximum size; a smaller size than the spool holds
// refuses appends until shipping has made room. The segment size, set at
// open, and the segment prepared ahead stay as they are.
func (s *Spool) SetMaxSize(n int64) {
	if n >= minimumSpoolMaxSize {
		s.maxSize.Store(n)
	}
}

// Fsync returns the fsync policy the spool was opened with.
func (s *Spool) Fsync() time.Duration { return s.cfg.Fsync }

// MaxSize returns the maximum size.
func (s *Spool) MaxSize() int64 { return s.maxSize.Load() }

// Dir returns the spool's directory.
func (s *Spool) Dir() string { return s.cfg.Dir }

// Size returns the bytes of the records held, segment headers included:
// what MaxSize bounds.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
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

// Close syncs and closes the spool. Appends after Close fail with ErrClosed
// and a blocked Read returns.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.stopFsync != nil {
		close(s.stopFsync)
		<-s.fsyncDone
	}
	select {
	case s.more <- struct{}{}:
	default:
	}
	return s.closeFiles()
}

func (s *Spool) closeFiles() error {
	s.mu.Lock()
	err := s.closeActive()
	preparing := s.preparing
	s.preparing = false
	rolled := s.unsynced
	s.unsynced = nil
	s.mu.Unlock()
	if preparing {
		// Closed, so nothing else takes it: wait for the preparation in
		// flight and remove the segment it made.
		err = errors.Join(err, s.discard(<-s.prepared))
	}
	s.bg.Wait()
	for _, r := range rolled {
		err = errors.Join(err, r.f.Sync(), r.f.Close())
	}
	if s.cf != nil {
		err = errors.Join(err, s.cf.Sync(), s.cf.Close())
	}
	if s.rf != nil {
		s.rf.Close()
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
	}
	return err
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

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
