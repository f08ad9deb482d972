package beacon

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// naiveClassify is what classify must answer, found the slow way: every
// entry's regular expression on the User-Agent, the class of highest
// precedence among those that match.
func naiveClassify(l *BotList, ua string) string {
	if strings.Trim(ua, " \t") == "" {
		return BotNoUserAgent
	}
	ua = ua[:min(len(ua), MaxUserAgentLen)]
	best := len(botClasses)
	for i := range l.entries {
		if e := &l.entries[i]; int(e.class) < best && e.match(ua) {
			best = int(e.class)
		}
	}
	if best == len(botClasses) || botClasses[best] == botBrowser {
		return ""
	}
	return botClasses[best]
}

// browserCase is a real browser's User-Agent from testdata/browsers.tsv
// and what the record should make of it.
type browserCase struct {
	name, ua, browser, os, device string
}

func readBrowsers(t testing.TB) []browserCase {
	t.Helper()
	f, err := os.Open("testdata/browsers.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []browserCase
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		p := strings.Split(line, "\t")
		if len(p) != 5 {
			t.Fatalf("browsers.tsv: %d fields in %q", len(p), line)
		}
		out = append(out, browserCase{p[0], p[1], p[2], p[3], p[4]})
	}
	if len(out) < 100 {
		t.Fatalf("browsers.tsv has %d User-Agents, want at least 100", len(out))
	}
	return out
}

// publicList is the crawler-user-agents list as published.
type publicEntry struct {
	Pattern   string   `json:"pattern"`
	Tags      []string `json:"tags"`
	Instances []string `json:"instances"`
}

func readPublicList(t testing.TB) ([]byte, []publicEntry) {
	t.Helper()
	raw, err := os.ReadFile("botlist/crawler-user-agents.json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []publicEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		t.Fatal(err)
	}
	return raw, entries
}

func mustParse(t testing.TB, data []byte) *BotList {
	t.Helper()
	l, err := ParseBotList(data)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// recall is the share of the list's example User-Agents l flags.
func recall(l *BotList, entries []publicEntry) (float64, []string) {
	n, hit := 0, 0
	var missed []string
	for _, e := range entries {
		for _, ua := range e.Instances {
			n++
			if l.Classify(ua).Bot != "" {
				hit++
			} else {
				missed = append(missed, ua)
			}
		}
	}
	return float64(hit) / float64(n), missed
}

// TestPublicListRecall loads the public crawler-user-agents list as it is
// published and checks that it flags its own examples, alone and in the
// built-in list. The control is the list of b2s's own entries alone, the
// kind of list that was compiled into the binary before: it misses a
// large share of them, so the check can fail.
func TestPublicListRecall(t *testing.T) {
	raw, entries := readPublicList(t)
	if len(entries) < 1500 {
		t.Fatalf("the public list has %d entries, want the full list", len(entries))
	}
	public := mustParse(t, raw)
	if public.Len() != len(entries) {
		t.Fatalf("compiled %d entries of %d", public.Len(), len(entries))
	}
	for _, c := range []struct {
		name string
		l    *BotList
		min  float64
	}{
		{"the public list", public, 0.99},
		{"the built-in list", DefaultBotList(), 0.99},
	} {
		r, missed := recall(c.l, entries)
		t.Logf("%s flags %.2f%% of the examples (%d missed)", c.name, 100*r, len(missed))
		if r < c.min {
			t.Errorf("%s flags %.2f%% of the examples, want at least %.0f%%; missed e.g. %q", c.name, 100*r, 100*c.min, missed[:min(5, len(missed))])
		}
	}
	own := mustParse(t, b2sBotList)
	r, _ := recall(own, entries)
	t.Logf("control: b2s's own entries alone flag %.1f%%", 100*r)
	if r >= 0.99 {
		t.Errorf("control: b2s's own entries alone flag %.1f%% of the examples; the recall check could not tell a short list", 100*r)
	}
}

// TestPublicListClasses checks that the tags give the record's classes.
func TestPublicListClasses(t *testing.T) {
	raw, _ := readPublicList(t)
	l := mustParse(t, raw)
	for ua, want := range map[string]string{
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)":              BotCrawler,
		"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)":             BotPreview,
		"LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)": BotPreview,
		"python-requests/2.32.3": BotHTTPClient,
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36": BotHeadless,
		"Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)":                                              BotCrawler,
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)":       BotCrawler,
		"curl/8.5.0":        BotHTTPClient,
		"":                  BotNoUserAgent,
		"Mozilla/5.0 (X11)": "",
	} {
		if got := l.Classify(ua).Bot; got != want {
			t.Errorf("Classify(%q) = %q, want %q", ua, got, want)
		}
	}
}

