package beacon

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	aho "github.com/petar-dambovaliev/aho-corasick"
)

// A bot list is a JSON array of entries in the format of the public
// crawler-user-agents list (github.com/monperrus/crawler-user-agents),
// which loads as it is:
//
//	[{"pattern": "Googlebot\\/", "tags": ["search-engine"],
//	  "instances": ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"]},
//	 {"pattern": "(?i)example-monitor", "class": "crawler"}]
//
// pattern is a Go regular expression (RE2 syntax), matched anywhere in
// the first MaxUserAgentLen bytes of the User-Agent; case counts unless
// it starts with (?i). class is the record's bot class: crawler,
// http_client, headless or preview, or browser for an entry that marks
// User-Agents as a browser's (see below). Without one the tags decide:
// social-preview is a preview, http-library an http_client,
// browser-automation headless, anything else a crawler. instances are
// example User-Agents: each must match its own pattern, or the list is
// refused (this catches a pattern broken by hand-editing or a bad
// conversion). Other fields (description, url, ...) are ignored.
//
// Every pattern must contain a literal of at least minLiteral bytes that
// any match holds ("Googlebot/", or one of "Ahrefs" and "AhrefsSiteAudit"
// for "Ahrefs(Bot|SiteAudit)"). The literals of all patterns go into one
// Aho-Corasick automaton, which finds in one pass over the User-Agent the
// few patterns that may match; only those run their regular expression.
// A pattern without such a literal would cost a regular expression per
// User-Agent, so it is refused.
//
// When several entries match, the class is the first of browser,
// preview, headless, http_client and crawler among them, whatever their
// order: a link previewer called "…bot" is a preview, an SEO crawler
// that names its HTTP library a crawler only if no library entry
// matches, and a browser entry overrides the rest (the public list's
// "Viber", its link previewer, also matches the Viber app's browser,
// which the built-in list's browser entry for "Viber/<version>" undoes).

// botClasses are the classes a list entry may give, in precedence order.
// "browser" is no bot: an entry of that class marks User-Agents as a
// browser's whatever else matches them, to correct another entry's false
// positives without editing it.
var botClasses = [...]string{botBrowser, BotPreview, BotHeadless, BotHTTPClient, BotCrawler}

const botBrowser = "browser"

// botTagClasses maps crawler-user-agents tags to the class they imply;
// other tags mean a crawler.
var botTagClasses = map[string]string{
	"social-preview":     BotPreview,
	"browser-automation": BotHeadless,
	"http-library":       BotHTTPClient,
}

// minLiteral is the shortest literal a pattern may be found by.
const minLiteral = 3

// MaxBotListSize bounds a bot list file, in bytes.
const MaxBotListSize = 16 << 20

// maxBotEntries bounds the entries of a list.
const maxBotEntries = 100_000

// BotList is a compiled bot list with the cache of what it made of each
// User-Agent (see Classify). It is safe for concurrent use and never
// changes: a new list is a new BotList, with an empty cache.
type BotList struct {
	entries []botEntry
	ac      aho.AhoCorasick
	byLit   [][]int32  // automaton pattern -> entries holding that literal
	cache   agentCache // User-Agent -> Agent
	hinted  agentCache // User-Agent and Client Hints -> Agent
}

type botEntry struct {
	pattern string
	// re is pattern compiled, on the first User-Agent that holds one of
	// its literals: most entries of a long list never meet one, and a
	// compiled regular expression is a few hundred pointers for the
	// garbage collector to follow on every cycle.
	re atomic.Pointer[regexp.Regexp]
	// found says finding one of its literals is a match: re need not
	// run (see foldedLiterals).
	found bool
	class uint8 // index in botClasses
}

// match reports whether ua matches the entry's pattern.
func (e *botEntry) match(ua string) bool {
	re := e.re.Load()
	if re == nil {
		// ParseBotList compiled it once already; two requests may both
		// compile it now, and either result serves.
		re = regexp.MustCompile(e.pattern)
		e.re.Store(re)
	}
	return re.MatchString(ua)
}

// botListEntry is an entry as a file holds it.
type botListEntry struct {
	Pattern   string   `json:"pattern"`
	Class     string   `json:"class"`
	Tags      []string `json:"tags"`
	Instances []string `json:"instances"`
}

