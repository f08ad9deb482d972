package caddymodule

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/beacon"
	"github.com/b2scom/b2s-edge/internal/recordschema"
	"github.com/b2scom/b2s-edge/logship"
	"github.com/b2scom/b2s-edge/mailink"
)

// mailEdge is b2s_collect with the default options, serving the mail
// links of host example.com (httptest's), and the mailer's sealer.
type mailEdge struct {
	c      *Collect
	sp     *logship.Spool
	sealer *mailink.Sealer
	now    time.Time
}

func newMailEdge(t *testing.T) *mailEdge {
	t.Helper()
	e := &mailEdge{now: time.Unix(1_800_000_000, 0)}
	e.c, e.sp = privacyCollect(t, &e.now, 0)
	var err error
	if e.sealer, err = mailink.New([]byte(testKey1)); err != nil {
		t.Fatal(err)
	}
	return e
}

// url seals a link of kind k for member, campaign "c-1", issued an hour
// ago, good for a day from then.
func (e *mailEdge) url(t *testing.T, k mailink.Kind, member string, mod ...func(*mailink.Link)) string {
	t.Helper()
	l := mailink.Link{Kind: k, Host: "example.com", Campaign: "c-1", Member: member,
		Issued: e.now.Add(-time.Hour), Expires: e.now.Add(23 * time.Hour)}
	if k == mailink.Click {
		l.Destination = "https://www.b2s.com/deals?id=42"
	}
	for _, f := range mod {
		f(&l)
	}
	tok, err := e.sealer.Seal(l)
	if err != nil {
		t.Fatal(err)
	}
	return mailink.Path(k, tok)
}