// TestBrowsersAreNotBots runs the table of real browsers through the
// built-in list: none may be flagged. The public list as published flags
// two of them, which the built-in list's browser entries undo: the
// control that the check sees a false positive. A second control appends
// a crawler's token to each User-Agent no browser entry names, which must
// then be flagged.
func TestBrowsersAreNotBots(t *testing.T) {
	raw, _ := readPublicList(t)
	public := mustParse(t, raw)
	browserEntries := mustParse(t, []byte(`[{"pattern": "SogouMobileBrowser|SogouMSE", "class": "browser"}, {"pattern": "Viber/\\d+\\.\\d+\\.\\d+", "class": "browser"}]`))
	var flagged []string
	for _, b := range readBrowsers(t) {
		if got := DefaultBotList().Classify(b.ua).Bot; got != "" {
			t.Errorf("%s is flagged %q: %s", b.name, got, b.ua)
		}
		if public.Classify(b.ua).Bot != "" {
			flagged = append(flagged, b.name)
		}
		if naiveClassify(browserEntries, b.ua) == "" && !strings.Contains(b.ua, "Viber/") && !strings.Contains(b.ua, "SogouM") {
			if got := DefaultBotList().Classify(b.ua + " (compatible; Googlebot/2.1)").Bot; got != BotCrawler {
				t.Errorf("control: %s with Googlebot's token is %q, want crawler", b.name, got)
			}
		}
	}
	if want := []string{"Sogou Mobile Browser", "Viber in-app"}; !slices.Equal(flagged, want) {
		t.Errorf("control: the public list as published flags %q, want its known false positives %q", flagged, want)
	}
}

// TestAutomatonFindsEveryMatch compares the automaton's answer with every
// regular expression tried in turn, on every example and browser. Under
// the race detector (which has nothing to find in it) it takes every
// seventh User-Agent; `make test` also runs the package without it, where
// the check is whole.
func TestAutomatonFindsEveryMatch(t *testing.T) {
	raw, entries := readPublicList(t)
	lists := []*BotList{DefaultBotList(), mustParse(t, raw)}
	var uas []string
	for _, e := range entries {
		uas = append(uas, e.Instances...)
	}
	for _, b := range readBrowsers(t) {
		uas = append(uas, b.ua, strings.ToUpper(b.ua), strings.ToLower(b.ua))
	}
	for _, c := range botCases {
		uas = append(uas, c.ua)
	}
	step := 1
	if raceEnabled {
		step = 7
	}
	for _, l := range lists {
		for i := 0; i < len(uas); i += step {
			ua := uas[i]
			if got, want := l.classify(ua), naiveClassify(l, ua); got != want {
				t.Errorf("classify(%q) = %q, every regular expression says %q", ua, got, want)
			}
		}
	}
}

func TestRequiredLiterals(t *testing.T) {
	for _, c := range []struct {
		pattern string
		want    []string
	}{
		{`Googlebot\/`, []string{"googlebot/"}},
		{`AdsBot-Google([^-]|$)`, []string{"adsbot-google"}},
		{`Ahrefs(Bot|SiteAudit)`, []string{"ahrefsbot", "ahrefssiteaudit"}},
		{`[wW]get`, []string{"wget"}},
		{`^curl`, []string{"curl"}},
		{`(sistrix|SISTRIX) [cC]rawler`, []string{"sistrix crawler"}},
		{`Spider[\s\S]*spider\.com`, []string{"spider.com"}},
		{`(?i)(?:^|[^u]|(?:^|[^c])u)bot`, []string{"bot"}},
		{`S[eE][mM]rushBot`, []string{"semrushbot"}},
		{`BlogTraffic\/\d\.\d+ Feed-Fetcher`, []string{"blogtraffic/0.", "blogtraffic/1.", "blogtraffic/2.", "blogtraffic/3.", "blogtraffic/4.", "blogtraffic/5.", "blogtraffic/6.", "blogtraffic/7.", "blogtraffic/8.", "blogtraffic/9."}},
		{`a+b?`, []string{"a"}},
		{`x|.*`, nil},
		{`[a-c]+`, []string{"a", "b", "c"}},
	} {
		got, _, err := requiredLiterals(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		slices.Sort(c.want)
		if !slices.Equal(got, c.want) {
			t.Errorf("requiredLiterals(%q) = %q, want %q", c.pattern, got, c.want)
		}
		// Whatever it says must hold: every example match holds one.
		re := regexp.MustCompile(c.pattern)
		for _, ua := range []string{"Googlebot/2.1", "AdsBot-Google", "SISTRIX Crawler", "wget", "AhrefsSiteAudit/1", "SemrushBot", "Spider x spider.com"} {
			if re.MatchString(ua) && len(got) > 0 && !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(strings.ToLower(ua), s) }) {
				t.Errorf("%q matches %q but holds none of %q", ua, c.pattern, got)
			}
		}
	}
}

