package caddymodule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/b2scom/b2s-edge/logship"
)

// Two 48-byte keys, as `openssl rand -base64 36` would give.
const (
	testKey1 = "t1Gd0b2sEdgeTestKeyNumberOneXXXXXXXXXXXXXXXXXXXX"
	testKey2 = "t2Gd0b2sEdgeTestKeyNumberTwoYYYYYYYYYYYYYYYYYYYY"
)

// validateConfig provisions and validates a config holding the b2s app
// (b2sJSON, omitted when empty) and an HTTP server whose only route runs
// handlerJSON (omitted when empty), as `caddy validate` and a config load
// do, without starting anything.
func validateConfig(t *testing.T, b2sJSON, handlerJSON string) error {
	t.Helper()
	apps := caddy.ModuleMap{}
	if b2sJSON != "" {
		apps["b2s"] = json.RawMessage(b2sJSON)
	}
	if handlerJSON != "" {
		apps["http"] = json.RawMessage(`{"servers":{"load_test":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` +
			handlerJSON + `,{"handler":"static_response","body":"ok"}]}]}}}`)
	}
	for name, raw := range apps {
		if !json.Valid(raw) {
			t.Fatalf("test config of app %s is not JSON: %s", name, raw)
		}
	}
	return caddy.Validate(&caddy.Config{Admin: &caddy.AdminConfig{Disabled: true}, AppsRaw: apps})
}

