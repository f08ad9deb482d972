package caddymodule

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/b2scom/b2s-edge/internal/testpki"
)

// secureConfig is a site whose b2s app logs in to Kafka; __SECURITY__
// is the tls and sasl options.
var secureConfig = edgeConfig{
	global: "auto_https off",
	kafka: `flush_timeout 2s
			__SECURITY__`,
	sites: `http://localhost:__HTTP__ {
	b2s_collect
	respond "page"
}
`,
}

// TestBeaconReachesKafkaThatRequiresALogin loads Caddyfiles whose
// credentials come from environment variables into the in-process Caddy,
// and reads a beacon's record back with franz-go logged in the same way.
func TestBeaconReachesKafkaThatRequiresALogin(t *testing.T) {
	const user, pass = "b2s-edge", "kafka password from the environment"
	t.Setenv("B2S_TEST_KAFKA_USERNAME", user)
	t.Setenv("B2S_TEST_KAFKA_PASSWORD", pass)

	pki := t.TempDir()
	brokerCA, clientCA := testpki.NewCA(t, "broker CA"), testpki.NewCA(t, "client CA")
	client := clientCA.Issue(t, "b2s-edge")
	caFile := testpki.WriteFile(t, pki, "ca.pem", brokerCA.PEM)
	t.Setenv("B2S_TEST_KAFKA_CERT", testpki.WriteFile(t, pki, "client.pem", client.CertPEM))
	// Not client.key: caddytest rewrites every /name.key (and /name.crt)
	// in a config it loads into a path of its own.
	keyFile := testpki.WriteFile(t, pki, "client-key.pem", client.KeyPEM)

	for _, tc := range []struct {
		name     string
		topic    string
		broker   []kfake.Opt
		security string
		reader   []kgo.Opt
	}{
		{
			name:     "SASL PLAIN",
			topic:    "b2s.sasl-plain",
			broker:   []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("PLAIN", user, pass)},
			security: "sasl plain {env.B2S_TEST_KAFKA_USERNAME} {env.B2S_TEST_KAFKA_PASSWORD}",
			reader:   []kgo.Opt{kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism())},
		},
		{
			name:  "SCRAM-SHA-256 over mutual TLS",
			topic: "b2s.sasl-ssl",
			broker: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", user, pass), kfake.TLS(&tls.Config{
				Certificates: []tls.Certificate{brokerCA.Issue(t, "kafka", "127.0.0.1").TLS},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    clientCA.Pool(),
			})},
			security: fmt.Sprintf("tls {\n\t\t\t\tca %s\n\t\t\t\tcert {env.B2S_TEST_KAFKA_CERT}\n\t\t\t\tkey %s\n\t\t\t}\n\t\t\t", caFile, keyFile) +
				"sasl scram-sha-256 {env.B2S_TEST_KAFKA_USERNAME} {env.B2S_TEST_KAFKA_PASSWORD}",
			reader: []kgo.Opt{
				kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()),
				kgo.DialTLSConfig(&tls.Config{RootCAs: brokerCA.Pool(), Certificates: []tls.Certificate{client.TLS}}),
			},
		},
	} {
		t.Run(tc.name+": a beacon's record arrives", func(t *testing.T) {
			brokers := startKafka(t, tc.topic, tc.broker...)
			e := loadEdge(t, secureConfig, brokers, tc.topic, "__SECURITY__", tc.security)

			cl, err := kgo.NewClient(append([]kgo.Opt{
				kgo.SeedBrokers(brokers...),
				kgo.ConsumeTopics(tc.topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			}, tc.reader...)...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			reader := &recordReader{cl: cl}

			probe := fmt.Sprintf("login-%d", time.Now().UnixNano())
			resp := doRequest(t, e.client, newRequest(t, http.MethodGet, e.base+"/b.gif?e=login&probe="+probe, nil))
			if resp.status != http.StatusOK {
				t.Fatalf("beacon: status %d, want 200", resp.status)
			}
			if c := reader.find(t, probe); c.rec.Kind != "beacon" || c.rec.Event != "login" {
				t.Errorf("record of the beacon: kind %q, event %q; want beacon, login", c.rec.Kind, c.rec.Event)
			}

			// The password stays in the environment: the config Caddy
			// saved holds the placeholder.
			saved, err := os.ReadFile(caddy.ConfigAutosavePath)
			if err != nil {
				t.Fatalf("reading the autosaved config: %v", err)
			}
			if strings.Contains(string(saved), pass) || !strings.Contains(string(saved), "{env.B2S_TEST_KAFKA_PASSWORD}") {
				t.Errorf("the autosaved config %s holds the password, or not its placeholder:\n%s", caddy.ConfigAutosavePath, saved)
			}
		})
	}
}

// TestReloadSwitchesProducerWhenTLSOrSASLChange: a reload puts a new
// producer in force when, and only when, what the tls and sasl options
// resolve to changed: a file's contents, an environment variable, any
// option.
func TestReloadSwitchesProducerWhenTLSOrSASLChange(t *testing.T) {
	broker := deadBroker(t)
	pki := t.TempDir()
	ca1, ca2 := testpki.NewCA(t, "CA one"), testpki.NewCA(t, "CA two")
	leaf := ca1.Issue(t, "b2s-edge")
	caFile := testpki.WriteFile(t, pki, "ca.pem", ca1.PEM)
	certFile := testpki.WriteFile(t, pki, "client.pem", leaf.CertPEM)
	keyFile := testpki.WriteFile(t, pki, "client.key", leaf.KeyPEM)

	base := func() *KafkaConfig {
		return &KafkaConfig{
			Brokers: []string{broker},
			Topic:   "pool.security",
			TLS:     &KafkaTLS{CA: caFile, Cert: certFile, Key: keyFile},
			SASL:    &KafkaSASL{Mechanism: "scram-sha-512", Username: "edge", Password: "{env.B2S_TEST_RELOAD_PASSWORD}"},
		}
	}
	for _, tc := range []struct {
		scenario string
		// change alters the second config, or what it refers to, before
		// it is loaded.
		change   func(t *testing.T, k *KafkaConfig)
		switches bool
	}{
		{"a reload with the same options and files keeps the producer", func(*testing.T, *KafkaConfig) {}, false},
		{"the mechanism written in another case keeps the producer", func(_ *testing.T, k *KafkaConfig) { k.SASL.Mechanism = "SCRAM-SHA-512" }, false},
		{"a new password in the environment switches", func(t *testing.T, _ *KafkaConfig) { t.Setenv("B2S_TEST_RELOAD_PASSWORD", "pass-2") }, true},
		{"a new username switches", func(_ *testing.T, k *KafkaConfig) { k.SASL.Username = "edge-2" }, true},
		{"another mechanism switches", func(_ *testing.T, k *KafkaConfig) { k.SASL.Mechanism = "scram-sha-256" }, true},
		{"no sasl switches", func(_ *testing.T, k *KafkaConfig) { k.SASL = nil }, true},
		{"a CA file replaced at the same path switches", func(t *testing.T, _ *KafkaConfig) { testpki.WriteFile(t, pki, "ca.pem", ca2.PEM) }, true},
		{"a renewed client certificate at the same paths switches", func(t *testing.T, _ *KafkaConfig) {
			renewed := ca1.Issue(t, "b2s-edge")
			testpki.WriteFile(t, pki, "client.pem", renewed.CertPEM)
			testpki.WriteFile(t, pki, "client.key", renewed.KeyPEM)
		}, true},
		{"a server_name switches", func(_ *testing.T, k *KafkaConfig) { k.TLS.ServerName = "kafka.internal" }, true},
		{"insecure_skip_verify switches", func(_ *testing.T, k *KafkaConfig) { k.TLS.InsecureSkipVerify = true }, true},
		{"the system roots instead of a CA file switch", func(_ *testing.T, k *KafkaConfig) { k.TLS.CA = "" }, true},
		{"no tls switches", func(_ *testing.T, k *KafkaConfig) { k.TLS = nil }, true},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Setenv("B2S_TEST_RELOAD_PASSWORD", "pass-1")
			testpki.WriteFile(t, pki, "ca.pem", ca1.PEM)
			testpki.WriteFile(t, pki, "client.pem", leaf.CertPEM)
			testpki.WriteFile(t, pki, "client.key", leaf.KeyPEM)
			dir := t.TempDir()
			first := provisionApp(t, &App{Secrets: []string{testKey1}, Spool: dir, Kafka: base()})
			if err := first.Start(); err != nil {
				t.Fatal(err)
			}
			before := first.sink.ship.Config()

			k := base()
			tc.change(t, k)
			second := provisionApp(t, &App{Secrets: []string{testKey1}, Spool: dir, Kafka: k})
			if second.sink != first.sink {
				t.Fatal("the two configs do not share the sink")
			}
			if err := second.Start(); err != nil {
				t.Fatal(err)
			}
			after := second.sink.ship.Config()
			// Each config has its own logger: a new producer carries the
			// second's.
			if switched := after.Logger != before.Logger; switched != tc.switches {
				t.Errorf("producer switched: %v, want %v", switched, tc.switches)
			}
			if tc.switches && after.SASL != nil && after.SASL.Password != repl(k.SASL.Password) {
				t.Errorf("password in force = %q, want the second config's", after.SASL.Password)
			}
		})
	}
}

