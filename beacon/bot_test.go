package beacon

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/b2scom/b2s-edge/internal/recordschema"
)

// Real User-Agent strings, as sent.
var botCases = []struct {
	name, ua, want string
}{
	{"Chrome on Windows is a browser", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", ""},
	{"Chrome on Android is a browser", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", ""},
	{"Firefox is a browser", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", ""},
	{"Safari on iPhone is a browser", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", ""},
	{"Edge is a browser", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", ""},
	{"WeChat's in-app browser is a browser", "Mozilla/5.0 (Linux; Android 12; M2102J2SC Build/SKQ1.211006.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36 XWEB/5023 MMWEBSDK/20230202 MMWEBID/2585 MicroMessenger/8.0.33.2320(0x2800213D) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64", ""},
	{"the Sogou mobile browser is a browser", "Mozilla/5.0 (Linux; Android 11; PCAM00) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/75.0.3770.156 Mobile Safari/537.36 SogouMSE,SogouMobileBrowser/5.27.7", ""},
	{"a CUBOT phone is a browser", "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", ""},
	{"an unknown tool that declares nothing is not flagged", "b2s-e2e/1", ""},

	{"Googlebot is a crawler", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", BotCrawler},
	{"Googlebot smartphone is a crawler", "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", BotCrawler},
	{"bingbot is a crawler", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", BotCrawler},
	{"Baiduspider is a crawler", "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)", BotCrawler},
	{"YandexBot is a crawler", "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", BotCrawler},
	{"YandexImages is a crawler", "Mozilla/5.0 (compatible; YandexImages/3.0; +http://yandex.com/bots)", BotCrawler},
	{"Sogou web spider is a crawler", "Sogou web spider/4.0(+http://www.sogou.com/docs/help/webmasters.htm#07)", BotCrawler},
	{"360Spider is a crawler", "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/50.0.2661.102 Safari/537.36; 360Spider", BotCrawler},
	{"PetalBot is a crawler", "Mozilla/5.0 (Linux; Android 7.0;) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)", BotCrawler},
	{"Bytespider is a crawler", "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)", BotCrawler},
	{"AhrefsBot is a crawler", "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", BotCrawler},
	{"SemrushBot is a crawler", "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)", BotCrawler},
	{"an unknown self-declared bot is a crawler", "Mozilla/5.0 (compatible; ExampleBot/1.0)", BotCrawler},
	{"an unknown self-declared crawler is a crawler", "SiteCrawler 2.0", BotCrawler},

	{"facebookexternalhit is a preview", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", BotPreview},
	{"Slackbot is a preview", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", BotPreview},
	{"Twitterbot is a preview", "Twitterbot/1.0", BotPreview},
	{"LinkedInBot is a preview", "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", BotPreview},
	{"WhatsApp is a preview", "WhatsApp/2.23.20.0 A", BotPreview},

	{"curl is an http client", "curl/8.5.0", BotHTTPClient},
	{"Wget is an http client", "Wget/1.21.4", BotHTTPClient},
	{"python-requests is an http client", "python-requests/2.32.3", BotHTTPClient},
	{"python-urllib is an http client", "Python-urllib/3.12", BotHTTPClient},
	{"Go's client is an http client", "Go-http-client/1.1", BotHTTPClient},
	{"Java is an http client", "Java/17.0.2", BotHTTPClient},
	{"okhttp is an http client", "okhttp/4.12.0", BotHTTPClient},
	{"libwww-perl is an http client", "libwww-perl/6.72", BotHTTPClient},
	{"Scrapy is an http client", "Scrapy/2.11.2 (+https://scrapy.org)", BotHTTPClient},

	{"HeadlessChrome is headless", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36", BotHeadless},
	{"PhantomJS is headless", "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1", BotHeadless},
	{"Lighthouse is headless", "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse", BotHeadless},

	{"no User-Agent", "", BotNoUserAgent},
	{"a blank User-Agent", "  \t", BotNoUserAgent},
	{"case does not matter", "GOOGLEBOT", BotCrawler},
	{"a token past what the record keeps is not seen", strings.Repeat("a", MaxUserAgentLen) + "Googlebot", ""},
}

func TestClassifyBot(t *testing.T) {
	for _, c := range botCases {
		t.Run(c.name, func(t *testing.T) {
			if got := ClassifyBot(c.ua); got != c.want {
				t.Errorf("ClassifyBot(%q) = %q, want %q", c.ua, got, c.want)
			}
		})
	}
}

func TestClassifyBotDoesNotAllocate(t *testing.T) {
	ua := botCases[0].ua
	if n := testing.AllocsPerRun(100, func() { _ = ClassifyBot(ua) }); n != 0 {
		t.Errorf("ClassifyBot allocates %v times per call, want 0", n)
	}
}

// FuzzClassifyBot checks that any input classifies without panicking into
// "" or one of the documented reasons, and that the automaton finds
// every entry that matches: the answer is the one trying every entry's
// regular expression gives.
func FuzzClassifyBot(f *testing.F) {
	for _, c := range botCases {
		f.Add(c.ua)
	}
	f.Add("cubotcubot")
	f.Add("\xff\xfeBOT")
	l := DefaultBotList()
	f.Fuzz(func(t *testing.T, ua string) {
		got := ClassifyBot(ua)
		if got != "" && (got == BotBeaconWithoutPage || !slices.Contains(BotReasons, got)) {
			t.Fatalf("ClassifyBot(%q) = %q, not a reason it may give", ua, got)
		}
		if want := naiveClassify(l, ua); got != want {
			t.Fatalf("ClassifyBot(%q) = %q, but its entries' regular expressions say %q", ua, got, want)
		}
	})
}

func BenchmarkClassifyBot(b *testing.B) {
	DefaultBotList() // compiled once, not in the first figure
	for _, c := range []struct{ name, ua string }{
		{"browser", botCases[0].ua},
		{"wechat", botCases[5].ua},
		{"googlebot", botCases[10].ua},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = ClassifyBot(c.ua)
			}
		})
		b.Run(c.name+"/uncached", func(b *testing.B) {
			l := DefaultBotList()
			b.ReportAllocs()
			for b.Loop() {
				_ = l.classify(c.ua)
			}
		})
	}
}

// TestBotReasonsMatchTheSchema keeps the published enum and the code in
// step: a record with each reason validates, and the schema lists no other.
func TestBotReasonsMatchTheSchema(t *testing.T) {
	raw, err := os.ReadFile(recordschema.Path())
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties struct {
			Bot struct {
				Enum      []string `json:"enum"`
				MaxLength int      `json:"maxLength"`
			} `json:"bot"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Properties.Bot.Enum, BotReasons) {
		t.Errorf("schema bot enum = %q, want %q", s.Properties.Bot.Enum, BotReasons)
	}
	if s.Properties.Bot.MaxLength != MaxBotLen {
		t.Errorf("schema bot maxLength = %d, want %d", s.Properties.Bot.MaxLength, MaxBotLen)
	}
	for _, reason := range BotReasons {
		r := Record{EventID: testEventID, Kind: KindPage, Time: time.Unix(0, 0), Status: 200, Bot: reason}
		checkValidRecordJSON(t, r.AppendJSON(nil))
	}
}