// ParseBotList compiles a bot list (see the format above) and checks it:
// valid JSON, at least one entry, every pattern a valid regular
// expression with a literal to be found by, every class known and every
// instance matched by its own pattern. The error names the first entry
// at fault.
func ParseBotList(data []byte) (*BotList, error) {
	if len(data) > MaxBotListSize {
		return nil, fmt.Errorf("bot list is %d bytes, more than the %d allowed", len(data), MaxBotListSize)
	}
	var raw []botListEntry
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("bot list is not a JSON array of entries: %v", err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("bot list has no entries")
	}
	if len(raw) > maxBotEntries {
		return nil, fmt.Errorf("bot list has %d entries, more than the %d allowed", len(raw), maxBotEntries)
	}
	l := &BotList{entries: make([]botEntry, len(raw))}
	litIndex := map[string]int{}
	var lits []string
	for i, e := range raw {
		at := func(format string, args ...any) error {
			return fmt.Errorf("bot list entry %d (pattern %q): %s", i+1, e.Pattern, fmt.Sprintf(format, args...))
		}
		if e.Pattern == "" {
			return nil, at("no pattern")
		}
		re, err := regexp.Compile(e.Pattern)
		if err != nil {
			return nil, at("%v", err)
		}
		class, ok := entryClass(e)
		if !ok {
			return nil, at("class %q is not one of %s", e.Class, strings.Join(botClasses[:], ", "))
		}
		for _, ua := range e.Instances {
			if !re.MatchString(ua) {
				return nil, at("does not match its own instance %q", ua)
			}
		}
		req, pure, err := requiredLiterals(e.Pattern)
		if err != nil {
			return nil, at("%v", err)
		}
		if score(req) < minLiteral {
			return nil, at("no literal of %d or more characters that every match holds; matching it would cost a regular expression per User-Agent", minLiteral)
		}
		l.entries[i].pattern, l.entries[i].found, l.entries[i].class = e.Pattern, pure, class
		for _, s := range req {
			j, ok := litIndex[s]
			if !ok {
				j = len(lits)
				litIndex[s] = j
				lits = append(lits, s)
				l.byLit = append(l.byLit, nil)
			}
			if k := len(l.byLit[j]); k == 0 || l.byLit[j][k-1] != int32(i) {
				l.byLit[j] = append(l.byLit[j], int32(i))
			}
		}
	}
	b := aho.NewAhoCorasickBuilder(aho.Opts{AsciiCaseInsensitive: true, MatchKind: aho.StandardMatch, DFA: false})
	l.ac = b.Build(lits)
	return l, nil
}

// entryClass is the index in botClasses of e's class.
func entryClass(e botListEntry) (uint8, bool) {
	name := e.Class
	if name == "" {
		name = BotCrawler
		for _, t := range e.Tags {
			if c, ok := botTagClasses[t]; ok {
				name = c
				break
			}
		}
	}
	i := slices.Index(botClasses[:], name)
	return uint8(i), i >= 0
}

// Len returns the number of entries.
func (l *BotList) Len() int { return len(l.entries) }

// classify returns the class of the entries that match ua (see the
// format above), "" when none does, and BotNoUserAgent for a blank one.
// It reads the first MaxUserAgentLen bytes, what the record keeps.
func (l *BotList) classify(ua string) string {
	if strings.Trim(ua, " \t") == "" {
		return BotNoUserAgent
	}
	ua = ua[:min(len(ua), MaxUserAgentLen)]
	best := len(botClasses)
	// Candidates are checked once each, in any order: the class with the
	// highest precedence among those that match wins.
	seen := make([]uint64, (len(l.entries)+63)/64) // entries already checked
	it := l.ac.IterOverlapping(ua)
	for m := it.Next(); m != nil; m = it.Next() {
		for _, i := range l.byLit[m.Pattern()] {
			e := &l.entries[i]
			if int(e.class) >= best {
				continue
			}
			if seen[i/64]&(1<<(i%64)) != 0 {
				continue
			}
			seen[i/64] |= 1 << (i % 64)
			if e.found || e.match(ua) {
				best = int(e.class)
				if best == 0 {
					return "" // a browser
				}
			}
		}
	}
	if best == len(botClasses) {
		return ""
	}
	return botClasses[best]
}

// Agent is what the edge makes of a User-Agent.
type Agent struct {
	// Bot is the bot class (see the Bot constants), "" for a browser.
	Bot string
	// Client is the browser, OS and device (see ParseClient).
	Client Client
}

