package caddymodule

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/b2scom/b2s-edge/logship"
)

// kafkaSecurity is the tls and sasl options resolved: placeholders
// replaced, files read.
type kafkaSecurity struct {
	tls  *tls.Config
	sasl *logship.SASL
	// key identifies the settings, for sameKafka: the resolved options,
	// with hashes of the files' contents and of the password. Two configs
	// with the same key connect alike.
	key string
}

// securityID is what kafkaSecurity.key is made of: what the settings are,
// never the password itself.
type securityID struct {
	TLS  *tlsID  `json:",omitempty"`
	SASL *saslID `json:",omitempty"`
}

type tlsID struct {
	CA, Cert, Key [2]string // absolute path, SHA-256 of the contents
	ServerName    string
	Insecure      bool
}

type saslID struct {
	Mechanism, Username, PasswordSHA256 string
}

// check checks what needs neither placeholders nor files.
func (t *KafkaTLS) check() error {
	switch {
	case t.Cert != "" && t.Key == "":
		return errors.New("b2s: kafka: tls cert needs key, the PEM file of its private key")
	case t.Key != "" && t.Cert == "":
		return errors.New("b2s: kafka: tls key needs cert, the PEM file of the client certificate")
	}
	return nil
}

// checkSecurity checks the tls and sasl options without I/O. Provision
// calls it before reading anything, Validate for JSON configs.
func (k *KafkaConfig) checkSecurity() error {
	if k.TLS != nil {
		if err := k.TLS.check(); err != nil {
			return err
		}
	}
	if k.SASL != nil {
		if _, err := logship.ParseSASLMechanism(k.SASL.Mechanism); err != nil {
			return fmt.Errorf("b2s: kafka: %v", err)
		}
	}
	return nil
}

// resolveSecurity replaces placeholders in the tls and sasl options and
// reads the TLS files. Each error names the option, and the file or the
// placeholder at fault.
func (k *KafkaConfig) resolveSecurity(repl *caddy.Replacer, logger *zap.Logger) (kafkaSecurity, error) {
	if err := k.checkSecurity(); err != nil {
		return kafkaSecurity{}, err
	}
	var id securityID
	var sec kafkaSecurity

	if t := k.TLS; t != nil {
		id.TLS = &tlsID{ServerName: repl.ReplaceKnown(t.ServerName, ""), Insecure: t.InsecureSkipVerify}
		cfg := &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         id.TLS.ServerName,
			InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the user asked, and is warned
		}
		if t.CA != "" {
			path, data, err := readPEMFile(repl, "ca", t.CA)
			if err != nil {
				return kafkaSecurity{}, err
			}
			certs, err := parseCertificates(data)
			if err != nil {
				return kafkaSecurity{}, fmt.Errorf("b2s: kafka: tls ca %q: %v; point ca at a PEM file of the CA certificates that sign the brokers' certificates", path, err)
			}
			cfg.RootCAs = x509.NewCertPool()
			for _, c := range certs {
				cfg.RootCAs.AddCert(c)
			}
			id.TLS.CA = [2]string{path, sha256Hex(data)}
		}
		if t.Cert != "" {
			certPath, certData, err := readPEMFile(repl, "cert", t.Cert)
			if err != nil {
				return kafkaSecurity{}, err
			}
			if _, err := parseCertificates(certData); err != nil {
				return kafkaSecurity{}, fmt.Errorf("b2s: kafka: tls cert %q: %v; point cert at the PEM file of the client certificate", certPath, err)
			}
			keyPath, keyData, err := readPEMFile(repl, "key", t.Key)
			if err != nil {
				return kafkaSecurity{}, err
			}
			pair, err := tls.X509KeyPair(certData, keyData)
			if err != nil {
				return kafkaSecurity{}, fmt.Errorf("b2s: kafka: tls key %q: %v; point key at the PEM file of the private key of the certificate in %q", keyPath, err, certPath)
			}
			cfg.Certificates = []tls.Certificate{pair}
			id.TLS.Cert = [2]string{certPath, sha256Hex(certData)}
			id.TLS.Key = [2]string{keyPath, sha256Hex(keyData)}
		}
		if t.InsecureSkipVerify {
			logger.Warn("kafka tls insecure_skip_verify is set: the brokers' certificates are not verified, so anyone on the path can read and alter the records and take the SASL password; use it for tests only")
		}
		sec.tls = cfg
	}

	if s := k.SASL; s != nil {
		mech, _ := logship.ParseSASLMechanism(s.Mechanism) // checked above
		user, err := resolveRequired(repl, "sasl username", s.Username)
		if err != nil {
			return kafkaSecurity{}, err
		}
		pass, err := resolveRequired(repl, "sasl password", s.Password)
		if err != nil {
			return kafkaSecurity{}, err
		}
		sec.sasl = &logship.SASL{Mechanism: mech, Username: user, Password: pass}
		id.SASL = &saslID{Mechanism: mech, Username: user, PasswordSHA256: sha256Hex([]byte(pass))}
		if mech == logship.SASLPlain && k.TLS == nil {
			logger.Warn("kafka sasl plain without tls sends the password in clear text; add a tls block to the kafka options")
		}
	}

	j, err := json.Marshal(id)
	if err != nil {
		return kafkaSecurity{}, fmt.Errorf("b2s: kafka: %v", err)
	}
	sec.key = string(j)
	return sec, nil
}

// readPEMFile reads the file an option of the tls block names.
func readPEMFile(repl *caddy.Replacer, option, raw string) (path string, data []byte, err error) {
	p, err := resolveRequired(repl, "tls "+option, raw)
	if err != nil {
		return "", nil, err
	}
	if path, err = filepath.Abs(p); err != nil {
		return "", nil, fmt.Errorf("b2s: kafka: tls %s: %v", option, err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", nil, fmt.Errorf("b2s: kafka: tls %s: reading %q: %v; point %s at a readable PEM file", option, path, err, option)
	}
	return path, data, nil
}

// parseCertificates parses a PEM file of certificates: at least one, and
// nothing else.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %s PEM block where only certificates belong", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in the file")
	}
	return certs, nil
}

// placeholderRE finds the placeholders that usually hold secrets.
var placeholderRE = regexp.MustCompile(`\{(env|file)\.([^{}]+)\}`)

// resolveRequired replaces placeholders in an option's value, which must
// not end up empty: the error names the option and what to set.
func resolveRequired(repl *caddy.Replacer, option, raw string) (string, error) {
	if v := repl.ReplaceKnown(raw, ""); v != "" {
		return v, nil
	}
	if raw == "" {
		return "", fmt.Errorf("b2s: kafka: %s is empty; give it a value, e.g. {env.KAFKA_PASSWORD} for an environment variable", option)
	}
	var fixes []string
	for _, m := range placeholderRE.FindAllStringSubmatch(raw, -1) {
		if m[1] == "env" {
			fixes = append(fixes, "set the environment variable "+m[2])
		} else {
			fixes = append(fixes, "put the value in the file "+m[2])
		}
	}
	if len(fixes) == 0 {
		fixes = []string{"give it a value"}
	}
	return "", fmt.Errorf("b2s: kafka: %s %q is empty after placeholders were replaced; %s", option, raw, strings.Join(fixes, ", or "))
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