// checkLoad loads b2sJSON and handlerJSON with validateConfig. With no
// want the config must load; otherwise loading must fail with an error
// that contains every want and quotes no password marked "-in-password".
func checkLoad(t *testing.T, b2sJSON, handlerJSON string, want []string) {
	t.Helper()
	err := validateConfig(t, b2sJSON, handlerJSON)
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("loading failed: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("loading succeeded; want an error containing %q", want)
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), "-in-password") {
		t.Errorf("error %q quotes a password", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	const unset = "B2S_TEST_UNSET_VARIABLE"
	if _, ok := os.LookupEnv(unset); ok {
		t.Fatalf("%s must not be set for this test", unset)
	}
	t.Setenv("B2S_TEST_SECRET", testKey1)
	t.Setenv("B2S_TEST_SHORT_SECRET", "short")
	t.Setenv("B2S_TEST_BROKERS", "127.0.0.1:9, 127.0.0.2:9")
	t.Setenv("B2S_TEST_SPOOL", t.TempDir())

	garbage := filepath.Join(t.TempDir(), "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("this is not a MaxMind database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	city := abs("testdata/geoip/GeoIP2-City-Test.mmdb")
	asn := abs("testdata/geoip/GeoLite2-ASN-Test.mmdb")
	corrupt := abs("testdata/geoip/GeoIP2-City-Test-Invalid-Node-Count.mmdb")
	missing := abs("testdata/geoip/does-not-exist.mmdb")
	_, anon := writeEdgeGeoIP(t, t.TempDir())

	// A spool directory that cannot be created: its parent is a file.
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("a file, not a directory\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	underFile := filepath.Join(notADir, "spool")
	// A spool directory another process holds: flock(2) locks belong to
	// an open file, so a second open in this process is refused as one in
	// another process would be.
	locked := t.TempDir()
	held, err := logship.OpenSpool(logship.SpoolConfig{Dir: locked, Fsync: logship.FsyncNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close() })

	// app builds a b2s app config: a valid one with options replaced or
	// added (nil deletes a key).
	app := func(opts map[string]any) string {
		m := map[string]any{
			"secrets": []string{testKey1},
			"spool":   t.TempDir(),
			"kafka":   map[string]any{"brokers": []string{"127.0.0.1:9"}},
		}
		for k, v := range opts {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	kafka := func(opts map[string]any) map[string]any {
		k := map[string]any{"brokers": []string{"127.0.0.1:9"}}
		for key, v := range opts {
			if v == nil {
				delete(k, key)
			} else {
				k[key] = v
			}
		}
		return k
	}
	const collect = `{"handler":"b2s_collect"}`

	pki := writePKI(t)
	missingPEM := missingFile(t)
	t.Setenv("B2S_TEST_KAFKA_PASSWORD", "a password")
	t.Setenv("B2S_TEST_KAFKA_CA", pki.ca)
	tlsOpts := func(opts map[string]any) map[string]any {
		m := map[string]any{"ca": pki.ca, "cert": pki.cert, "key": pki.key}
		for k, v := range opts {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	sasl := func(mechanism, username, password string) map[string]any {
		return map[string]any{"mechanism": mechanism, "username": username, "password": password}
	}

	for _, tc := range []struct {
		name    string
		b2s     string
		handler string
		// want are substrings of the error; none means the config loads.
		want []string
	}{
		{
			name:    "a complete configuration loads",
			b2s:     app(map[string]any{"secrets": []string{"{env.B2S_TEST_SECRET}", testKey2}, "geoip": city, "geoip_asn": asn, "geoip_anonymous": anon, "geoip_reload": "5m", "cookie_name": "vid", "cookie_max_age": "400d", "cookie_refresh": "12h", "spool": "{env.B2S_TEST_SPOOL}", "spool_max_size": 64 << 20, "fsync": "always", "kafka": kafka(map[string]any{"brokers": []string{"{env.B2S_TEST_BROKERS}"}, "topic": "web.events", "compression": "zstd", "batch_size": 10, "batch_timeout": "5ms", "write_timeout": "1s", "flush_timeout": "1s"})}),
			handler: `{"handler":"b2s_collect","beacon":"/t.gif","cookie_domain":".B2S.com"}`,
		},
		{
			name: "an older key whose placeholder resolves to nothing is skipped (no rotation under way)",
			b2s:  app(map[string]any{"secrets": []string{testKey1, "{env." + unset + "}"}}),
		},
		{
			name: "a geoip placeholder that resolves to nothing turns GeoIP off",
			b2s:  app(map[string]any{"geoip": "{env." + unset + "}"}),
		},
		{
			name: "geoip_asn and geoip_anonymous placeholders that resolve to nothing turn them off",
			b2s:  app(map[string]any{"geoip_asn": "{env." + unset + "}", "geoip_anonymous": "{env." + unset + "}"}),
		},
		{
			name: "geoip_asn and geoip_anonymous load without geoip",
			b2s:  app(map[string]any{"geoip_asn": asn, "geoip_anonymous": anon}),
		},
		{
			name: "a missing secret says how to make one",
			b2s:  app(map[string]any{"secrets": nil}),
			want: []string{"b2s: secret: missing", "32 or more bytes", "openssl rand"},
		},
		{
			name: "a secret shorter than 32 bytes gives its length and how to make one",
			b2s:  app(map[string]any{"secrets": []string{"0123456789abcdef0123456789abcde"}}),
			want: []string{"b2s: secret 1 is 31 bytes", "minimum of 32", "openssl rand"},
		},
		{
			name: "a short older key is named by its position",
			b2s:  app(map[string]any{"secrets": []string{testKey1, "tooshort"}}),
			want: []string{"b2s: secret 2 is 8 bytes", "openssl rand"},
		},
		{
			name: "a secret placeholder of a short variable is measured after replacement",
			b2s:  app(map[string]any{"secrets": []string{"{env.B2S_TEST_SHORT_SECRET}"}}),
			want: []string{"b2s: secret 1 is 5 bytes"},
		},
		{
			name: "a secret placeholder of an unset variable names the placeholder",
			b2s:  app(map[string]any{"secrets": []string{"{env." + unset + "}"}}),
			want: []string{"b2s: secret 1", "{env." + unset + "}", "empty after placeholders were replaced", "set the environment variable"},
		},
		{
			name: "a geoip path that does not exist names the path and the fix",
			b2s:  app(map[string]any{"geoip": missing}),
			want: []string{"b2s: geoip", missing, "point the geoip option at a readable MaxMind City or Country .mmdb file"},
		},
		{
			name: "a bots file that is not a bot list names the option, the path and the fix",
			b2s:  app(map[string]any{"bots": garbage}),
			want: []string{"b2s: bots", garbage, "not a JSON array", "point the bots option at a bot list"},
		},
		{
			name: "a bots path that does not exist names the option and the path",
			b2s:  app(map[string]any{"bots": missing}),
			want: []string{"b2s: bots", missing},
		},
		{
			name: "a bots placeholder that resolves to nothing means the built-in list",
			b2s:  app(map[string]any{"bots": "{env." + unset + "}"}),
		},
		{
			name: "a geoip file that is not a MaxMind database names the path and the fix",
			b2s:  app(map[string]any{"geoip": garbage}),
			want: []string{"b2s: geoip", garbage, "point the geoip option at a readable MaxMind"},
		},
		{
			name: "a corrupt MaxMind database is refused at load",
			b2s:  app(map[string]any{"geoip": corrupt}),
			want: []string{"b2s: geoip", corrupt, "point the geoip option"},
		},
		{
			name: "an ASN database is refused as the wrong type",
			b2s:  app(map[string]any{"geoip": asn}),
			want: []string{"b2s: geoip", "GeoLite2-ASN", "not a City or Country database"},
		},
		{
			name: "a geoip_asn path that does not exist names the option, the path and the fix",
			b2s:  app(map[string]any{"geoip": city, "geoip_asn": missing}),
			want: []string{"b2s: geoip_asn", missing, "point the geoip_asn option at a readable MaxMind ASN .mmdb file (GeoLite2-ASN or GeoIP2-ISP), or remove it"},
		},
		{
			name: "a City database given as geoip_asn is refused as the wrong type",
			b2s:  app(map[string]any{"geoip": city, "geoip_asn": city}),
			want: []string{"b2s: geoip_asn", city, `of type "GeoIP2-City", not an ASN database`, "point the geoip_asn option"},
		},
		{
			name: "a corrupt database given as geoip_asn is refused at load",
			b2s:  app(map[string]any{"geoip_asn": corrupt}),
			want: []string{"b2s: geoip_asn", corrupt, "point the geoip_asn option"},
		},
		{
			name: "a geoip_anonymous path that does not exist names the option, the path and the fix",
			b2s:  app(map[string]any{"geoip_anonymous": missing}),
			want: []string{"b2s: geoip_anonymous", missing, "point the geoip_anonymous option at a readable MaxMind Anonymous IP .mmdb file (GeoIP2-Anonymous-IP), or remove it"},
		},
		{
			name: "an ASN database given as geoip_anonymous is refused as the wrong type",
			b2s:  app(map[string]any{"geoip_asn": asn, "geoip_anonymous": asn}),
			want: []string{"b2s: geoip_anonymous", `of type "GeoLite2-ASN", not an Anonymous IP database`},
		},
		{
			name: "a geoip_anonymous file that is not a MaxMind database is refused",
			b2s:  app(map[string]any{"geoip_anonymous": garbage}),
			want: []string{"b2s: geoip_anonymous", garbage, "point the geoip_anonymous option"},
		},
		{
			name: "an Anonymous IP database given as geoip is refused as the wrong type",
			b2s:  app(map[string]any{"geoip": anon}),
			want: []string{"b2s: geoip", `of type "GeoIP2-Anonymous-IP", not a City or Country database`},
		},
		{
			name: "a missing kafka block says to add one",
			b2s:  app(map[string]any{"kafka": nil}),
			want: []string{"b2s: kafka: missing", "add a kafka block with brokers"},
		},
		{
			name: "a kafka block without brokers is refused",
			b2s:  app(map[string]any{"kafka": map[string]any{"topic": "b2s.events"}}),
			want: []string{"b2s: kafka", "no brokers"},
		},
		{
			name: "a brokers placeholder that resolves to nothing is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"brokers": []string{"{env." + unset + "}"}})}),
			want: []string{"b2s: kafka", "no brokers"},
		},
		{
			name: "a broker address without a port is named",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"brokers": []string{"127.0.0.1:9", "kafka.internal"}})}),
			want: []string{"b2s: kafka", `broker address "kafka.internal" is not host:port`},
		},
		{
			name: "a topic with a space is named with Kafka's rule",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"topic": "b2s events"})}),
			want: []string{"b2s: kafka", `topic "b2s events" is not a valid Kafka topic name`, "[a-zA-Z0-9._-]"},
		},
		{
			name: "a topic longer than 249 characters is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"topic": strings.Repeat("t", 250)})}),
			want: []string{"b2s: kafka", "is not a valid Kafka topic name"},
		},
		{
			name: "an unknown compression lists the known codecs",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"compression": "brotli"})}),
			want: []string{"b2s: kafka", `unknown compression "brotli"`, "none, gzip, snappy, lz4 or zstd"},
		},
		{
			name: "tls with a CA, a client certificate and SCRAM from the environment loads",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"ca": "{env.B2S_TEST_KAFKA_CA}", "server_name": "kafka.internal"}), "sasl": sasl("SCRAM-SHA-512", "edge", "{env.B2S_TEST_KAFKA_PASSWORD}")})}),
		},
		{
			name: "an empty tls block (the system's roots) with sasl plain loads",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": map[string]any{}, "sasl": sasl("plain", "edge", "{env.B2S_TEST_KAFKA_PASSWORD}")})}),
		},
		{
			name: "a missing tls ca file names the option and the file",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"ca": missingPEM})})}),
			want: []string{"b2s: kafka: tls ca", missingPEM, "no such file or directory", "point ca at a readable PEM file"},
		},
		{
			name: "a tls ca file that is not PEM names the option and the file",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"ca": pki.garbage})})}),
			want: []string{"b2s: kafka: tls ca", pki.garbage, "no PEM certificate in the file", "CA certificates that sign the brokers' certificates"},
		},
		{
			name: "a tls ca file holding a private key is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"ca": pki.keyAsCA})})}),
			want: []string{"b2s: kafka: tls ca", pki.keyAsCA, "PRIVATE KEY PEM block where only certificates belong"},
		},
		{
			name: "a tls cert file that is not PEM names the option and the file",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"cert": pki.garbage})})}),
			want: []string{"b2s: kafka: tls cert", pki.garbage, "no PEM certificate", "client certificate"},
		},
		{
			name: "a missing tls key file names the option and the file",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"key": missingPEM})})}),
			want: []string{"b2s: kafka: tls key", missingPEM, "no such file or directory"},
		},
		{
			name: "a tls key that is not the certificate's names both files",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"key": pki.otherKey})})}),
			want: []string{"b2s: kafka: tls key", pki.otherKey, "private key does not match public key", pki.cert},
		},
		{
			name: "a tls cert without a key is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"key": nil})})}),
			want: []string{"b2s: kafka: tls cert needs key"},
		},
		{
			name: "a tls key without a cert is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"cert": nil})})}),
			want: []string{"b2s: kafka: tls key needs cert"},
		},
		{
			name: "a tls ca placeholder that resolves to nothing names the option and the variable",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": tlsOpts(map[string]any{"ca": "{env." + unset + "}"})})}),
			want: []string{"b2s: kafka: tls ca", "{env." + unset + "}", "empty after placeholders were replaced", "set the environment variable " + unset},
		},
		{
			name: "an unknown tls option is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"tls": map[string]any{"verify": false}})}),
			want: []string{`unknown field "verify"`},
		},
		{
			name: "an unknown sasl mechanism lists the known ones",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"sasl": sasl("gssapi", "edge", "p")})}),
			want: []string{"b2s: kafka", `unknown sasl mechanism "gssapi"`, "plain, scram-sha-256 or scram-sha-512"},
		},
		{
			name: "a sasl password placeholder that resolves to nothing names the option and the variable",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"sasl": sasl("scram-sha-256", "edge", "{env."+unset+"}")})}),
			want: []string{"b2s: kafka: sasl password", "{env." + unset + "}", "empty after placeholders were replaced", "set the environment variable " + unset},
		},
		{
			name: "a sasl username placeholder that resolves to nothing names the option and the variable",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"sasl": sasl("plain", "{env."+unset+"}", "p")})}),
			want: []string{"b2s: kafka: sasl username", "set the environment variable " + unset},
		},
		{
			name: "a sasl password from a file that does not exist names the option and the file",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"sasl": sasl("plain", "edge", "{file."+missingPEM+"}")})}),
			want: []string{"b2s: kafka: sasl password", "put the value in the file " + missingPEM},
		},
		{
			name: "a sasl without a password is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"sasl": map[string]any{"mechanism": "plain", "username": "edge"}})}),
			want: []string{"b2s: kafka: sasl password is empty"},
		},
		{
			name: "a SCRAM password SASLprep refuses is refused without being quoted",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"sasl": sasl("scram-sha-256", "edge", "bell\u0007-in-password")})}),
			want: []string{"b2s: kafka: sasl scram-sha-256", "not valid SASLprep text"},
		},
		{
			name: "a cookie_name with a space is refused with the allowed characters",
			b2s:  app(map[string]any{"cookie_name": "b2s id"}),
			want: []string{`b2s: cookie_name "b2s id" is not a valid cookie name`, "letters, digits"},
		},
		{
			name: "a cookie_name with a separator is refused",
			b2s:  app(map[string]any{"cookie_name": "b2s;id"}),
			want: []string{"cookie_name", "not a valid cookie name"},
		},
		{
			name: "a negative cookie_max_age is refused with an example",
			b2s:  app(map[string]any{"cookie_max_age": "-1h"}),
			want: []string{"b2s: cookie_max_age must be positive", "400d"},
		},
		{
			name: "a negative cookie_refresh is refused",
			b2s:  app(map[string]any{"cookie_refresh": "-1h"}),
			want: []string{"b2s: cookie_refresh must be positive"},
		},
		{
			name: "a cookie_refresh longer than cookie_max_age is refused",
			b2s:  app(map[string]any{"cookie_max_age": "1h", "cookie_refresh": "2h"}),
			want: []string{"cookie_refresh", "no longer than cookie_max_age"},
		},
		{
			name: "a negative batch_size is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"batch_size": -1})}),
			want: []string{"b2s: kafka", "must not be negative"},
		},
		{
			name: "a queue_size left from the in-memory queue is refused as unknown",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"queue_size": 100})}),
			want: []string{`unknown field "queue_size"`},
		},
		{
			name: "fsync never loads",
			b2s:  app(map[string]any{"fsync": "never"}),
		},
		{
			name: "an fsync interval loads",
			b2s:  app(map[string]any{"fsync": "250ms"}),
		},
		{
			name: "a spool placeholder that resolves to nothing uses the default directory",
			b2s:  app(map[string]any{"spool": "{env." + unset + "}"}),
		},
		{
			name: "a spool_max_size below 1MiB names the option and the minimum",
			b2s:  app(map[string]any{"spool_max_size": 1<<20 - 1}),
			want: []string{"b2s: spool_max_size", "1048575", "minimum of 1MiB"},
		},
		{
			name: "a negative spool_max_size is refused",
			b2s:  app(map[string]any{"spool_max_size": -1}),
			want: []string{"b2s: spool_max_size -1", "minimum of 1MiB"},
		},
		{
			name: "a spool directory that cannot be created names the spool option and the file in the way",
			b2s:  app(map[string]any{"spool": underFile}),
			want: []string{"b2s: spool", "creating spool directory", notADir, "not a directory", "point the spool option at a directory"},
		},
		{
			name: "a spool directory another process holds names the spool option and the directory",
			b2s:  app(map[string]any{"spool": locked}),
			want: []string{"b2s: spool", locked, "in use by another process", "point the spool option at a directory this process alone can write"},
		},
		{
			name: "an fsync that is neither a duration nor always nor never names the option",
			b2s:  app(map[string]any{"fsync": "sometimes"}),
			want: []string{`b2s: fsync "sometimes"`, "always or never", "fsync 1s"},
		},
		{
			name: "an fsync of zero is refused: always is the way to sync every record",
			b2s:  app(map[string]any{"fsync": "0s"}),
			want: []string{`b2s: fsync "0s"`, "positive duration"},
		},
		{
			name: "a negative batch_timeout is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"batch_timeout": "-1ms"})}),
			want: []string{"b2s: kafka", "timeouts must not be negative"},
		},
		{
			name: "a negative write_timeout is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"write_timeout": "-1s"})}),
			want: []string{"b2s: kafka", "timeouts must not be negative"},
		},
		{
			name: "a negative flush_timeout is refused",
			b2s:  app(map[string]any{"kafka": kafka(map[string]any{"flush_timeout": "-1s"})}),
			want: []string{"b2s: kafka", "timeouts must not be negative"},
		},
		{
			name:    "b2s_health with a max_lag loads",
			b2s:     app(nil),
			handler: `{"handler":"b2s_health","max_lag":"30s"}`,
		},
		{
			name:    "a negative b2s_health max_lag is refused with an example",
			b2s:     app(nil),
			handler: `{"handler":"b2s_health","max_lag":"-1s"}`,
			want:    []string{"b2s_health: max_lag must be positive", "max_lag 1m"},
		},
		{
			name:    "b2s_collect without the global b2s block says to add it",
			handler: collect,
			want:    []string{"b2s_collect", "global b2s options are missing", "add a b2s block with a secret and a kafka block"},
		},
		{
			name:    "b2s_health without the global b2s block says to add it",
			handler: `{"handler":"b2s_health"}`,
			want:    []string{"b2s_health", "global b2s options are missing"},
		},
		{
			name:    "b2s_collect with a broken b2s app reports the app's error",
			b2s:     app(map[string]any{"secrets": nil}),
			handler: collect,
			want:    []string{"b2s: secret: missing"},
		},
		{
			name:    "a beacon path without a leading slash is refused",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","beacon":"b.gif"}`,
			want:    []string{`b2s_collect: beacon path "b.gif" must start with /`},
		},
		{
			name:    "a script path without a leading slash is refused",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","script":"b.js"}`,
			want:    []string{`b2s_collect: script path "b.js" must start with / and differ from the beacon path "/b.gif"`},
		},
		{
			name:    "a script path equal to the beacon path is refused",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","beacon":"/t","script":"/t"}`,
			want:    []string{`b2s_collect: script path "/t" must start with / and differ from the beacon path "/t"`},
		},
		{
			name:    "a cookie_domain with a wildcard is refused with an example",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","cookie_domain":"*.b2s.com"}`,
			want:    []string{`b2s_collect: cookie_domain "*.b2s.com" is not a domain name`, "e.g. b2s.com"},
		},
		{
			name:    "a cookie_domain with a port is refused",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","cookie_domain":"b2s.com:443"}`,
			want:    []string{"cookie_domain", "is not a domain name"},
		},
		{
			name:    "a cookie_domain with an empty label is refused",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","cookie_domain":"b2s..com"}`,
			want:    []string{"cookie_domain", "is not a domain name"},
		},
		{
			name:    "a network with privacy options and a child-directed path loads",
			b2s:     app(map[string]any{"network": map[string]any{"sites": []string{"b2s.com", "B2Smade.com"}, "token_ttl": "15s"}, "privacy": map[string]any{"truncate_ip": true, "gpc": false}}),
			handler: `{"handler":"b2s_collect","same_site":"none","collect_off":true,"collect_off_paths":["/kids/*"]}`,
		},
		{
			name: "a network without sites says what to list",
			b2s:  app(map[string]any{"network": map[string]any{}}),
			want: []string{"b2s: network: sites is empty", "sites b2s.com b2smade.com"},
		},
		{
			name: "a public suffix as a network site is refused",
			b2s:  app(map[string]any{"network": map[string]any{"sites": []string{"com.cn"}}}),
			want: []string{`b2s: network: site "com.cn" is a public suffix`, "the network's own domains"},
		},
		{
			name: "a network site that is not a host name is refused",
			b2s:  app(map[string]any{"network": map[string]any{"sites": []string{"https://b2s.com"}}}),
			want: []string{`b2s: network: site "https://b2s.com" is not a host name`},
		},
		{
			name: "a token lifetime over 10 minutes is refused",
			b2s:  app(map[string]any{"network": map[string]any{"sites": []string{"b2s.com"}, "token_ttl": "1h"}}),
			want: []string{"b2s: network: token_ttl", "at most 10m"},
		},
		{
			name: "a link path that is also a privacy path is refused",
			b2s:  app(map[string]any{"network": map[string]any{"sites": []string{"b2s.com"}, "link_path": "/_b2s/optout"}}),
			want: []string{"b2s: network: link_path", "also a privacy path"},
		},
		{
			name: "opt-out and opt-in on one path are refused",
			b2s:  app(map[string]any{"privacy": map[string]any{"optout_path": "/p", "optin_path": "/p"}}),
			want: []string{"b2s: privacy: optout_path and optin_path are both", "different paths"},
		},
		{
			name: "truncation prefixes out of range are refused",
			b2s:  app(map[string]any{"privacy": map[string]any{"truncate_ip": true, "ipv4_prefix": 33}}),
			want: []string{"b2s: privacy: truncate_ip", "0-32"},
		},
		{
			name: "a client limit of more than a million records a second is refused",
			b2s:  app(map[string]any{"client_limit": map[string]any{"address_rate": 2e6}}),
			want: []string{"b2s: client_limit: address 2e+06 0", "0.001 to 1000000 records per second"},
		},
		{
			name: "a child header that is not a header name is refused",
			b2s:  app(map[string]any{"privacy": map[string]any{"child_header": "X B2S"}}),
			want: []string{"b2s: privacy:", "is not a header name"},
		},
		{
			name:    "cookie_domain network without a network says what to add",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","cookie_domain":"network"}`,
			want:    []string{"b2s_collect: cookie_domain network needs the network's sites", "add a network block with sites"},
		},
		{
			name:    "an unknown same_site is refused",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","same_site":"sometimes"}`,
			want:    []string{`b2s_collect: same_site "sometimes" is not lax or none`},
		},
		{
			name:    "collect_off_paths without collect_off is refused",
			b2s:     app(nil),
			handler: `{"handler":"b2s_collect","collect_off_paths":["/kids/*"]}`,
			want:    []string{"b2s_collect: collect_off_paths given without collect_off", "collect off <paths...>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { checkLoad(t, tc.b2s, tc.handler, tc.want) })
	}
}

