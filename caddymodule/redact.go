package caddymodule

import (
	"fmt"

	"github.com/b2scom/b2s-edge/beacon"
)

// newRedactor makes the redactor of the privacy options' redact_params;
// on a bad name it returns nil (email addresses only) and the error,
// which validate reports.
func newRedactor(params []string) (*beacon.Redactor, error) {
	rd, err := beacon.NewRedactor(params)
	if err != nil {
		return nil, fmt.Errorf("b2s: privacy: redact_params: %v; list the names as the form's fields are named, e.g. redact_params email phone token password", err)
	}
	return rd, nil
}

// redact replaces the personal data in rec's page and event fields (email
// addresses, named parameters' values) before it is encoded, and counts
// what it replaced. Every record goes through it on its way to the spool.
func (a *App) redact(rec *beacon.Record) {
	var rd *beacon.Redactor // nil: email addresses only
	if a.privacy != nil {
		rd = a.privacy.redactor
	}
	n := rd.Record(rec)
	for f, k := range n {
		if k > 0 {
			redactionCount[f].Add(float64(k))
		}
	}
}
