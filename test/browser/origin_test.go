package browser

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// feed is a list that grows while tests wait on it: the requests an origin
// received, the records read from Kafka.
type feed[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed, and replaced, by the next add
}

func (f *feed[T]) add(v T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items = append(f.items, v)
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

// snapshot returns the items so far and a channel closed by the next add.
func (f *feed[T]) snapshot() ([]T, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.changed == nil {
		f.changed = make(chan struct{})
	}
	return append([]T(nil), f.items...), f.changed
}

// wait returns the items once done is true of them, waking on every add;
// it fails the test after waitFor. what names the awaited condition, and
// show describes the items in the failure message.
func (f *feed[T]) wait(t *testing.T, what string, done func([]T) bool, show func([]T) string) []T {
	t.Helper()
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for {
		items, changed := f.snapshot()
		if done(items) {
			return items
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("after %v, still waiting for %s; have %d:\n%s", waitFor, what, len(items), show(items))
		}
	}
}

// seenRequest is one request an origin received and what it answered.
type seenRequest struct {
	Method string
	Host   string
	URI    string // the request target, as received
	Header http.Header
	Body   []byte

	Status     int
	RespHeader http.Header
}

// String is everything the origin learnt from the request, for searching:
// request line, every header name and value, body.
func (r *seenRequest) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\nHost: %s\n", r.Method, r.URI, r.Host)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range r.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	b.Write(r.Body)
	return b.String()
}

// path is the request's path, without its query.
func (r *seenRequest) path() string {
	p, _, _ := strings.Cut(r.URI, "?")
	return p
}

// cookie returns the value of the named cookie the request sent.
func (r *seenRequest) cookie(name string) (string, bool) {
	req := http.Request{Header: r.Header}
	c, err := req.Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

// origin is a Go HTTP server on loopback behind one of the edge's sites. It
// answers by exact path from its routes, 404 otherwise, and logs every
// request with its headers, body and the response's status and headers.
type origin struct {
	name string
	srv  *httptest.Server
	seen feed[*seenRequest]

	mu     sync.Mutex
	routes map[string]http.HandlerFunc
}

func newOrigin(t *testing.T, name string) *origin {
	o := &origin{name: name, routes: map[string]http.HandlerFunc{}}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) addr() string { return o.srv.Listener.Addr().String() }

// handle serves path with h, replacing any earlier handler of path.
func (o *origin) handle(path string, h http.HandlerFunc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.routes[path] = h
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	seen := &seenRequest{Method: r.Method, Host: r.Host, URI: r.RequestURI, Header: r.Header.Clone(), Body: body}
	o.mu.Lock()
	h := o.routes[r.URL.Path]
	o.mu.Unlock()
	if h == nil {
		h = http.NotFound
	}
	rec := &statusRecorder{ResponseWriter: w}
	h(rec, r)
	seen.Status, seen.RespHeader = rec.status, w.Header().Clone()
	if seen.Status == 0 {
		seen.Status = http.StatusOK
	}
	o.seen.add(seen)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// requests returns what the origin has received so far.
func (o *origin) requests() []*seenRequest {
	items, _ := o.seen.snapshot()
	return items
}

// waitRequests waits until the origin has received a request matching
// each of preds, and returns the first match of each, in the order of
// preds.
func (o *origin) waitRequests(t *testing.T, what string, preds ...func(*seenRequest) bool) []*seenRequest {
	t.Helper()
	var found []*seenRequest
	o.seen.wait(t, what+" at the "+o.name+" origin", func(rs []*seenRequest) bool {
		found = found[:0]
		for _, p := range preds {
			var m *seenRequest
			for _, r := range rs {
				if p(r) {
					m = r
					break
				}
			}
			if m == nil {
				return false
			}
			found = append(found, m)
		}
		return true
	}, showRequests)
	return found
}

func showRequests(rs []*seenRequest) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s %s -> %d\n", r.Method, r.URI, r.Status)
	}
	return b.String()
}

// requestTo matches a request by method and path.
func requestTo(method, path string) func(*seenRequest) bool {
	return func(r *seenRequest) bool { return r.Method == method && r.path() == path }
}
