package beacon

import (
	"bytes"
	"sync"
	"sync/atomic"
)

// Bot reasons: the record's "bot" field. Bot traffic is flagged, never
// dropped, so analysts decide what to count and can audit the flag.
const (
	// BotCrawler is a search engine, SEO or other self-declared crawler.
	BotCrawler = "crawler"
	// BotHTTPClient is a programming library or command-line tool.
	BotHTTPClient = "http_client"
	// BotHeadless is an automated browser (headless Chrome, PhantomJS,
	// Lighthouse audits).
	BotHeadless = "headless"
	// BotNoUserAgent is a request without a User-Agent: browsers always
	// send one.
	BotNoUserAgent = "no_user_agent"
	// BotPreview is a link-preview fetcher of a chat or social app.
	BotPreview = "preview"
	// BotBeaconWithoutPage is a beacon from a browser-like client that
	// names no page (no u parameter and no Referer): a browser loading
	// the tag from a page sends one or the other.
	BotBeaconWithoutPage = "beacon_without_page"
)

// BotReasons lists every reason a record may carry, for schema and docs.
var BotReasons = []string{BotCrawler, BotHTTPClient, BotHeadless, BotNoUserAgent, BotPreview, BotBeaconWithoutPage}

// botTokens are matched, in order, against the lowercased User-Agent; the
// first match gives the reason. Specific tokens come before the generic
// "bot", "crawler" and "spider" so that a link previewer named "...bot"
// is a preview. Sogou is matched by its spiders' names: "sogou" alone
// would flag the Sogou mobile browser.
var botTokens = []struct {
	token  []byte
	reason string
}{
	// Link previews.
	{[]byte("facebookexternalhit"), BotPreview},
	{[]byte("facebookcatalog"), BotPreview},
	{[]byte("slackbot"), BotPreview},
	{[]byte("twitterbot"), BotPreview},
	{[]byte("linkedinbot"), BotPreview},
	{[]byte("whatsapp"), BotPreview},
	{[]byte("telegrambot"), BotPreview},
	{[]byte("discordbot"), BotPreview},
	{[]byte("skypeuripreview"), BotPreview},
	// Automated browsers.
	{[]byte("headlesschrome"), BotHeadless},
	{[]byte("phantomjs"), BotHeadless},
	{[]byte("lighthouse"), BotHeadless},
	{[]byte("puppeteer"), BotHeadless},
	{[]byte("selenium"), BotHeadless},
	// Libraries and tools.
	{[]byte("curl/"), BotHTTPClient},
	{[]byte("wget/"), BotHTTPClient},
	{[]byte("python-requests"), BotHTTPClient},
	{[]byte("python-urllib"), BotHTTPClient},
	{[]byte("python-httpx"), BotHTTPClient},
	{[]byte("aiohttp"), BotHTTPClient},
	{[]byte("go-http-client"), BotHTTPClient},
	{[]byte("java/"), BotHTTPClient},
	{[]byte("okhttp"), BotHTTPClient},
	{[]byte("apache-httpclient"), BotHTTPClient},
	{[]byte("libwww-perl"), BotHTTPClient},
	{[]byte("node-fetch"), BotHTTPClient},
	{[]byte("axios/"), BotHTTPClient},
	{[]byte("scrapy"), BotHTTPClient},
	// Search engines and SEO tools.
	{[]byte("googlebot"), BotCrawler},
	{[]byte("bingbot"), BotCrawler},
	{[]byte("baiduspider"), BotCrawler},
	{[]byte("yandexbot"), BotCrawler},
	{[]byte("yandex.com/bots"), BotCrawler},
	{[]byte("sogou web spider"), BotCrawler},
	{[]byte("360spider"), BotCrawler},
	{[]byte("petalbot"), BotCrawler},
	{[]byte("bytespider"), BotCrawler},
	{[]byte("ahrefsbot"), BotCrawler},
	{[]byte("semrushbot"), BotCrawler},
	{[]byte("applebot"), BotCrawler},
	{[]byte("duckduckbot"), BotCrawler},
	{[]byte("gptbot"), BotCrawler},
	// Generic self-declarations.
	{[]byte("crawler"), BotCrawler},
	{[]byte("spider"), BotCrawler},
	{[]byte("bot"), BotCrawler},
}

// ClassifyBot returns why userAgent is not a browser's, or "" for a
// browser. It matches the case-insensitive tokens of botTokens in the
// first MaxUserAgentLen bytes, which is what the record keeps. It runs on
// every request: a few hundred User-Agent strings make most of a site's
// traffic, so answers are remembered (a bounded cache, emptied when
// full), and a miss does not allocate beyond its cache entry.
func ClassifyBot(userAgent string) string {
	if r, ok := botCache.Load(userAgent); ok {
		return r.(string)
	}
	r := classifyBot(userAgent)
	if botCacheLen.Add(1) > botCacheMax {
		botCache.Clear()
		botCacheLen.Store(0)
	}
	botCache.Store(userAgent, r)
	return r
}

var (
	botCache    sync.Map // User-Agent -> reason
	botCacheLen atomic.Int64
)

// botCacheMax bounds the cache: at most this many User-Agent strings of
// at most a few hundred bytes each.
const botCacheMax = 4096

func classifyBot(userAgent string) string {
	var buf [MaxUserAgentLen]byte
	n := 0
	blank := true
	for i := 0; i < len(userAgent) && n < len(buf); i++ {
		c := userAgent[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != ' ' && c != '\t' {
			blank = false
		}
		buf[n] = c
		n++
	}
	if blank {
		return BotNoUserAgent
	}
	ua := buf[:n]
	for _, t := range botTokens {
		if len(t.token) == 3 { // "bot"
			if hasBot(ua) {
				return t.reason
			}
			continue
		}
		if bytes.Contains(ua, t.token) {
			return t.reason
		}
	}
	return ""
}

// hasBot reports whether ua holds "bot" other than in "cubot", a phone
// brand whose Android browsers name the model ("CUBOT P30").
func hasBot(ua []byte) bool {
	for i := 0; ; {
		j := bytes.Index(ua[i:], []byte("bot"))
		if j < 0 {
			return false
		}
		i += j
		if i < 2 || ua[i-2] != 'c' || ua[i-1] != 'u' {
			return true
		}
		i += 3
	}
}
