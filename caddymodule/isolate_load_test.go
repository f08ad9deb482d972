package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestIsolateLoadErrors loads b2s_isolate configs as `caddy validate` and
// a config load do: what the JSON allows and what it refuses, with
// messages that name the handler, the cookie and the fix.
func TestIsolateLoadErrors(t *testing.T) {
	app := func(cookieName string) string {
		m := map[string]any{"secrets": []string{testKey1}, "spool": t.TempDir(), "kafka": map[string]any{"brokers": []string{"127.0.0.1:9"}}}
		if cookieName != "" {
			m["cookie_name"] = cookieName
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	isolate := func(names ...string) string {
		b, err := json.Marshal(map[string]any{"handler": "b2s_isolate", "allow_cookies": names})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct {
		name    string
		b2s     string
		handler string
		want    []string // substrings of the error; none means the config loads
	}{
		{
			name:    "b2s_isolate without options loads",
			b2s:     app(""),
			handler: `{"handler":"b2s_isolate"}`,
		},
		{
			name:    "third-party cookie names load, in any case and with any token character",
			b2s:     app(""),
			handler: isolate("adnet_uid", "B2SID", "b2sidx", "b2sid-seg", "__Host-ad", "a!#$%&'*+-.^_`|~1"),
		},
		{
			name:    "the plugin's cookie is refused, naming it and the fix",
			b2s:     app(""),
			handler: isolate("adnet_uid", "b2sid"),
			want:    []string{`b2s_isolate: allow_cookies: "b2sid" is a cookie of b2s.com`, `cookie_name "b2sid"`, `starts with "b2sid_"`, "remove it from allow_cookies"},
		},
		{
			name:    "a cookie whose name starts with the plugin's and _ is refused",
			b2s:     app(""),
			handler: isolate("b2sid_optout"),
			want:    []string{`b2s_isolate: allow_cookies: "b2sid_optout" is a cookie of b2s.com`, "remove it from allow_cookies"},
		},
		{
			name:    "the plugin's cookie under its __Host- name is refused",
			b2s:     app(""),
			handler: isolate("__Host-b2sid"),
			want:    []string{`b2s_isolate: allow_cookies: "__Host-b2sid" is a cookie of b2s.com`, "remove it from allow_cookies"},
		},
		{
			name:    "with another cookie_name, that name's cookies are refused",
			b2s:     app("vid"),
			handler: isolate("b2sid", "vid_m"),
			want:    []string{`"vid_m" is a cookie of b2s.com`, `cookie_name "vid"`},
		},
		{
			name:    "a name with a space is refused",
			b2s:     app(""),
			handler: isolate("ad uid"),
			want:    []string{`b2s_isolate: allow_cookies: "ad uid" is not a cookie name`, "without spaces"},
		},
		{
			name:    "a name with = or ; is refused",
			b2s:     app(""),
			handler: isolate("ad=1;b"),
			want:    []string{`"ad=1;b" is not a cookie name`},
		},
		{
			name:    "an empty name is refused",
			b2s:     app(""),
			handler: isolate(""),
			want:    []string{`b2s_isolate: allow_cookies: "" is not a cookie name`},
		},
		{
			name:    "b2s_isolate without the b2s app says to add it",
			handler: `{"handler":"b2s_isolate"}`,
			want:    []string{"b2s_isolate: the global b2s options are missing", "add a b2s block"},
		},
		{
			name:    "b2s_isolate with a broken b2s app reports the app's error",
			b2s:     `{"kafka":{"brokers":["127.0.0.1:9"]}}`,
			handler: `{"handler":"b2s_isolate"}`,
			want:    []string{"b2s: secret: missing"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { checkLoad(t, tc.b2s, tc.handler, tc.want) })
	}
}

func TestIsolateCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		caddyfile string
		want      []string
	}{
		{
			name: "an unknown option names the valid one and the line",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_isolate {
		allow_cookie adnet_uid
	}
}`,
			want: []string{"'b2s_isolate'", `unrecognized option "allow_cookie"`, "want allow_cookies or sandbox", "Caddyfile:12"},
		},
		{
			name: "allow_cookies without a name gives an example",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_isolate {
		allow_cookies
	}
}`,
			want: []string{"b2s_isolate: allow_cookies needs at least one cookie name", "e.g. allow_cookies adnet_uid", "Caddyfile:12"},
		},
		{
			name: "a name that is not a token is refused with its line",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_isolate {
		allow_cookies adnet_uid "ad uid"
	}
}`,
			want: []string{`b2s_isolate: allow_cookies: "ad uid" is not a cookie name`, "Caddyfile:12"},
		},
		{
			name: "sandbox takes on or off",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_isolate {
		sandbox no
	}
}`,
			want: []string{"b2s_isolate: sandbox takes on or off", "sandbox off for an ad that needs the site's origin", "Caddyfile:12"},
		},
		{
			name: "an argument after the matcher is refused",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_isolate /ads/* strict
}`,
			want: []string{"'b2s_isolate'", "wrong argument count", "'strict'", "Caddyfile:11"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tc.caddyfile), nil)
			if err == nil {
				t.Fatalf("adapting succeeded; want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestIsolateCaddyfileOwnedCookie: a Caddyfile that allows the plugin's
// cookie adapts (the cookie name is the b2s app's, known at load) and
// fails to load, as `caddy validate` would report it.
func TestIsolateCaddyfileOwnedCookie(t *testing.T) {
	t.Setenv("B2S_SECRET", testKey1)
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`{
	admin off
	b2s {
		secret {env.B2S_SECRET}
		cookie_name vid
		spool `+t.TempDir()+`
		kafka {
			brokers 127.0.0.1:9
		}
	}
}

http://127.0.0.1:0 {
	b2s_isolate {
		allow_cookies adnet_uid vid_optout
	}
	respond "ad"
}`), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	err = caddy.Validate(&cfg)
	if err == nil {
		t.Fatal("the config loads; want b2s_isolate to refuse vid_optout")
	}
	for _, w := range []string{`b2s_isolate: allow_cookies: "vid_optout" is a cookie of b2s.com`, `cookie_name "vid"`, "remove it from allow_cookies"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}
