package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/logship"
)

const (
	anonTestKey = "a shared anon_id key of 32 bytes or more, for tests"
	anonTestUA  = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
)

// anonCollect is a b2s_collect with the privacy options p, collect off
// under /kids/*, no client limit, its own spool and a clock the test
// sets.
func anonCollect(t *testing.T, p *Privacy, now *time.Time) (*Collect, *logship.Spool) {
	t.Helper()
	app := &App{Privacy: p, ClientLimit: &ClientLimit{Off: true}} // the clock goes back between cases
	sp := setUpApp(t, app, func() time.Time { return *now })
	c := &Collect{CollectOff: true, CollectOffPaths: []string{"/kids/*"}}
	if err := c.bind(caddy.Context{}, app, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	return c, sp
}

// anonRequest is a request for a test case: target, cookies, Sec-GPC,
// and the child header from the site.
type anonRequest struct {
	method, target, cookie, gpc string
	childPage                   bool
}

// serveAnon serves req from ip through c and returns its record.
func serveAnon(t *testing.T, c *Collect, sp *logship.Spool, req anonRequest, ip string) spooledRecord {
	t.Helper()
	if req.method == "" {
		req.method = http.MethodGet
	}
	r := httptest.NewRequest(req.method, req.target, nil)
	r.Header.Set("User-Agent", anonTestUA)
	r.Header.Set("Referer", "https://www.b2s.com/products")
	if req.cookie != "" {
		r.Header.Set("Cookie", req.cookie)
	}
	if req.gpc != "" {
		r.Header.Set("Sec-GPC", req.gpc)
	}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		if req.childPage {
			w.Header().Set(DefaultChildHeader, "1")
		}
		_, err := io.WriteString(w, "page")
		return err
	})
	w := httptest.NewRecorder()
	if err := c.ServeHTTP(w, withClientIP(r, ip), next); err != nil {
		t.Fatal(err)
	}
	return takeRecord(t, sp)
}

// specAnonID is the anon_id the README defines for a shared key, made
// with nothing of the plugin or of beacon/anon.go.
func specAnonID(key string, day time.Time, host string, ip netip.Addr, ua string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("b2s anon_id" + day.UTC().Format("2006-01-02")))
	m = hmac.New(sha256.New, m.Sum(nil))
	a := ip.As16()
	m.Write([]byte(host + "\x00"))
	m.Write(a[:])
	m.Write([]byte("\x00" + ua))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// TestAnonIDRecords: the records of opted-out and GPC visitors carry an
// anon_id; children's and full records never do.
func TestAnonIDRecords(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	valid := DefaultCookieName + "=" + signerOf(t, testKey1).Sign(beacon.NewID(), now.Add(-time.Minute))
	for _, tc := range []struct {
		name    string
		req     anonRequest
		consent string
		anon    bool
	}{
		{name: "an opted-out visitor's page carries one", req: anonRequest{target: "/page", cookie: valid + "; b2sid_optout=1"}, consent: "optout", anon: true},
		{name: "an opted-out visitor's beacon carries one", req: anonRequest{target: "/b.gif?e=pageview", cookie: valid + "; b2sid_optout=1"}, consent: "optout", anon: true},
		{name: "the opt-out request itself carries one", req: anonRequest{target: "/_b2s/optout", cookie: valid}, consent: "optout", anon: true},
		{name: "a GPC page carries one", req: anonRequest{target: "/page", cookie: valid, gpc: "1"}, consent: "gpc", anon: true},
		{name: "a GPC beacon of a new visitor carries one", req: anonRequest{target: "/b.gif?e=pageview", gpc: "1"}, consent: "gpc", anon: true},
		{name: "a child page (collect off path) carries none", req: anonRequest{target: "/kids/game", cookie: valid + "; b2sid_optout=1"}, consent: "child"},
		{name: "a GPC beacon of a child page carries none", req: anonRequest{target: "/b.gif?e=pageview&u=https%3A%2F%2Fwww.b2s.com%2Fkids%2Fgame", gpc: "1"}, consent: "child"},
		{name: "an opted-out visitor's beacon of a child page carries none", req: anonRequest{target: "/b.gif?e=pageview&u=https%3A%2F%2Fwww.b2s.com%2Fkids%2Fgame", cookie: "b2sid_optout=1"}, consent: "child"},
		{name: "a marked child's page carries none", req: anonRequest{target: "/page", cookie: valid + "; b2sid_dnc=1; b2sid_optout=1"}, consent: "child"},
		{name: "a page the site marks as a child's carries none", req: anonRequest{target: "/page", gpc: "1", childPage: true}, consent: "child"},
		{name: "a full page carries none", req: anonRequest{target: "/page", cookie: valid}, consent: "full"},
		{name: "a full beacon carries none", req: anonRequest{target: "/b.gif?e=pageview"}, consent: "full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := now
			c, sp := anonCollect(t, nil, &clock)
			rec := serveAnon(t, c, sp, tc.req, failClosedIP)
			if got := rec.str("consent"); got != tc.consent {
				t.Fatalf("record consent %q, want %q", got, tc.consent)
			}
			id, has := rec.rec["anon_id"].(string)
			if has != tc.anon {
				t.Fatalf("record of consent %s: anon_id %q, want one: %v", tc.consent, id, tc.anon)
			}
			if !tc.anon {
				return
			}
			if _, err := base64.RawURLEncoding.Strict().DecodeString(id); err != nil || len(id) != beacon.AnonIDLen {
				t.Errorf("anon_id %q is not 16 bytes of base64url", id)
			}
			if ids := rec.identified(); len(ids) > 0 {
				t.Errorf("record with anon_id carries identifiers %v", ids)
			}
			// The same visitor again is the same anon_id; another
			// address in the same /24, which the record cannot tell
			// apart, is another.
			clock = now.Add(time.Hour)
			if again := serveAnon(t, c, sp, tc.req, failClosedIP).str("anon_id"); again != id {
				t.Errorf("the same visitor an hour later: anon_id %q, want %q", again, id)
			}
			if other := serveAnon(t, c, sp, tc.req, "203.0.113.8").str("anon_id"); other == id || other == "" {
				t.Errorf("another address of the /24: anon_id %q beside %q", other, id)
			}
		})
	}
}

