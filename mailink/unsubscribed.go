package mailink

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// Unsubscribed remembers the members who unsubscribed through this edge,
// so that the links of mail already sent to them track them no more: the
// pixel still answers, but its record carries no member. It keeps a
// keyed tag of each member (HMAC-SHA256 under a key derived from the
// cookie secret, 16 bytes, hex), never the member ID itself, one a line
// in an append-only file that survives restarts. It is safe for
// concurrent use.
//
// It knows only the unsubscribes this edge received: in a fleet of edges
// the mailing system, which consumes every unsubscribe record, is the
// authority (records are keyed by member, so a consumer sees a member's
// unsubscribe before their later events, in order).
type Unsubscribed struct {
	s    *Sealer
	path string // "" keeps the tags in memory only
	mu   sync.RWMutex
	set  map[[16]byte]struct{}
}

// OpenUnsubscribed reads the tags in the file at path, if it exists, and
// appends new ones to it. An empty path keeps them in memory only.
func OpenUnsubscribed(path string, s *Sealer) (*Unsubscribed, error) {
	u := &Unsubscribed{s: s, path: path, set: make(map[[16]byte]struct{})}
	if path == "" {
		return u, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading unsubscribed members: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var t [16]byte
		if line := sc.Bytes(); len(line) == 32 {
			if _, err := hex.Decode(t[:], line); err == nil {
				u.set[t] = struct{}{}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading unsubscribed members %q: %w", path, err)
	}
	return u, nil
}

// tag is member's tag under key i.
func (u *Unsubscribed) tag(i int, member string) (t [16]byte) {
	m := hmac.New(sha256.New, u.s.tags[i])
	m.Write([]byte(member))
	copy(t[:], m.Sum(nil))
	return t
}

// Has reports whether member unsubscribed, under any of the keys.
func (u *Unsubscribed) Has(member string) bool {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if len(u.set) == 0 {
		return false
	}
	for i := range u.s.tags {
		if _, ok := u.set[u.tag(i, member)]; ok {
			return true
		}
	}
	return false
}

// Add remembers that member unsubscribed: in memory at once, and on
// disk, synced, before it returns. Unsubscribes are rare; each opens the
// file, appends one line and closes it.
func (u *Unsubscribed) Add(member string) error {
	t := u.tag(0, member)
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.set[t]; ok {
		return nil
	}
	u.set[t] = struct{}{}
	if u.path == "" {
		return nil
	}
	f, err := os.OpenFile(u.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("remembering an unsubscribe: %w", err)
	}
	line := hex.AppendEncode(nil, t[:])
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("remembering an unsubscribe in %q: %w", u.path, err)
	}
	return nil
}
