package logship

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/b2scom/b2s-edge/internal/testpki"
)

// franzSASL is the reader's login: franz-go's implementation of the
// mechanism, independent of kafka-go's.
func franzSASL(t *testing.T, mechanism, user, pass string) kgo.Opt {
	t.Helper()
	switch mechanism {
	case "PLAIN":
		return kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism())
	case "SCRAM-SHA-256":
		return kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism())
	case "SCRAM-SHA-512":
		return kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism())
	}
	t.Fatalf("no franz-go mechanism %s", mechanism)
	return nil
}

// failingShipper starts a shipper with cfg that Kafka must refuse: it
// checks that writes keep failing and nothing is counted shipped, and
// returns the log of the failures.
func failingShipper(t *testing.T, cfg Config, n int) (*Shipper, *Spool, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.ErrorLevel)
	cfg.Logger, cfg.Stats, cfg.WriteTimeout = zap.New(core), new(Stats), 2*time.Second
	sp := openSpool(t, SpoolConfig{Stats: cfg.Stats})
	s, err := NewShipper(sp, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Kafka may still refuse what is spooled: do not wait for it.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = s.Close(ctx)
	})
	put(t, sp, 0, n)
	// Three failed attempts: the shipper keeps trying, it did not give up
	// after the first.
	waitFor(t, func() bool { return cfg.Stats.WriteErrors.Load() >= 3 })
	if got := cfg.Stats.Shipped.Load(); got != 0 {
		t.Fatalf("%d records counted shipped through a connection Kafka refuses", got)
	}
	if sp.Lag() == 0 {
		t.Fatal("the spool's cursor moved past records Kafka never took")
	}
	if !s.Failing() {
		t.Fatal("the shipper does not report failing")
	}
	errs := logs.FilterMessage("writing to kafka").All()
	if len(errs) == 0 {
		t.Fatal("no write error logged")
	}
	t.Logf("the write error: %v", errs[0].ContextMap()["error"])
	return s, sp, logs
}

func TestShipperLogsInWithSASL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kfake, logship string
	}{
		{"PLAIN", SASLPlain},
		{"SCRAM-SHA-256", SASLScramSHA256},
		{"SCRAM-SHA-512", "SCRAM-SHA-512"}, // names match without regard to case
	} {
		const user, pass = "edge", "s3cret pass-word"
		t.Run("records arrive with the right "+tc.kfake+" credentials", func(t *testing.T) {
			t.Parallel()
			b := newBroker(t, kfake.EnableSASL(), kfake.Superuser(tc.kfake, user, pass))
			stats := new(Stats)
			_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats,
				SASL: &SASL{Mechanism: tc.logship, Username: user, Password: pass}})
			put(t, sp, 0, 300)
			checkExactly(t, consumeTopic(t, b.ListenAddrs(), topic, 300, franzSASL(t, tc.kfake, user, pass)), 0, 300)
			waitFor(t, func() bool { return stats.Shipped.Load() == 300 && sp.Lag() == 0 })
		})
		t.Run("a wrong "+tc.kfake+" password fails every write until a reconfigure brings the right one, and then every record arrives once", func(t *testing.T) {
			t.Parallel()
			b := newBroker(t, kfake.EnableSASL(), kfake.Superuser(tc.kfake, user, pass))
			s, sp, logs := failingShipper(t, Config{Brokers: b.ListenAddrs(),
				SASL: &SASL{Mechanism: tc.logship, Username: user, Password: "wrong " + pass}}, 50)
			for _, e := range logs.All() {
				if msg := fmt.Sprint(e.ContextMap()); strings.Contains(msg, pass) {
					t.Errorf("a log line holds the password: %s", msg)
				}
			}
			cfg := s.Config()
			cfg.SASL = &SASL{Mechanism: tc.logship, Username: user, Password: pass}
			if err := s.Reconfigure(cfg); err != nil {
				t.Fatal(err)
			}
			put(t, sp, 50, 50)
			checkExactly(t, consumeTopic(t, b.ListenAddrs(), topic, 100, franzSASL(t, tc.kfake, user, pass)), 0, 100)
			waitFor(t, func() bool { return cfg.Stats.Shipped.Load() == 100 && !s.Failing() })
		})
	}
	t.Run("a shipper without SASL is refused by a broker that requires it", func(t *testing.T) {
		t.Parallel()
		b := newBroker(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "edge", "pass"))
		failingShipper(t, Config{Brokers: b.ListenAddrs()}, 10)
	})
}