func TestAnonIDOptions(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	optOut := anonRequest{target: "/page", cookie: "b2sid_optout=1"}
	off := false
	t.Run("anon_id off removes it", func(t *testing.T) {
		c, sp := anonCollect(t, &Privacy{AnonID: &off}, &now)
		if rec := serveAnon(t, c, sp, optOut, failClosedIP); rec.rec["anon_id"] != nil || rec.str("consent") != "optout" {
			t.Errorf("anon_id off: record of consent %s has anon_id %v", rec.str("consent"), rec.rec["anon_id"])
		}
		on := true // control
		c, sp = anonCollect(t, &Privacy{AnonID: &on}, &now)
		if rec := serveAnon(t, c, sp, optOut, failClosedIP); rec.str("anon_id") == "" {
			t.Error("anon_id on: no anon_id")
		}
	})
	t.Run("a shared key gives the README's anon_id, of the full IP", func(t *testing.T) {
		c, sp := anonCollect(t, &Privacy{AnonIDKey: anonTestKey}, &now)
		rec := serveAnon(t, c, sp, optOut, failClosedIP)
		ip := netip.MustParseAddr(failClosedIP)
		if want := specAnonID(anonTestKey, now, "example.com", ip, anonTestUA); rec.str("anon_id") != want {
			t.Errorf("anon_id %q, want %q", rec.str("anon_id"), want)
		}
		if rec.str("ip") != failClosedIPTruncated {
			t.Errorf("record ip %q, want the truncated %s", rec.str("ip"), failClosedIPTruncated)
		}
		truncated := specAnonID(anonTestKey, now, "example.com", netip.MustParseAddr(failClosedIPTruncated), anonTestUA)
		if rec.str("anon_id") == truncated {
			t.Error("anon_id is of the truncated IP")
		}
		// A second edge with the key, its clock on the same day, gives
		// the same; the next day, another.
		later := now.Add(11 * time.Hour)
		c2, sp2 := anonCollect(t, &Privacy{AnonIDKey: anonTestKey}, &later)
		if got := serveAnon(t, c2, sp2, optOut, failClosedIP).str("anon_id"); got != rec.str("anon_id") {
			t.Errorf("a second edge with the key: anon_id %q, want %q", got, rec.str("anon_id"))
		}
		later = now.Add(12 * time.Hour)
		if got := serveAnon(t, c2, sp2, optOut, failClosedIP).str("anon_id"); got == rec.str("anon_id") {
			t.Errorf("the next day: the same anon_id %q", got)
		}
	})
	t.Run("control: random salts differ between edges", func(t *testing.T) {
		c1, sp1 := anonCollect(t, nil, &now)
		c2, sp2 := anonCollect(t, nil, &now)
		if a, b := serveAnon(t, c1, sp1, optOut, failClosedIP).str("anon_id"), serveAnon(t, c2, sp2, optOut, failClosedIP).str("anon_id"); a == b {
			t.Errorf("two edges without a key give the same anon_id %q", a)
		}
	})
}

