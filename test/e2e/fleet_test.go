package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/b2scom/b2s-edge/internal/testproc"
)

// A fleet is several edges behind a balancer, shipping to one broker. Each
// runs the same Caddyfile, the production example's key lines, with its
// own environment file (what /etc/b2s-edge/env holds), and is restarted
// as `systemctl restart b2s-edge` does: stop, then start with the file as
// it is now.
type fleet struct {
	e     *env // the broker, and the records read back
	edges []*fleetEdge
}

type fleetEdge struct {
	name      string
	dir       string
	adminAddr string
	siteAddr  string
	caddyfile string
	vars      map[string]string // the environment file
	proc      *testproc.Proc
}

var fleetCaddyfile = template.Must(template.New("fleet").Parse(`{
	admin {{.Admin}}
	default_bind 127.0.0.1
	persist_config off
	b2s {
		secret {env.B2S_SECRET} {env.B2S_SECRET_OLD}
		verify_secret {env.B2S_SECRET_NEXT}
		edge_id {env.B2S_EDGE_ID}
		spool {{.Spool}}
		kafka {
			brokers {{.Broker}}
			topic {{.Topic}}
			flush_timeout 2s
		}
	}
}

http://{{.Site}} {
	b2s_collect
	respond "ok"
}
`))

// newFleet starts a broker and n edges, all with B2S_SECRET set to key.
func newFleet(t *testing.T, n int, key []byte) *fleet {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), start: time.Now(), checked: map[string]*record{}, opts: envOptions{faults: true}}
	e.topic = testproc.Topic(t, "fleet")
	e.topics = []string{e.topic}
	testproc.DumpLogsOnFailure(t, e.dir)
	e.startBroker("127.0.0.1:0")
	f := &fleet{e: e}
	for i := range n {
		ed := &fleetEdge{
			name:      fmt.Sprintf("edge-%c", 'a'+i),
			dir:       filepath.Join(e.dir, fmt.Sprintf("edge-%c", 'a'+i)),
			adminAddr: fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)),
			siteAddr:  fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)),
			vars:      map[string]string{"B2S_SECRET": string(key), "B2S_SECRET_OLD": "", "B2S_SECRET_NEXT": ""},
		}
		ed.vars["B2S_EDGE_ID"] = ed.name
		if err := os.MkdirAll(ed.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		ed.caddyfile = filepath.Join(ed.dir, "Caddyfile")
		var b strings.Builder
		if err := fleetCaddyfile.Execute(&b, map[string]string{"Admin": ed.adminAddr, "Site": ed.siteAddr,
			"Spool": filepath.Join(ed.dir, "spool"), "Broker": e.brokerAddr, "Topic": e.topic}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ed.caddyfile, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		ed.start(t)
		f.edges = append(f.edges, ed)
	}
	return f
}