// do serves one request from failClosedIP and returns the response and
// the one record it made, checked against the published schema.
func (e *mailEdge) do(t *testing.T, method, target string, header map[string]string) (*httptest.ResponseRecorder, spooledRecord) {
	t.Helper()
	var body *strings.Reader
	if method == http.MethodPost {
		body = strings.NewReader("List-Unsubscribe=One-Click")
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, target, body)
	if method == http.MethodPost {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := serveCollect(t, e.c, r, func(http.ResponseWriter, *http.Request) error {
		t.Fatalf("%s %s reached the site behind", method, target)
		return nil
	})
	return w, e.record(t)
}

// record returns the one record spooled since the last call, checked
// against the schema.
func (e *mailEdge) record(t *testing.T) spooledRecord {
	t.Helper()
	stop := make(chan struct{})
	close(stop)
	entries, pos, err := e.sp.Read(stop, nil, 1<<20, 1<<30)
	if err != nil || len(entries) != 1 {
		t.Fatalf("%d records spooled (%v), want 1", len(entries), err)
	}
	if err := recordschema.Validate(entries[0].Value); err != nil {
		t.Fatalf("record %s: %v", entries[0].Value, err)
	}
	var rec map[string]any
	if err := json.Unmarshal(entries[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	if err := e.sp.Ack(pos); err != nil {
		t.Fatal(err)
	}
	return spooledRecord{key: string(entries[0].Key), rec: rec}
}

// checkMember fails unless rec names member (or, for "", no one) in
// member_id and in its key, and carries no cookie or network ID.
func checkMember(t *testing.T, rec spooledRecord, member string) {
	t.Helper()
	if got := rec.str("member_id"); got != member || rec.key != member {
		t.Errorf("record member_id %q, key %q; want %q for both (record %v)", got, rec.key, member, rec.rec)
	}
	if rec.str("cookie_id") != "" || rec.str("network_id") != "" {
		t.Errorf("mail record carries the browser's IDs: %v", rec.rec)
	}
}

func TestMailOpenPixel(t *testing.T) {
	e := newMailEdge(t)
	good := e.url(t, mailink.Open, "m-1001")
	tok := strings.TrimPrefix(good, mailink.PathPrefix+"open/")
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	raw[len(raw)/2] ^= 1
	for _, tc := range []struct {
		name, target, link, member, campaign string
	}{
		{"a sealed pixel names its campaign and member", good, "ok", "m-1001", "c-1"},
		{"a tampered pixel names no one", mailink.PathPrefix + "open/" + base64.RawURLEncoding.EncodeToString(raw), "invalid", "", ""},
		{"a truncated pixel names no one", good[:len(good)-3], "invalid", "", ""},
		{"a click's token on the pixel names no one", strings.Replace(e.url(t, mailink.Click, "m-1001"), "/click/", "/open/", 1), "invalid", "", ""},
		{"an expired pixel keeps its campaign, not its member", e.url(t, mailink.Open, "m-1001", func(l *mailink.Link) { l.Expires = e.now.Add(-time.Minute) }), "expired", "", "c-1"},
		{"a pixel of another host names no one", e.url(t, mailink.Open, "m-1001", func(l *mailink.Link) { l.Host = "www.b2smade.com" }), "wrong_host", "", ""},
		{"a pixel sealed under another key names no one", "", "invalid", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				other, _ := mailink.New([]byte(testKey2))
				tok, _ := other.Seal(mailink.Link{Kind: mailink.Open, Host: "example.com", Campaign: "c-1", Member: "m-1001", Issued: e.now, Expires: e.now.Add(time.Hour)})
				target = mailink.Path(mailink.Open, tok)
			}
			w, rec := e.do(t, http.MethodGet, target, nil)
			if w.Code != http.StatusOK || w.Body.String() != string(beacon.Pixel) || w.Header().Get("Content-Type") != "image/gif" {
				t.Fatalf("answered %d %q with %d bytes, want the pixel", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
			}
			if len(w.Header().Values("Set-Cookie")) != 0 {
				t.Errorf("the pixel sets cookies: %v", w.Header().Values("Set-Cookie"))
			}
			if rec.str("kind") != "open" || rec.str("link") != tc.link || rec.str("campaign") != tc.campaign {
				t.Errorf("record kind %q link %q campaign %q, want open %q %q", rec.str("kind"), rec.str("link"), rec.str("campaign"), tc.link, tc.campaign)
			}
			if strings.Contains(rec.str("url"), "/open/") {
				t.Errorf("record url %q holds the token", rec.str("url"))
			}
			checkMember(t, rec, tc.member)
		})
	}
}

func TestMailClickRedirectsOnlyToItsSealedDestination(t *testing.T) {
	e := newMailEdge(t)
	good := e.url(t, mailink.Click, "m-1001")
	t.Run("a sealed click redirects to its destination, whatever the URL adds", func(t *testing.T) {
		for _, target := range []string{good, good + "?to=https://evil.example/&url=https://evil.example/", good + "?Location=https://evil.example/"} {
			w, rec := e.do(t, http.MethodGet, target, map[string]string{"Referer": "https://mail.example/inbox"})
			if w.Code != http.StatusFound || w.Header().Get("Location") != "https://www.b2s.com/deals?id=42" {
				t.Fatalf("%s: answered %d to %q", target, w.Code, w.Header().Get("Location"))
			}
			if rec.str("kind") != "click" || rec.str("link") != "ok" || rec.str("destination") != "https://www.b2s.com/deals?id=42" || rec.str("campaign") != "c-1" {
				t.Errorf("record %v", rec.rec)
			}
			checkMember(t, rec, "m-1001")
		}
	})
	tok := strings.TrimPrefix(good, mailink.PathPrefix+"click/")
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for _, tc := range []struct{ name, target string }{
		{"a click with its destination's bytes flipped", func() string {
			m := append([]byte(nil), raw...)
			m[len(m)-20] ^= 'w' ^ 'e'
			return mailink.PathPrefix + "click/" + base64.RawURLEncoding.EncodeToString(m)
		}()},
		{"a truncated click", good[:len(good)-1]},
		{"a click with a token of the pixel", strings.Replace(e.url(t, mailink.Open, "m-1001"), "/open/", "/click/", 1)},
		{"a click with no token", mailink.PathPrefix + "click/"},
		{"a click whose token is a URL", mailink.PathPrefix + "click/https:%2F%2Fevil.example%2F"},
		{"a click of another host", e.url(t, mailink.Click, "m-1001", func(l *mailink.Link) { l.Host = "www.b2smade.com" })},
	} {
		t.Run(tc.name+" gets a plain page", func(t *testing.T) {
			w, rec := e.do(t, http.MethodGet, tc.target, nil)
			if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
				t.Fatalf("answered %d, Location %q, type %q", w.Code, w.Header().Get("Location"), w.Header().Get("Content-Type"))
			}
			if rec.str("destination") != "" || rec.str("campaign") != "" {
				t.Errorf("a bad click's record names %v", rec.rec)
			}
			checkMember(t, rec, "")
		})
	}
	t.Run("an expired click shows its destination as a link, without a redirect", func(t *testing.T) {
		target := e.url(t, mailink.Click, "m-1001", func(l *mailink.Link) {
			l.Expires = e.now.Add(-time.Minute)
			l.Destination = "https://www.b2s.com/a?x=1&y='2'"
		})
		w, rec := e.do(t, http.MethodGet, target, nil)
		if w.Code != http.StatusGone || w.Header().Get("Location") != "" {
			t.Fatalf("answered %d, Location %q", w.Code, w.Header().Get("Location"))
		}
		if !strings.Contains(w.Body.String(), `href="https://www.b2s.com/a?x=1&amp;y=&#39;2&#39;"`) {
			t.Errorf("page %q does not link the escaped destination", w.Body.String())
		}
		if rec.str("link") != "expired" || rec.str("destination") == "" {
			t.Errorf("record %v", rec.rec)
		}
		checkMember(t, rec, "")
	})
	t.Run("a POST to a click is refused", func(t *testing.T) {
		w, _ := e.do(t, http.MethodPost, good, nil)
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Location") != "" {
			t.Fatalf("answered %d, Location %q", w.Code, w.Header().Get("Location"))
		}
	})
}

