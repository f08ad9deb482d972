package caddymodule

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
)

// botFiles holds the bot list files in use, by path, so that a config
// reload keeps them (and checks their files at once).
var botFiles = caddy.NewUsagePool()

// botListReloads counts what became of replaced bot list files.
var (
	botListReloads = counterVec("bot_list_reloads_total",
		"Replacements of the bots file, by result: reloaded (verified and swapped in) or refused (did not verify; the list in use kept).", "result")
	botListReloaded = botListReloads.WithLabelValues("reloaded")
	botListRefused  = botListReloads.WithLabelValues("refused")
)

func init() { collectors = append(collectors, botListReloads) }

// agents returns the bot list in use: the bots file's, or the built-in.
func (a *App) agents() *beacon.BotList {
	if a.bots != nil {
		return a.bots.List()
	}
	return beacon.DefaultBotList()
}

// provisionBots takes the bots file from its pool, when the option names
// one; one that resolves to nothing ({env.X} unset) means the built-in
// list.
func (a *App) provisionBots(repl *caddy.Replacer, every time.Duration) error {
	p := repl.ReplaceKnown(a.Bots, "")
	if p == "" {
		return nil
	}
	path, err := filepath.Abs(p)
	if err != nil {
		return fmt.Errorf("b2s: bots: %v", err)
	}
	v, loaded, err := botFiles.LoadOrNew(path, func() (caddy.Destructor, error) {
		return openBotFile(path, every, a.logger.Named("bots"))
	})
	if err != nil {
		return fmt.Errorf("b2s: bots: %w; point the bots option at a bot list (a JSON array in the crawler-user-agents format, see the README), or remove it to use the built-in list", err)
	}
	f := v.(*botFile)
	if loaded {
		f.Check()
	}
	a.bots, a.botsKey = f, path
	a.logger.Info("bot list loaded", zap.String("path", path), zap.Int("entries", f.List().Len()))
	return nil
}

// botFile is a bot list that follows its file like the GeoIP databases
// do: when the file is replaced, the new one is read, fully checked
// (beacon.ParseBotList) and swapped in atomically, with an empty cache;
// requests in flight finish on the old list. A replacement that does not
// verify is refused and logged once, and the list in use kept.
type botFile struct {
	path   string
	logger *zap.Logger
	cur    atomic.Pointer[beacon.BotList]
	mu     sync.Mutex // serializes Check
	seen   fileStamp  // the file the list was read from, or the last refused one
	stop   chan struct{}
	done   chan struct{}
}

// fileStamp tells one version of a file from another without reading it.
type fileStamp struct {
	ino   uint64
	size  int64
	mtime int64
}

func stampOf(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.ino = sys.Ino
	}
	return s, nil
}

// openBotFile reads the list at path and, when every is positive, checks
// the file for a replacement that often.
func openBotFile(path string, every time.Duration, logger *zap.Logger) (*botFile, error) {
	stamp, _ := stampOf(path)
	l, err := readBotList(path)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	f := &botFile{path: path, logger: logger, seen: stamp, stop: make(chan struct{}), done: make(chan struct{})}
	f.cur.Store(l)
	if every > 0 {
		go f.watch(every)
	} else {
		close(f.done)
	}
	return f, nil
}

func readBotList(path string) (*beacon.BotList, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening bot list %q: %w", path, err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, beacon.MaxBotListSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading bot list %q: %w", path, err)
	}
	l, err := beacon.ParseBotList(data)
	if err != nil {
		return nil, fmt.Errorf("bot list %q: %w", path, err)
	}
	return l, nil
}

func (f *botFile) watch(every time.Duration) {
	defer close(f.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.Check()
		}
	}
}

// Check looks at the file once and swaps in a replacement that verifies.
// It reports whether the list changed.
func (f *botFile) Check() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	stamp, err := stampOf(f.path)
	if err != nil || stamp == f.seen {
		return false // gone for a moment during a replace, or unchanged
	}
	f.seen = stamp
	l, err := readBotList(f.path)
	if err != nil {
		botListRefused.Inc()
		f.logger.Error("bot list replaced by one that does not verify; keeping the one in use",
			zap.String("path", f.path), zap.Error(err))
		return false
	}
	old := f.cur.Swap(l)
	botListReloaded.Inc()
	f.logger.Info("bot list reloaded", zap.String("path", f.path), zap.Int("entries", l.Len()), zap.Int("previous_entries", old.Len()))
	return true
}

// List returns the list in use.
func (f *botFile) List() *beacon.BotList { return f.cur.Load() }

// Destruct stops watching the file.
func (f *botFile) Destruct() error {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
	return nil
}