// tlsBroker starts a broker that speaks only TLS, with a certificate the
// returned CA issued for hosts.
func tlsBroker(t *testing.T, serverTLS func(*tls.Config), hosts ...string) (*kfake.Cluster, *testpki.CA) {
	t.Helper()
	ca := testpki.NewCA(t, "b2s test broker CA")
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "kafka", hosts...).TLS}, MinVersion: tls.VersionTLS12}
	if serverTLS != nil {
		serverTLS(cfg)
	}
	return newBroker(t, kfake.TLS(cfg)), ca
}

func TestShipperConnectsOverTLS(t *testing.T) {
	t.Parallel()
	t.Run("records arrive when the broker's CA is trusted", func(t *testing.T) {
		t.Parallel()
		b, ca := tlsBroker(t, nil, "127.0.0.1")
		stats := new(Stats)
		cfg := &tls.Config{RootCAs: ca.Pool()}
		_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, TLS: cfg})
		put(t, sp, 0, 300)
		checkExactly(t, consumeTopic(t, b.ListenAddrs(), topic, 300, kgo.DialTLSConfig(cfg)), 0, 300)
		waitFor(t, func() bool { return stats.Shipped.Load() == 300 })
	})
	t.Run("a broker certificate from an untrusted CA fails every write", func(t *testing.T) {
		t.Parallel()
		b, _ := tlsBroker(t, nil, "127.0.0.1")
		other := testpki.NewCA(t, "some other CA")
		_, _, logs := failingShipper(t, Config{Brokers: b.ListenAddrs(), TLS: &tls.Config{RootCAs: other.Pool()}}, 10)
		if err := fmt.Sprint(logs.All()[0].ContextMap()["error"]); !strings.Contains(err, "unknown authority") {
			t.Errorf("write error %q does not say the certificate is from an unknown authority", err)
		}
	})
	t.Run("a broker certificate for another name fails every write", func(t *testing.T) {
		t.Parallel()
		b, ca := tlsBroker(t, nil, "kafka.b2s.test")
		failingShipper(t, Config{Brokers: b.ListenAddrs(), TLS: &tls.Config{RootCAs: ca.Pool()}}, 10)
	})
	t.Run("a ServerName makes a certificate for that name verify", func(t *testing.T) {
		t.Parallel()
		b, ca := tlsBroker(t, nil, "kafka.b2s.test")
		stats := new(Stats)
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "kafka.b2s.test"}
		_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, TLS: cfg})
		put(t, sp, 0, 20)
		checkExactly(t, consumeTopic(t, b.ListenAddrs(), topic, 20, kgo.DialTLSConfig(cfg)), 0, 20)
	})
	t.Run("a plaintext shipper is refused by a TLS broker", func(t *testing.T) {
		t.Parallel()
		b, _ := tlsBroker(t, nil, "127.0.0.1")
		failingShipper(t, Config{Brokers: b.ListenAddrs()}, 10)
	})

	// Mutual TLS: the broker asks for a client certificate its CA issued.
	clientCA := testpki.NewCA(t, "b2s test client CA")
	requireClientCert := func(c *tls.Config) {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, clientCA.Pool()
	}
	t.Run("with mutual TLS, records arrive from a shipper with a client certificate", func(t *testing.T) {
		t.Parallel()
		b, ca := tlsBroker(t, requireClientCert, "127.0.0.1")
		stats := new(Stats)
		cfg := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCA.Issue(t, "edge").TLS}}
		_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, TLS: cfg})
		put(t, sp, 0, 100)
		checkExactly(t, consumeTopic(t, b.ListenAddrs(), topic, 100, kgo.DialTLSConfig(cfg)), 0, 100)
	})
	t.Run("with mutual TLS, a shipper without a client certificate is refused", func(t *testing.T) {
		t.Parallel()
		b, ca := tlsBroker(t, requireClientCert, "127.0.0.1")
		failingShipper(t, Config{Brokers: b.ListenAddrs(), TLS: &tls.Config{RootCAs: ca.Pool()}}, 10)
	})
	t.Run("with mutual TLS, a client certificate from another CA is refused", func(t *testing.T) {
		t.Parallel()
		b, ca := tlsBroker(t, requireClientCert, "127.0.0.1")
		stranger := testpki.NewCA(t, "stranger").Issue(t, "edge")
		failingShipper(t, Config{Brokers: b.ListenAddrs(), TLS: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{stranger.TLS}}}, 10)
	})

	t.Run("SCRAM over TLS: records arrive", func(t *testing.T) {
		t.Parallel()
		ca := testpki.NewCA(t, "b2s test broker CA")
		b := newBroker(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "edge", "pass"),
			kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "kafka", "127.0.0.1").TLS}}))
		stats := new(Stats)
		cfg := &tls.Config{RootCAs: ca.Pool()}
		_, sp := newShipper(t, Config{Brokers: b.ListenAddrs(), Stats: stats, TLS: cfg,
			SASL: &SASL{Mechanism: SASLScramSHA512, Username: "edge", Password: "pass"}})
		put(t, sp, 0, 100)
		checkExactly(t, consumeTopic(t, b.ListenAddrs(), topic, 100, kgo.DialTLSConfig(cfg), franzSASL(t, "SCRAM-SHA-512", "edge", "pass")), 0, 100)
	})
}