// A click does not read, set or delete the site's cookies: the browser's
// own choices stand (an opt-out, GPC, a child's mark), and the record
// never joins the browser's cookie ID to the member.
func TestMailClickKeepsTheBrowsersChoices(t *testing.T) {
	e := newMailEdge(t)
	signed := signerOf(t, testKey1).Sign(beacon.NewID(), e.now)
	for _, tc := range []struct {
		name, cookie, gpc, consent, member string
	}{
		{"a browser without cookies: the member is recorded", "", "", "full", "m-1"},
		{"a browser with the site's cookie: no cookie ID in the record", "b2sid=" + signed, "", "full", "m-1"},
		{"an opted-out browser: no member", "b2sid_optout=1", "", "optout", ""},
		{"a browser sending GPC: no member", "", "1", "gpc", ""},
		{"a browser marked as a child's: no member", "b2sid_dnc=1", "", "child", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.cookie != "" {
				h["Cookie"] = tc.cookie
			}
			if tc.gpc != "" {
				h["Sec-GPC"] = tc.gpc
			}
			w, rec := e.do(t, http.MethodGet, e.url(t, mailink.Click, "m-1"), h)
			if w.Code != http.StatusFound {
				t.Fatalf("answered %d", w.Code)
			}
			if sc := w.Header().Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("the click sets cookies: %v", sc)
			}
			if rec.str("consent") != tc.consent {
				t.Errorf("consent %q, want %q", rec.str("consent"), tc.consent)
			}
			checkMember(t, rec, tc.member)
			if tc.member == "" {
				checkAnonymous(t, rec, tc.consent)
			}
		})
	}
}

func TestMailChildLinksTrackNoOne(t *testing.T) {
	e := newMailEdge(t)
	child := func(l *mailink.Link) { l.Child = true }
	_, rec := e.do(t, http.MethodGet, e.url(t, mailink.Open, "kid-7", child), nil)
	checkAnonymous(t, rec, "child")
	w, rec := e.do(t, http.MethodGet, e.url(t, mailink.Click, "kid-7", child), nil)
	if w.Code != http.StatusFound {
		t.Fatalf("a child's click answered %d", w.Code)
	}
	checkAnonymous(t, rec, "child")
	// The unsubscribe must still say whom to stop mailing.
	_, rec = e.do(t, http.MethodPost, e.url(t, mailink.Unsubscribe, "kid-7", child), nil)
	if rec.str("consent") != "child" || rec.str("ip") != failClosedIPTruncated {
		t.Errorf("a child's unsubscribe: consent %q ip %q", rec.str("consent"), rec.str("ip"))
	}
	checkMember(t, rec, "kid-7")
	// Control: the same links without the child flag name the member.
	_, rec = e.do(t, http.MethodGet, e.url(t, mailink.Open, "m-1"), nil)
	checkMember(t, rec, "m-1")
}

