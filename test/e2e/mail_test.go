package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mailMessage is a message `caddy b2s-link --eml` wrote, as a mail client
// reads it.
type mailMessage struct {
	header      mail.Header
	clicks      []string // the body's links, in order, the unsubscribe's last
	pixel       string
	unsubscribe string // from List-Unsubscribe
}

// writeMail runs the built binary's b2s-link on the edge's own config and
// reads back the .eml it writes.
func (e *env) writeMail(t *testing.T, campaign, member string, extra ...string) mailMessage {
	t.Helper()
	eml := filepath.Join(e.dir, campaign+"-"+member+".eml")
	args := append([]string{"b2s-link", "--config", e.caddyfile, "--adapter", "caddyfile",
		"--origin", "http://" + e.siteAddr, "--campaign", campaign, "--member", member,
		"--to", "http://" + e.siteAddr + "/landing?t=" + campaign + "-landing&x=1",
		"--to", "https://www.b2smade.example/catalogue",
		"--eml", eml, "--from", "B2S <news@b2s.com>", "--rcpt", "reader@example.net", "--subject", "Offers"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.Caddy, args...)
	cmd.Env = append(os.Environ(), e.caddyEnv()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caddy b2s-link: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(eml)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the .eml is no message: %v\n%s", err, raw)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	msg := mailMessage{header: m.Header}
	for _, l := range regexp.MustCompile(`(href|src)="([^"]+)"`).FindAllStringSubmatch(string(body), -1) {
		u := strings.ReplaceAll(l[2], "&amp;", "&")
		if l[1] == "src" {
			msg.pixel = u
		} else {
			msg.clicks = append(msg.clicks, u)
		}
	}
	msg.unsubscribe = strings.TrimSuffix(strings.TrimPrefix(m.Header.Get("List-Unsubscribe"), "<"), ">")
	if m.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || msg.unsubscribe == "" || msg.pixel == "" || len(msg.clicks) != 3 {
		t.Fatalf("the .eml lacks its links or one-click headers:\n%s", raw)
	}
	return msg
}

// path is u's path on the edge, after checking it is on the edge.
func (e *env) path(t *testing.T, u string) string {
	t.Helper()
	p, ok := strings.CutPrefix(u, "http://"+e.siteAddr)
	if !ok {
		t.Fatalf("link %q is not on the edge %s", u, e.siteAddr)
	}
	return p
}

// mailRecords waits until the topic holds n records of campaign, and
// returns them in the order the edge made them (ts).
func (e *env) mailRecords(t *testing.T, campaign string, n int) []*record {
	t.Helper()
	deadline := time.Now().Add(recordWait)
	for {
		recs, err := e.readTopic(e.topic)
		var got []*record
		for _, r := range recs {
			if strings.Contains(string(r.raw), `"campaign":"`+campaign+`"`) || (r.Kind != "page" && r.Kind != "beacon" && r.Campaign == "" && campaign == "") {
				got = append(got, r)
			}
		}
		if err == nil && len(got) >= n {
			if len(got) > n {
				t.Errorf("%d records of campaign %q, want %d:\n%s", len(got), campaign, n, rawOf(got))
			}
			sort.SliceStable(got, func(i, j int) bool { return got[i].time.Before(got[j].time) })
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d of %d records of campaign %q (read error %v):\n%s", recordWait, len(got), n, campaign, err, rawOf(got))
		}
		time.Sleep(pollEvery)
	}
}

// A mail made by the command is followed as a mail client and its reader
// would: the pixel, a click, the RFC 8058 one-click POST. The records,
// read back with kcat, name the campaign and the member, keyed by the
// member, in order; after the unsubscribe the member's links track them
// no more.
func TestAMailsLinksAreFollowedAsAMailClientWould(t *testing.T) {
	e := newEnv(t, envOptions{})
	msg := e.writeMail(t, "dec-news", "m-1001")
	const reader = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"

	r := e.request(t, "GET", e.path(t, msg.pixel), withHeader("User-Agent", reader))
	if r.status != http.StatusOK || len(r.body) != pixelLen || r.header.Get("Content-Type") != "image/gif" || len(r.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("pixel: %d %q, %d bytes, Set-Cookie %q", r.status, r.header.Get("Content-Type"), len(r.body), r.header.Values("Set-Cookie"))
	}
	r = e.request(t, "GET", e.path(t, msg.pixel), withHeader("User-Agent", "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"))
	if r.status != http.StatusOK || len(r.body) != pixelLen {
		t.Fatalf("pixel through Gmail's proxy: %d, %d bytes", r.status, len(r.body))
	}
	want := "http://" + e.siteAddr + "/landing?t=dec-news-landing&x=1"
	r = e.request(t, "GET", e.path(t, msg.clicks[0])+"?to=https://evil.example/", withHeader("User-Agent", reader))
	if r.status != http.StatusFound || r.header.Get("Location") != want || len(r.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("click: %d to %q (Set-Cookie %q), want 302 to %q", r.status, r.header.Get("Location"), r.header.Values("Set-Cookie"), want)
	}
	// The reader lands on the page the click named.
	landing := e.request(t, "GET", strings.TrimPrefix(r.header.Get("Location"), "http://"+e.siteAddr), withHeader("User-Agent", reader))
	if landing.status != http.StatusOK {
		t.Fatalf("landing: %d", landing.status)
	}
	// A click whose token was tampered with: a plain page, no redirect.
	p := e.path(t, msg.clicks[1])
	tok := p[strings.LastIndexByte(p, '/')+1:]
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[len(raw)-30] ^= 0x20
	r = e.request(t, "GET", p[:strings.LastIndexByte(p, '/')+1]+base64.RawURLEncoding.EncodeToString(raw))
	if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
		t.Fatalf("tampered click: %d, Location %q", r.status, r.header.Get("Location"))
	}
	// The footer's unsubscribe link only asks on GET (what a link scanner
	// follows); the one-click POST of the header unsubscribes.
	r = e.request(t, "GET", e.path(t, msg.clicks[2]))
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "<form method=post") {
		t.Fatalf("unsubscribe GET: %d %q", r.status, r.body)
	}
	r = e.request(t, "POST", e.path(t, msg.unsubscribe), withBody("application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"))
	if r.status != http.StatusOK {
		t.Fatalf("one-click unsubscribe: %d %q", r.status, r.body)
	}
	// The same mail opened again: the pixel answers, and records no member.
	r = e.request(t, "GET", e.path(t, msg.pixel), withHeader("User-Agent", reader))
	if r.status != http.StatusOK || len(r.body) != pixelLen {
		t.Fatalf("pixel after unsubscribe: %d", r.status)
	}

	recs := e.mailRecords(t, "dec-news", 5)
	type seen struct{ kind, link, member, key, consent, prefetch, dest string }
	var got []seen
	for _, r := range recs {
		got = append(got, seen{r.Kind, r.Link, r.MemberID, r.key, r.Consent, r.Prefetch, r.Destination})
	}
	wantSeen := []seen{
		{"open", "ok", "m-1001", "m-1001", "full", "", ""},
		{"open", "ok", "m-1001", "m-1001", "full", "gmail_proxy", ""},
		{"click", "ok", "m-1001", "m-1001", "full", "", want},
		{"unsubscribe", "ok", "m-1001", "m-1001", "full", "", ""},
		{"open", "ok", "", "", "optout", "", ""},
	}
	kept := got
	if len(kept) != len(wantSeen) {
		t.Fatalf("records %+v, want %+v", kept, wantSeen)
	}
	for i := range wantSeen {
		if kept[i] != wantSeen[i] {
			t.Errorf("record %d: %+v, want %+v", i, kept[i], wantSeen[i])
		}
	}
	// The member's records share a key, so one partition, in order.
	var partition = -1
	var last int64 = -1
	for _, r := range recs {
		if r.key != "m-1001" {
			continue
		}
		if partition >= 0 && r.partition != partition || r.offset <= last {
			t.Errorf("the member's records are not in one partition in order: %d/%d after %d/%d", r.partition, r.offset, partition, last)
		}
		partition, last = r.partition, r.offset
	}
	// The tampered click's record carries nothing of the link, and no key.
	bad, err := e.readTopic(e.topic)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range bad {
		if r.Kind == "click" && r.Link == "invalid" {
			n++
			if r.MemberID != "" || r.Campaign != "" || r.Destination != "" || r.key != "" {
				t.Errorf("a tampered click's record names %s", r.raw)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d records of the tampered click, want 1", n)
	}
	m := e.metrics(t)
	for series, want := range map[string]float64{
		`b2s_mail_links_total{result="ok"}`: 6, `b2s_mail_links_total{result="invalid"}`: 1,
		`b2s_records_total{kind="open"}`: 3, `b2s_records_total{kind="click"}`: 2, `b2s_records_total{kind="unsubscribe"}`: 1,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	// The landing is a page record of the reader's browser, which the
	// click did not join to the member.
	lr := e.record(t, "dec-news-landing")
	if lr.MemberID != "" || lr.CookieID == "" {
		t.Errorf("the landing's record: member %q, cookie %q; want a cookie and no member", lr.MemberID, lr.CookieID)
	}
	// The unsubscribe survives a restart of the edge. Everything shipped
	// first, the new process's counters start from nothing.
	e.waitMetrics(t, map[string]float64{`b2s_records_shipped_total`: float64(e.pages.Load() + e.beacons.Load() + e.mails.Load())})
	e.caddy.Signal(t, syscall.SIGTERM)
	select {
	case <-e.caddy.Done:
	case <-time.After(20 * time.Second):
		t.Fatal("caddy did not stop within 20s of SIGTERM")
	}
	e.client.CloseIdleConnections()
	e.pages.Store(0)
	e.beacons.Store(0)
	e.mails.Store(0)
	e.startCaddy()
	e.request(t, "GET", e.path(t, msg.pixel), withHeader("User-Agent", reader))
	after := e.mailRecords(t, "dec-news", 6)
	if last := after[len(after)-1]; last.MemberID != "" || last.Consent != "optout" {
		t.Errorf("after a restart the unsubscribed member's open records %s", last.raw)
	}
	// Control: another recipient of the same campaign is tracked.
	other := e.writeMail(t, "dec-news-2", "m-2002")
	e.request(t, "GET", e.path(t, other.pixel), withHeader("User-Agent", reader))
	if rec := e.mailRecords(t, "dec-news-2", 1)[0]; rec.MemberID != "m-2002" || rec.key != "m-2002" {
		t.Errorf("another member's open: %s", rec.raw)
	}
}

// A child's mail: its links answer as any, and record no member.
func TestAChildsMailTracksNoOne(t *testing.T) {
	e := newEnv(t, envOptions{})
	msg := e.writeMail(t, "kids-club", "kid-7", "--child")
	e.request(t, "GET", e.path(t, msg.pixel))
	r := e.request(t, "GET", e.path(t, msg.clicks[0]))
	if r.status != http.StatusFound {
		t.Fatalf("a child's click: %d", r.status)
	}
	for _, rec := range e.mailRecords(t, "kids-club", 2) {
		if rec.MemberID != "" || rec.key != "" || rec.Consent != "child" || !rec.IPTruncated {
			t.Errorf("a child's %s: %s", rec.Kind, rec.raw)
		}
	}
}
