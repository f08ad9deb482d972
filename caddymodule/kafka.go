package caddymodule

import (
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/b2scom/b2s-edge/logship"
)

// KafkaConfig configures the Kafka producer (segmentio/kafka-go, through its
// Transport; see logship).
type KafkaConfig struct {
	// Brokers are bootstrap broker addresses, host:port. Required.
	// Placeholders are replaced at load.
	Brokers []string `json:"brokers,omitempty"`

	// Topic receives one message per record, keyed by cookie ID, value
	// the JSON record. Default "b2s.events".
	Topic string `json:"topic,omitempty"`

	// Compression is the batch codec: none, gzip, snappy, lz4 or zstd.
	// Default snappy.
	Compression string `json:"compression,omitempty"`

	// BatchSize is the most records in one produce request (one spool
	// read). Default 1000.
	BatchSize int `json:"batch_size,omitempty"`

	// BatchTimeout is how long records may wait in the spool for others
	// to join their produce request, when fewer than BatchSize are
	// waiting (linger.ms in librdkafka and the Java client). Default 20ms:
	// fewer, larger requests, each of which costs the proxy's CPU whatever
	// it carries. 1µs sends what there is at once.
	BatchTimeout caddy.Duration `json:"batch_timeout,omitempty"`

	// WriteTimeout bounds one produce request, acknowledgement included.
	// Default 10s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// FlushTimeout bounds how long a shutdown waits for spooled records to
	// reach Kafka; what is left stays in the spool for the next start.
	// Default 5s.
	FlushTimeout caddy.Duration `json:"flush_timeout,omitempty"`

	// TLS, when present, connects to the brokers over TLS (Kafka's SSL
	// and SASL_SSL listeners). Present but empty, it verifies the brokers'
	// certificates against the system's trusted roots. Default: plaintext.
	TLS *KafkaTLS `json:"tls,omitempty"`

	// SASL, when present, logs in to the brokers on every connection
	// (Kafka's SASL_PLAINTEXT and SASL_SSL listeners). Default: none.
	SASL *KafkaSASL `json:"sasl,omitempty"`
}

// KafkaTLS configures TLS to the brokers. Placeholders in its values are
// replaced at load, and the files are read and checked at load: a missing
// or invalid file fails it, and a reload after a file was replaced (a
// renewed certificate) connects anew with the new one.
type KafkaTLS struct {
	// CA is a PEM file of the certificate authorities that sign the
	// brokers' certificates, trusted instead of the system's roots.
	// Default: the system's roots.
	CA string `json:"ca,omitempty"`

	// Cert is a PEM file of the client certificate (and any intermediate
	// certificates) shown to brokers that require one, i.e. mutual TLS
	// (ssl.client.auth=required). Requires Key. Default: none.
	Cert string `json:"cert,omitempty"`

	// Key is the PEM file of Cert's private key. Requires Cert.
	Key string `json:"key,omitempty"`

	// ServerName is the name the brokers' certificates must be valid for,
	// also sent in SNI. Default: each broker's host, as given in brokers
	// and as the brokers advertise themselves.
	ServerName string `json:"server_name,omitempty"`

	// InsecureSkipVerify accepts any certificate from the brokers. For
	// tests only: anyone on the path can then read and alter the records
	// and take the SASL password. A warning is logged at each load.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// KafkaSASL is the SASL login sent on every connection to a broker.
// Placeholders in its values are replaced at load; a username or password
// that is empty after that fails the load.
type KafkaSASL struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512, in any case.
	// PLAIN sends the password itself: use it with tls. Required.
	Mechanism string `json:"mechanism,omitempty"`

	// Username is the Kafka user. Required.
	Username string `json:"username,omitempty"`

	// Password is the user's password. Required. Give it as a placeholder,
	// {env.KAFKA_PASSWORD} or {file./run/secrets/kafka_password}, to keep
	// it out of the config file and of the config Caddy saves.
	Password string `json:"password,omitempty"`
}

// shipperConfig resolves the kafka options: placeholders replaced, TLS
// files read.
func (a *App) shipperConfig(repl *caddy.Replacer) (kafkaSettings, error) {
	k := a.Kafka
	brokers := make([]string, 0, len(k.Brokers))
	for _, b := range k.Brokers {
		for _, f := range strings.FieldsFunc(repl.ReplaceKnown(b, ""), func(r rune) bool { return r == ',' || r == ' ' }) {
			brokers = append(brokers, f)
		}
	}
	sec, err := k.resolveSecurity(repl, a.logger)
	if err != nil {
		return kafkaSettings{}, err
	}
	return kafkaSettings{security: sec.key, cfg: logship.Config{
		Brokers:      brokers,
		Topic:        k.Topic,
		Compression:  k.Compression,
		BatchSize:    k.BatchSize,
		BatchTimeout: time.Duration(k.BatchTimeout),
		WriteTimeout: time.Duration(k.WriteTimeout),
		TLS:          sec.tls,
		SASL:         sec.sasl,
		Logger:       a.logger.Named("kafka"),
		Stats:        stats,
	}}, nil
}
