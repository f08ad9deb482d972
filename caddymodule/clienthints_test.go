package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/b2scom/b2s-edge/internal/testrecord"
)

// TestClientHints runs requests through Caddy with a site that asks for
// Client Hints and reads their records back from Kafka: Accept-CH on HTML
// responses of visitors whose consent allows identifiers only, and the
// hints a request carries in its record's ua in preference to the
// User-Agent, the asked-for ones only under that consent.
func TestClientHints(t *testing.T) {
	const topic = "b2s.clienthints"
	brokers := startKafka(t, topic)
	e := loadEdge(t, edgeConfig{sites: `http://localhost:__HTTP__ {
	b2s_collect {
		client_hints Sec-CH-UA-Full-Version-List sec-ch-ua-platform-version Sec-CH-UA-Model
	}
	handle /page {
		header Content-Type "text/html; charset=utf-8"
		respond "<!doctype html><p>hello</p>"
	}
	handle /plain {
		respond "no content type"
	}
	handle {
		header Content-Type application/json
		respond "{}"
	}
}`}, brokers, topic)
	e.records = newRecordReader(t, brokers, topic)
	const want = "Sec-CH-UA-Full-Version-List, Sec-CH-UA-Platform-Version, Sec-CH-UA-Model"
	frozen := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	hints := map[string]string{
		"User-Agent":                  frozen,
		"Sec-CH-UA":                   `"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`,
		"Sec-CH-UA-Full-Version-List": `"Google Chrome";v="131.0.6778.86", "Chromium";v="131.0.6778.86", "Not_A Brand";v="24.0.0.0"`,
		"Sec-CH-UA-Platform":          `"Windows"`,
		"Sec-CH-UA-Platform-Version":  `"15.0.0"`,
		"Sec-CH-UA-Model":             `""`,
		"Sec-CH-UA-Mobile":            "?0",
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	without := func(m map[string]string, key string) map[string]string {
		out := with(m)
		delete(out, key)
		return out
	}
	n := 0
	for _, tc := range []struct {
		name         string
		path         string
		header       map[string]string
		wantAcceptCH bool
		wantUA       testrecord.UA
	}{
		{"an HTML page asks for the hints; a User-Agent alone gives the frozen version", "/page", map[string]string{"User-Agent": frozen}, true,
			testrecord.UA{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Windows", Device: "desktop"}},
		{"the next request's hints give the full version and the OS version", "/page", hints, true,
			testrecord.UA{Browser: "Chrome", BrowserVersion: "131.0.6778.86", OS: "Windows", OSVersion: "15.0.0", Device: "desktop"}},
		{"a JSON response does not ask", "/data", hints, false,
			testrecord.UA{Browser: "Chrome", BrowserVersion: "131.0.6778.86", OS: "Windows", OSVersion: "15.0.0", Device: "desktop"}},
		{"a response without a content type does not ask", "/plain", hints, false,
			testrecord.UA{Browser: "Chrome", BrowserVersion: "131.0.6778.86", OS: "Windows", OSVersion: "15.0.0", Device: "desktop"}},
		{"hints without Sec-CH-UA, which every browser that sends hints sends, are not read", "/page", without(hints, "Sec-CH-UA"), true,
			testrecord.UA{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Windows", Device: "desktop"}},
		{"a visitor under Global Privacy Control is not asked, and the asked-for hints are not recorded", "/page", with(hints, "Sec-GPC", "1"), false,
			testrecord.UA{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Windows", Device: "desktop"}},
		{"an Android tablet is a tablet by its hints", "/page", map[string]string{
			"User-Agent": "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
			"Sec-CH-UA":  `"Chromium";v="131"`, "Sec-CH-UA-Mobile": "?0", "Sec-CH-UA-Platform": `"Android"`, "Sec-CH-UA-Model": `"SM-X710"`}, true,
			testrecord.UA{Browser: "Chrome", BrowserVersion: "131.0.0.0", OS: "Android", Device: "tablet", Model: "SM-X710"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n++
			probe := fmt.Sprintf("ch%d-%d", n, time.Now().UnixNano())
			resp := e.do(t, newRequest(t, http.MethodGet, e.base+tc.path+"?probe="+probe, tc.header))
			got := strings.Join(resp.header.Values("Accept-CH"), ", ")
			if tc.wantAcceptCH && got != want || !tc.wantAcceptCH && got != "" {
				t.Errorf("Accept-CH = %q, want %q", got, map[bool]string{true: want}[tc.wantAcceptCH])
			}
			rec := e.records.find(t, probe).rec
			if rec.UA == nil || *rec.UA != tc.wantUA {
				t.Errorf("ua = %+v, want %+v", rec.UA, tc.wantUA)
			}
		})
	}
}

func TestClientHintsOption(t *testing.T) {
	for _, tc := range []struct{ input, wantErr, wantAcceptCH string }{
		{"b2s_collect {\n client_hints Sec-CH-UA-Model sec-ch-ua-full-version-list\n}", "", "Sec-CH-UA-Full-Version-List, Sec-CH-UA-Model"},
		{"b2s_collect {\n client_hints\n}", "needs at least one hint", ""},
		{"b2s_collect {\n client_hints Sec-CH-UA-Arch\n}", `"Sec-CH-UA-Arch" is not a hint the record takes`, ""},
		{"b2s_collect {\n client_hints Device-Memory\n}", "is not a hint the record takes", ""},
	} {
		var c Collect
		err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil {
			err = checkClientHints(c.ClientHints)
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want %q", tc.input, err, tc.wantErr)
			}
			continue
		}
		if err != nil || acceptCH(c.ClientHints) != tc.wantAcceptCH {
			t.Errorf("%q: Accept-CH %q, %v; want %q", tc.input, acceptCH(c.ClientHints), err, tc.wantAcceptCH)
		}
	}
	if acceptCH(nil) != "" {
		t.Error("no client_hints asks for something")
	}
}
