package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConsentTagAPI runs the served tag in Node with a fake browser whose
// fetch of the consent path answers with the edge's own form page, and
// checks what b2s.consent(true) and b2s.consent(false) do.
func TestConsentTagAPI(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the tag's JavaScript is not checked")
	}
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	c, _ := privacyCollect(t, &now, 0)
	form := serveCollect(t, c, httptest.NewRequest(http.MethodGet, "https://www.b2s.com/_b2s/consent", nil), nil).Body.String()
	rw := httptest.NewRecorder()
	if err := c.serveScript(rw, httptest.NewRequest(http.MethodGet, "/b.js", nil)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"tag.js": rw.Body.String(), "form.html": form, "run.js": consentTagHarness} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(node, filepath.Join(dir, "run.js"), filepath.Join(dir, "tag.js"), filepath.Join(dir, "form.html")).CombinedOutput()
	if err != nil {
		t.Fatalf("running the tag: %v\n%s", err, out)
	}
	token := strings.SplitN(strings.SplitN(form, `name=b2s_token value="`, 2)[1], `"`, 2)[0]
	want := strings.Join([]string{
		`load: beacon /b.gif`,
		`grant: fetch /_b2s/consent undefined; submit post /_b2s/consent?return=%2Fa%3Fq%3D1 b2s_token=` + token,
		`withdraw: fetch /_b2s/consent?withdraw {"method":"POST","keepalive":true}`,
		`pushState after withdrawal:`,
		`grant under GPC:`,
	}, "\n") + "\n"
	if string(out) != want {
		t.Errorf("the tag did\n%s\nwant\n%s", out, want)
	}
}

const consentTagHarness = `
const fs = require("fs"), vm = require("vm");
const js = fs.readFileSync(process.argv[2], "utf8"), form = fs.readFileSync(process.argv[3], "utf8");
function browser(opts) {
	const sent = [];
	const el = tag => {
		const e = {tag, children: [], appendChild(c) { this.children.push(c); return c; }};
		if (tag === "form") e.submit = function () { sent.push("submit " + this.method + (this.hidden ? "" : " visible") + " " + this.action + " " + this.children.map(i => i.name + "=" + i.value).join("&")); };
		return e;
	};
	const ctx = {
		location: {href: "https://www.b2s.com/a?q=1", pathname: "/a", search: "?q=1"},
		document: {referrer: "", currentScript: null, documentElement: {hasAttribute: () => false}, createElement: el, body: el("body")},
		navigator: {globalPrivacyControl: !!opts.gpc, sendBeacon: (p) => { sent.push("beacon " + p); return true; }},
		fetch: (u, o) => { sent.push("fetch " + u + " " + JSON.stringify(o)); return Promise.resolve({text: () => Promise.resolve(form)}); },
		Promise, JSON, encodeURIComponent,
	};
	ctx.window = {history: {pushState() {}, replaceState() {}}, addEventListener() {}};
	vm.runInNewContext(js, ctx);
	return {ctx, take() { const s = sent.join("; "); sent.length = 0; return s; }};
}
(async () => {
	const out = [];
	let b = browser({});
	out.push("load: " + b.take());
	b.ctx.window.b2s.consent(true);
	await new Promise(r => setTimeout(r, 0));
	out.push("grant: " + b.take());
	b.ctx.window.b2s.consent(false);
	out.push("withdraw: " + b.take());
	b.ctx.location.href = "https://www.b2s.com/b"; b.ctx.window.history.pushState({}, "", "/b");
	out.push("pushState after withdrawal: " + b.take());
	b = browser({gpc: true});
	b.ctx.window.b2s.consent(true);
	await new Promise(r => setTimeout(r, 0));
	out.push("grant under GPC: " + b.take());
	console.log(out.join("\n").replace(/: \n/g, ":\n").replace(/ +$/gm, ""));
})();
`
