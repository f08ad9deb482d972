package browser

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
)

// thirdPartyCookies is the profile's third-party cookie setting, Chromium's
// profile.cookie_controls_mode preference.
type thirdPartyCookies int

const (
	// thirdPartyProfileDefault leaves the preference to the fresh profile:
	// Debian's Chromium blocks third-party cookies.
	thirdPartyProfileDefault thirdPartyCookies = iota
	thirdPartyBlocked
	thirdPartyAllowed
)

func (c thirdPartyCookies) String() string {
	return [...]string{"profile default", "blocked", "allowed"}[c]
}

type browserOptions struct {
	thirdPartyCookies thirdPartyCookies
}

// browser is one headless Chromium with a fresh profile and one tab.
type browser struct {
	e   *env
	ctx context.Context // the tab's

	// The tab's network traffic as the browser saw it, from its start:
	// every request it sent (redirects included) and every response it
	// received, with the headers as they arrived.
	sent     feed[*network.Request]
	received feed[*network.Response]
}

// actionTimeout bounds one action in the browser: a navigation includes the
// load of every subresource and frame.
const actionTimeout = 30 * time.Second

// newBrowser starts Chromium for e's sites and opens its tab; the test's
// cleanup closes it.
func (e *env) newBrowser(t *testing.T, o browserOptions) *browser {
	t.Helper()
	profile := filepath.Join(e.dir, "chromium-profile")
	if err := os.MkdirAll(filepath.Join(profile, "Default"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Preferences are read at start only. cookie_controls_mode: 0 allows
	// third-party cookies, 1 blocks them.
	switch o.thirdPartyCookies {
	case thirdPartyBlocked:
		writePreferences(t, profile, map[string]any{"profile": map[string]any{"cookie_controls_mode": 1}})
	case thirdPartyAllowed:
		writePreferences(t, profile, map[string]any{"profile": map[string]any{"cookie_controls_mode": 0}})
	}
	out, err := os.Create(filepath.Join(e.dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumBin),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(out),
	)
	opts = append(opts, e.browserFlags(t)...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit
		out.Close()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	b := &browser{e: e, ctx: ctx}
	// The listener runs on the tab's reading loop: it only appends.
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.RedirectResponse != nil {
				b.received.add(ev.RedirectResponse)
			}
			b.sent.add(ev.Request)
		case *network.EventResponseReceived:
			b.received.add(ev.Response)
		}
	}); err != nil {
		t.Fatalf("listening to the tab: %v", err)
	}
	return b
}

// browserFlags are Chromium's switches beyond chromedp's defaults (which
// hold --headless, --no-first-run, --disable-background-networking and
// --disable-sync): every name of the test's domains resolves to loopback
// and nothing else resolves at all; the certificates of Caddy's local CA
// are accepted by pinning its intermediate's key, which Chromium honours
// with a --user-data-dir of our own; no QUIC (Caddy offers HTTP/3 on the
// same port), no GPU, no component updates.
func (e *env) browserFlags(t *testing.T) []chromedp.ExecAllocatorOption {
	t.Helper()
	return []chromedp.ExecAllocatorOption{
		chromedp.Flag("host-resolver-rules", "MAP *.test 127.0.0.1, MAP *.example 127.0.0.1, MAP * ~NOTFOUND"),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, e.caPath("intermediate"))),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.DisableGPU,
		chromedp.NoSandbox, // tests run as root here and in CI
	}
}