// TestProvisionDefaults checks what Provision fills in when options are
// left out, through a config load.
func TestProvisionDefaults(t *testing.T) {
	ctx, err := caddy.ProvisionContext(&caddy.Config{
		Admin: &caddy.AdminConfig{Disabled: true},
		AppsRaw: caddy.ModuleMap{
			"b2s": json.RawMessage(`{"secrets":["` + testKey1 + `"],"kafka":{"brokers":["127.0.0.1:9"]}}`),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := ctx.App("b2s")
	if err != nil {
		t.Fatal(err)
	}
	a := v.(*App)
	t.Cleanup(func() { _ = a.Cleanup() })
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"the cookie name defaults to b2sid", a.CookieName, "b2sid"},
		{"the cookie lives 400 days", a.CookieMaxAge, caddy.Duration(400 * 24 * 60 * 60 * 1e9)},
		{"the cookie is refreshed daily", a.CookieRefresh, caddy.Duration(24 * 60 * 60 * 1e9)},
		{"GeoIP is off", a.geo == nil, true},
		{"the ASN database is off", a.asn == nil, true},
		{"the Anonymous IP database is off", a.anon == nil, true},
		{"a shipper is running", a.sink != nil && a.sink.ship != nil, true},
		{"the spool is b2s/spool in Caddy's data directory, here the test's XDG_DATA_HOME", a.sink.spool.Dir(), filepath.Join(testDataHome, "caddy", "b2s", "spool")},
		{"the spool holds at most 1GiB", a.SpoolMaxSize, int64(1 << 30)},
		{"the spool open holds at most 1GiB", a.sink.spool.MaxSize(), int64(1 << 30)},
		{"fsync defaults to 1s", a.Fsync, "1s"},
		{"the spool is synced every second", a.sink.spool.Fsync(), time.Second},
		{"the topic is b2s.events", a.sink.ship.Config().Topic, "b2s.events"},
		{"records are compressed with snappy", a.sink.ship.Config().Compression, "snappy"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestShortCookieMaxAgeLoads: cookie_refresh defaults to 24h, so a
// cookie_max_age under a day is refused although the user set no
// cookie_refresh (app.go, Provision and Validate).
func TestShortCookieMaxAgeLoads(t *testing.T) {
	err := validateConfig(t, `{"secrets":["`+testKey1+`"],"cookie_max_age":"12h","kafka":{"brokers":["127.0.0.1:9"]}}`, "")
	if err != nil {
		t.Errorf("a cookie_max_age of 12h without cookie_refresh fails with %q", err)
	}
}
