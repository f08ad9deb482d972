package logship

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
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
// A segment starts with a 24-byte header and holds entries:
//
//	header: "B2SSPL2\n"   [8] sequence number of its first record   [4] CRC-32C of the 16 bytes before   [4] zero
//	entry:  [4] body length, little endian   [4] CRC-32C of seq and body   [8] seq   [body]
//	body:   [8] append time, unix ns   [2] key length   [key]   [value]
//
// Every record has the next sequence number, across segments. A damaged
// entry is found by its CRC, and the reader resynchronises on the next
// entry whose length fits, whose sequence number is plausible (no lower
// than expected, no higher than the damaged bytes could have held) and
// whose CRC matches; the gap in sequence numbers is the number of records
// lost, counted in Stats.DroppedDamaged. The damaged bytes are then
// overwritten in place by a skip entry, so that no later read or open
// counts them again:
//
//	skip:   [4] 1<<31 | bytes after its header   [4] CRC-32C of its length and seq   [8] seq of the record after it
//
// Segments of version 1 ("B2SSPL1\n", 8-byte header, entries
// [4 length][4 CRC-32C of body][body] without a sequence number), left by
// an older version, are still read; damage in one ends it, as it used to.
//
// The active segment is allocated at its full size (fallocate(2), so the
// disk space is reserved and a full disk shows up as an error, never as a
// SIGBUS) and mapped into memory with MAP_SHARED: an append is a copy into
// the kernel's page cache under the spool's lock, with no system call. Once
// Append returns the entry survives the death of the process; the fsync
// policy bounds what a power loss can take. On a file system that cannot
// allocate or map, appends fall back to one write(2) each, and a failed
// write is cut off again before Append returns. A segment is truncated to
// its entries when it is rolled or the spool closed; after a crash, the
// zeros after the last entry are found and cut on open. On open, every
// segment still to be shipped is checked entry by entry: damage in the
// middle is skipped as above, a damaged tail cut off. Appends always go to
// a new segment after an open.
//
// Rolling must not stall appends: creating, allocating and mapping a
// segment takes a few hundred microseconds, unmapping and trimming the old
// one about a millisecond more. So the next segment is prepared by a
// goroutine as soon as the active one takes its first record, and the old
// one is unmapped, trimmed, synced and closed by another after the roll;
// under the lock a roll only swaps them and stamps the new one's first
// sequence number into its header. A prepared segment is a header without
// a sequence number and zeros (or, if the process died while creating it,
// less): the next open trims it to its header like any zeroed end, without
// counting a repair, and the reader passes over it. It is allocated, not
// counted: MaxSize bounds the records, and the disk holds up to two
// segments more (the active one's unused end, and the next).
//
// Shipped segments are deleted, but the active one cannot be: on a disk
// too small to allocate a segment in full, the active segment takes every
// byte free, in write(2) mode. So once the reader has acknowledged every
// record of the active segment, its space is reclaimed (see reclaim): it
// is stamped with the next sequence number, cut to its header, and the
// spool rolls on to the next segment number. Positions only move forward
// (the cursor, saved past the reclaimed segment's new end, moves to that
// end), sequence numbers go on unbroken, and no record is lost or sent
// again. Append does it when a write or a roll fails (a full disk) with
// every record acknowledged, and then writes the record into the next
// segment; and while the disk is tight (a write or a roll failed, or a
// segment could not be allocated for lack of space, since a segment was
// last allocated in full), Ack does it whenever the reader catches up
// with a write(2) segment holding reclaimFrom bytes or more, so that
// shipped records hold little space. A mapped segment is allocated in
// full whatever it holds: Ack leaves it.
const (
	segmentMagic     = "B2SSPL2\n"
	segmentMagicV1   = "B2SSPL1\n"
	segmentHeaderLen = 24
	headerLenV1      = 8
	entryHeaderLen   = 16
	entryHeaderLenV1 = 8
	bodyFixedLen     = 10
	minEntryLen      = entryHeaderLen + bodyFixedLen
	skipFlag         = 1 << 31
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

	// Seams for tests. writeAt writes to a segment file that is not
	// mapped (default (*os.File).WriteAt); noMap makes every segment so,
	// as on a file system that cannot allocate or map; sync flushes a
	// segment, the cursor or the directory to stable storage (default
	// (*os.File).Sync).
	writeAt func(f *os.File, b []byte, off int64) (int, error)
	noMap   bool
	sync    func(f *os.File) error
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
	if c.writeAt == nil {
		c.writeAt = (*os.File).WriteAt
	}
	if c.sync == nil {
		c.sync = (*os.File).Sync
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
	nextSeq   uint64 // sequence number of the next record appended
	broken    bool   // a failed write could not be cut off: roll before the next append
	acked     Pos    // the reader's cursor, as of its last Ack: see reclaim
	tight     bool   // the disk was found full since a segment was last allocated in full
	room      int64  // what the spool held (size) when the disk was last found full; 0 if never
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
	cursor Pos    // acknowledged position
	rdAt   Pos    // where the last read stopped...
	rdSeq  uint64 // ...and the sequence number expected there; 0 if unknown
	// damagedTo is the end of the last damage counted, so that reading
	// the same bytes again (without Ack) does not count it twice.
	damagedTo Pos
	cf        *os.File

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
	if err := tightenDir(cfg.Dir, cfg.Logger); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, "LOCK"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
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
	n     uint64
	end   int64  // the end of its entries once it is no longer active (the active one's is writeEnd)
	start int64  // the end of its header, where its first entry is
	first uint64 // sequence number of its first record; 0 in a version 1 segment
	// checked says it was checked at open, where the records missing
	// between its intact entries were counted: the reader counts them
	// again only in segments written since.
	checked bool
}

func (sg segment) v1() bool { return sg.start == headerLenV1 }

// tightenDir makes the spool directory private (0700) when group or
// others may write to it: anyone who can write there can plant a segment
// or a symlink in place of one. It fails only when it cannot.
func tightenDir(dir string, logger *zap.Logger) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checking spool directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("spool directory %s is not a directory", dir)
	}
	if st.Mode().Perm()&0o022 == 0 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("spool directory %s is writable by group or others (%v) and cannot be made private: %w", dir, st.Mode().Perm(), err)
	}
	logger.Warn("spool directory was writable by group or others, made private", zap.String("dir", dir),
		zap.Stringer("was", st.Mode().Perm()), zap.Stringer("now", os.FileMode(0o700)))
	return nil
}

func segName(n uint64) string { return fmt.Sprintf("%020d.seg", n) }

func (s *Spool) segPath(n uint64) string { return filepath.Join(s.cfg.Dir, segName(n)) }

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
		err = errors.Join(err, s.cfg.sync(r.f), r.f.Close())
	}
	if s.cf != nil {
		err = errors.Join(err, s.cfg.sync(s.cf), s.cf.Close())
	}
	if s.rf != nil {
		s.rf.Close()
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
	}
	return err
}