// TestAnonIDReload: a config reload keeps the edge's random daily salt,
// so a visitor keeps their anon_id; once no config holds it, it is gone.
func TestAnonIDReload(t *testing.T) {
	broker := deadBroker(t)
	dir := t.TempDir()
	app := func() *App {
		return &App{Secrets: []string{testKey1}, Spool: dir, Kafka: &KafkaConfig{Brokers: []string{broker}, Topic: "anon.reload"}}
	}
	at := time.Now()
	anonOf := func(a *App) beacon.AnonID {
		t.Helper()
		rec := beacon.Record{Time: at, Host: "www.b2s.com", UserAgent: anonTestUA, Consent: beacon.ConsentOptOut}
		a.stampAnonID(&rec, netip.MustParseAddr(failClosedIP))
		if rec.AnonID.IsZero() {
			t.Fatal("no anon_id")
		}
		return rec.AnonID
	}
	first := app()
	releaseFirst := provision(t, first)
	id := anonOf(first)
	// Caddy provisions the new config before it cleans up the old.
	second := app()
	releaseSecond := provision(t, second)
	releaseFirst()
	if got := anonOf(second); got != id {
		t.Errorf("anon_id %s after a reload, want the same %s", got, id)
	}
	releaseSecond()
	if _, held := anonSalts.References(anonSaltKey); held {
		t.Error("the salt is still pooled after every config let go")
	}
	// Control: a config loaded after every other let go draws a new salt.
	third := app()
	provision(t, third)
	if got := anonOf(third); got == id {
		t.Errorf("anon_id %s under a fresh salt is the old one", got)
	}
}

func TestAnonIDKeyAtLoad(t *testing.T) {
	broker := deadBroker(t)
	load := func(key string) error {
		a := &App{Secrets: []string{testKey1}, Spool: t.TempDir(), Kafka: &KafkaConfig{Brokers: []string{broker}, Topic: "anon.key"},
			Privacy: &Privacy{AnonIDKey: key}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		err := a.Provision(ctx)
		_ = a.Cleanup()
		return err
	}
	t.Setenv("B2S_ANON_KEY_TEST", anonTestKey)
	t.Setenv("B2S_ANON_KEY_SHORT", "short")
	for _, tc := range []struct{ key, err string }{
		{"{env.B2S_ANON_KEY_TEST}", ""},
		{"{env.B2S_ANON_KEY_SHORT}", "anon_id_key is 5 bytes, shorter than the minimum of 32; generate one"},
		{"{env.B2S_ANON_KEY_UNSET}", `anon_id_key ("{env.B2S_ANON_KEY_UNSET}") is empty after placeholders were replaced; set the environment variable`},
	} {
		err := load(tc.key)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("anon_id_key %s: %v", tc.key, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("anon_id_key %s: error %v, want %q", tc.key, err, tc.err)
		}
	}
}

func TestAnonIDCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		input, err string
		check      func(*Privacy) bool
	}{
		{input: "anon_id off", check: func(p *Privacy) bool { return p.AnonID != nil && !*p.AnonID }},
		{input: "anon_id on", check: func(p *Privacy) bool { return p.AnonID == nil }},
		{input: "anon_id_key {env.B2S_ANON_KEY}", check: func(p *Privacy) bool { return p.AnonIDKey == "{env.B2S_ANON_KEY}" && p.AnonID == nil }},
		{input: "anon_id maybe", err: `anon_id "maybe": want on or off`},
		{input: "anon_id", err: "wrong argument count"},
		{input: "anon_id_key", err: "anon_id_key needs one key"},
		{input: "anon_id_key secret-a secret-b", err: "anon_id_key needs one key"},
	} {
		var a App
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s {\n\tprivacy {\n\t\t" + tc.input + "\n\t}\n}"))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.input, err, tc.err)
			} else if strings.Contains(err.Error(), "secret-a") {
				t.Errorf("%s: the error quotes the key: %v", tc.input, err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.input, err)
		case !tc.check(a.Privacy):
			t.Errorf("%s: privacy options %+v", tc.input, a.Privacy)
		}
	}
}

// TestAnonIDForgottenAtMidnight: the pooled salt is dropped when the UTC
// day ends, with no request to make the next day's.
func TestAnonIDForgottenAtMidnight(t *testing.T) {
	start := time.Now()
	eve := time.Date(2026, 12, 6, 23, 59, 59, 950e6, time.UTC)
	p, err := newPooledAnonIDs(func() time.Time { return eve.Add(time.Since(start)) })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Destruct()
	ip := netip.MustParseAddr(failClosedIP)
	if _, ok := p.ids.ID(eve, "www.b2s.com", ip, anonTestUA); !ok { // control: the day's salt is there
		t.Fatal("no anon_id before midnight")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := p.ids.ID(eve, "www.b2s.com", ip, anonTestUA); !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the day's salt still held 5s after midnight")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
