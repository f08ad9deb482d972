package beacon

import (
	"testing"
	"time"
)

// parserNames maps the browser names of testdata/browsers.tsv to
// ParseClient's where they differ.
var parserNames = map[string]string{
	"Samsung Internet":  "Samsung Browser",
	"Yandex":            "Yandex Browser",
	"Internet Explorer": "IE",
	"Silk":              "Amazon Silk",
}

// knownMisses are the table's browsers the parser does not tell apart
// from their engine (in-app browsers and Chinese browsers whose
// User-Agents otherwise read as Chrome or Safari); Client Hints do not
// name them either.
var knownMisses = map[string]bool{
	"WeChat": true, "QQ Browser": true, "QQ": true, "UC Browser": true, "MIUI Browser": true, "DingTalk": true,
	"Facebook": true, "Instagram": true, "LINE": true, "Alipay": true, "Baidu App": true, "Baidu Browser": true,
	"Sogou Browser": true, "360 Browser": true, "Quark": true, "HeyTap Browser": true, "Vivo Browser": true,
	"Douyin": true, "Weibo": true, "Android WebView": true, "KakaoTalk": true, "Pinterest": true,
	"Snapchat": true, "Viber": true,
}

// rowMisses are the parser's other misses in the table.
var rowMisses = map[string]bool{
	"Opera Mini":                true, // parsed as Opera
	"Firefox on Windows 11 ARM": true, // no browser
}

// TestParseClientOnRealBrowsers parses the table of real browsers: the
// OS of every one, the browser of every one the parser knows, and the
// device class of every one but Android tablets, whose User-Agents
// without "Mobile" the parser takes for phones (Client Hints correct
// them: see TestHintsApply).
func TestParseClientOnRealBrowsers(t *testing.T) {
	var browsers, oses, devices, n int
	for _, b := range readBrowsers(t) {
		n++
		c := ParseClient(b.ua)
		want := b.browser
		if p, ok := parserNames[want]; ok {
			want = p
		}
		if c.Browser == want {
			browsers++
		} else if !knownMisses[b.browser] && !rowMisses[b.name] {
			t.Errorf("%s: browser %q, want %q", b.name, c.Browser, want)
		}
		if c.OS == b.os {
			oses++
		} else {
			t.Errorf("%s: os %q, want %q", b.name, c.OS, b.os)
		}
		if c.Device == b.device {
			devices++
		} else if !(b.device == DeviceTablet && b.os == "Android") {
			t.Errorf("%s: device %q, want %q", b.name, c.Device, b.device)
		}
		if c.OSVersion != "" || c.Model != "" {
			t.Errorf("%s: os_version %q and model %q from a User-Agent, want none", b.name, c.OSVersion, c.Model)
		}
		if c.Browser == "" && c.BrowserVersion != "" {
			t.Errorf("%s: a version %q without a browser", b.name, c.BrowserVersion)
		}
	}
	t.Logf("of %d real browsers: browser right for %d, OS for %d, device for %d", n, browsers, oses, devices)
}

const frozenChromeWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
const frozenChromeAndroidTablet = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