// Classify returns what the list makes of userAgent, and the client the
// User-Agent names. It runs on every request: a few hundred User-Agent
// strings make most of a site's traffic, so answers are remembered (a
// bounded cache, emptied when full), and a hit does not allocate.
func (l *BotList) Classify(userAgent string) Agent {
	if a, ok := l.cache.m.Load(userAgent); ok {
		return a.(Agent)
	}
	a := Agent{Bot: l.classify(userAgent), Client: ParseClient(userAgent)}
	l.cache.store(userAgent, a)
	return a
}

// ClassifyWithHints is Classify with the client the Client Hints h
// describe in preference to the User-Agent (see Hints.Apply). Answers are
// remembered by User-Agent and hints together; a hit does not allocate.
func (l *BotList) ClassifyWithHints(userAgent string, h *Hints) Agent {
	if h.Empty() {
		return l.Classify(userAgent)
	}
	var buf [1024]byte
	key := append(buf[:0], userAgent[:min(len(userAgent), MaxUserAgentLen)]...)
	for _, v := range [...]string{h.FullVersionList, h.Platform, h.PlatformVersion, h.Model, h.Mobile} {
		key = append(append(key, 0), v...)
	}
	if len(key) > len(buf) { // hints too long to be real: not remembered
		a := l.Classify(userAgent)
		h.Apply(&a.Client)
		return a
	}
	if a, ok := l.hinted.m.Load(unsafeString(key)); ok {
		return a.(Agent)
	}
	a := l.Classify(userAgent)
	h.Apply(&a.Client)
	l.hinted.store(string(key), a)
	return a
}

// agentCache maps User-Agent strings to Agents.
type agentCache struct {
	m   sync.Map
	len atomic.Int64
}

// agentCacheMax bounds the cache: at most this many User-Agent strings of
// at most a few hundred bytes each.
const agentCacheMax = 4096

func (c *agentCache) store(ua string, a Agent) {
	if c.len.Add(1) > agentCacheMax {
		c.m.Clear()
		c.len.Store(0)
	}
	c.m.Store(ua, a)
}

// The built-in list: the public crawler-user-agents list (MIT; its
// licence is beside it), then b2s's own entries, which add HTTP clients
// and previewers it misses and the generic self-declarations ("…bot",
// "…crawler", "…spider").
var (
	//go:embed botlist/crawler-user-agents.json
	publicBotList []byte
	//go:embed botlist/b2s.json
	b2sBotList []byte
)

// DefaultBotList returns the built-in list, compiled on first use (about
// 100 ms, which the edge pays when it loads its config).
var DefaultBotList = sync.OnceValue(func() *BotList {
	l, err := ParseBotList(joinLists(publicBotList, b2sBotList))
	if err != nil {
		panic("beacon: built-in bot list: " + err.Error())
	}
	return l
})

// BuiltinBotList returns the built-in list's JSON, the entries
// DefaultBotList compiles: a base for a list of one's own.
func BuiltinBotList() []byte { return joinLists(publicBotList, b2sBotList) }

// joinLists concatenates JSON arrays.
func joinLists(lists ...[]byte) []byte {
	var all []json.RawMessage
	for _, l := range lists {
		var part []json.RawMessage
		if err := json.Unmarshal(l, &part); err != nil {
			panic("beacon: built-in bot list: " + err.Error())
		}
		all = append(all, part...)
	}
	b, _ := json.Marshal(all)
	return b
}

// requiredLiterals returns a set of strings, lower-case ASCII, one of
// which every match of pattern holds (ignoring ASCII case); the set is
// chosen for its shortest member being as long as possible. pure reports
// that the pattern matches exactly where one of them is found: it is
// case-insensitive literals and alternatives of them, nothing else, like
// "(?i)googlebot|bingbot" (Go's regular expressions are slow on these:
// no literal prefix to search for).
func requiredLiterals(pattern string) (req []string, pure bool, err error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, false, err
	}
	re = re.Simplify()
	if set, ok := foldedLiterals(re); ok && score(set) > 0 {
		return set, true, nil
	}
	return analyze(re).req, false, nil
}

// foldedLiterals returns the strings re matches, lower-cased, when it is
// made only of case-insensitive ASCII literals, alternations,
// concatenations and groups of them, and no more than maxSet.
func foldedLiterals(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 {
			for _, r := range re.Rune {
				if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
					return nil, false // case counts
				}
			}
		}
		s, ok := lowerASCII(string(re.Rune), true)
		return []string{s}, ok
	case syntax.OpCapture:
		return foldedLiterals(re.Sub[0])
	case syntax.OpAlternate, syntax.OpConcat:
		out := []string{""}
		if re.Op == syntax.OpAlternate {
			out = nil
		}
		for _, sub := range re.Sub {
			set, ok := foldedLiterals(sub)
			if !ok {
				return nil, false
			}
			if re.Op == syntax.OpAlternate {
				out = union(out, set)
			} else {
				out = product(out, set)
			}
			if len(out) > maxSet {
				return nil, false
			}
		}
		return out, true
	}
	return nil, false
}

