package beacon

import (
	"strings"
	"sync"

	"github.com/dunglas/httpsfv"
	useragent "github.com/medama-io/go-useragent"
	"github.com/medama-io/go-useragent/agents"
)

// MaxClientLen is the most bytes each string of the record's ua object
// takes (see appendString).
const MaxClientLen = 64

// Device classes of the record's ua.device.
const (
	DeviceDesktop = "desktop"
	DeviceMobile  = "mobile"
	DeviceTablet  = "tablet"
	DeviceTV      = "tv"
)

// Client is the browser, operating system and device a request comes
// from: the record's ua object. Every field may be empty (unknown).
type Client struct {
	// Browser is the browser's name, e.g. "Chrome", "Safari", "Edge",
	// "Samsung Browser". An in-app browser (WeChat, Instagram...) is named
	// by its engine when its User-Agent is all there is.
	Browser string
	// BrowserVersion is its full version as the client gives it. Chrome
	// freezes all but the major version in the User-Agent
	// ("131.0.0.0"); Client Hints give the real one.
	BrowserVersion string
	// OS is "Windows", "macOS", "iOS", "Android", "Linux", "ChromeOS"...
	OS string
	// OSVersion comes from Client Hints only (Sec-CH-UA-Platform-Version):
	// the versions in User-Agents are frozen ("Windows NT 10.0" on
	// Windows 11, "Android 10; K", "Mac OS X 10_15_7") and would mislead.
	// On Windows, 13 and above is Windows 11.
	OSVersion string
	// Device is desktop, mobile, tablet or tv.
	Device string
	// Model is the device model, from Client Hints only
	// (Sec-CH-UA-Model), e.g. "Pixel 7".
	Model string
}

// Empty reports whether c holds nothing worth recording.
func (c *Client) Empty() bool {
	return len(c.Browser)+len(c.BrowserVersion)+len(c.OS)+len(c.OSVersion)+len(c.Device)+len(c.Model) == 0
}

// uaParser is github.com/medama-io/go-useragent: a trie built from real
// User-Agents, maintained with its test corpus, that parses one in about
// 2 µs without allocating. Parsers built on regular-expression lists
// (ua-parser's uap-go) know more in-app browsers but took about 8 ms per
// User-Agent here, too slow even once per new User-Agent on the request
// path.
var uaParser = sync.OnceValue(useragent.NewParser)

// ParseClient returns what the User-Agent says of the client.
func ParseClient(userAgent string) Client {
	ua := uaParser().Parse(userAgent[:min(len(userAgent), MaxUserAgentLen)])
	c := Client{
		Browser:        string(ua.Browser()),
		BrowserVersion: ua.BrowserVersion(),
		OS:             string(ua.OS()),
	}
	if c.OS == string(agents.OSMacOS) {
		c.OS = "macOS" // Apple's spelling, and Client Hints'
	}
	switch ua.Device() {
	case agents.DeviceDesktop:
		c.Device = DeviceDesktop
	case agents.DeviceMobile:
		c.Device = DeviceMobile
	case agents.DeviceTablet:
		c.Device = DeviceTablet
	case agents.DeviceTV:
		c.Device = DeviceTV
	}
	if c.Browser == "" {
		c.BrowserVersion = ""
	}
	return c
}

// Hints are the User-Agent Client Hints a request carries, the headers'
// values as sent (RFC 8941 structured fields). Chromium browsers send
// Sec-CH-UA-Mobile and -Platform always, and the rest once the site asks
// for them with Accept-CH.
type Hints struct {
	FullVersionList string // Sec-CH-UA-Full-Version-List
	Platform        string // Sec-CH-UA-Platform
	PlatformVersion string // Sec-CH-UA-Platform-Version
	Model           string // Sec-CH-UA-Model
	Mobile          string // Sec-CH-UA-Mobile
}

// Empty reports whether h holds no hint.
func (h *Hints) Empty() bool {
	// Lengths, not *h == Hints{}: that compiles to a call comparing each
	// string, on every request.
	return len(h.FullVersionList)+len(h.Platform)+len(h.PlatformVersion)+len(h.Model)+len(h.Mobile) == 0
}

// HintHeaders are the request headers Hints reads, in its fields' order.
var HintHeaders = [...]string{
	"Sec-CH-UA-Full-Version-List", "Sec-CH-UA-Platform", "Sec-CH-UA-Platform-Version",
	"Sec-CH-UA-Model", "Sec-CH-UA-Mobile",
}

// Apply puts what the hints say in c, in preference to what the
// User-Agent said: they are what the browser reports of itself, where
// the User-Agent is frozen. A hint that does not parse is ignored.
func (h *Hints) Apply(c *Client) {
	if name, version, ok := brandOf(h.FullVersionList); ok {
		c.Browser, c.BrowserVersion = name, version
	}
	if p, ok := sfString(h.Platform); ok && p != "" && p != "Unknown" {
		switch p {
		case "Chrome OS":
			p = "ChromeOS"
		}
		if p != c.OS {
			c.OSVersion = "" // of another OS
		}
		c.OS = p
	}
	if v, ok := sfString(h.PlatformVersion); ok && v != "" {
		c.OSVersion = v
	}
	if m, ok := sfString(h.Model); ok && m != "" {
		c.Model = m
	}
	if it, err := httpsfv.UnmarshalItem([]string{h.Mobile}); h.Mobile != "" && err == nil {
		if mobile, ok := it.Value.(bool); ok {
			switch {
			case mobile:
				c.Device = DeviceMobile
			case c.OS == "Android" || c.OS == "iOS":
				c.Device = DeviceTablet // Chrome on an Android tablet says ?0
			case c.Device == DeviceMobile || c.Device == "":
				c.Device = DeviceDesktop
			}
		}
	}
}

// hintBrands maps Client Hints brands to the names the User-Agent parser
// gives.
var hintBrands = map[string]string{
	"Google Chrome":    "Chrome",
	"Microsoft Edge":   "Edge",
	"Samsung Internet": "Samsung Browser",
	"Yandex":           "Yandex Browser",
	"Opera":            "Opera",
	"Opera GX":         "Opera",
	"Vivaldi":          "Vivaldi",
	"HuaweiBrowser":    "Huawei Browser",
}

// brandOf picks the browser from a Sec-CH-UA-Full-Version-List: the first
// brand that is neither GREASE (a made-up "Not A Brand" that browsers add
// so servers parse the list properly) nor "Chromium", which every
// Chromium browser lists; "Chromium" itself when it is all there is.
func brandOf(list string) (name, version string, ok bool) {
	if list == "" {
		return "", "", false
	}
	l, err := httpsfv.UnmarshalList([]string{list})
	if err != nil {
		return "", "", false
	}
	for _, m := range l {
		it, isItem := m.(httpsfv.Item)
		if !isItem {
			continue
		}
		brand, _ := it.Value.(string)
		v, _ := it.Params.Get("v")
		ver, _ := v.(string)
		if brand == "" || strings.Contains(brand, "Brand") && strings.Contains(brand, "Not") {
			continue
		}
		if n, known := hintBrands[brand]; known {
			brand = n
		}
		if brand == "Chromium" && !ok {
			name, version, ok = brand, ver, true
			continue
		}
		if brand != "Chromium" {
			return brand, ver, true
		}
	}
	return name, version, ok
}

// sfString parses a structured-field string header value.
func sfString(v string) (string, bool) {
	if v == "" {
		return "", false
	}
	it, err := httpsfv.UnmarshalItem([]string{v})
	if err != nil {
		return "", false
	}
	s, ok := it.Value.(string)
	return s, ok
}
