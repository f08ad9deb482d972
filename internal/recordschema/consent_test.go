package recordschema

import "testing"

func TestSchemaTakesPendingConsentWithoutIdentifiers(t *testing.T) {
	const page = `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"page","host":"h","ip":"203.0.113.0","ip_truncated":true,"method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0`
	const id = `,"cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","cookie_state":"new","network_id":"2ba4d43fa2ecb3a3656759d4833980c0"`
	for name, tc := range map[string]struct {
		rec string
		ok  bool
	}{
		"control: a pending record without identifiers":              {page + `,"consent":"pending"}`, true},
		"control: a full record with consent_changed and its cookie": {page + `,"consent":"full","consent_changed":true` + id + `}`, true},
		"control: a withdrawal, opted out, with consent_changed":     {page + `,"consent":"optout","consent_changed":true}`, true},
		"a pending record with a cookie_id":                          {page + `,"consent":"pending"` + id + `}`, false},
		"a pending record with only a network_id":                    {page + `,"consent":"pending","network_id":"2ba4d43fa2ecb3a3656759d4833980c0"}`, false},
		"an opted-out record with a cookie_id":                       {page + `,"consent":"optout"` + id + `}`, false},
		"an unknown consent":                                         {page + `,"consent":"maybe"}`, false},
		"consent_changed false":                                      {page + `,"consent":"full","consent_changed":false}`, false},
	} {
		t.Run(name, func(t *testing.T) {
			err := Validate([]byte(tc.rec))
			if tc.ok && err != nil {
				t.Fatalf("schema refused %s: %v", tc.rec, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("schema accepted %s", tc.rec)
			}
		})
	}
}