func (ed *fleetEdge) start(t *testing.T) {
	t.Helper()
	env := []string{"HOME=" + ed.dir, "XDG_DATA_HOME=" + ed.dir, "XDG_CONFIG_HOME=" + ed.dir}
	for k, v := range ed.vars {
		env = append(env, k+"="+v)
	}
	ed.proc = testproc.Start(t, ed.name, filepath.Join(ed.dir, "caddy.log"), env,
		bin.Caddy, "run", "--config", ed.caddyfile, "--adapter", "caddyfile")
	ed.proc.WaitReady(t, 30*time.Second, func() error {
		if !testproc.AdminReady(ed.adminAddr) {
			return errors.New("the admin endpoint does not answer")
		}
		c, err := net.DialTimeout("tcp", ed.siteAddr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// restart changes the edge's environment file and restarts it.
func (ed *fleetEdge) restart(t *testing.T, vars map[string]string) {
	t.Helper()
	for k, v := range vars {
		ed.vars[k] = v
	}
	ed.proc.Stop(t)
	ed.start(t)
}

// keyInfo returns the edge's b2s_key_info series, sorted, as
// "fingerprint role".
func (ed *fleetEdge) keyInfo(t *testing.T) []string {
	t.Helper()
	resp, err := http.Get("http://" + ed.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "b2s_key_info{") {
			continue
		}
		var fp, role string
		for kv := range strings.SplitSeq(line[len("b2s_key_info{"):strings.IndexByte(line, '}')], ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "fingerprint":
				fp = strings.Trim(v, `"`)
			case "role":
				role = strings.Trim(v, `"`)
			}
		}
		out = append(out, fp+" "+role)
	}
	slices.Sort(out)
	return out
}

// visitor is one browser whose requests the balancer spreads over the
// edges in turn. It keeps the cookie each response sets.
type visitor struct {
	f       *fleet
	cookie  string
	n       int
	ids     []string          // the cookie ID after each request
	sentTo  map[string]string // marker -> edge name
	markers []string
	prefix  string
}

func (f *fleet) visitor(name string) *visitor {
	return &visitor{f: f, sentTo: map[string]string{}, prefix: name}
}

// browse sends n requests, each to the next edge in turn.
func (v *visitor) browse(t *testing.T, n int) {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second}
	for range n {
		ed := v.f.edges[v.n%len(v.f.edges)]
		marker := fmt.Sprintf("%s-%d", v.prefix, v.n)
		v.n++
		req, _ := http.NewRequest(http.MethodGet, "http://"+ed.siteAddr+"/page?t="+marker, nil)
		req.Header.Set("User-Agent", "b2s-e2e/1")
		if v.cookie != "" {
			req.Header.Set("Cookie", cookieName+"="+v.cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		for _, sc := range resp.Header.Values("Set-Cookie") {
			if val, ok := strings.CutPrefix(sc, cookieName+"="); ok {
				v.cookie, _, _ = strings.Cut(val, ";")
			}
		}
		v.ids = append(v.ids, v.cookie[2:34])
		v.sentTo[marker] = ed.name
		v.markers = append(v.markers, marker)
	}
}

// changes counts how often the visitor's cookie ID changed.
func (v *visitor) changes() int {
	n := 0
	for i := 1; i < len(v.ids); i++ {
		if v.ids[i] != v.ids[i-1] {
			n++
		}
	}
	return n
}

// checkRecords waits for the records of every request of v and checks
// that each names the edge it was sent to and carries the cookie ID the
// visitor had after it; it returns the records' cookie states.
func (v *visitor) checkRecords(t *testing.T) map[string]int {
	t.Helper()
	recs := v.f.e.records(t, v.f.e.topic, v.markers...)
	states := map[string]int{}
	for i, m := range v.markers {
		r := recs[m]
		if r.Edge != v.sentTo[m] {
			t.Errorf("record of %s: edge %q, want %q, the edge it was sent to", m, r.Edge, v.sentTo[m])
		}
		if r.CookieID != v.ids[i] {
			t.Errorf("record of %s: cookie_id %s, want %s", m, r.CookieID, v.ids[i])
		}
		states[r.CookieState]++
	}
	return states
}

// TestRollingKeyRotation rotates the cookie key of three edges exactly as
// the README's procedure says, one edge at a time with a visitor's
// requests alternating over all three in between: the visitor keeps one
// cookie ID throughout, and every record names the edge that wrote it.
// The control then rotates again the unsafe way (the new key signs on one
// edge before the others know it): the same visitor's ID churns.
func TestRollingKeyRotation(t *testing.T) {
	oldK, newK, newerK := randomKey(), randomKey(), randomKey()
	f := newFleet(t, 3, oldK)
	v := f.visitor("safe")
	v.browse(t, 6)

	// Step 1: the new key verify-only on every edge, one at a time.
	for _, ed := range f.edges {
		ed.restart(t, map[string]string{"B2S_SECRET_NEXT": string(newK)})
		v.browse(t, 6)
	}
	// Every edge now shows the same keys: the old signs, the new verifies.
	want := f.edges[0].keyInfo(t)
	if len(want) != 2 || !strings.HasSuffix(want[0], " sign") && !strings.HasSuffix(want[1], " sign") {
		t.Errorf("after step 1, key info %q, want a signing and a verify-only key", want)
	}
	for _, ed := range f.edges[1:] {
		if got := ed.keyInfo(t); !slices.Equal(got, want) {
			t.Errorf("after step 1, %s shows keys %q, %s shows %q", ed.name, got, f.edges[0].name, want)
		}
	}
	// Step 2: the new key signs, the old one verifies, one edge at a time.
	for _, ed := range f.edges {
		ed.restart(t, map[string]string{"B2S_SECRET": string(newK), "B2S_SECRET_OLD": string(oldK), "B2S_SECRET_NEXT": ""})
		v.browse(t, 6)
	}
	// Step 3, later: the old key dropped.
	for _, ed := range f.edges {
		ed.restart(t, map[string]string{"B2S_SECRET_OLD": ""})
		v.browse(t, 6)
	}
	if n := v.changes(); n != 0 {
		t.Errorf("the visitor's cookie ID changed %d times in %d requests during the rotation, want never: %q", n, len(v.ids), v.ids)
	}
	if id, _, ok := verifyCookie(v.cookie, newK); !ok || id != v.ids[0] {
		t.Errorf("after the rotation the visitor's cookie %q is not signed with the new key", v.cookie)
	}
	states := v.checkRecords(t)
	if states["reset"] != 0 || states["new"] != 1 {
		t.Errorf("cookie states of the visitor's records: %v, want one new and no reset", states)
	}
	t.Logf("safe rotation: %d requests, cookie ID changed %d times, records by state %v", len(v.ids), v.changes(), states)

	// The control: "secret NEWER NEW" on one edge at a time, no verify
	// step, as an operator did following the old instructions.
	c := f.visitor("unsafe")
	c.browse(t, 6)
	for _, ed := range f.edges {
		ed.restart(t, map[string]string{"B2S_SECRET": string(newerK), "B2S_SECRET_OLD": string(newK)})
		c.browse(t, 12)
	}
	cstates := c.checkRecords(t)
	if n := c.changes(); n < 3 || cstates["reset"] < 3 {
		t.Errorf("control: the unsafe rotation changed the cookie ID %d times (%d resets) in %d requests; the test cannot tell a safe rotation from an unsafe one",
			n, cstates["reset"], len(c.ids))
	}
	t.Logf("unsafe rotation (control): %d requests, cookie ID changed %d times, records by state %v", len(c.ids), c.changes(), cstates)
}
