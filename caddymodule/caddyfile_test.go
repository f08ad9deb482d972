package caddymodule

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyfileAdaptToJSON adapts every testdata/caddyfile_adapt/*.caddyfiletest
// (a Caddyfile, a line of ten dashes, the expected JSON) and compares the
// result, as Caddy's own caddyfile_adapt tests do.
func TestCaddyfileAdaptToJSON(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/caddyfile_adapt/*.caddyfiletest files")
	}
	winNewlines := regexp.MustCompile(`\r?\n`)
	for _, path := range files {
		filename := filepath.Base(path)
		t.Run(strings.TrimSuffix(filename, ".caddyfiletest"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(string(data), "----------")
			if len(parts) != 2 {
				t.Fatalf("%s: want one line of ten dashes between the Caddyfile and the JSON, got %d parts", filename, len(parts))
			}
			caddyfile, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			expected = winNewlines.ReplaceAllString(expected, "\n")
			if !caddytest.CompareAdapt(t, filename, caddyfile, "caddyfile", expected) {
				t.Errorf("adapting %s did not give the expected JSON (diff on stdout)", filename)
			}
		})
	}
}

// minimalGlobal is a valid global b2s block, for cases that break something else.
const minimalGlobal = `{
	b2s {
		secret {env.B2S_SECRET}
		kafka {
			brokers 127.0.0.1:9092
		}
	}
}
`

func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		caddyfile string
		// want are substrings of the error: the directive or option it
		// names, what is wrong and where.
		want []string
	}{
		{
			name: "an unknown option in the b2s block is named with its line",
			caddyfile: `{
	b2s {
		secret {env.B2S_SECRET}
		cookie_path /
	}
}`,
			want: []string{"'b2s'", `unrecognized option "cookie_path"`, "Caddyfile:4"},
		},
		{
			name: "an argument after the b2s option is refused",
			caddyfile: `{
	b2s on {
		secret {env.B2S_SECRET}
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "'on'", "Caddyfile:2"},
		},
		{
			name: "a secret without a key says to give one",
			caddyfile: `{
	b2s {
		secret
	}
}`,
			want: []string{"secret needs at least one key", "Caddyfile:3"},
		},
		{
			name: "a cookie_name with two names is refused",
			caddyfile: `{
	b2s {
		cookie_name a b
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "Caddyfile:3"},
		},
		{
			name: "a cookie_max_age that is not a duration names the option and an example",
			caddyfile: `{
	b2s {
		cookie_max_age forever
	}
}`,
			want: []string{"cookie_max_age", `"forever"`, "400d", "Caddyfile:3"},
		},
		{
			name: "a cookie_refresh that is not a duration names the option",
			caddyfile: `{
	b2s {
		cookie_refresh daily
	}
}`,
			want: []string{"cookie_refresh", "daily", "is not a duration", "Caddyfile:3"},
		},
		{
			name: "a geoip option without a path is refused",
			caddyfile: `{
	b2s {
		geoip
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "Caddyfile:3"},
		},
		{
			name: "a geoip_asn option without a path is refused",
			caddyfile: `{
	b2s {
		geoip_asn
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "Caddyfile:3"},
		},
		{
			name: "a geoip_anonymous option with two paths is refused",
			caddyfile: `{
	b2s {
		geoip /var/lib/GeoIP/GeoLite2-City.mmdb
		geoip_anonymous /a.mmdb /b.mmdb
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "Caddyfile:4"},
		},
		{
			name: "an unknown kafka option is named with its line",
			caddyfile: `{
	b2s {
		kafka {
			brokers 127.0.0.1:9092
			acks all
		}
	}
}`,
			want: []string{"kafka", `unrecognized option "acks"`, "Caddyfile:5"},
		},
		{
			name: "an argument after kafka is refused",
			caddyfile: `{
	b2s {
		kafka 127.0.0.1:9092
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "Caddyfile:3"},
		},
		{
			name: "brokers without an address says what it needs",
			caddyfile: `{
	b2s {
		kafka {
			brokers
		}
	}
}`,
			want: []string{"kafka: brokers needs at least one host:port", "Caddyfile:4"},
		},
		{
			name: "a batch_size that is not a number names the option and the value",
			caddyfile: `{
	b2s {
		kafka {
			batch_size ten
		}
	}
}`,
			want: []string{"batch_size must be a positive number", `"ten"`, "Caddyfile:4"},
		},
		{
			name: "a batch_size of zero is refused",
			caddyfile: `{
	b2s {
		kafka {
			batch_size 0
		}
	}
}`,
			want: []string{"batch_size must be a positive number", `"0"`},
		},
		{
			name: "a queue_size from the in-memory queue is refused as unknown",
			caddyfile: `{
	b2s {
		kafka {
			queue_size 100000
		}
	}
}`,
			want: []string{"kafka", `unrecognized option "queue_size"`, "Caddyfile:4"},
		},
		{
			name: "an unknown sasl mechanism lists the known ones",
			caddyfile: `{
	b2s {
		kafka {
			brokers 127.0.0.1:9092
			sasl gssapi edge {env.KAFKA_PASSWORD}
		}
	}
}`,
			want: []string{"kafka", `unknown sasl mechanism "gssapi"`, "plain, scram-sha-256 or scram-sha-512", "Caddyfile:5"},
		},
		{
			name: "a sasl without a password says what it needs",
			caddyfile: `{
	b2s {
		kafka {
			sasl scram-sha-512 {env.KAFKA_USERNAME}
		}
	}
}`,
			want: []string{"kafka: sasl needs a mechanism, a username and a password", "sasl scram-sha-512 {env.KAFKA_USERNAME} {env.KAFKA_PASSWORD}", "Caddyfile:4"},
		},
		{
			name: "a sasl with a token too many does not quote the password",
			caddyfile: `{
	b2s {
		kafka {
			sasl plain edge hunter2 hunter3
		}
	}
}`,
			want: []string{"kafka: sasl needs a mechanism, a username and a password", "Caddyfile:4"},
		},
		{
			name: "a tls cert without a key says to add it",
			caddyfile: `{
	b2s {
		kafka {
			tls {
				cert /etc/b2s/client.pem
			}
		}
	}
}`,
			want: []string{"kafka: tls cert needs key", "Caddyfile:6"},
		},
		{
			name: "a tls key without a cert says to add it",
			caddyfile: `{
	b2s {
		kafka {
			tls {
				key /etc/b2s/client.key
			}
		}
	}
}`,
			want: []string{"kafka: tls key needs cert", "Caddyfile:6"},
		},
		{
			name: "an unknown tls option lists the known ones",
			caddyfile: `{
	b2s {
		kafka {
			tls {
				ca /etc/b2s/ca.pem
				verify off
			}
		}
	}
}`,
			want: []string{"kafka: tls", `unrecognized option "verify"`, "want ca, cert, key, server_name or insecure_skip_verify", "Caddyfile:6"},
		},
		{
			name: "an argument after tls is refused",
			caddyfile: `{
	b2s {
		kafka {
			tls on
		}
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "'on'", "Caddyfile:4"},
		},
		{
			name: "an argument after insecure_skip_verify is refused",
			caddyfile: `{
	b2s {
		kafka {
			tls {
				insecure_skip_verify true
			}
		}
	}
}`,
			want: []string{"wrong argument count", "Caddyfile:5"},
		},
		{
			name: "a tls ca without a file is refused",
			caddyfile: `{
	b2s {
		kafka {
			tls {
				ca
			}
		}
	}
}`,
			want: []string{"wrong argument count", "Caddyfile:5"},
		},
		{
			name: "a spool_max_size that is not a size names the option and an example",
			caddyfile: `{
	b2s {
		spool_max_size banana
	}
}`,
			want: []string{"b2s: spool_max_size", `"banana"`, "is not a size", "1GiB", "Caddyfile:3"},
		},
		{
			name: "a spool_max_size of zero is refused",
			caddyfile: `{
	b2s {
		spool_max_size 0
	}
}`,
			want: []string{"b2s: spool_max_size", `"0"`, "is not a size", "Caddyfile:3"},
		},
		{
			name: "a spool_max_size with two sizes is refused",
			caddyfile: `{
	b2s {
		spool_max_size 1GiB 2GiB
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "Caddyfile:3"},
		},
		{
			name: "a spool without a directory is refused",
			caddyfile: `{
	b2s {
		spool
	}
}`,
			want: []string{"'b2s'", "wrong argument count", "Caddyfile:3"},
		},
		{
			name: "an fsync that is neither a duration nor always nor never names the option",
			caddyfile: `{
	b2s {
		fsync sometimes
	}
}`,
			want: []string{`b2s: fsync "sometimes"`, "always or never", "fsync 1s", "Caddyfile:3"},
		},
		{
			name: "a negative fsync interval is refused",
			caddyfile: `{
	b2s {
		fsync -1s
	}
}`,
			want: []string{`b2s: fsync "-1s"`, "is not a positive duration", "Caddyfile:3"},
		},
		{
			name: "a flush_timeout that is not a duration names the option",
			caddyfile: `{
	b2s {
		kafka {
			flush_timeout soon
		}
	}
}`,
			want: []string{"kafka: flush_timeout", `"soon"`, "Caddyfile:4"},
		},
		{
			name: "a topic with two names is refused",
			caddyfile: `{
	b2s {
		kafka {
			topic a b
		}
	}
}`,
			want: []string{"wrong argument count", "Caddyfile:4"},
		},
		{
			name: "a second b2s block is refused and told to merge",
			caddyfile: `{
	b2s {
		secret {env.B2S_SECRET}
	}
	b2s {
		secret {env.B2S_OTHER}
	}
}`,
			want: []string{"'b2s'", "may appear only once", "merge"},
		},
		{
			name: "an unknown b2s_collect option lists the valid ones",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_collect {
		domain b2s.com
	}
}`,
			want: []string{"'b2s_collect'", `unrecognized option "domain"`, "beacon, script, cookie_domain, cookie_prefix, same_site or collect", "Caddyfile:12"},
		},
		{
			name: "an argument after b2s_collect is refused",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_collect everything
}`,
			want: []string{"'b2s_collect'", "wrong argument count", "'everything'", "Caddyfile:11"},
		},
		{
			name: "an argument after a b2s_collect matcher is refused",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_collect /shop/* everything
}`,
			want: []string{"'b2s_collect'", "wrong argument count", "'everything'"},
		},
		{
			name: "a beacon without a path is refused",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_collect {
		beacon
	}
}`,
			want: []string{"'b2s_collect'", "wrong argument count", "Caddyfile:12"},
		},
		{
			name: "a cookie_domain with two domains is refused",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_collect {
		cookie_domain a.com b.com
	}
}`,
			want: []string{"'b2s_collect'", "wrong argument count", "Caddyfile:12"},
		},
		{
			name: "an unknown network option lists the valid ones",
			caddyfile: `{
	b2s {
		network {
			domains b2s.com
		}
	}
}`,
			want: []string{`b2s: network: unrecognized option "domains"`, "want sites, link_path, token_param or token_ttl", "Caddyfile:4"},
		},
		{
			name: "a gpc value other than on or off is refused",
			caddyfile: `{
	b2s {
		privacy {
			gpc maybe
		}
	}
}`,
			want: []string{`b2s: privacy: gpc "maybe": want on or off`, "Caddyfile:4"},
		},
		{
			name: "truncate_ip with one number says to give two",
			caddyfile: `{
	b2s {
		privacy {
			truncate_ip 24
		}
	}
}`,
			want: []string{"b2s: privacy: truncate_ip takes no arguments or two", "truncate_ip 24 48"},
		},
		{
			name: "collect without off is refused with the form",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_collect {
		collect on
	}
}`,
			want: []string{"b2s_collect: collect takes off", "collect off [/kids/*...]"},
		},
		{
			name: "an unknown same_site value lists the valid ones",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_collect {
		same_site relaxed
	}
}`,
			want: []string{`b2s_collect: same_site "relaxed": want lax or none`, "Caddyfile:12"},
		},
		{
			name: "an unknown b2s_health option names the valid one",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_health /healthz {
		lag 1m
	}
}`,
			want: []string{"'b2s_health'", `unrecognized option "lag"`, "want max_lag", "Caddyfile:12"},
		},
		{
			name: "a b2s_health max_lag that is not a duration names the handler and the option",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_health /healthz {
		max_lag soon
	}
}`,
			want: []string{"b2s_health: max_lag", "soon", "use a duration such as 1m", "Caddyfile:12"},
		},
		{
			name: "a b2s_health max_lag without a value is refused",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_health /healthz {
		max_lag
	}
}`,
			want: []string{"'b2s_health'", "wrong argument count", "Caddyfile:12"},
		},
		{
			name: "an argument after a b2s_health matcher is refused",
			caddyfile: minimalGlobal + `
:8080 {
	b2s_health /healthz verbose
}`,
			want: []string{"'b2s_health'", "wrong argument count", "'verbose'", "Caddyfile:11"},
		},
		{
			name: "a client_limit other than off or a block is refused",
			caddyfile: `{
	b2s {
		client_limit on
	}
}`,
			want: []string{`b2s: client_limit: "on": want off`, "Caddyfile:3"},
		},
		{
			name: "a client_limit visitor without its burst says what it takes",
			caddyfile: `{
	b2s {
		client_limit {
			visitor 10
		}
	}
}`,
			want: []string{"b2s: client_limit: visitor takes the records per second and the burst", "Caddyfile:4"},
		},
		{
			name: "a client_limit rate that is not a number names it",
			caddyfile: `{
	b2s {
		client_limit {
			address lots 100
		}
	}
}`,
			want: []string{"b2s: client_limit: address lots 100", "as numbers", "Caddyfile:4"},
		},
		{
			name: "an unknown client_limit option lists the valid ones",
			caddyfile: `{
	b2s {
		client_limit {
			cookie 1 1
		}
	}
}`,
			want: []string{`b2s: client_limit: unrecognized option "cookie"; want visitor or address`, "Caddyfile:4"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tc.caddyfile), nil)
			if err == nil {
				t.Fatalf("adapting succeeded; want an error containing %q", tc.want)
			}
			if strings.Contains(err.Error(), "hunter") {
				t.Errorf("error %q quotes a password", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestDuplicateB2SBlockErrorHasPosition: every other Caddyfile error says
// where it is; this one says "at :0" because parseGlobal reports it
// before consuming a token (caddyfile_app.go, parseGlobal).
func TestDuplicateB2SBlockErrorHasPosition(t *testing.T) {
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`{
	b2s {
		secret {env.B2S_SECRET}
	}
	b2s {
		secret {env.B2S_OTHER}
	}
}`), nil)
	if err == nil {
		t.Fatal("adapting succeeded; want an error")
	}
	if !strings.Contains(err.Error(), "Caddyfile:5") {
		t.Errorf("error %q does not point at the second block, Caddyfile:5", err)
	}
}

// TestUnmarshalCaddyfile checks the Dispenser-level parsing that the
// golden files cannot show: defaults left unset for Provision, and options
// given more than once.
func TestUnmarshalCaddyfile(t *testing.T) {
	t.Run("brokers given on several lines are all kept", func(t *testing.T) {
		var a App
		d := caddyfile.NewTestDispenser(`b2s {
			kafka {
				brokers a:1 b:2
				brokers c:3
			}
		}`)
		if err := a.UnmarshalCaddyfile(d); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(a.Kafka.Brokers, " "), "a:1 b:2 c:3"; got != want {
			t.Errorf("brokers = %q, want %q", got, want)
		}
	})
	t.Run("a tls option alone turns TLS on with the system's roots", func(t *testing.T) {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s {\n\tkafka {\n\t\ttls\n\t}\n}")); err != nil {
			t.Fatal(err)
		}
		if a.Kafka == nil || a.Kafka.TLS == nil || *a.Kafka.TLS != (KafkaTLS{}) {
			t.Errorf("kafka = %+v, want TLS on with every tls option at its default", a.Kafka)
		}
	})
	t.Run("a sasl line keeps the mechanism as written and the placeholders unreplaced", func(t *testing.T) {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s {\n\tkafka {\n\t\tsasl SCRAM-SHA-256 {env.U} {env.P}\n\t}\n}")); err != nil {
			t.Fatal(err)
		}
		if got, want := *a.Kafka.SASL, (KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "{env.U}", Password: "{env.P}"}); got != want {
			t.Errorf("sasl = %+v, want %+v", got, want)
		}
	})
	t.Run("two secret lines keep both keys, the first line signing", func(t *testing.T) {
		var a App
		d := caddyfile.NewTestDispenser(`b2s {
			secret {env.B2S_SECRET_NEW}
			secret {env.B2S_SECRET_OLD}
		}`)
		if err := a.UnmarshalCaddyfile(d); err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(a.Secrets, " "), "{env.B2S_SECRET_NEW} {env.B2S_SECRET_OLD}"; got != want {
			t.Errorf("secrets = %q, want %q: a key rotation written as a second line must keep both keys, in order", got, want)
		}
	})
	t.Run("an empty b2s block leaves every option to its default", func(t *testing.T) {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`b2s`)); err != nil {
			t.Fatal(err)
		}
		if a.Secrets != nil || a.CookieName != "" || a.CookieMaxAge != 0 || a.CookieRefresh != 0 || a.GeoIP != "" || a.GeoIPASN != "" || a.GeoIPAnonymous != "" || a.GeoIPReload != nil ||
			a.Spool != "" || a.SpoolMaxSize != 0 || a.Fsync != "" || a.Kafka != nil {
			t.Errorf("app = %+v, want the zero value", a)
		}
	})
	for _, tc := range []struct {
		name, fsync string
	}{
		{"fsync always is kept as written", "always"},
		{"fsync never is kept as written", "never"},
		{"an fsync interval is kept as written", "250ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a App
			if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s {\n\tfsync " + tc.fsync + "\n}")); err != nil {
				t.Fatal(err)
			}
			if a.Fsync != tc.fsync {
				t.Errorf("fsync = %q, want %q", a.Fsync, tc.fsync)
			}
		})
	}
	for _, tc := range []struct {
		name, size string
		want       int64
	}{
		{"a spool_max_size in GiB is in bytes", "2GiB", 2 << 30},
		{"a spool_max_size in MB is in decimal bytes", "500MB", 500e6},
		{"a spool_max_size without a unit is in bytes", "1048576", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a App
			if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s {\n\tspool_max_size " + tc.size + "\n}")); err != nil {
				t.Fatal(err)
			}
			if a.SpoolMaxSize != tc.want {
				t.Errorf("spool_max_size %s = %d bytes, want %d", tc.size, a.SpoolMaxSize, tc.want)
			}
		})
	}
	t.Run("b2s_health reads max_lag", func(t *testing.T) {
		var h Health
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s_health {\n\tmax_lag 90s\n}")); err != nil {
			t.Fatal(err)
		}
		if h.MaxLag != caddy.Duration(90*time.Second) {
			t.Errorf("max_lag = %v, want 90s", time.Duration(h.MaxLag))
		}
	})
	t.Run("an empty b2s_health leaves max_lag to its default", func(t *testing.T) {
		var h Health
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("b2s_health")); err != nil {
			t.Fatal(err)
		}
		if h.MaxLag != 0 {
			t.Errorf("max_lag = %v, want 0 for Provision to default", time.Duration(h.MaxLag))
		}
	})
	t.Run("an empty b2s_collect keeps the defaults for Provision", func(t *testing.T) {
		var c Collect
		if err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`b2s_collect`)); err != nil {
			t.Fatal(err)
		}
		if c.Beacon != "" || c.CookieDomain != "" {
			t.Errorf("collect = %+v, want the zero value", c)
		}
	})
}
