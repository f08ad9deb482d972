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
