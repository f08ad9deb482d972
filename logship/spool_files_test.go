package logship

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestTheSpoolRefusesWhatIsNotARegularSegment(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		plant func(t *testing.T, dir, victim string) // after segments 1 to 3 were written
	}{
		{"a symlink among the segments", func(t *testing.T, dir, victim string) {
			if err := os.Remove(filepath.Join(dir, segName(2))); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, filepath.Join(dir, segName(2))); err != nil {
				t.Fatal(err)
			}
		}},
		{"a symlink named as the next segment", func(t *testing.T, dir, victim string) {
			if err := os.Symlink(victim, filepath.Join(dir, segName(9))); err != nil {
				t.Fatal(err)
			}
		}},
		{"a directory named as a segment", func(t *testing.T, dir, _ string) {
			if err := os.Mkdir(filepath.Join(dir, segName(9)), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			const precious = "B2SSPL2\n not the spool's: must never be truncated or written"
			if err := os.WriteFile(victim, []byte(precious), 0o600); err != nil {
				t.Fatal(err)
			}
			s := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10})
			appendN(t, s, 0, 2000) // segments 1 and 2, and 3 prepared
			s.Close()
			seg2 := layout(t, filepath.Join(dir, segName(2)))
			c.plant(t, dir, victim)

			stats := new(Stats)
			s2 := openSpool(t, SpoolConfig{Dir: dir, SegmentSize: 64 << 10, Stats: stats})
			appendN(t, s2, 2000, 3000) // rolls onto new segments
			got := drain(t, s2)
			lost := 0
			if strings.Contains(c.name, "among") {
				lost = len(seg2)
			}
			if len(got) != 5000-lost || !slices.IsSorted(got) {
				t.Fatalf("read %d records, want %d in order", len(got), 5000-lost)
			}
			if r := stats.SpoolRefused.Load(); r != 1 {
				t.Errorf("SpoolRefused = %d, want 1", r)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != precious {
				t.Fatalf("the file behind the symlink was changed: %q, %v", b, err)
			}
		})
	}
}

func TestTheSpoolDoesNotFollowASymlinkedCursorOrLock(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"cursor", "LOCK"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			const precious = "must never be truncated or written"
			if err := os.WriteFile(victim, []byte(precious), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			if s, err := OpenSpool(SpoolConfig{Dir: dir, Fsync: FsyncNever}); err == nil {
				s.Close()
				t.Fatalf("opened a spool whose %s is a symlink", name)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != precious {
				t.Fatalf("the file behind the symlink was changed: %q, %v", b, err)
			}
		})
	}
}

func TestASpoolDirectoryOthersCanWriteIsMadePrivate(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o777, 0o770, 0o722, 0o700, 0o750} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.WarnLevel)
			openSpool(t, SpoolConfig{Dir: dir, Logger: zap.New(core)})
			st, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			writable := mode&0o022 != 0
			wantMode := mode
			if writable {
				wantMode = 0o700
			}
			if st.Mode().Perm() != wantMode {
				t.Errorf("directory mode %v after open, want %v", st.Mode().Perm(), wantMode)
			}
			if n := logs.FilterMessageSnippet("made private").Len(); n != 0 != writable {
				t.Errorf("%d log lines saying the directory was made private", n)
			}
		})
	}
}