// spkiHash is the base64 SHA-256 of the public key of the certificate in
// the PEM file at path, as --ignore-certificate-errors-spki-list takes it.
func spkiHash(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// writePreferences writes the profile's Default/Preferences before the
// browser starts.
func writePreferences(t *testing.T, profile string, prefs map[string]any) {
	t.Helper()
	b, err := json.Marshal(prefs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(profile, "Default", "Preferences"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// act runs one action in the tab, bounded by actionTimeout.
func act[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// navigate loads url in the tab, waits for its load event (which waits for
// its scripts, images and frames) and returns the document's response.
func (b *browser) navigate(t *testing.T, url string) *network.Response {
	t.Helper()
	return act(t, b.ctx, "loading "+url, chromedp.NavigateResponse(url))
}

// click clicks the element sel selects, waits for the navigation it starts
// to load, and returns the final document's response.
func click[S chromedp.Selectable](t *testing.T, b *browser, sel S) *network.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, actionTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(sel))
	if err != nil {
		t.Fatalf("clicking %v: %v", sel, err)
	}
	return resp
}

// eval evaluates expr in the tab's page and returns its value as T.
func eval[T any](t *testing.T, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	return act(t, ctx, "evaluating "+expr, chromedp.Evaluate[T](expr, opts...))
}

// call sends one DevTools command to the tab.
func call[P, R any](t *testing.T, b *browser, cmd cdp.Command[P, R], params P) R {
	t.Helper()
	return act(t, b.ctx, cmd.Method, func(ctx context.Context, tg *chromedp.Target) (R, error) {
		return cdp.Call(ctx, tg, cmd, params)
	})
}

// setHeaders makes the tab send these headers with every request from now
// on, in place of any set before.
func (b *browser) setHeaders(t *testing.T, h map[string]string) {
	t.Helper()
	headers := network.Headers{}
	for k, v := range h {
		headers[k] = v
	}
	call(t, b, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers})
}

// onNewDocument runs js in every document the tab loads from now on,
// before the document's own scripts.
func (b *browser) onNewDocument(t *testing.T, js string) {
	t.Helper()
	call(t, b, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js})
}

// history returns the URLs of the tab's session history, oldest first.
func (b *browser) history(t *testing.T) []string {
	t.Helper()
	res := call(t, b, page.GetNavigationHistory, cdp.Empty{})
	var urls []string
	for _, e := range res.Entries {
		urls = append(urls, e.URL)
	}
	return urls
}

// deleteCookie removes the browser's cookie called name for url's host,
// as a visitor clearing one site's cookies would.
func (b *browser) deleteCookie(t *testing.T, url, name string) {
	t.Helper()
	call(t, b, network.DeleteCookies, network.DeleteCookiesParams{Name: name, URL: url})
	for _, c := range b.cookies(t, url) {
		if c.Name == name {
			t.Fatalf("cookie %s of %s still there after deleting it", name, url)
		}
	}
}

// cookieValue returns the value of the named cookie the browser holds for
// url, and whether it holds one.
func (b *browser) cookieValue(t *testing.T, url, name string) (string, bool) {
	t.Helper()
	for _, c := range b.cookies(t, url) {
		if c.Name == name {
			return c.Value, true
		}
	}
	return "", false
}

// response waits for the response the tab received for url (the last one,
// if several) and returns it with its headers as the browser saw them.
func (b *browser) response(t *testing.T, url string) *network.Response {
	t.Helper()
	var found *network.Response
	b.received.wait(t, "the browser's response of "+url, func(rs []*network.Response) bool {
		for _, r := range rs {
			if r.URL == url {
				found = r
			}
		}
		return found != nil
	}, showResponses)
	return found
}

func showResponses(rs []*network.Response) string {
	var s strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&s, "  %d %s\n", r.Status, r.URL)
	}
	return s.String()
}

// header returns the values of the response header name (any case), as
// the browser received them.
func header(r *network.Response, name string) []string {
	var vs []string
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			vs = append(vs, fmt.Sprint(v))
		}
	}
	return vs
}

// cookies returns the cookies the browser would send to url, with every
// attribute, through the DevTools protocol (so HttpOnly ones too).
func (b *browser) cookies(t *testing.T, url string) []*network.Cookie {
	t.Helper()
	res := act(t, b.ctx, "reading the cookies of "+url,
		func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
			return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		})
	return res.Cookies
}

// cookie returns the named cookie the browser holds for url; it fails the
// test unless there is exactly one.
func (b *browser) cookie(t *testing.T, url, name string) *network.Cookie {
	t.Helper()
	var found []*network.Cookie
	all := b.cookies(t, url)
	for _, c := range all {
		if c.Name == name {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("the browser holds %d cookies named %s for %s, want one; all: %s", len(found), name, url, showCookies(all))
	}
	return found[0]
}

func showCookies(cs []*network.Cookie) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s=%s (domain %s, path %s)", c.Name, c.Value, c.Domain, c.Path))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// frame returns a context on the cross-site iframe of the tab whose URL
// starts with prefix. Chromium runs such a frame in a process and target of
// its own, which the page's context does not reach.
func (b *browser) frame(t *testing.T, prefix string) context.Context {
	t.Helper()
	infos, err := chromedp.Targets(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var id target.ID
	var seen []string
	for _, info := range infos {
		seen = append(seen, string(info.Type)+" "+info.URL)
		if info.Type == "iframe" && strings.HasPrefix(info.URL, prefix) {
			id = info.TargetID
		}
	}
	if id == "" {
		t.Fatalf("no iframe target at %s; targets: %q", prefix, seen)
	}
	// Detach, never close, when done: the frame belongs to the page.
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithTargetID(id), chromedp.WithDetachOnCancel())
	t.Cleanup(cancel)
	return ctx
}
