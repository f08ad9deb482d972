package recordschema

import "testing"

// TestSchemaAnonID: anon_id appears only where the edge writes it, in a
// record whose consent allows no identifier, and never beside one.
func TestSchemaAnonID(t *testing.T) {
	const page = `{"schema":1,"event_id":"01a223f3-5444-7087-9173-23d24bee45ec","ts":"2026-11-28T20:57:59.108030Z","kind":"page","host":"h","ip":"203.0.113.0","ip_truncated":true,"method":"GET","url":"u","referrer":"","user_agent":"","status":200,"bytes":0`
	const id = `"anon_id":"q83vEjRWeJCrze8SNFZ4kA"`
	for name, rec := range map[string]string{
		"an opted-out record with an anon_id": page + `,"consent":"optout",` + id + `}`,
		"a GPC record with an anon_id":        page + `,"consent":"gpc",` + id + `}`,
		"control: a full record without one":  page + `,"consent":"full"}`,
	} {
		if err := Validate([]byte(rec)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, rec := range map[string]string{
		"an anon_id in a full record":                                    page + `,"consent":"full",` + id + `}`,
		"an anon_id in a child's record":                                 page + `,"consent":"child",` + id + `}`,
		"an anon_id in a record without consent":                         page + `,` + id + `}`,
		"an anon_id beside a cookie_id":                                  page + `,"consent":"optout",` + id + `,"cookie_id":"2ba4d43fa2ecb3a3656759d4833980c0","cookie_state":"new"}`,
		"an anon_id of 21 characters":                                    page + `,"consent":"optout","anon_id":"q83vEjRWeJCrze8SNFZ4k"}`,
		"an anon_id with padding":                                        page + `,"consent":"optout","anon_id":"q83vEjRWeJCrze8SNFZ4kA=="}`,
		"an anon_id in standard base64":                                  page + `,"consent":"optout","anon_id":"q83vEjRW+JCrze8SNFZ4kA"}`,
		"an anon_id whose last character has bits a 16-byte value lacks": page + `,"consent":"optout","anon_id":"q83vEjRWeJCrze8SNFZ4kB"}`,
	} {
		if err := Validate([]byte(rec)); err == nil {
			t.Errorf("schema accepted %s: %s", name, rec)
		}
	}
}