func TestSASLConfigErrors(t *testing.T) {
	t.Parallel()
	const pass = "do-not-print-me\x07"
	for _, tc := range []struct {
		name string
		sasl SASL
		want string
	}{
		{"an unknown mechanism lists the known ones", SASL{Mechanism: "gssapi", Username: "u", Password: "p"}, `unknown sasl mechanism "gssapi" (want plain, scram-sha-256 or scram-sha-512)`},
		{"an empty username is refused", SASL{Mechanism: SASLPlain, Password: "p"}, "empty username"},
		{"an empty password is refused", SASL{Mechanism: SASLScramSHA256, Username: "u"}, "empty password"},
		{"a SCRAM password that SASLprep refuses is refused without quoting it", SASL{Mechanism: SASLScramSHA512, Username: "u", Password: pass}, "not valid SASLprep text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Config{Brokers: []string{"127.0.0.1:9092"}, SASL: &tc.sasl}.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "do-not-print-me") {
				t.Errorf("the error %q holds the password", err)
			}
		})
	}
	t.Run("TLS or SASL beside a Transport of the caller's is refused", func(t *testing.T) {
		t.Parallel()
		cfg := Config{Brokers: []string{"127.0.0.1:9092"}, TLS: &tls.Config{}, Transport: &kafka.Transport{}}
		if err := cfg.Validate(); err == nil {
			t.Error("Validate accepted TLS beside a Transport")
		}
	})
	t.Run("a SASL login prints without its password", func(t *testing.T) {
		t.Parallel()
		s := SASL{Mechanism: SASLPlain, Username: "edge", Password: pass}
		for _, f := range []string{"%v", "%+v", "%s", "%#v"} {
			if got := fmt.Sprintf(f, s); strings.Contains(got, "do-not-print-me") || !strings.Contains(got, "edge") {
				t.Errorf("%s of a SASL login = %q, want the username and no password", f, got)
			}
		}
	})
}
