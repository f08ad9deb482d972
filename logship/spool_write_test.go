package logship

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// faultyWrites is a writeAt that fails the writes fail says to fail.
type faultyWrites struct {
	mu   sync.Mutex
	fail func(f *os.File, b []byte, off int64) (n int, err error, failed bool)
}

func (w *faultyWrites) writeAt(f *os.File, b []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail != nil {
		if n, err, failed := w.fail(f, b, off); failed {
			return n, err
		}
	}
	return f.WriteAt(b, off)
}

func (w *faultyWrites) set(fail func(f *os.File, b []byte, off int64) (int, error, bool)) {
	w.mu.Lock()
	w.fail = fail
	w.mu.Unlock()
}

func TestAFailedWriteLeavesTheSegmentAsItWas(t *testing.T) {
	t.Parallel()
	enospc := syscall.ENOSPC
	cases := []struct {
		name string
		// fail is installed for the second batch of appends.
		fail func(f *os.File, b []byte, off int64) (int, error, bool)
	}{
		{"a short write", func(f *os.File, b []byte, off int64) (int, error, bool) {
			n, _ := f.WriteAt(b[:len(b)/2], off)
			return n, enospc, true
		}},
		{"a write that fails without writing", func(*os.File, []byte, int64) (int, error, bool) {
			return 0, syscall.EIO, true
		}},
		{"a short write that cannot be cut off: the next record goes to a new segment", func(f *os.File, b []byte, off int64) (int, error, bool) {
			if off == 0 {
				return 0, nil, false // a new segment's header
			}
			n, _ := f.WriteAt(b[:len(b)/2], off)
			f.Close() // so that the truncate fails too
			return n, enospc, true
		}},
		{"no new segment can be created either", func(f *os.File, b []byte, off int64) (int, error, bool) {
			n, _ := f.WriteAt(b[:len(b)/3], off)
			if off != 0 {
				f.Close()
			}
			return n, enospc, true
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			w := new(faultyWrites)
			stats := new(Stats)
			cfg := SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats, writeAt: w.writeAt, noMap: true}
			s := openSpool(t, cfg)
			s.prepareHook = func(uint64) error { return nil }
			var accepted []string
			failed := 0
			try := func(i int) {
				v := fmt.Sprintf("record-%06d", i)
				if err := s.Append("k", []byte(v)); err == nil {
					accepted = append(accepted, v)
					return
				}
				failed++
				s.mu.Lock()
				path, end, broken := s.segPath(s.activeN), s.writeEnd.Off, s.broken
				s.mu.Unlock()
				if st, err := os.Stat(path); err != nil {
					t.Fatal(err)
				} else if !broken && st.Size() != end {
					t.Fatalf("after a failed append the segment is %d bytes, not the %d of its entries", st.Size(), end)
				}
			}
			for i := range 1000 {
				try(i)
			}
			// Every other append fails.
			var calls int
			w.set(func(f *os.File, b []byte, off int64) (int, error, bool) {
				calls++
				if calls%2 == 0 {
					return 0, nil, false
				}
				return c.fail(f, b, off)
			})
			for i := 1000; i < 3000; i++ {
				try(i)
			}
			w.set(nil)
			for i := 3000; i < 4000; i++ {
				try(i)
			}
			if failed == 0 {
				t.Fatal("no append failed: the fault was not injected")
			}
			if d := stats.DroppedError.Load(); d != uint64(failed) {
				t.Errorf("DroppedError = %d, want the %d appends that failed", d, failed)
			}
			copied := crashCopy(t, dir)
			if got := drain(t, s); !slices.Equal(got, accepted) {
				t.Fatalf("read %d records, want the %d accepted, once each, in order", len(got), len(accepted))
			}

			// Nothing torn is left for an open to find.
			stats2 := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: copied, SegmentSize: 64 << 10, Stats: stats2})
			if got := drain(t, s2); !slices.Equal(got, accepted) {
				t.Fatalf("after a reopen read %d records, want the %d accepted", len(got), len(accepted))
			}
			if d := stats2.DroppedDamaged.Load(); d != 0 {
				t.Errorf("after a reopen DroppedDamaged = %d: a failed append left a torn record", d)
			}
		})
	}
}

// TestASpoolOnAFullFileSystem fills a small tmpfs past capacity, drains
// it, fills it again: every record accepted is read once, every refused
// one counted.
func TestASpoolOnAFullFileSystem(t *testing.T) {
	t.Parallel()
	dir := smallTmpfs(t, "8m")
	stats := new(Stats)
	s := openSpool(t, SpoolConfig{Dir: dir + "/spool", MaxSize: 64 << 20, SegmentSize: 1 << 20, Stats: stats, Fsync: FsyncNever})
	value := strings.Repeat("v", 1000)
	var accepted []string
	refused := 0
	fill := func(round int) {
		t.Helper()
		before := refused
		for i := range 20_000 { // 20 MB: more than the file system holds
			v := fmt.Sprintf("%d-%06d-%s", round, i, value)
			switch err := s.Append("k", []byte(v)); {
			case err == nil:
				accepted = append(accepted, v)
			case errors.Is(err, ErrSpoolFull):
				t.Fatalf("the spool's own limit applied, not the file system's: %v", err)
			default:
				refused++
			}
		}
		if refused == before {
			t.Fatalf("round %d: the file system never filled up", round)
		}
	}
	fill(0)
	got := drain(t, s)
	fill(1)
	got = append(got, drain(t, s)...)
	if !slices.Equal(got, accepted) {
		t.Fatalf("read %d records, want the %d accepted, once each, in order", len(got), len(accepted))
	}
	if d := stats.DroppedError.Load(); d != uint64(refused) {
		t.Errorf("DroppedError = %d, want the %d refused", d, refused)
	}
	if a := stats.Accepted.Load(); a != uint64(len(accepted)) {
		t.Errorf("Accepted = %d, want %d", a, len(accepted))
	}
	t.Logf("accepted %d, refused %d", len(accepted), refused)
}
