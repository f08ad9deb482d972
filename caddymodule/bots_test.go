package caddymodule

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/b2scom/b2s-edge/beacon"
)

// Two small bot lists that tell each other apart: the same User-Agent is
// a crawler in one and an http_client in the other, and each flags a
// User-Agent the other does not.
const (
	botListA = `[{"pattern": "example-monitor", "class": "crawler", "instances": ["example-monitor/1.0"]},
		{"pattern": "only-in-a", "tags": ["seo"]}]`
	botListB = `[{"pattern": "example-monitor", "class": "http_client"},
		{"pattern": "only-in-b", "tags": ["social-preview"]}]`
)

// replaceFile writes data beside path and renames it into place, as
// update tools do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestBotFileFollowsReplacementsAndRefusesBrokenOnes replaces the file
// with good and broken lists: a good one is swapped in, a broken one is
// refused, logged and counted, and the list in use kept.
func TestBotFileFollowsReplacementsAndRefusesBrokenOnes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bots.json")
	replaceFile(t, path, botListA)
	core, logs := observer.New(zapcore.InfoLevel)
	f, err := openBotFile(path, 0, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Destruct()
	class := func(ua string) string { return f.List().Classify(ua).Bot }
	if got := class("example-monitor/1.0"); got != beacon.BotCrawler {
		t.Fatalf("list A: example-monitor is %q, want crawler", got)
	}
	if f.Check() {
		t.Error("Check on an unchanged file reported a change")
	}

	replaceFile(t, path, botListB)
	if !f.Check() {
		t.Fatal("a valid replacement was not swapped in")
	}
	if got := class("example-monitor/1.0"); got != beacon.BotHTTPClient {
		t.Errorf("list B: example-monitor is %q, want http_client (the cache went with the old list)", got)
	}
	if got := class("only-in-b/2"); got != beacon.BotPreview {
		t.Errorf("list B: only-in-b is %q, want preview", got)
	}

	for _, broken := range []struct{ name, data string }{
		{"a truncated download", botListA[:len(botListA)/2]},
		{"an empty file", ""},
		{"an empty list", "[]"},
		{"a pattern that does not compile", `[{"pattern": "only-in-(a"}]`},
		{"a pattern with nothing to find it by", `[{"pattern": ".*"}]`},
		{"an example its pattern misses", `[{"pattern": "only-in-a", "instances": ["only in a"]}]`},
	} {
		refused := testutil.ToFloat64(botListRefused)
		logs.TakeAll()
		replaceFile(t, path, broken.data)
		if f.Check() {
			t.Errorf("%s was swapped in", broken.name)
		}
		if got := class("example-monitor/1.0"); got != beacon.BotHTTPClient {
			t.Errorf("after %s: example-monitor is %q, want http_client from the list kept", broken.name, got)
		}
		if n := testutil.ToFloat64(botListRefused) - refused; n != 1 {
			t.Errorf("after %s: refused counter rose by %v, want 1", broken.name, n)
		}
		if e := logs.FilterMessageSnippet("does not verify").All(); len(e) != 1 || e[0].Level != zapcore.ErrorLevel {
			t.Errorf("after %s: logged %v, want one error", broken.name, logs.All())
		}
		if f.Check() || logs.FilterMessageSnippet("does not verify").Len() != 1 {
			t.Errorf("after %s: the same refused file was read again", broken.name)
		}
	}

	replaceFile(t, path, botListA)
	if !f.Check() || class("only-in-a/1") != beacon.BotCrawler {
		t.Error("a valid list after refused ones was not swapped in")
	}
}