func TestMailUnsubscribe(t *testing.T) {
	e := newMailEdge(t)
	unsub := e.url(t, mailink.Unsubscribe, "m-1")
	t.Run("a GET only asks, and unsubscribes no one", func(t *testing.T) {
		w, rec := e.do(t, http.MethodGet, unsub, nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<form method=post action="`+unsub+`">`) ||
			!strings.Contains(w.Body.String(), "name=List-Unsubscribe value=One-Click") {
			t.Fatalf("answered %d %q", w.Code, w.Body.String())
		}
		if rec.str("kind") != "page" || rec.str("member_id") != "" || rec.key != "" {
			t.Errorf("a GET recorded %v, key %q", rec.rec, rec.key)
		}
		// Still tracked: the GET changed nothing.
		_, rec = e.do(t, http.MethodGet, e.url(t, mailink.Open, "m-1"), nil)
		checkMember(t, rec, "m-1")
	})
	t.Run("a bad link's POST unsubscribes no one", func(t *testing.T) {
		w, rec := e.do(t, http.MethodPost, unsub[:len(unsub)-2], nil)
		if w.Code != http.StatusBadRequest || rec.str("kind") != "unsubscribe" || rec.str("link") != "invalid" {
			t.Fatalf("answered %d, record %v", w.Code, rec.rec)
		}
		checkMember(t, rec, "")
	})
	t.Run("the RFC 8058 POST unsubscribes, and the member's links track them no more", func(t *testing.T) {
		w, rec := e.do(t, http.MethodPost, unsub, nil)
		if w.Code != http.StatusOK || rec.str("kind") != "unsubscribe" || rec.str("link") != "ok" || rec.str("campaign") != "c-1" {
			t.Fatalf("answered %d, record %v", w.Code, rec.rec)
		}
		checkMember(t, rec, "m-1")
		_, rec = e.do(t, http.MethodGet, e.url(t, mailink.Open, "m-1", func(l *mailink.Link) { l.Campaign = "c-2" }), nil)
		checkAnonymous(t, rec, "optout")
		w, rec = e.do(t, http.MethodGet, e.url(t, mailink.Click, "m-1"), nil)
		if w.Code != http.StatusFound {
			t.Fatalf("an unsubscribed member's click answered %d", w.Code)
		}
		checkAnonymous(t, rec, "optout")
		// Control: another member is still tracked.
		_, rec = e.do(t, http.MethodGet, e.url(t, mailink.Open, "m-2"), nil)
		checkMember(t, rec, "m-2")
	})
	t.Run("the unsubscribe survives a restart", func(t *testing.T) {
		ml, err := newMailLinks([][]byte{[]byte(testKey2), []byte(testKey1)}, e.sp)
		if err != nil {
			t.Fatal(err)
		}
		if !ml.unsub.Has("m-1") || ml.unsub.Has("m-2") {
			t.Fatal("the unsubscribed members are not read back beside the spool")
		}
	})
	t.Run("an expired link still unsubscribes", func(t *testing.T) {
		_, rec := e.do(t, http.MethodPost, e.url(t, mailink.Unsubscribe, "m-3", func(l *mailink.Link) { l.Issued, l.Expires = e.now.Add(-48*time.Hour), e.now.Add(-time.Hour) }), nil)
		if rec.str("link") != "expired" {
			t.Fatalf("record %v", rec.rec)
		}
		checkMember(t, rec, "m-3")
	})
}

// The unsubscribe is never dropped by the client limit, which drops the
// pixel's records past its burst.
func TestMailUnsubscribeIsNeverLimited(t *testing.T) {
	e := newMailEdge(t)
	e.c, e.sp = limitedCollect(t, &ClientLimit{AddressRate: 0.001, AddressBurst: 2}, &e.now)
	const ip = "198.51.100.77" // an address of this test's alone: the limiter is the process's
	serve := func(method, target string) int {
		r := httptest.NewRequest(method, target, strings.NewReader("List-Unsubscribe=One-Click"))
		w := httptest.NewRecorder()
		if err := e.c.ServeHTTP(w, withClientIP(r, ip), nil); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	open := e.url(t, mailink.Open, "m-1")
	for range 5 {
		serve(http.MethodGet, open)
	}
	if kept := len(takeRecords(t, e.sp)); kept != 2 {
		t.Fatalf("control: the limit kept %d of 5 opens, want its burst of 2", kept)
	}
	if code := serve(http.MethodPost, e.url(t, mailink.Unsubscribe, "m-1")); code != http.StatusOK {
		t.Fatalf("unsubscribe answered %d", code)
	}
	rec := e.record(t)
	if rec.str("kind") != "unsubscribe" || rec.key != "m-1" {
		t.Fatalf("record %v key %q", rec.rec, rec.key)
	}
}

func TestMailPrefetchIsFlagged(t *testing.T) {
	e := newMailEdge(t)
	_, rec := e.do(t, http.MethodGet, e.url(t, mailink.Open, "m-1"), map[string]string{
		"User-Agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"})
	if rec.str("prefetch") != "gmail_proxy" {
		t.Errorf("prefetch %q, want gmail_proxy", rec.str("prefetch"))
	}
	_, rec = e.do(t, http.MethodGet, e.url(t, mailink.Open, "m-1"), map[string]string{"User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15"})
	if _, ok := rec.rec["prefetch"]; ok {
		t.Errorf("a reader's open is flagged %v", rec.rec["prefetch"])
	}
}
