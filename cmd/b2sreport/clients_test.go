package main

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// withClient is r's record with a bot class and a ua object ("" leaves a
// member out; no members at all, no ua).
func withClient(t *testing.T, r rec, bot, browser, os, device string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.json(t)), &m); err != nil {
		t.Fatal(err)
	}
	if bot != "" {
		m["bot"] = bot
	}
	ua := map[string]string{}
	for k, v := range map[string]string{"browser": browser, "os": os, "device": device} {
		if v != "" {
			ua[k] = v
		}
	}
	if len(ua) > 0 {
		m["ua"] = ua
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBotShareAndClients: a site's bot share counts every record a bot
// class flags; its browsers, OSes and devices count the page views and
// visitors of the records that are no bot's and carry a ua. The bot's
// record names Chrome too: were it counted, Chrome would have two page
// views (the control).
func TestBotShareAndClients(t *testing.T) {
	c := NewCounter(Config{Since: t0, Until: t0.Add(time.Hour), Top: 10, DedupeWindow: time.Hour, DedupeMax: 1000})
	add := func(b []byte) {
		t.Helper()
		if o, err := c.Add(b); o != Counted {
			t.Fatalf("%s: %v %v", b, o, err)
		}
	}
	add(withClient(t, view(1, "1m", "ann", "https://www.b2s.com/"), "", "Chrome", "Windows", "desktop"))
	add(withClient(t, rec{id: 2, at: "2m", cookie: "ann", url: "https://www.b2s.com/"}, "", "Chrome", "Windows", "desktop"))
	add(withClient(t, view(3, "3m", "bob", "https://www.b2s.com/"), "", "Safari", "iOS", "mobile"))
	add(withClient(t, view(4, "4m", "cat", "https://www.b2s.com/"), "", "", "", ""))
	add(withClient(t, view(5, "5m", "", "https://www.b2s.com/"), "crawler", "Chrome", "Android", "mobile"))
	add(withClient(t, view(6, "6m", "dan", "https://www.b2s.com/"), "", "", "Android", "tablet"))
	add(withClient(t, rec{id: 7, at: "7m", kind: "beacon", consent: "gpc", url: "https://www.b2s.com/", event: "pageview"}, "", "Firefox", "Linux", "desktop"))

	rep := c.Report()
	if len(rep.Sites) != 1 {
		t.Fatalf("sites: %+v", rep.Sites)
	}
	s := rep.Sites[0]
	if s.Records != 7 || s.Bots != 1 || math.Abs(s.BotShare-1.0/7) > 1e-12 {
		t.Errorf("records %d, bots %d, bot share %v; want 7, 1, 1/7", s.Records, s.Bots, s.BotShare)
	}
	wantBrowsers := []Client{{"Chrome", 1, 1}, {"Safari", 1, 1}, {"unknown", 1, 1}, {"Firefox", 1, 0}}
	wantOSes := []Client{{"Android", 1, 1}, {"Windows", 1, 1}, {"iOS", 1, 1}, {"Linux", 1, 0}}
	wantDevices := []Client{{"desktop", 2, 1}, {"mobile", 1, 1}, {"tablet", 1, 1}}
	for _, d := range []struct {
		what      string
		got, want []Client
	}{{"browsers", s.Browsers, wantBrowsers}, {"OSes", s.OSes, wantOSes}, {"devices", s.Devices, wantDevices}} {
		if !reflect.DeepEqual(d.got, d.want) {
			t.Errorf("%s = %+v, want %+v", d.what, d.got, d.want)
		}
	}

	var out strings.Builder
	if err := writeText(&out, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bot share", "      14.3%\n", "by browser, www.b2s.com (no bots)\n  browser  page views  visitors\n  Chrome            1         1\n",
		"by OS, www.b2s.com (no bots)", "by device, www.b2s.com (no bots)\n  device   page views  visitors\n  desktop           2         1\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, out.String())
		}
	}

	// Past -top, the rest are summed up as other, its visitors distinct.
	c.cfg.Top = 2
	if got, want := c.Report().Sites[0].Browsers, []Client{{"Chrome", 1, 1}, {"other", 3, 2}}; !reflect.DeepEqual(got, want) {
		t.Errorf("browsers with -top 2 = %+v, want %+v", got, want)
	}
}