// TestBotFileSwapsUnderLoad classifies from many goroutines while the
// file is replaced back and forth: every answer is one list's or the
// other's, never a mix or a failure, and both lists are seen (the
// control that the swaps happened under the load). Run with -race.
func TestBotFileSwapsUnderLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bots.json")
	replaceFile(t, path, botListA)
	f, err := openBotFile(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Destruct()
	var stop atomic.Bool
	var sawA, sawB atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				ua := fmt.Sprintf("example-monitor/%d.%d", g, i%50) // hits and misses
				switch l := f.List(); l.Classify(ua).Bot {
				case beacon.BotCrawler:
					sawA.Add(1)
				case beacon.BotHTTPClient:
					sawB.Add(1)
				default:
					t.Errorf("%s classified %q: neither list's answer", ua, l.Classify(ua).Bot)
					return
				}
			}
		}()
	}
	for i := range 40 {
		if i%2 == 0 {
			replaceFile(t, path, botListB)
		} else {
			replaceFile(t, path, botListA)
		}
		// A file replaced within the same nanosecond, at the same size and
		// inode, would look unchanged: renaming a new file gives a new inode.
		if !f.Check() {
			t.Fatalf("swap %d not taken", i)
		}
	}
	stop.Store(true)
	wg.Wait()
	if sawA.Load() == 0 || sawB.Load() == 0 {
		t.Errorf("answers from list A: %d, from list B: %d; want both", sawA.Load(), sawB.Load())
	}
}

// TestCollectFlagsBotsFromTheBotsFile runs requests through Caddy with a
// bots file, replaces the file while it runs, then breaks it, and reads
// the records back from Kafka.
func TestCollectFlagsBotsFromTheBotsFile(t *testing.T) {
	const topic = "b2s.bots"
	brokers := startKafka(t, topic)
	path := filepath.Join(t.TempDir(), "bots.json")
	replaceFile(t, path, botListA)
	e := loadEdge(t, edgeConfig{
		b2s: "bots __BOTS__\n\t\tgeoip_reload 50ms",
		sites: `http://localhost:__HTTP__ {
	b2s_collect
	respond "ok"
}`,
	}, brokers, topic, "__BOTS__", path)
	e.records = newRecordReader(t, brokers, topic)
	n := 0
	botOf := func(ua string) string {
		t.Helper()
		n++
		probe := fmt.Sprintf("bots%d-%d", n, time.Now().UnixNano())
		if resp := e.do(t, newRequest(t, http.MethodGet, e.base+"/p?probe="+probe, map[string]string{"User-Agent": ua})); resp.status != http.StatusOK {
			t.Fatalf("status %d", resp.status)
		}
		return e.records.find(t, probe).rec.Bot
	}
	waitFor := func(ua, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := botOf(ua); got != want; got = botOf(ua) {
			if time.Now().After(deadline) {
				t.Fatalf("%s is still %q, want %q", ua, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := botOf("example-monitor/1.0"); got != beacon.BotCrawler {
		t.Errorf("example-monitor is %q, want crawler from the file", got)
	}
	// The file replaces the built-in list: Googlebot is not in it.
	if got := botOf("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"); got != "" {
		t.Errorf("Googlebot is %q, want no flag: the file replaces the built-in list", got)
	}

	replaceFile(t, path, botListB)
	waitFor("example-monitor/1.0", beacon.BotHTTPClient)

	refused := testutil.ToFloat64(botListRefused)
	replaceFile(t, path, `[{"pattern": "example-monitor", "class": "crawler"`)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(botListRefused) == refused {
		if time.Now().After(deadline) {
			t.Fatal("the broken file was never refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := botOf("example-monitor/1.0"); got != beacon.BotHTTPClient {
		t.Errorf("after a broken replacement example-monitor is %q, want http_client from the list kept", got)
	}
	if got := botOf(""); got != beacon.BotNoUserAgent {
		t.Errorf("no User-Agent is %q, want no_user_agent whatever the list", got)
	}
}

func TestParseBotsOption(t *testing.T) {
	for _, tc := range []struct{ input, want, wantErr string }{
		{"b2s {\n bots /etc/b2s/bots.json\n}", "/etc/b2s/bots.json", ""},
		{"b2s {\n bots {env.B2S_BOTS}\n}", "{env.B2S_BOTS}", ""},
		{"b2s {\n bots\n}", "", "wrong argument count"},
		{"b2s {\n bots a.json b.json\n}", "", "wrong argument count"},
	} {
		var a App
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want %q", tc.input, err, tc.wantErr)
			}
			continue
		}
		if err != nil || a.Bots != tc.want {
			t.Errorf("%q: bots = %q, %v; want %q", tc.input, a.Bots, err, tc.want)
		}
	}
}