func TestParseBotListRefusesBrokenLists(t *testing.T) {
	for _, c := range []struct{ name, list, wantErr string }{
		{"not JSON", `[{"pattern": "Googlebot"`, "not a JSON array"},
		{"an object, not an array", `{"pattern": "Googlebot"}`, "not a JSON array"},
		{"an empty list", `[]`, "no entries"},
		{"an entry without a pattern", `[{"class": "crawler"}]`, "no pattern"},
		{"a pattern that is not a regular expression", `[{"pattern": "Google(bot"}]`, "missing closing )"},
		{"an unknown class", `[{"pattern": "Googlebot", "class": "search"}]`, `class "search" is not one of`},
		{"an example its pattern does not match", `[{"pattern": "Googlebot\\/", "instances": ["Googlebot 2.1"]}]`, "does not match its own instance"},
		{"a pattern with no literal to find it by", `[{"pattern": "[a-z]+[0-9]"}]`, "no literal of 3"},
		{"a pattern whose literal is too short", `[{"pattern": "^ab"}]`, "no literal of 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseBotList([]byte(c.list))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("ParseBotList = %v, want an error with %q", err, c.wantErr)
			}
		})
	}
	if _, err := ParseBotList([]byte(`[{"pattern": "example-monitor", "class": "crawler", "instances": ["example-monitor/1"]}]`)); err != nil {
		t.Errorf("control: a valid one-entry list: %v", err)
	}
	big := make([]byte, MaxBotListSize+1)
	if _, err := ParseBotList(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a list over the size limit: %v", err)
	}
}

func TestBuiltinBotListIsTheDefault(t *testing.T) {
	l := mustParse(t, BuiltinBotList())
	_, public := readPublicList(t)
	if l.Len() != DefaultBotList().Len() || l.Len() <= len(public) {
		t.Errorf("BuiltinBotList has %d entries, DefaultBotList %d, the public list %d", l.Len(), DefaultBotList().Len(), len(public))
	}
}

// BenchmarkParseBotList is the cost of loading the built-in list, paid
// once per process and per replaced file.
func BenchmarkParseBotList(b *testing.B) {
	data := BuiltinBotList()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBotList(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBotListCompilesPatternsOnFirstUse checks that a parsed list holds
// no compiled regular expression until a User-Agent holds one of its
// literals (the list stays small for the garbage collector to scan), that
// one User-Agent compiles only its few candidates, and that requests
// compiling the same patterns at once all get the right answer (run
// under the race detector by make test): a fresh list classified from
// several goroutines answers as one classified alone.
func TestBotListCompilesPatternsOnFirstUse(t *testing.T) {
	raw, entries := readPublicList(t)
	compiled := func(l *BotList) int {
		n := 0
		for i := range l.entries {
			if l.entries[i].re.Load() != nil {
				n++
			}
		}
		return n
	}
	l := mustParse(t, raw)
	if n := compiled(l); n != 0 {
		t.Fatalf("a new list holds %d compiled patterns, want none", n)
	}
	l.classify("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
	if n := compiled(l); n == 0 || n > 20 {
		t.Errorf("Googlebot's User-Agent compiled %d patterns, want its few candidates (1 to 20)", n)
	}

	var uas []string
	for _, e := range entries {
		uas = append(uas, e.Instances...)
	}
	if raceEnabled { // a quarter of them, from four goroutines at once
		for i := range len(uas) / 4 {
			uas[i] = uas[4*i]
		}
		uas = uas[:len(uas)/4]
	}
	alone := mustParse(t, raw)
	want := make([]string, len(uas))
	for i, ua := range uas {
		want[i] = alone.classify(ua)
	}
	shared := mustParse(t, raw)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(uas)+g; i++ { // each goroutine from its own start
				j := i % len(uas)
				if got := shared.classify(uas[j]); got != want[j] {
					t.Errorf("classify(%q) = %q from goroutine %d, alone %q", uas[j], got, g, want[j])
				}
			}
		}()
	}
	wg.Wait()
	if n := compiled(shared); n == 0 || n > shared.Len() {
		t.Errorf("%d patterns compiled after every example, want 1 to %d", n, shared.Len())
	}
}
