package beacon

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

// ClassifyBot returns why userAgent is not a browser's by the built-in
// bot list (DefaultBotList), or "" for a browser.
func ClassifyBot(userAgent string) string { return DefaultBotList().Classify(userAgent).Bot }