// TestHintsApply: Client Hints as Chromium sends them replace what the
// frozen User-Agent says; hints that do not parse change nothing. The
// control is each User-Agent without hints, which keeps the frozen
// values.
func TestHintsApply(t *testing.T) {
	for _, c := range []struct {
		name string
		ua   string
		h    Hints
		want Client
	}{
		{"without hints the frozen User-Agent is all there is", frozenChromeWindows, Hints{},
			Client{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Windows", Device: DeviceDesktop}},
		{"Chrome on Windows 11 gives its full version and platform version", frozenChromeWindows, Hints{
			FullVersionList: `"Google Chrome";v="131.0.6778.86", "Chromium";v="131.0.6778.86", "Not_A Brand";v="24.0.0.0"`,
			Platform:        `"Windows"`, PlatformVersion: `"15.0.0"`, Mobile: "?0"},
			Client{Browser: "Chrome", BrowserVersion: "131.0.6778.86", OS: "Windows", OSVersion: "15.0.0", Device: DeviceDesktop}},
		{"Edge is named whatever the brand order", frozenChromeWindows, Hints{
			FullVersionList: `"Chromium";v="131.0.6778.86", "Not?A_Brand";v="99.0.0.0", "Microsoft Edge";v="131.0.2903.70"`},
			Client{Browser: "Edge", BrowserVersion: "131.0.2903.70", OS: "Windows", Device: DeviceDesktop}},
		{"a GREASE brand first is skipped", frozenChromeWindows, Hints{
			FullVersionList: `"Not A(Brand";v="99.0.0.0", "HeadlessChrome";v="121.0.6167.85", "Chromium";v="121.0.6167.85"`},
			Client{Browser: "HeadlessChrome", BrowserVersion: "121.0.6167.85", OS: "Windows", Device: DeviceDesktop}},
		{"Chromium alone is Chromium", frozenChromeWindows, Hints{FullVersionList: `"Chromium";v="126.0.6478.126", "Not/A)Brand";v="8.0.0.0"`},
			Client{Browser: "Chromium", BrowserVersion: "126.0.6478.126", OS: "Windows", Device: DeviceDesktop}},
		{"an Android tablet says it is not mobile", frozenChromeAndroidTablet, Hints{
			Platform: `"Android"`, PlatformVersion: `"14.0.0"`, Model: `"SM-X710"`, Mobile: "?0"},
			Client{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Android", OSVersion: "14.0.0", Device: DeviceTablet, Model: "SM-X710"}},
		{"an Android phone names its model", botCases[1].ua, Hints{Platform: `"Android"`, Model: `"Pixel 7"`, Mobile: "?1"},
			Client{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Android", Device: DeviceMobile, Model: "Pixel 7"}},
		{"a platform other than the User-Agent's drops nothing it does not replace", frozenChromeWindows, Hints{Platform: `"Linux"`},
			Client{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Linux", Device: DeviceDesktop}},
		{"hints that are not structured fields change nothing", frozenChromeWindows, Hints{
			FullVersionList: `Google Chrome;v=131`, Platform: `Windows 11`, PlatformVersion: `15`, Model: `"unterminated`, Mobile: "yes"},
			Client{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Windows", Device: DeviceDesktop}},
		{"an Unknown platform and an empty model change nothing", frozenChromeWindows, Hints{Platform: `"Unknown"`, Model: `""`},
			Client{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Windows", Device: DeviceDesktop}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := ParseClient(c.ua)
			c.h.Apply(&got)
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
			if a := DefaultBotList().ClassifyWithHints(c.ua, &c.h); a.Client != c.want {
				t.Errorf("ClassifyWithHints: %+v, want %+v", a.Client, c.want)
			}
		})
	}
}

// TestClassifyWithHintsRemembersEachCombination: the same User-Agent with
// other hints gets its own answer, and a hit allocates nothing.
func TestClassifyWithHintsRemembersEachCombination(t *testing.T) {
	l := DefaultBotList()
	a := Hints{FullVersionList: `"Google Chrome";v="131.0.6778.86"`, Platform: `"Windows"`, PlatformVersion: `"15.0.0"`}
	b := Hints{FullVersionList: `"Google Chrome";v="131.0.6778.108"`, Platform: `"Windows"`, PlatformVersion: `"10.0.0"`}
	for range 2 {
		if got := l.ClassifyWithHints(frozenChromeWindows, &a).Client; got.BrowserVersion != "131.0.6778.86" || got.OSVersion != "15.0.0" {
			t.Errorf("hints a: %+v", got)
		}
		if got := l.ClassifyWithHints(frozenChromeWindows, &b).Client; got.BrowserVersion != "131.0.6778.108" || got.OSVersion != "10.0.0" {
			t.Errorf("hints b: %+v", got)
		}
		if got := l.Classify(frozenChromeWindows).Client; got.BrowserVersion != "131.0.0.0" || got.OSVersion != "" {
			t.Errorf("no hints: %+v", got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = l.ClassifyWithHints(frozenChromeWindows, &a) }); n != 0 {
		t.Errorf("ClassifyWithHints allocates %v times on a hit, want 0", n)
	}
}

// FuzzHints: any header values apply without panicking, and what they
// give encodes into a valid record.
func FuzzHints(f *testing.F) {
	f.Add(`"Google Chrome";v="131.0.6778.86", "Chromium";v="131.0.6778.86"`, `"Windows"`, `"15.0.0"`, `"Pixel 7"`, "?1")
	f.Add(`"a\"b";v=1`, `"\\"`, `"`, `""`, "?0")
	f.Fuzz(func(t *testing.T, list, platform, version, model, mobile string) {
		h := Hints{list, platform, version, model, mobile}
		c := ParseClient(frozenChromeWindows)
		h.Apply(&c)
		r := Record{EventID: testEventID, Kind: KindPage, Time: time.Unix(0, 0), Status: 200, Client: c}
		checkValidRecordJSON(t, r.AppendJSON(nil))
	})
}

// BenchmarkParseClient is the parse a cache miss pays, beside the bot
// list's.
func BenchmarkParseClient(b *testing.B) {
	rows := readBrowsers(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = ParseClient(rows[i%len(rows)].ua)
		i++
	}
}

// BenchmarkClassify is what the request path pays per request for the
// bot class and the client: warm (a cached User-Agent, with and without
// Client Hints) and cold (the built-in list's automaton and regular
// expressions and the parse).
func BenchmarkClassify(b *testing.B) {
	l := DefaultBotList()
	h := Hints{FullVersionList: `"Google Chrome";v="131.0.6778.86", "Chromium";v="131.0.6778.86", "Not_A Brand";v="24.0.0.0"`,
		Platform: `"Windows"`, PlatformVersion: `"15.0.0"`, Mobile: "?0"}
	b.Run("warm", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = l.Classify(frozenChromeWindows)
		}
	})
	b.Run("warm/hints", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = l.ClassifyWithHints(frozenChromeWindows, &h)
		}
	})
	rows := readBrowsers(b)
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ua := rows[i%len(rows)].ua
			_ = Agent{Bot: l.classify(ua), Client: ParseClient(ua)}
			i++
		}
	})
}
