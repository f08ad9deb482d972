package logship

import (
	"errors"
	"fmt"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms, as Kafka's sasl.enabled.mechanisms names them but in
// lower case. Names are matched without regard to case.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// SASL is the login the shipper sends on every connection to a broker
// (KIP-43, KIP-84).
type SASL struct {
	// Mechanism is plain, scram-sha-256 or scram-sha-512. PLAIN sends the
	// password itself: use it over TLS only.
	Mechanism string
	Username  string
	Password  string
}

// String describes s without its password, so that a logged or printed
// Config does not leak it.
func (s SASL) String() string { return s.Mechanism + " " + s.Username }

// GoString is String, for %#v.
func (s SASL) GoString() string { return "logship.SASL{" + s.String() + "}" }

// ParseSASLMechanism checks a mechanism name and returns it in lower case.
func ParseSASLMechanism(name string) (string, error) {
	switch m := strings.ToLower(name); m {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		return m, nil
	}
	return "", fmt.Errorf("unknown sasl mechanism %q (want plain, scram-sha-256 or scram-sha-512)", name)
}

// mechanism builds kafka-go's client side of the mechanism. Its errors
// never hold the password.
func (s SASL) mechanism() (sasl.Mechanism, error) {
	m, err := ParseSASLMechanism(s.Mechanism)
	if err != nil {
		return nil, err
	}
	if s.Username == "" {
		return nil, errors.New("sasl: empty username")
	}
	if s.Password == "" {
		return nil, errors.New("sasl: empty password")
	}
	algo := scram.SHA256
	switch m {
	case SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case SASLScramSHA512:
		algo = scram.SHA512
	}
	mech, err := scram.Mechanism(algo, s.Username, s.Password)
	if err != nil {
		// xdg-go/scram quotes the password in this error: leave it out.
		return nil, fmt.Errorf("sasl %s: the username or password is not valid SASLprep text (RFC 4013), e.g. it holds a control character", m)
	}
	return mech, nil
}
