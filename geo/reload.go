package geo

import (
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Reloading is a database of one kind that follows its file: when the
// file is replaced (geoipupdate writes a new file and renames it into
// place), the new one is read, fully verified, checked to be of the same
// kind and swapped in atomically; lookups in flight finish on the old one.
// A replacement that does not verify, or is of another kind, is refused
// and logged once, and the database in use is kept. It is safe for
// concurrent use.
type Reloading[T any] struct {
	path   string
	kind   *Kind[T]
	logger *zap.Logger
	cur    atomic.Pointer[DB[T]]
	seen   fileID // the file the current DB was read from, or the last refused one
	stop   chan struct{}
	done   chan struct{}
}

// fileID tells one version of a file from another without reading it.
type fileID struct {
	ino   uint64
	size  int64
	mtime int64
}

func statID(path string) (fileID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.ino = sys.Ino
	}
	return id, nil
}

// OpenReloading opens the database at path as kind and, when every is
// positive, checks the file for a replacement that often.
func OpenReloading[T any](path string, kind *Kind[T], every time.Duration, logger *zap.Logger) (*Reloading[T], error) {
	id, _ := statID(path)
	db, err := Open(path, kind)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	r := &Reloading[T]{path: path, kind: kind, logger: logger, seen: id, stop: make(chan struct{}), done: make(chan struct{})}
	r.cur.Store(db)
	if every > 0 {
		go r.watch(every)
	} else {
		close(r.done)
	}
	return r, nil
}

func (r *Reloading[T]) watch(every time.Duration) {
	defer close(r.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.Check()
		}
	}
}

// Check looks at the file once and swaps in a replacement that verifies.
// It reports whether the database changed. Only the watcher (or a test)
// calls it.
func (r *Reloading[T]) Check() bool {
	id, err := statID(r.path)
	if err != nil || id == r.seen {
		return false // gone for a moment during a replace, or unchanged
	}
	r.seen = id
	db, err := Open(r.path, r.kind)
	if err != nil {
		r.logger.Error("geoip database replaced by one that does not verify; keeping the one in use",
			zap.String("path", r.path), zap.Stringer("kind", r.kind), zap.Error(err))
		return false
	}
	old := r.cur.Swap(db)
	r.logger.Info("geoip database reloaded", zap.String("path", r.path), zap.Stringer("kind", r.kind),
		zap.String("type", db.Type()), zap.String("previous_type", old.Type()))
	return true
}

// Lookup returns what the current database holds for ip (see DB.Lookup).
func (r *Reloading[T]) Lookup(ip netip.Addr) (T, bool) { return r.cur.Load().Lookup(ip) }

// Type returns the current database's type.
func (r *Reloading[T]) Type() string { return r.cur.Load().Type() }

// Close stops watching the file.
func (r *Reloading[T]) Close() error {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
	return nil
}