// maxSet bounds the literal sets the analysis builds.
const maxSet = 64

// litInfo is what the analysis knows of a regular expression: exact, when
// exactOK, is every string it can match (a small finite set); req is a set
// one of which every match holds, nil when none is known.
type litInfo struct {
	exact   []string
	exactOK bool
	req     []string
}

func analyze(re *syntax.Regexp) litInfo {
	switch re.Op {
	case syntax.OpLiteral:
		s, ok := lowerASCII(string(re.Rune), re.Flags&syntax.FoldCase != 0)
		if !ok {
			return litInfo{}
		}
		return litInfo{exact: []string{s}, exactOK: true, req: []string{s}}
	case syntax.OpCharClass:
		var set []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i+1]-re.Rune[i] > maxSet {
				return litInfo{}
			}
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				s, ok := lowerASCII(string(r), false)
				if !ok {
					return litInfo{}
				}
				if !slices.Contains(set, s) {
					set = append(set, s)
				}
			}
			if len(set) > maxSet {
				return litInfo{}
			}
		}
		return litInfo{exact: set, exactOK: true, req: set}
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return litInfo{exact: []string{""}, exactOK: true}
	case syntax.OpCapture:
		return analyze(re.Sub[0])
	case syntax.OpQuest:
		sub := analyze(re.Sub[0])
		if !sub.exactOK || len(sub.exact) >= maxSet {
			return litInfo{}
		}
		return litInfo{exact: union(sub.exact, []string{""}), exactOK: true}
	case syntax.OpPlus:
		return litInfo{req: analyze(re.Sub[0]).best()}
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return litInfo{req: analyze(re.Sub[0]).best()}
		}
		return litInfo{}
	case syntax.OpConcat:
		var out litInfo
		run := []string{""}
		runOK := true // run is the product of the exact subs since the last inexact one
		all := true   // every sub so far exact
		consider := func(set []string) {
			if set != nil && score(set) > score(out.req) {
				out.req = set
			}
		}
		for _, s := range re.Sub {
			sub := analyze(s)
			if sub.exactOK && len(run)*len(sub.exact) <= maxSet {
				run = product(run, sub.exact)
				continue
			}
			consider(run)
			consider(sub.req)
			if !sub.exactOK {
				all = false
				run, runOK = []string{""}, true
				continue
			}
			run = sub.exact // a new run, the old one too large to extend
			runOK = false
		}
		consider(run)
		if all && runOK {
			out.exact, out.exactOK = run, true
		}
		return out
	case syntax.OpAlternate:
		out := litInfo{exactOK: true}
		reqOK := true
		for _, s := range re.Sub {
			sub := analyze(s)
			if out.exactOK && sub.exactOK && len(out.exact)+len(sub.exact) <= maxSet {
				out.exact = union(out.exact, sub.exact)
			} else {
				out.exact, out.exactOK = nil, false
			}
			// Every branch must hold a literal for the alternation to.
			if b := sub.best(); reqOK && score(b) > 0 {
				out.req = union(out.req, b)
			} else {
				out.req, reqOK = nil, false
			}
		}
		return out
	}
	return litInfo{}
}

// best is the most selective set info gives: req, or the exact strings.
func (li litInfo) best() []string {
	if li.exactOK && score(li.exact) >= score(li.req) {
		return li.exact
	}
	return li.req
}

// score is the length of the shortest string in set: how selective
// finding one of them is. An empty or unknown set scores 0.
func score(set []string) int {
	if len(set) == 0 {
		return 0
	}
	m := len(set[0])
	for _, s := range set[1:] {
		m = min(m, len(s))
	}
	return m
}

func product(a, b []string) []string {
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			if s := x + y; !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// lowerASCII lowers the ASCII letters of s. A literal with other letters
// under case folding has case variants beyond ASCII, which the
// automaton's ASCII folding would miss: it reports false.
func lowerASCII(s string, fold bool) (string, bool) {
	b := []byte(s)
	for i, c := range b {
		if c >= 0x80 && fold {
			return "", false
		}
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b), true
}