func repl(s string) string { return caddy.NewReplacer().ReplaceKnown(s, "") }

// TestKafkaSecurityWarnings: settings that expose the records or the
// password load, with a warning.
func TestKafkaSecurityWarnings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kafka KafkaConfig
		warn  string
	}{
		{"insecure_skip_verify warns", KafkaConfig{TLS: &KafkaTLS{InsecureSkipVerify: true}}, "insecure_skip_verify"},
		{"sasl plain without tls warns", KafkaConfig{SASL: &KafkaSASL{Mechanism: "plain", Username: "u", Password: "p"}}, "sasl plain without tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.kafka
			core, logs := observerCore()
			if _, err := k.resolveSecurity(caddy.NewReplacer(), core); err != nil {
				t.Fatal(err)
			}
			if n := logs.FilterMessageSnippet(tc.warn).Len(); n != 1 {
				t.Errorf("%d warnings about %s, want 1: %v", n, tc.warn, logs.All())
			}
		})
	}
	t.Run("sasl plain over tls and scram without tls do not warn", func(t *testing.T) {
		core, logs := observerCore()
		for _, k := range []KafkaConfig{
			{TLS: &KafkaTLS{}, SASL: &KafkaSASL{Mechanism: "plain", Username: "u", Password: "p"}},
			{SASL: &KafkaSASL{Mechanism: "scram-sha-256", Username: "u", Password: "p"}},
		} {
			if _, err := k.resolveSecurity(caddy.NewReplacer(), core); err != nil {
				t.Fatal(err)
			}
		}
		if logs.Len() != 0 {
			t.Errorf("warnings: %v", logs.All())
		}
	})
}

// pkiFiles writes a CA, a client certificate and key, and files that are
// not what their option wants, for load tests.
type pkiFiles struct {
	ca, cert, key, otherKey, garbage, keyAsCA string
}

func writePKI(t *testing.T) pkiFiles {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "b2s test CA")
	leaf, other := ca.Issue(t, "b2s-edge"), ca.Issue(t, "someone else")
	return pkiFiles{
		ca:       testpki.WriteFile(t, dir, "ca.pem", ca.PEM),
		cert:     testpki.WriteFile(t, dir, "client.pem", leaf.CertPEM),
		key:      testpki.WriteFile(t, dir, "client.key", leaf.KeyPEM),
		otherKey: testpki.WriteFile(t, dir, "other.key", other.KeyPEM),
		garbage:  testpki.WriteFile(t, dir, "garbage.pem", []byte(strings.Repeat("this is not PEM\n", 20))),
		keyAsCA:  testpki.WriteFile(t, dir, "key-as-ca.pem", leaf.KeyPEM),
	}
}

func missingFile(t *testing.T) string { return filepath.Join(t.TempDir(), "does-not-exist.pem") }

func observerCore() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.WarnLevel)
	return zap.New(core), logs
}
